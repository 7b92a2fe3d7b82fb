"""Retrieval throughput against the embedded local AWS (moto over HTTP on 127.0.0.1).

Default (``--vs-get``): ``logarchive logs-from-archive`` against plain GETs of the same
archives with the same concurrency, side by side. One archive is sealed and stored under
``--archives`` keys (``--archive-mb`` of stored bytes each: 2 GB by default), then each run is
a child process on the same local AWS: the CLI (default output: the gzip as archived, every
GCM tag verified, no filter, ``--jobs``), and a plain GET of every object into a file
(``--jobs`` threads, boto3, 1 MiB reads), alternated ``--rounds`` times, the best of each
counting. Prints seconds, MB/s of stored bytes, the CLI's share
of the GET rate, and each child's peak RSS (``wait4``), for the whole selection and for a
quarter of it (peak RSS must not grow with the selection). ``--profile`` runs the CLI under
cProfile and prints where its time goes.

``--modes``: the older table, ``retrieval.download_all`` in each output mode and job count, in
process, the baseline being one job writing the archived gzip.

    .venv/bin/python bench/bench_retrieval.py [--archives 128 --archive-mb 16 --jobs 4]
    .venv/bin/python bench/bench_retrieval.py --modes [--objects 16] [--mb 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402

from chalicelib import codec, layout  # noqa: E402
from chalicelib.devkit import local_aws
from chalicelib.dockerlog import LineFilter  # noqa: E402
from chalicelib.download import retrieval  # noqa: E402
from chalicelib.keyring import Keyring, MasterKey  # noqa: E402


def make_log(mb: float, seed: int) -> bytes:
    lines, size, i = [], 0, 0
    while size < mb * 1e6:
        line = json.dumps({"log": f"{seed} GET /api/v1/items/{i * 7919 % 100000} 200 {i % 997}ms "
                                  f"user={i % 313} trace={i * 2654435761 % 2**32:08x}\n",
                           "stream": "stdout" if i % 5 else "stderr",
                           "time": f"2022-08-24T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 10**9:09d}Z"},
                          separators=(",", ":")) + "\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()


GET_SCRIPT = r"""
import sys, boto3
from concurrent.futures import ThreadPoolExecutor
bucket, dest, jobs, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
s3 = boto3.client("s3")
def get(i_key):
    i, key = i_key
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(f"{dest}/{i}", "wb") as out:
        for block in body.iter_chunks(1 << 20):
            out.write(block)
with ThreadPoolExecutor(jobs) as pool:
    list(pool.map(get, enumerate(keys)))
"""


# Runs a module (-m NAME ARGS) or a script (-c CODE ARGS) and writes its own peak RSS (VmHWM, KiB)
# to a file at exit. Not rusage's ru_maxrss: Linux carries that over fork + exec from the parent
# (this benchmark, which holds the sealed archive), so every child would report the parent's.
PEAK_RSS = r"""
import atexit, runpy, sys
out, mode, what, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(hwm)
if mode == "-m":
    sys.argv = [what, *rest]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *rest]
    exec(compile(what, "<script>", "exec"), {"__name__": "__main__"})
"""


def _child(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak RSS (MiB) of one child process (``python -m …`` or ``python -c …``)."""
    import subprocess

    fd, peak_file = tempfile.mkstemp(prefix="bench-rss-")
    os.close(fd)
    t0 = time.perf_counter()
    proc = subprocess.run([argv[0], "-c", PEAK_RSS, peak_file, *argv[1:]], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    with open(peak_file) as fh:
        peak_kib = int(fh.read() or 0)
    os.unlink(peak_file)
    return dt, peak_kib // 1024


def vs_get(args: argparse.Namespace) -> None:
    import random
    import subprocess

    key = MasterKey.generate()
    ring = Keyring([key])
    # one sealed archive of about --archive-mb stored bytes (log lines that compress ~8x)
    rnd = random.Random(7)
    data = make_log(args.archive_mb * 8, 0)
    out = io.BytesIO()
    res = codec.seal(io.BytesIO(data), out, ring)
    sealed, meta = out.getvalue(), res.envelope.to_fields()
    workdir = tempfile.mkdtemp(prefix="bench-vs-get-")
    keyfile = os.path.join(workdir, "key")
    with open(keyfile, "w") as fh:
        fh.write(key.to_base64() + "\n")
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, ("bench-logs",))
        s3 = boto3.client("s3")
        # app 1: a quarter of the archives; app 2: all of them (peak RSS of both must be alike)
        keys: dict[str, list[str]] = {"1": [], "2": []}
        t0 = time.perf_counter()
        for app, n_archives in (("1", args.archives // 4), ("2", args.archives)):
            for n in range(n_archives):
                k = layout.ArchiveKey(stack="bench", key_id=key.key_id, kind="apps", resource_id=app,
                                      service_id="1", container_id=f"{rnd.getrandbits(256):064x}", rotation=n + 1,
                                      start=layout.parse_key_time("2022-08-24T00:00:00"),
                                      end=layout.parse_key_time("2022-08-24T23:59:59")).key()
                s3.put_object(Bucket="bench-logs", Key=k, Body=sealed, Metadata=meta)
                keys[app].append(k)
        total = len(sealed) * len(keys["2"])
        print(f"# {len(keys['2'])} archives of {len(sealed) / 1e6:.1f} MB stored ({len(data) / 1e6:.0f} MB of log "
              f"each): {total / 1e9:.2f} GB stored, uploaded in {time.perf_counter() - t0:.0f} s; --jobs {args.jobs}; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, **local_aws.LOCAL_CREDENTIALS,
               "AWS_DEFAULT_REGION": "us-east-1"}
        print(f"{'selection':>10} {'run':30} {'s':>7} {'MB/s':>7} {'of GET':>7} {'peak RSS MiB':>13}")
        for app in ("1", "2"):
            chosen = keys[app]
            size = len(sealed) * len(chosen)
            cli = [sys.executable, "-m", "chalicelib.cli", "logs-from-archive", "--bucket", "bench-logs",
                   "--stack", "bench", "--app-id", app, "--key-file", keyfile, "--download-location",
                   os.path.join(workdir, "cli"), "--jobs", str(args.jobs), "--no-progress"]
            get = [sys.executable, "-c", GET_SCRIPT, "bench-logs", os.path.join(workdir, "get"), str(args.jobs),
                   *chosen]
            runs: dict[str, list[tuple[float, int]]] = {"get": [], "cli": []}
            # alternated, best of --rounds each: neither profits alone from what the other warmed
            for _ in range(args.rounds):
                for name, argv in (("get", get), ("cli", cli)):
                    dest = os.path.join(workdir, name)
                    os.makedirs(dest)
                    runs[name].append(_child(argv, env))
                    got = sum(len(f) for _, _, f in os.walk(dest))
                    shutil.rmtree(dest)
                    if got != len(chosen):
                        raise SystemExit(f"{name} wrote {got} files, expected {len(chosen)}")
            get_s, cli_s = min(t for t, _ in runs["get"]), min(t for t, _ in runs["cli"])
            get_rss, cli_rss = max(r for _, r in runs["get"]), max(r for _, r in runs["cli"])
            if args.profile and app == "2":
                prof = [sys.executable, "-m", "cProfile", "-o", os.path.join(workdir, "cli.prof"), *cli[1:]]
                os.makedirs(os.path.join(workdir, "cli"))
                _child(prof, env)
                shutil.rmtree(os.path.join(workdir, "cli"))
            label = f"{size / 1e9:.2f} GB"
            print(f"{label:>10} {'plain GET into files':30} {get_s:7.1f} {size / 1e6 / get_s:7.0f} {'':>7} {get_rss:13d}")
            print(f"{label:>10} {'logs-from-archive':30} {cli_s:7.1f} {size / 1e6 / cli_s:7.0f} "
                  f"{get_s / cli_s:7.0%} {cli_rss:13d}")
        if args.profile:
            import pstats

            print("\n# where the CLI's time goes (cProfile, cumulative, top 25)")
            pstats.Stats(os.path.join(workdir, "cli.prof")).sort_stats("cumulative").print_stats(25)
    shutil.rmtree(workdir, ignore_errors=True)
    del subprocess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", action="store_true", help="the per-mode table instead of the GET comparison")
    ap.add_argument("--objects", type=int, default=16, help="--modes: archives")
    ap.add_argument("--mb", type=float, default=4.0, help="--modes: MB of log each")
    ap.add_argument("--archives", type=int, default=128, help="archives of the selection (default 128)")
    ap.add_argument("--archive-mb", type=float, default=16.0, help="stored MB of each (default 16: 2 GB in all)")
    ap.add_argument("--jobs", type=int, default=4, help="parallel downloads of both (default 4)")
    ap.add_argument("--profile", action="store_true", help="profile the CLI's run over the whole selection")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, alternated; the best counts (default 2)")
    args = ap.parse_args()
    if not args.modes:
        vs_get(args)
        return
    key = MasterKey.generate()
    ring = Keyring([key])
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, ("bench-logs",))
        s3 = boto3.client("s3")
        raw_total = gz_total = 0
        for n in range(args.objects):
            data = make_log(args.mb, n)
            out = io.BytesIO()
            res = codec.seal(io.BytesIO(data), out, ring)
            k = layout.ArchiveKey(stack="bench", key_id=key.key_id, kind="apps", resource_id="1", service_id="1",
                                  container_id=f"{n:02x}" * 32, start=layout.parse_key_time("2022-08-24T00:00:00"),
                                  end=layout.parse_key_time("2022-08-24T23:59:59")).key()
            s3.put_object(Bucket="bench-logs", Key=k, Body=out.getvalue(), Metadata=res.envelope.to_fields())
            raw_total += len(data)
            gz_total += res.gzip_bytes
        matches = retrieval.find_archives(s3, "bench-logs", retrieval.Selection("bench", kind="apps", resource_id="1"))
        print(f"{len(matches)} archives, {raw_total / 1e6:.1f} MB of log lines, {gz_total / 1e6:.1f} MB gzip; "
              f"cpus={os.cpu_count()}")
        import re

        modes = [
            ("gzip (as archived)", retrieval.OutputOptions()),
            ("--decompress", retrieval.OutputOptions(decompress=True)),
            ("--grep + --stream", retrieval.OutputOptions(fmt="jsonl", line_filter=LineFilter(
                stream="stderr", grep=re.compile(r"items/1\d\d ")))),
            ("--verify-only", None),
        ]
        baseline = None
        for label, opts in modes:
            for jobs in (1, 4):
                dest = tempfile.mkdtemp(prefix="bench-")
                r = retrieval.Retriever(s3, "bench-logs", ring, opts or retrieval.OutputOptions())
                t0 = time.perf_counter()
                if opts is None:
                    outcomes = retrieval.verify_all(r, matches, jobs=jobs)
                else:
                    outcomes = retrieval.download_all(r, matches, dest, jobs=jobs)
                dt = time.perf_counter() - t0
                shutil.rmtree(dest)
                assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
                rate = raw_total / 1e6 / dt
                if baseline is None:
                    baseline = rate
                print(f"{label:22s} jobs={jobs}: {dt:6.2f} s  {rate:7.1f} MB/s of log  x{rate / baseline:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark of ``logarchive ship``: a big rotated log, against plain boto3.

In the same run, against the same endpoint:
  1. boto3 ``upload_file`` of the file (s3transfer defaults: 8 MiB parts, 10 threads);
  2. ``logarchive ship --once`` (and the lean ``logarchive-ship``) shipping the same file as a rotated log (reads it twice:
     measure — SHA-256, per-part SHA-256 and CRC-32, line count, times — then send, checking
     each part's CRC-32), with one part in flight (the default) and with four.
Each runs in its own child process; wall time and the child's peak RSS (VmHWM) are
printed. Then an idle pass (``--idle-files``, default 10,000): a host whose every log file
shipped already, passed over again by the daemon's ``Shipper.run_pass`` in this process; its
time per file is what a daemon pays every ``--interval`` to find nothing new. Against the local moto server (``--size-mb``, default 500) and, for the RSS claim on
a 2 GB file, against ``bench/s3sink.py``, a local endpoint that discards what it receives
(moto keeps what it stores, which makes multi-GB runs slow and memory-bound on its side).

    python bench/bench_ship.py [--size-mb 500] [--rss-size-mb 2048] [--cri-size-mb 300] [--idle-files 10000]

``--cri-size-mb``: Docker's path and the Kubernetes (CRI) path side by side: the same messages
as a rotated ``-json.log.1`` and as a rotated ``0.log.<stamp>`` under a pods root, shipped
alternately (three rounds each) to the discarding sink, where the shipper's own work is the
bound; the median of each and their ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.devkit import local_aws  # noqa: E402
from chalicelib.devkit.fakedocker import FakeDockerRoot, docker_time  # noqa: E402

OUT = ROOT / "bench" / "out" / "ship"
BUCKET = "bench-logarchive-staging"

UPLOAD_FILE = """
import sys, boto3
boto3.client("s3").upload_file(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def _blocks(size: int, line: Callable[[int, int, bytes], bytes]) -> Iterator[bytes]:
    """Blocks of 10,000 log lines, ``size`` bytes or a little more in all: line ``i`` is
    ``line(i, its time in ns, its message)``, the same messages an hour old in either format."""
    t0 = time.time_ns() - 3600 * 10**9
    written, i = 0, 0
    while written < size:
        lines = []
        for _ in range(10000):
            i += 1
            msg = b"GET /api/items/%d HTTP/1.1 200 %d bytes in %dms" % (i, i * 37 % 99991, i % 250)
            lines.append(line(i, t0 + i * 1000, msg))
        block = b"".join(lines)
        written += len(block)
        yield block


def make_rotated_log(root: Path, size: int) -> Path:
    """A container whose ``-json.log.1`` holds ``size`` bytes of json-file lines."""
    shutil.rmtree(root, ignore_errors=True)
    fake = FakeDockerRoot(root)
    c = fake.add("big", max_size=size, max_file=3)
    with open(c.log_path, "wb") as fh:
        for block in _blocks(size, lambda i, ns, msg: b'{"log":"%s\\n","stream":"stdout","time":"%s"}\n'
                             % (msg, docker_time(ns).encode())):
            fh.write(block)
    os.rename(c.log_path, c.dir / f"{c.id}-json.log.1")
    c.log_path.touch()
    return c.dir / f"{c.id}-json.log.1"


def make_rotated_cri_log(root: Path, size: int) -> Path:
    """A Kubernetes container whose rotated ``0.log.<stamp>`` holds ``size`` bytes of CRI records
    of the same messages as ``make_rotated_log`` (kubelet's layout under ``root``)."""
    from chalicelib.devkit.fakekubelet import FakeKubelet, cri_time

    shutil.rmtree(root, ignore_errors=True)
    c = FakeKubelet(root).pod("bench", "big-0").container("app")
    for block in _blocks(size, lambda i, ns, msg: b"%s stdout F %s\n" % (cri_time(ns).encode(), msg)):
        c.fh.write(block)
    rotated = c.rotate(compress=False)
    c.exit()
    return rotated


def run_child(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one child process.

    The peak is the child's own VmHWM, sampled from /proc until it exits: ``wait4``'s
    ru_maxrss would count this (bigger) parent's RSS at fork time as the child's.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return elapsed, peak / 1024, proc.returncode


def bench(endpoint: str, root: Path, path: Path, label: str) -> None:
    env = {**os.environ, **local_aws.LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(ROOT)}
    size_mb = path.stat().st_size / 2**20
    subprocess.run(["sync"], check=False)
    # Warm the page cache once so both runs read from memory, not from the disk.
    with open(path, "rb") as fh:
        while fh.read(8 << 20):
            pass
    base_t, base_rss, rc1 = run_child([sys.executable, "-c", UPLOAD_FILE, str(path), BUCKET, f"baseline/{label}"], env)
    print(f"{label}: {size_mb:,.0f} MiB rotated log")
    print(f"  boto3 upload_file                     {base_t:7.2f} s  {size_mb / base_t:7.1f} MiB/s  "
          f"peak RSS {base_rss:6.1f} MiB  (rc {rc1})")
    runs = [("logarchive ship", ["chalicelib.cli", "ship"], 1),
            ("logarchive-ship", ["chalicelib.shipper"], 1),
            ("logarchive-ship", ["chalicelib.shipper"], 4)]
    for i, (name, module, concurrency) in enumerate(runs):
        state = OUT / f"state-{label}-{i}.db"
        state.unlink(missing_ok=True)
        ship_t, ship_rss, rc2 = run_child(
            [sys.executable, "-m", *module, "--docker-root", str(root), "--staging",
             f"s3://{BUCKET}/staged-{label}-{i}", "--stack", "bench", "--host", "bench",
             "--state", str(state), "--once", "--jobs", str(concurrency)], env)
        print(f"  {name + ' --jobs ' + str(concurrency):37s} {ship_t:7.2f} s  {size_mb / ship_t:7.1f} MiB/s  "
              f"peak RSS {ship_rss:6.1f} MiB  (rc {rc2})  {base_t / ship_t:.2f}x upload_file's throughput",
              flush=True)


def make_shipped_host(root: Path, files: int, per_container: int) -> None:
    """``files`` small closed log files: stopped containers with ``per_container - 1`` rotated
    files and a live one each, of 1 to 30 lines (heads of many lengths under 4 KiB)."""
    shutil.rmtree(root, ignore_errors=True)
    fake = FakeDockerRoot(root)
    t0 = time.time_ns() - 3600 * 10**9
    for n in range(max(1, files // per_container)):
        c = fake.add(f"idle-{n}", max_file=per_container, running=False)
        for r in range(per_container - 1, -1, -1):
            name = c.log_path.name + (f".{r}" if r else "")
            t = docker_time(t0 + (n * per_container + per_container - r) * 1000).encode()
            lines = [b'{"log":"idle %d %d %d\\n","stream":"stdout","time":"%s"}\n' % (n, r, i, t)
                     for i in range(1 + (n * per_container + r) % 30)]
            (c.dir / name).write_bytes(b"".join(lines))


def bench_idle(files: int, per_container: int) -> None:
    """Ship ``files`` closed files once (to the discarding sink), then time idle passes."""
    from chalicelib.shipper.config import ShipConfig
    from chalicelib.shipper.loop import Shipper
    from chalicelib.shipper.upload import make_client

    root = OUT / "idle-docker"
    make_shipped_host(root, files, per_container)
    state = OUT / "idle-state.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    port = local_aws.free_port()
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "s3sink.py"), str(port)])
    try:
        time.sleep(0.5)
        env = {**local_aws.LOCAL_CREDENTIALS}
        os.environ.update(env)
        cfg = ShipConfig.resolve({"docker_root": str(root), "staging": f"s3://{BUCKET}/idle", "stack": "bench",
                                  "host": "bench", "state": str(state), "once": True, "settle": 0}, env={})
        shipper = Shipper(cfg, client=make_client(f"http://127.0.0.1:{port}", "us-east-1", 2))
        try:
            t0 = time.perf_counter()
            first = shipper.run_pass()
            t_first = time.perf_counter() - t0
            idle, cpu = [], []
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                s = shipper.run_pass()
                idle.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                assert s.segments == 0 and not s.problems, s.render()
        finally:
            shipper.close()
        # A new process (``logarchive ship --once`` from cron): the state alone says what is done.
        fresh = Shipper(cfg, client=make_client(f"http://127.0.0.1:{port}", "us-east-1", 2))
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            s = fresh.run_pass()
            t_fresh, cpu_fresh = time.perf_counter() - t0, time.process_time() - c0
            assert s.segments == 0 and not s.problems, s.render()
        finally:
            fresh.close()
    finally:
        sink.terminate()
        sink.wait()
    best = min(idle)
    print(f"idle pass over {files:,} shipped files ({per_container:,} per container; {first.segments:,} segments shipped first in "
          f"{t_first:.1f} s): {best:.3f} s best of 3 ({best / files * 1000:.3f} ms/file; "
          f"passes {', '.join(f'{t:.3f}' for t in idle)} s, CPU {', '.join(f'{t:.3f}' for t in cpu)} s); "
          f"a new process's first pass (its start check of the state included): {t_fresh:.3f} s "
          f"(CPU {cpu_fresh:.3f} s)", flush=True)
    shutil.rmtree(root, ignore_errors=True)


def bench_cri(endpoint: str, size: int) -> None:
    """Docker's and the CRI path's throughput, side by side, alternating, three rounds each."""
    env = {**os.environ, **local_aws.LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(ROOT)}
    docker_root, pods = OUT / "docker", OUT / "node"
    docker_file = make_rotated_log(docker_root, size)
    cri_file = make_rotated_cri_log(pods, size)
    for path in (docker_file, cri_file):
        with open(path, "rb") as fh:
            while fh.read(8 << 20):
                pass
    results: dict[str, list[tuple[float, float]]] = {"docker": [], "cri": []}
    for rnd in range(3):
        for kind, root_args, path in (("docker", ["--docker-root", str(docker_root)], docker_file),
                                      ("cri", ["--pods-root", str(pods / "pods")], cri_file)):
            state = OUT / f"state-{kind}-{rnd}.db"
            state.unlink(missing_ok=True)
            t, rss, rc = run_child([sys.executable, "-m", "chalicelib.shipper", *root_args, "--staging",
                                    f"s3://{BUCKET}/{kind}-{rnd}", "--stack", "bench", "--host", "bench",
                                    "--state", str(state), "--once", "--max-age", "0"], env)
            assert rc == 0, kind
            results[kind].append((path.stat().st_size / 2**20 / t, rss))
    med = {k: sorted(v)[1] for k, v in results.items()}
    print(f"{size / 2**20:,.0f} MiB rotated log → sink, logarchive-ship --once, median of 3 alternating rounds")
    for k in ("docker", "cri"):
        print(f"  {k:6s} {med[k][0]:7.1f} MiB/s  peak RSS {med[k][1]:6.1f} MiB   rounds: "
              + ", ".join(f"{x:.1f}" for x, _ in results[k]))
    print(f"  CRI / Docker throughput: {med['cri'][0] / med['docker'][0]:.3f}", flush=True)
    shutil.rmtree(docker_root, ignore_errors=True)
    shutil.rmtree(pods, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--rss-size-mb", type=int, default=2048, help="0 to skip the sink run")
    ap.add_argument("--idle-files", type=int, default=10000, help="0 to skip the idle pass")
    ap.add_argument("--idle-per-container", type=int, default=1000,
                    help="files per container in the idle pass (default 1000: a long-lived container's rotations)")
    ap.add_argument("--idle-only", action="store_true", help="only the idle pass")
    ap.add_argument("--cri-size-mb", type=int, default=300, help="0 to skip the CRI vs Docker comparison")
    ap.add_argument("--only-cri", action="store_true", help="run only the CRI vs Docker comparison")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    if a.idle_files and not a.only_cri:
        bench_idle(a.idle_files, a.idle_per_container)
    if a.idle_only:
        return 0
    if a.cri_size_mb:
        port = local_aws.free_port()
        sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "s3sink.py"), str(port)])
        try:
            time.sleep(0.5)
            bench_cri(f"http://127.0.0.1:{port}", a.cri_size_mb * 2**20)
        finally:
            sink.terminate()
            sink.wait()
    if a.only_cri:
        return 0
    root = OUT / "docker"
    path = make_rotated_log(root, a.size_mb * 2**20)
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, (BUCKET,))
        bench(endpoint, root, path, "moto")
    if a.rss_size_mb:
        path = make_rotated_log(root, a.rss_size_mb * 2**20)
        port = local_aws.free_port()
        sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "s3sink.py"), str(port)])
        try:
            time.sleep(0.5)
            bench(f"http://127.0.0.1:{port}", root, path, "sink")
        finally:
            sink.terminate()
            sink.wait()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

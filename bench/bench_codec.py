"""Seal/unseal: size and speed of every compression preset against the naive baseline, per corpus.

    python bench/bench_codec.py [--size-mb 200] [--corpus-mb 24] [--rss-size-mb 1000] [--repeat 3]
                                [--corpora DIR] [--json FILE]

In this one run, against the naive baseline (bench/naive_seal.py: stdlib zlib level 6, gzip
format, 1 MiB chunks into AES-256-GCM, no hashing, one process):

1. per corpus (bench/corpora.py: nginx, a JVM, PostgreSQL text and jsonlog, loggen, a word
   salad) and per preset (``fast``, ``default``, ``small``), ``codec.seal`` on one thread:
   gzip bytes / the baseline's, and speed (plaintext / process CPU time) / the baseline's;
   ``default`` also on every CPU this process may use (wall clock);
2. whole process: ``logarchive seal`` of a ``--size-mb`` loggen file against
   ``python bench/naive_seal.py`` on one core (``taskset -c 0`` when there is one), start-up
   included, by the child's CPU time (user + sys) and by wall clock;
3. ``codec.unseal`` + gunzip of the default preset's archive: plaintext MB/s on one core;
4. peak RSS (``VmHWM``) of ``logarchive seal`` (all threads) and of unseal on a
   ``--rss-size-mb`` file.

Every figure is the best of ``--repeat``. MB = 10^6 bytes. The machine may be shared: CPU
time is the one-core figure; wall clock is what a run saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import corpora  # noqa: E402
import loggen  # noqa: E402
from naive_seal import naive_seal  # noqa: E402

from chalicelib import codec  # noqa: E402
from chalicelib.keyring import Keyring, MasterKey  # noqa: E402

BLOCK = 1 << 20
KEY = MasterKey(hashlib.sha256(b"logarchive bench key").digest())
REAL = ("nginx", "jvm", "postgres", "postgres-json")  # written by real programs
TARGET_REAL_SIZE = 0.95  # default preset / baseline on real logs, at most
TARGET_ANY_SIZE = 1.02  # on any corpus, at most
TARGET_PROCESS_SPEED = 1.6  # logarchive seal (whole process, one core) / baseline, at least
TARGET_UNSEAL_MBPS = 500.0
TARGET_RSS_MB = 150.0


@dataclass
class Timing:
    name: str
    plaintext_bytes: int
    wall_s: float
    cpu_s: float
    out_bytes: int | None = None

    @property
    def wall_mbps(self) -> float:
        return self.plaintext_bytes / 1e6 / self.wall_s

    @property
    def cpu_mbps(self) -> float:
        return self.plaintext_bytes / 1e6 / self.cpu_s


def best_of(repeat: int, name: str, plaintext_bytes: int, fn: Callable[[], int | None]) -> Timing:
    """Best wall and best CPU time of ``repeat`` runs (each the least disturbed by other load)."""
    best: Timing | None = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        t = Timing(name, plaintext_bytes, time.perf_counter() - w0, time.process_time() - c0, out)
        if best is None:
            best = t
        else:
            best.wall_s, best.cpu_s = min(best.wall_s, t.wall_s), min(best.cpu_s, t.cpu_s)
    assert best is not None
    return best


def our_seal(src: Path, dst: Path, compression: str | None = None, threads: int = 1) -> codec.SealResult:
    ring = Keyring([KEY])
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        return codec.seal(fin, fout, ring, compression=compression, threads=threads, sha256=False)


def our_unseal(src: Path, dst: Path, envelope, *, decompress: bool) -> codec.UnsealResult:
    ring = Keyring([KEY])
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        return codec.unseal(fin, fout, envelope, ring, name=src.name, decompress=decompress)


# --- 1. per corpus, per preset ----------------------------------------------------------------
def per_corpus(files: dict[str, Path], work: Path, repeat: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    threads = codec.default_threads()
    out = work / "corpus.enc"
    for name, path in files.items():
        size = path.stat().st_size
        base = best_of(repeat, "naive", size, lambda path=path: naive_seal(str(path), str(out)))
        row = {"bytes": size, "naive_gzip_bytes": base.out_bytes, "naive_cpu_mbps": base.cpu_mbps, "presets": {}}
        for p in codec.PRESETS:
            t = best_of(repeat, p, size, lambda path=path, p=p: our_seal(path, out, p).gzip_bytes)
            row["presets"][p] = {"gzip_bytes": t.out_bytes, "size_ratio": t.out_bytes / base.out_bytes,
                                 "cpu_mbps": t.cpu_mbps, "speed_ratio": t.cpu_mbps / base.cpu_mbps}
        if threads > 1:
            t = best_of(repeat, "default, threads", size,
                        lambda path=path: our_seal(path, out, None, threads).gzip_bytes)
            row["default_threads"] = {"threads": threads, "wall_mbps": t.wall_mbps,
                                      "wall_ratio": t.wall_mbps / (size / 1e6 / base.wall_s)}
        out.unlink(missing_ok=True)
        results[name] = row
        p = row["presets"]
        print(f"  {name:14} {size / 1e6:6.1f} MB  naive {base.cpu_mbps:6.1f} MB/s  "
              + "  ".join(f"{k} {v['size_ratio']:.3f}/{v['speed_ratio']:.2f}x" for k, v in p.items()), flush=True)
    return results


# --- 2. whole process on one core --------------------------------------------------------------
def _child_times(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(src: Path, work: Path, repeat: int) -> dict:
    pin: list[str] = []
    if shutil.which("taskset") and 0 in os.sched_getaffinity(0):
        pin = ["taskset", "-c", "0"]
    keyfile = work / "bench.key"
    keyfile.write_text(KEY.to_base64() + "\n")
    logarchive = [sys.executable, "-m", "chalicelib.cli"]
    runs = {
        "naive": [*pin, sys.executable, str(HERE / "naive_seal.py"), str(src), str(work / "naive.enc")],
        **{p: [*pin, *logarchive, "seal", "--compression", p, "--key-file", str(keyfile), str(src),
               str(work / f"ours.{p}.enc")] for p in codec.PRESETS},
    }
    best: dict[str, list[float]] = {}
    for _ in range(repeat):  # interleaved, so load changes hit every command alike
        for name, argv in runs.items():
            wall, cpu = _child_times(argv)
            b = best.setdefault(name, [wall, cpu])
            b[0], b[1] = min(b[0], wall), min(b[1], cpu)
    for p in work.glob("*.enc*"):
        p.unlink()
    size = src.stat().st_size
    return {"bytes": size, "pinned": " ".join(pin) or "(no taskset)",
            **{name: {"wall_s": w, "cpu_s": c, "cpu_ratio": best["naive"][1] / c, "wall_ratio": best["naive"][0] / w}
               for name, (w, c) in best.items()}}


# --- 4. peak memory ------------------------------------------------------------------------------
def seal_child(argv: list[str]) -> int:
    """``--child-seal ARGS…``: ``logarchive ARGS…`` in this process, then its peak RSS.

    ``VmHWM``, not the child's ``ru_maxrss``: Linux carries the forking parent's high-water
    mark into the child's ``ru_maxrss`` across ``exec``.
    """
    from chalicelib import cli

    rc = cli.main(argv)
    print(json.dumps({"rc": rc, "hwm_mb": vm_hwm_mb()}))
    return rc


def unseal_child(args: list[str]) -> int:
    """``--child-unseal IN OUT``: one unseal + gunzip, report this process's peak RSS."""
    from chalicelib.envelope import Envelope

    src, dst = args
    env = Envelope.from_instruction(Path(src + ".instruction").read_text(), name=src)
    n = our_unseal(Path(src), Path(dst), env, decompress=True).output_bytes
    print(json.dumps({"bytes": n, "hwm_mb": vm_hwm_mb()}))
    return 0


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def measure_rss(src: Path, work: Path) -> dict[str, float]:
    """Peak RSS (``VmHWM`` of each child) of ``logarchive seal`` (every thread) and of unseal."""
    keyfile = work / "bench.key"
    keyfile.write_text(KEY.to_base64() + "\n")
    sealed, opened = work / "rss.sealed", work / "rss.unsealed"
    out = {}
    for p in sorted(codec.PRESETS, key=lambda x: x == codec.DEFAULT_COMPRESSION):  # unseal reads default's
        proc = subprocess.run([sys.executable, __file__, "--child-seal", "seal", "--compression", p,
                               "--key-file", str(keyfile), str(src), str(sealed)],
                              capture_output=True, text=True, check=True)
        out[f"seal {p}"] = json.loads(proc.stdout)["hwm_mb"]
    proc = subprocess.run([sys.executable, __file__, "--child-unseal", str(sealed), str(opened)],
                          capture_output=True, text=True, check=True)
    out["unseal + gunzip"] = json.loads(proc.stdout)["hwm_mb"]
    if not _same_file(src, opened):
        raise SystemExit(f"{src.name}: the round trip did not give back the same bytes")
    for p in (sealed, opened, Path(str(sealed) + ".instruction")):
        p.unlink(missing_ok=True)
    return out


def make_big(log: Path, big: Path, target: int) -> None:
    """The generated log repeated up to ``target`` bytes (whole lines): same content mix."""
    with open(big, "wb") as fh:
        while True:
            with open(log, "rb") as src:
                while block := src.read(BLOCK):
                    room = target - fh.tell()
                    if len(block) >= room:
                        cut = block.rfind(b"\n", 0, room) + 1
                        fh.write(block[:cut])
                        return
                    fh.write(block)


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(BLOCK), fb.read(BLOCK)
            if x != y:
                return False
            if not x:
                return True


def machine() -> dict[str, str]:
    info = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Hypervisor vendor"):
                info[k.strip()] = v.strip()
    except OSError:
        pass
    for pkg in ("isal", "deflate", "zlib-ng", "cryptography"):
        info[pkg] = metadata.version(pkg)
    info["cpus usable"] = str(codec.default_threads())
    info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-unseal":
        return unseal_child(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-seal":
        return seal_child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200, help="loggen file for the whole-process run (MB)")
    ap.add_argument("--corpus-mb", type=int, default=24, help="about this much of each corpus (MB)")
    ap.add_argument("--rss-size-mb", type=int, default=1000, help="file for peak RSS (MB); 0 to skip")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--corpora", default=str(Path(tempfile.gettempdir()) / "logarchive-bench-corpora"),
                    help="where the corpora are built once and kept (default: %(default)s)")
    ap.add_argument("--only", default=",".join(corpora.ALL), help="corpora to measure")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--workdir", help="where to put the generated files (default: a temp dir)")
    args = ap.parse_args()

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    files = corpora.build(Path(args.corpora) / f"{args.corpus_mb}mb", args.only.split(","), args.corpus_mb)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_codec.") as tmp:
        work = Path(tmp)
        print("\n1. per corpus: gzip bytes / naive's and one-core speed (CPU time) / naive's, best of "
              f"{args.repeat}", flush=True)
        table = per_corpus(files, work, args.repeat)

        log = work / "loggen.log"
        size = loggen.write_log(str(log), args.size_mb * 10**6)
        print(f"\n2. whole process, {size / 1e6:.0f} MB loggen file, best of {args.repeat}", flush=True)
        proc = whole_process(log, work, args.repeat)

        ours = work / "default.enc"
        result = our_seal(log, ours)
        (work / "default.enc.instruction").write_text(result.envelope.to_instruction())
        out = work / "unsealed.log"
        un = best_of(args.repeat, "unseal + gunzip", size,
                     lambda: our_unseal(ours, out, result.envelope, decompress=True).output_bytes)
        if not _same_file(log, out):
            raise SystemExit("unseal did not give back the original bytes")
        out.unlink()
        rss: dict[str, float] = {}
        if args.rss_size_mb:
            big = work / "big.log"
            make_big(log, big, args.rss_size_mb * 10**6)
            ours.unlink()
            rss = measure_rss(big, work)

    print()
    print(f"{'corpus':14} {'MB':>6} {'naive MB/s':>10}  " + "  ".join(f"{p + ' size/speed':>20}" for p in codec.PRESETS)
          + f"  {'default, all CPUs (wall)':>24}")
    for name, row in table.items():
        cells = "  ".join(f"{v['size_ratio']:>11.3f} {v['speed_ratio']:>7.2f}x" for v in row["presets"].values())
        th = row.get("default_threads")
        thr = f"{th['wall_ratio']:.2f}x on {th['threads']} threads" if th else "(one CPU)"
        print(f"{name:14} {row['bytes'] / 1e6:6.1f} {row['naive_cpu_mbps']:10.1f}  {cells}  {thr:>24}")
    print(f"(size = gzip bytes / naive's; speed = one-core plaintext MB/s (CPU time) / naive's; real: {', '.join(REAL)})")
    print(f"\nwhole process, {proc['bytes'] / 1e6:.0f} MB, {proc['pinned']}:")
    for name in ("naive", *codec.PRESETS):
        r = proc[name]
        print(f"  {name:8} cpu {r['cpu_s']:6.2f} s ({r['cpu_ratio']:.2f}x)   wall {r['wall_s']:6.2f} s "
              f"({r['wall_ratio']:.2f}x)")
    print(f"unseal + gunzip (default preset): {un.cpu_mbps:.0f} MB/s plaintext per core (CPU), {un.wall_mbps:.0f} wall")
    if rss:
        print(f"peak RSS, {args.rss_size_mb} MB file: " + ", ".join(f"{k} {v:.1f} MB" for k, v in rss.items()))

    present_real = [n for n in REAL if n in table]
    worst_real = max((table[n]["presets"]["default"]["size_ratio"] for n in present_real), default=float("nan"))
    worst_any = max(r["presets"]["default"]["size_ratio"] for r in table.values())
    verdicts = [
        (f"default <= {TARGET_REAL_SIZE} x naive's size on real logs ({', '.join(present_real) or 'none built'}: "
         f"worst {worst_real:.3f})", bool(present_real) and worst_real <= TARGET_REAL_SIZE),
        (f"default <= {TARGET_ANY_SIZE} x naive's size on every corpus (worst {worst_any:.3f})",
         worst_any <= TARGET_ANY_SIZE),
        (f"logarchive seal (whole process, one core) >= {TARGET_PROCESS_SPEED}x naive "
         f"(cpu {proc['default']['cpu_ratio']:.2f}x, wall {proc['default']['wall_ratio']:.2f}x)",
         proc["default"]["cpu_ratio"] >= TARGET_PROCESS_SPEED),
        (f"unseal + gunzip >= {TARGET_UNSEAL_MBPS:.0f} MB/s per core ({un.cpu_mbps:.0f})",
         un.cpu_mbps >= TARGET_UNSEAL_MBPS),
    ]
    if rss:
        verdicts.append((f"peak RSS < {TARGET_RSS_MB:.0f} MB ({max(rss.values()):.1f})",
                         max(rss.values()) < TARGET_RSS_MB))
    print()
    for text, ok in verdicts:
        print(f"  [{'MET' if ok else 'NOT MET'}] {text}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info, "corpora": table, "whole_process": proc, "unseal": asdict(un), "rss_mb": rss,
            "verdicts": {t: ok for t, ok in verdicts},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

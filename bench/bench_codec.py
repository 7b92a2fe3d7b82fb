"""Seal/unseal throughput and peak memory of chalicelib.codec .

    python bench/bench_codec.py [--size-mb 200] [--rss-size-mb 1000] [--repeat 3] [--json FILE]

Generates a realistic Docker json-file log (bench/loggen.py, deterministic) in a temporary
directory and measures, in this one process and run:

* the naive baseline: stdlib ``gzip`` level 6 (``gzip.GzipFile``) streaming into AES-256-GCM;
* ``codec.seal`` (ISA-L gzip, then AES-256-GCM) at its default level and the other ISA-L
  levels, with compressed sizes against gzip level 6;
* ``codec.unseal`` with ``decompress=True`` (plaintext MB/s, the number that matters to a
  reader) and without (decrypting the gzip stream only);
* peak RSS of seal and unseal of a 1 GB file, each in a child process that reports its own
  high-water mark (``VmHWM``), cross-checked with ``getrusage(RUSAGE_CHILDREN)``.

Every throughput is plaintext bytes / time, best of ``--repeat`` runs; both wall-clock and
process CPU time are shown, since the machine may be shared (CPU time is the one-core
figure). MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
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

import loggen  # noqa: E402

from chalicelib import codec  # noqa: E402
from chalicelib.keyring import Keyring, MasterKey  # noqa: E402

BLOCK = 1 << 20
KEY = MasterKey(hashlib.sha256(b"logarchive bench key").digest())
TARGET_SEAL_RATIO = 5.0
TARGET_SIZE_RATIO = 1.10
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
    best: Timing | None = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        t = Timing(name, plaintext_bytes, time.perf_counter() - w0, time.process_time() - c0, out)
        if best is None or t.wall_s < best.wall_s:
            best = t
    assert best is not None
    return best


# --- the naive baseline ----------------------------------------------------------------
class GcmWriter(io.RawIOBase):
    """A file-like sink that AES-GCM encrypts whatever GzipFile writes into it."""

    def __init__(self, dst, key: bytes, iv: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._dst = dst
        self._enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        ct = self._enc.update(bytes(b))
        self._dst.write(ct)
        self.n += len(b)
        return len(b)

    def finish(self) -> None:
        self._dst.write(self._enc.finalize() + self._enc.tag)


def naive_seal(src: Path, dst: Path) -> int:
    """stdlib gzip level 6 + AES-256-GCM, streaming: what one would write first."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        sink = GcmWriter(fout, os.urandom(32), os.urandom(12))
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(fin, gz, BLOCK)
        sink.finish()
        return sink.n


def naive_unseal(src: Path, dst: Path, envelope) -> int:
    """For context: streaming AES-GCM decrypt + stdlib zlib gunzip (tag checked at the end)."""
    import zlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    data_key = Keyring([KEY]).unwrap(envelope, name=src.name)
    dec = Cipher(algorithms.AES(data_key), modes.GCM(envelope.iv)).decryptor()
    inflate = zlib.decompressobj(47)
    n = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        body_len = src.stat().st_size - 16
        left = body_len
        while left:
            ct = fin.read(min(BLOCK, left))
            left -= len(ct)
            pt = inflate.decompress(dec.update(ct))
            n += len(pt)
            fout.write(pt)
        dec.finalize_with_tag(fin.read(16))
    return n


# --- ours --------------------------------------------------------------------------------
def our_seal(src: Path, dst: Path, level: int = codec.DEFAULT_LEVEL) -> codec.SealResult:
    ring = Keyring([KEY])
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        return codec.seal(fin, fout, ring, level=level)


def our_unseal(src: Path, dst: Path, envelope, *, decompress: bool) -> codec.UnsealResult:
    ring = Keyring([KEY])
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        return codec.unseal(fin, fout, envelope, ring, name=src.name, decompress=decompress)


# --- peak memory in child processes --------------------------------------------------------
def vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def child_main(args: list[str]) -> int:
    """``--child seal IN OUT`` or ``--child unseal IN OUT``: one operation, report memory."""
    op, src, dst = args
    before = vm_hwm_mb()
    if op == "seal":
        result = our_seal(Path(src), Path(dst))
        Path(dst + ".instruction").write_text(result.envelope.to_instruction())
        n = result.plaintext_bytes
    else:
        from chalicelib.envelope import Envelope

        env = Envelope.from_instruction(Path(src + ".instruction").read_text(), name=src)
        n = our_unseal(Path(src), Path(dst), env, decompress=True).output_bytes
    print(json.dumps({"op": op, "bytes": n, "hwm_before_mb": before, "hwm_mb": vm_hwm_mb()}))
    return 0


def measure_rss(src: Path, work: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    sealed, opened = work / "rss.sealed", work / "rss.unsealed"
    for op, a, b in (("seal", src, sealed), ("unseal", sealed, opened)):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", op, str(a), str(b)],
            capture_output=True, text=True, check=True,
        )
        out[op] = json.loads(proc.stdout)
        # RUSAGE_CHILDREN: the largest child so far (so after unseal, max of both).
        out[op]["rusage_children_max_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6
    if not _same_file(src, opened):
        raise SystemExit(f"{src.name}: the round trip did not give back the same bytes")
    sealed.unlink()
    opened.unlink()
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


# --- machine ------------------------------------------------------------------------------
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
    for pkg in ("isal", "cryptography"):
        info[pkg] = metadata.version(pkg)
    info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


# --- main ---------------------------------------------------------------------------------
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200, help="generated log for throughput (MB)")
    ap.add_argument("--rss-size-mb", type=int, default=1000, help="file for peak RSS (MB); 0 to skip")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--levels", default="0,1,2,3", help="ISA-L levels to sweep")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--workdir", help="where to put the generated files (default: a temp dir)")
    args = ap.parse_args()

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_codec.") as tmp:
        work = Path(tmp)
        log = work / "container-json.log"
        t0 = time.perf_counter()
        size = loggen.write_log(str(log), args.size_mb * 10**6)
        print(f"generated {size / 1e6:.0f} MB json-file log in {time.perf_counter() - t0:.1f}s", flush=True)

        rows: list[Timing] = []
        base = best_of(args.repeat, "naive seal (stdlib gzip -6 + AES-GCM)", size,
                       lambda: naive_seal(log, work / "naive.gz.enc"))
        base.out_bytes = (work / "naive.gz.enc").stat().st_size - 16
        rows.append(base)
        sizes = {"gzip -6 (stdlib)": base.out_bytes}

        seals: dict[int, Timing] = {}
        envelope = None
        for level in [int(x) for x in args.levels.split(",")]:
            target = work / f"ours.{level}.enc"
            holder: dict[str, codec.SealResult] = {}

            def run(level=level, target=target, holder=holder) -> int:
                holder["r"] = our_seal(log, target, level)
                return holder["r"].gzip_bytes

            t = best_of(args.repeat, f"seal, ISA-L level {level}" + (" (default)" if level == codec.DEFAULT_LEVEL else ""),
                        size, run)
            seals[level] = t
            rows.append(t)
            sizes[f"ISA-L level {level}"] = t.out_bytes or 0
            if level == codec.DEFAULT_LEVEL:
                envelope = holder["r"].envelope
                default_enc = target
            else:
                target.unlink()
        assert envelope is not None, "the default level must be among --levels"

        out = work / "unsealed.log"
        un = best_of(args.repeat, "unseal + gunzip (plaintext out)", size,
                     lambda: our_unseal(default_enc, out, envelope, decompress=True).output_bytes)
        if not _same_file(log, out):
            raise SystemExit("unseal did not give back the original bytes")
        rows.append(un)
        un_raw = best_of(args.repeat, "unseal, no gunzip (gzip out)", size,
                         lambda: our_unseal(default_enc, out, envelope, decompress=False).output_bytes)
        rows.append(un_raw)

        rows.append(best_of(args.repeat, "naive unseal (AES-GCM + stdlib zlib)", size,
                            lambda: naive_unseal(default_enc, out, envelope)))

        rss = {}
        if args.rss_size_mb:
            big = work / "big.log"
            make_big(log, big, args.rss_size_mb * 10**6)
            for p in work.glob("*.enc"):
                p.unlink()
            out.unlink(missing_ok=True)
            small = measure_rss(log, work)
            rss = {"size_bytes": big.stat().st_size, "big": measure_rss(big, work), "small": small}

    default = seals[codec.DEFAULT_LEVEL]
    print()
    print(f"{'operation':44} {'MB/s wall':>10} {'MB/s cpu':>10} {'vs naive':>9} {'gzip bytes':>12} {'vs gzip-6':>9}")
    for r in rows:
        ratio = f"{r.wall_mbps / base.wall_mbps:8.2f}x" if "seal" in r.name and "unseal" not in r.name else ""
        sz = f"{r.out_bytes:12,d}" if r in (base, *seals.values()) else ""
        szr = f"{(r.out_bytes or 0) / base.out_bytes:9.3f}" if r in (base, *seals.values()) else ""
        print(f"{r.name:44} {r.wall_mbps:10.1f} {r.cpu_mbps:10.1f} {ratio:>9} {sz:>12} {szr:>9}")
    print(f"(plaintext {size:,d} bytes; throughput = plaintext MB per second; best of {args.repeat})")
    if rss:
        print()
        print(f"peak RSS (VmHWM of a child process), file of {rss['size_bytes'] / 1e6:.0f} MB "
              f"and of {size / 1e6:.0f} MB:")
        for op in ("seal", "unseal"):
            b, s = rss["big"][op], rss["small"][op]
            print(f"  {op:7} {b['hwm_mb']:7.1f} MB   ({s['hwm_mb']:.1f} MB for {size / 1e6:.0f} MB; "
                  f"{b['hwm_before_mb']:.1f} MB after imports; getrusage children max so far "
                  f"{b['rusage_children_max_mb']:.1f} MB)")

    seal_ratio = default.wall_mbps / base.wall_mbps
    seal_cpu_ratio = default.cpu_mbps / base.cpu_mbps
    size_ratio = (default.out_bytes or 0) / base.out_bytes
    verdicts = [
        (f"seal >= {TARGET_SEAL_RATIO:.0f}x naive (wall {seal_ratio:.2f}x, cpu {seal_cpu_ratio:.2f}x)",
         seal_ratio >= TARGET_SEAL_RATIO),
        (f"compressed size within 10% of gzip -6 ({(size_ratio - 1) * 100:+.1f}%)", size_ratio <= TARGET_SIZE_RATIO),
        (f"unseal >= {TARGET_UNSEAL_MBPS:.0f} MB/s plaintext, one core (wall {un.wall_mbps:.0f}, cpu {un.cpu_mbps:.0f})",
         un.wall_mbps >= TARGET_UNSEAL_MBPS),
    ]
    if rss:
        peak = max(rss["big"][op]["hwm_mb"] for op in ("seal", "unseal"))
        verdicts.append((f"peak RSS < {TARGET_RSS_MB:.0f} MB on 1 GB ({peak:.1f} MB)", peak < TARGET_RSS_MB))
    print()
    for text, ok in verdicts:
        print(f"  [{'MET' if ok else 'NOT MET'}] {text}")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info, "plaintext_bytes": size, "repeat": args.repeat,
            "timings": [{**asdict(r), "wall_mbps": r.wall_mbps, "cpu_mbps": r.cpu_mbps} for r in rows],
            "sizes": sizes, "rss": rss, "verdicts": {t: ok for t, ok in verdicts},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

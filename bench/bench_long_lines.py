"""Long lines: one line of N MiB (a crash-zeroed tail of NULs, then the next JSON line) through
the three line readers, against the same number of bytes in ordinary Docker lines, in the same
process (the baseline), 1 MiB blocks as the codec delivers them:

- ``TimeSpan`` (the archive worker's key times),
- ``MatchWriter`` (the retrieval worker; filter: a time range and a stream),
- ``logoutput.write_output`` (the CLI's ``--start``/``--stream`` filter; from a gzip file).

Linear means the ratio to the baseline stays flat as N grows; bounded means the tracemalloc peak
(a separate, slower run) stays flat too. Before, 128 MiB took 63-121 s and up to 591 MB RSS.

    .venv/bin/python bench/bench_long_lines.py [--mib 8 32 128]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chalicelib.dockerlog import LineFilter, TimeSpan  # noqa: E402
from chalicelib.download.logoutput import OutputOptions, write_output  # noqa: E402
from chalicelib.jobs.scanner import MatchWriter, make_filter  # noqa: E402

MIB = 1 << 20
LAST = b'{"log":"after\\n","stream":"stderr","time":"2022-01-01T00:00:09.5Z"}\n'
START = datetime(2022, 1, 1, 0, 0, 5, tzinfo=UTC)


def long_line(mib: int) -> Iterator[bytes]:
    zeros = b"\0" * MIB
    for _ in range(mib):
        yield zeros
    yield LAST


def short_lines(mib: int) -> Iterator[bytes]:
    line = b'{"log":"GET /api/v1/items 200 12ms ' + b"x" * 40 + b'\\n","stream":"stderr","time":"2022-01-01T00:00:09.5Z"}\n'
    block = line * (MIB // len(line))
    for _ in range(mib):
        yield block
    yield LAST


def run_timespan(blocks: Callable[[], Iterator[bytes]]) -> None:
    span = TimeSpan()
    for b in blocks():
        span.feed(b)
    span.close()
    assert span.last is not None


def run_matchwriter(blocks: Callable[[], Iterator[bytes]]) -> None:
    w = MatchWriter(io.BytesIO(), make_filter(START, None, "stderr", None))
    for b in blocks():
        w.write(b)
    w.close()
    assert w.lines_matched >= 1


def run_cli_filter(path: str) -> None:
    opts = OutputOptions(decompress=True, line_filter=LineFilter(start=START, stream="stderr"))
    with open(os.devnull, "wb") as out:
        write_output(path, out, opts, name="bench")


def reader(name: str, gen: Callable[[int], Iterator[bytes]], mib: int, path: str) -> Callable[[], None]:
    if name == "TimeSpan":
        return lambda: run_timespan(lambda: gen(mib))
    if name == "MatchWriter":
        return lambda: run_matchwriter(lambda: gen(mib))
    return lambda: run_cli_filter(path)


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_mb(fn: Callable[[], None]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, nargs="+", default=[8, 32, 128])
    args, _ = ap.parse_known_args()
    print(f"{'reader':<12} {'MiB':>5} {'long s':>8} {'short s':>8} {'ratio':>6} {'long MB/s':>10} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for mib in args.mib:
            paths = {}
            for name, gen in (("long", long_line), ("short", short_lines)):
                paths[name] = os.path.join(tmp, f"{name}-{mib}.gz")
                with gzip.open(paths[name], "wb", compresslevel=1) as fh:
                    for b in gen(mib):
                        fh.write(b)
            for name in ("TimeSpan", "MatchWriter", "cli filter"):
                t_long = timed(reader(name, long_line, mib, paths["long"]))
                t_short = timed(reader(name, short_lines, mib, paths["short"]))
                peak = peak_mb(reader(name, long_line, mib, paths["long"]))
                print(f"{name:<12} {mib:>5} {t_long:>8.2f} {t_short:>8.2f} {t_long / t_short:>6.2f} "
                      f"{mib * MIB / 1e6 / t_long:>10.0f} {peak:>8.1f}", flush=True)


if __name__ == "__main__":
    main()

"""A line with no newline for many MB (a crash-zeroed log tail, then the next line): the
archive worker's ``TimeSpan``, the retrieval worker's ``MatchWriter`` and the CLI's line
filter (``logoutput.write_output``) hold bounded memory whatever the line length (measured
with tracemalloc here; their time is measured by bench/bench_long_lines.py), still read the
line's time, and write a line that passes whole, never cut."""

from __future__ import annotations

import gzip
import io
import tracemalloc
from datetime import UTC, datetime

from chalicelib.dockerlog import LineFilter, TimeSpan
from chalicelib.download.logoutput import OutputOptions, write_output
from chalicelib.jobs.scanner import MatchWriter, make_filter

MIB = 1 << 20
LENGTH = 24 * MIB
BOUND = 12 * MIB  # far below the line: the old code joined it whole, more than once
BEFORE = b'{"log":"before\\n","stream":"stdout","time":"2022-01-01T00:00:00.1Z"}\n'
AFTER = b'{"log":"after\\n","stream":"stderr","time":"2022-01-01T00:00:09.5Z"}\n'


def zeroed_tail_blocks(block: int = MIB):
    """BEFORE, then LENGTH NUL bytes that run into the next line (the line's time is at its end)."""
    yield BEFORE
    zeros = b"\0" * block
    for _ in range(LENGTH // block):
        yield zeros
    yield AFTER


def peak_of(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_timespan_reads_the_time_of_a_long_line_in_bounded_memory():
    span = TimeSpan()

    def run():
        for b in zeroed_tail_blocks():
            span.feed(b)
        span.close()

    peak = peak_of(run)
    assert (span.lines, span.untimed_lines) == (2, 0)
    assert span.last == datetime(2022, 1, 1, 0, 0, 9, 500000, tzinfo=UTC)
    assert peak < BOUND, peak


def test_timespan_of_a_long_line_equals_its_line_time_for_any_block_size():
    line = b"\0" * ((1 << 20) + 5) + b'"time":"2022-01-01T00:00:01.25Z"' + b"x" * 3 + b'"time":"2023-01-01T00:00:00Z"'
    for block in (1 << 10, 33, (1 << 20) + 100):
        span = TimeSpan()
        for i in range(0, len(line), block):
            span.feed(line[i:i + block])
        span.feed(b"\n")
        span.close()
        assert (span.first, span.last, span.lines) == (datetime(2022, 1, 1, 0, 0, 1, 250000, tzinfo=UTC),) * 2 + (1,)


def _long_line_length(flat: bytes) -> int:
    return max(len(x) for x in flat.split(b"\n"))


def test_match_writer_writes_a_long_matching_line_whole_in_bounded_memory():
    flt = make_filter(datetime(2022, 1, 1, 0, 0, 5, tzinfo=UTC), None, "stderr", None)
    out = io.BytesIO()
    w = MatchWriter(out, flt)

    def run():
        for b in zeroed_tail_blocks():
            w.write(b)
        w.close()

    peak = peak_of(run)
    got = gzip.decompress(out.getvalue())
    assert got == b"\0" * LENGTH + AFTER  # the whole line, once: NULs and the JSON behind them
    assert (w.lines_seen, w.lines_matched) == (2, 1)
    assert peak < BOUND, peak


def test_match_writer_refuses_a_long_line_the_filter_refuses():
    out = io.BytesIO()
    w = MatchWriter(out, make_filter(None, datetime(2022, 1, 1, 0, 0, 5, tzinfo=UTC), None, None))
    for b in zeroed_tail_blocks():
        w.write(b)
    w.close()
    assert gzip.decompress(out.getvalue()) == BEFORE


def test_the_cli_filter_writes_a_long_matching_line_whole_in_bounded_memory(tmp_path):
    src = tmp_path / "archive.gz"
    with gzip.open(src, "wb", compresslevel=1) as fh:
        for b in zeroed_tail_blocks():
            fh.write(b)
    dst = tmp_path / "out.jsonl"
    opts = OutputOptions(decompress=True, line_filter=LineFilter(start=datetime(2022, 1, 1, 0, 0, 5, tzinfo=UTC)))

    def run():
        with open(dst, "wb") as fh:
            write_output(str(src), fh, opts, name="archive")

    peak = peak_of(run)
    assert dst.read_bytes() == b"\0" * LENGTH + AFTER
    assert peak < BOUND, peak


def test_a_long_line_is_judged_the_same_spooled_or_in_one_block():
    """grep sees the first LONG_LINE and last LONG_TAIL bytes of a long line, however it arrives."""
    line = b"needle-head " + b"." * (2 << 20) + b" needle-middle " + b"." * (2 << 20) + AFTER
    for grep, kept in (("needle-head", True), ("needle-middle", False), ("after", True)):
        outs = []
        for block in (len(line), 1 << 16):
            out = io.BytesIO()
            w = MatchWriter(out, make_filter(None, None, None, grep))
            for i in range(0, len(line), block):
                w.write(line[i:i + block])
            w.close()
            outs.append(gzip.decompress(out.getvalue()))
        assert outs[0] == outs[1] == (line if kept else b""), grep

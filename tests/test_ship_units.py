"""Small pieces of the shipper: line statistics, options, keys, identity."""

from __future__ import annotations

import gzip
import random

import pytest
from dockerfake import json_line

from chalicelib.dockerlog import TimeSpan
from chalicelib.errors import LogarchiveError
from chalicelib.shipper.config import parse_duration, parse_size
from chalicelib.shipper.identity import HEAD_MAX, GzipIncomplete, iter_range, read_head
from chalicelib.shipper.segment import LineStats, Staged, measure
from chalicelib.shipper.state import State
from chalicelib.shipper.upload import Staging
from chalicelib.staged import GZIP, IDENTITY
from chalicelib.staged import metadata_value as ascii_value


@pytest.mark.parametrize("seed", range(40))
def test_line_stats_agree_with_timespan_on_time_ordered_logs(seed: int) -> None:
    r = random.Random(seed)
    data = b"".join(
        r.choice([json_line("x" * r.randint(0, 200), ns=1_700_000_000 * 10**9 + i * 1000), b"junk\n", b"\x00\xff\n"])
        for i in range(r.randint(0, 400))
    )
    if r.random() < 0.3:
        data += b'{"log":"cut'
    stats, span = LineStats(), TimeSpan()
    pos = 0
    while pos < len(data):
        n = r.randint(1, 70000)
        stats.feed(data[pos:pos + n])
        span.feed(data[pos:pos + n])
        pos += n
    span.close()
    assert stats.close() == (span.lines, span.first, span.last)


def test_measure_gzip_as_is_and_its_decompressed_tail(tmp_path) -> None:
    raw = b"".join(json_line(f"line {i}") for i in range(2000))
    p = tmp_path / "x.log.1.gz"
    p.write_bytes(gzip.compress(raw))
    with open(p, "rb") as fh:
        whole = measure(Staged(fh, True, GZIP, 0, None))
        assert (whole.start, whole.end, whole.lines, whole.size) == (0, len(raw), 2000, p.stat().st_size)
        tail = measure(Staged(fh, True, IDENTITY, 1000, None))
        assert (tail.start, tail.end, tail.size) == (1000, len(raw), len(raw) - 1000)
        assert b"".join(iter_range(fh, True, 1000, None)) == raw[1000:]
        assert read_head(fh, True) == raw[:HEAD_MAX]
    p.write_bytes(gzip.compress(raw)[:-20])  # still being written by dockerd
    with open(p, "rb") as fh, pytest.raises(GzipIncomplete):
        measure(Staged(fh, True, GZIP, 0, None))


def test_identity_by_head_survives_renames_and_catches_other_content(tmp_path) -> None:
    st = State(str(tmp_path / "s.db"))
    a = b"".join(json_line(f"a {i}") for i in range(100))
    src = st.new_source("c1", a[:HEAD_MAX], 1, 10)
    from chalicelib.shipper.state import Segment
    st.plan(src, Segment("c1", 1, 0, "new", "k", 0, len(a), IDENTITY, len(a), "0" * 64, True, {}))
    assert st.match("c1", a[:HEAD_MAX], 9, 99).id == src.id  # other inode (a .gz copy): same source
    assert st.match("c2", a[:HEAD_MAX], 1, 10) is None  # other container
    b = b"".join(json_line(f"b {i}") for i in range(100))
    assert st.match("c1", b[:HEAD_MAX], 1, 10) is None  # inode reused by other content
    small = json_line("tiny")
    s2 = st.new_source("c1", small, 1, 11)
    st.plan(s2, Segment("c1", 2, 0, "new", "k2", 0, len(small), IDENTITY, len(small), "1" * 64, False, {}))
    assert st.match("c1", small + json_line("grown")[:50], 1, 11).id == s2.id  # a live file that grew


def test_options_parse() -> None:
    assert [parse_duration(x) for x in ("24h", "90m", "30s", "2d", "250ms", "0", "off", 5)] == [
        86400, 5400, 30, 172800, 0.25, 0, 0, 5]
    assert parse_size("8MiB") == 8 << 20 and parse_size("512k") == 512 << 10
    with pytest.raises(LogarchiveError):
        parse_duration("soon")


def test_staging_keys_and_metadata_values() -> None:
    s = Staging.parse("s3://bkt/some/prefix/")
    assert s.key("st", "h", "c" * 64, 3, "ab" * 32, GZIP) == f"some/prefix/st/h/{'c' * 64}/00000003-abababababababab.log.gz"
    assert Staging.parse("s3://bkt").key("st", "h", "c", 1, "f" * 64, IDENTITY) == "st/h/c/00000001-ffffffffffffffff.log"
    with pytest.raises(LogarchiveError):
        Staging.parse("bkt/prefix")
    assert ascii_value("web-1") == "web-1" and ascii_value("café") == "caf%C3%A9"

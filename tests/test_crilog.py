"""crilog: CRI record times, spans and the join into Docker's lines (issue 20)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from chalicelib import crilog
from chalicelib.dockerlog import LONG_LINE


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def span(data: bytes, *blocks: int) -> crilog.TimeSpan:
    s = crilog.TimeSpan()
    if blocks:
        pos = 0
        for n in blocks:
            s.feed(data[pos:pos + n])
            pos += n
        s.feed(data[pos:])
    else:
        s.feed(data)
    s.close()
    return s


def test_line_time_reads_the_record_start_only() -> None:
    assert crilog.line_time(b"2024-01-02T03:04:05.123456789Z stdout F x") == t("2024-01-02T03:04:05.123456+00:00")
    assert crilog.line_time(b"2024-01-02T04:04:05.5+01:00 stderr F x") == t("2024-01-02T03:04:05.5+00:00")
    assert crilog.line_time(b'{"log":"x","time":"2024-01-02T03:04:05Z"}') is None  # Docker's, not CRI
    assert crilog.line_time(b"2024-02-30T00:00:00Z stdout F no such day") is None
    assert crilog.line_time(b"x 2024-01-02T03:04:05Z stdout F late") is None


def test_time_span_earliest_latest_and_untimed_in_any_blocks() -> None:
    data = (b"2024-01-02T03:04:06Z stdout F b\n"
            b"2024-01-02T03:04:05.9Z stderr P a\n"      # out of order: still the earliest
            b"garbage without a time\n"
            b"2024-01-02T05:04:07+01:00 stdout F c\n"   # an offset: the exact per-line path
            b"2024-01-02T03:04:08Z stdout F no newline")
    for blocks in ((), (7,), (40, 3, 50)):
        s = span(data, *blocks)
        assert (s.first, s.last) == (t("2024-01-02T03:04:05.9+00:00"), t("2024-01-02T04:04:07+00:00")), blocks
        assert (s.lines, s.untimed_lines) == (5, 1), blocks


def test_a_record_longer_than_a_long_line_keeps_its_time() -> None:
    data = b"2024-01-02T03:04:05Z stdout F " + b"x" * (LONG_LINE + 10) + b"\n2024-01-02T03:04:06Z stdout F y\n"
    s = span(data, 1000, LONG_LINE // 2)
    assert (s.first, s.last, s.lines, s.untimed_lines) == (t("2024-01-02T03:04:05+00:00"),
                                                           t("2024-01-02T03:04:06+00:00"), 2, 0)


def test_joiner_keeps_streams_apart_and_flushes_an_unfinished_record() -> None:
    j = crilog.Joiner()
    out = []
    for raw in (b"2024-01-02T03:04:05Z stdout P hel", b"2024-01-02T03:04:05.1Z stderr P war",
                b"2024-01-02T03:04:05.2Z stdout F lo", b"not a record", b"2024-01-02T03:04:06Z stderr P ning"):
        out += j.feed(raw)
    out += j.close()
    assert [json.loads(x) if x.startswith(b"{") else x for x in out] == [
        {"log": "hello\n", "stream": "stdout", "time": "2024-01-02T03:04:05Z"},
        b"not a record",
        {"log": "warning", "stream": "stderr", "time": "2024-01-02T03:04:05.1Z"},  # never finished: no newline
    ]


def test_a_record_with_an_empty_message_and_the_filter_view() -> None:
    rec = crilog.Record.parse(b"2024-01-02T03:04:05Z stdout F")
    assert (rec.stream, rec.partial, rec.message) == ("stdout", False, b"")
    line = crilog.log_line(b"2024-01-02T03:04:05Z stderr F disk \xff full\r")
    assert (line.stream, line.log, line.time) == ("stderr", "disk \ufffd full\r", t("2024-01-02T03:04:05+00:00"))

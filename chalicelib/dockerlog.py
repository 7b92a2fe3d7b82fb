"""Docker json-file log lines: times, streams and filters.

The archive keeps the original bytes; parsing here is only for metadata and filters. A line
is ``{"log":"…\\n","stream":"stdout","time":"2022-01-01T12:23:45.567812345Z"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

_Z_LOW = bytes.maketrans(b"Z", b"!")  # "!" sorts before "." and the digits
_Z_TIME_RE = re.compile(rb'"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)!"')
_OFFSET_TIME_RE = re.compile(rb'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:\d\d"')
_TIME_RE = re.compile(rb'"time":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})"')


def parse_docker_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Docker's), to an aware UTC datetime (µs precision)."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z", text, re.ASCII)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    frac = (m[2] or ".0")[1:7].ljust(6, "0")
    tz = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(f"{m[1]}.{frac}{tz}").astimezone(UTC)


def format_utc(t: datetime) -> str:
    """RFC 3339 UTC with microseconds; the year always four digits (strftime's ``%Y`` writes
    ``999``, which no parser here reads back and which sorts after ``1000``)."""
    t = t.astimezone(UTC)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{t.microsecond:06d}Z")


def line_time(line: bytes) -> datetime | None:
    """The ``time`` of one raw line, or None when the line has none (not JSON, truncated)."""
    m = _TIME_RE.search(line)
    if not m:
        return None
    frac = (m[2] or b".0")[1:7].decode().ljust(6, "0")
    tz = "+00:00" if m[3] == b"Z" else m[3].decode()
    try:
        return datetime.fromisoformat(f"{m[1].decode()}.{frac}{tz}").astimezone(UTC)
    except (ValueError, OverflowError):  # no such date, or an offset that leaves years 1-9999
        return None


def _z_time(raw: bytes) -> datetime | None:
    """A ``_Z_TIME_RE`` match (``Z`` mapped to ``!``) as a datetime; None if it is no date."""
    frac = raw[20:26].decode().ljust(6, "0") if len(raw) > 19 else "000000"
    try:
        return datetime.fromisoformat(f"{raw[:19].decode()}.{frac}+00:00")
    except ValueError:
        return None


class TimeSpan:
    """Accumulates the first and last line times and the line count of a byte stream."""

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.lines = 0
        self.untimed_lines = 0
        self._partial = b""

    def feed(self, block: bytes) -> None:
        data = self._partial + block if self._partial else block
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return
        self._partial = data[cut + 1:]
        self._scan(data[:cut + 1])

    def _scan(self, chunk: bytes) -> None:
        """Complete lines, scanned a block at a time (per-line Python was ~25 MB/s, this ~300).

        With ``Z`` mapped below every digit and ``.``, UTC times of any fraction length sort
        as strings in time order, so min/max run in C. Blocks holding a time with a UTC
        offset (Docker writes ``Z``) take the exact per-line path.
        """
        n = chunk.count(b"\n")
        found = _Z_TIME_RE.findall(chunk.translate(_Z_LOW))
        extremes = [_z_time(raw) for raw in (min(found), max(found))] if found else []
        if (len(found) < n and _OFFSET_TIME_RE.search(chunk)) or None in extremes:
            # an offset time, or an extreme that is no date (year 0, month 13): line by line
            for line in chunk.split(b"\n")[:-1]:
                self._line(line)
            return
        self.lines += n
        self.untimed_lines += max(0, n - len(found))
        for t in extremes:
            if self.first is None or t < self.first:
                self.first = t
            if self.last is None or t > self.last:
                self.last = t

    def _line(self, line: bytes) -> None:
        self.lines += 1
        t = line_time(line)
        if t is None:
            self.untimed_lines += 1
            return
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""


@dataclass(frozen=True)
class LogLine:
    raw: bytes  # the original bytes, without the trailing newline
    log: str | None
    stream: str | None
    time: datetime | None

    @classmethod
    def parse(cls, raw: bytes) -> LogLine:
        try:
            obj = json.loads(raw)
        except ValueError:
            return cls(raw, None, None, line_time(raw))
        if not isinstance(obj, dict):
            return cls(raw, None, None, None)
        t = None
        if isinstance(obj.get("time"), str):
            try:
                t = parse_docker_time(obj["time"])
            except ValueError:
                t = None
        log = obj.get("log") if isinstance(obj.get("log"), str) else None
        stream = obj.get("stream") if isinstance(obj.get("stream"), str) else None
        return cls(raw, log, stream, t)


@dataclass(frozen=True)
class LineFilter:
    """Second-precision time range (inclusive start, exclusive end), stream and content."""

    start: datetime | None = None
    end: datetime | None = None
    stream: str | None = None
    grep: re.Pattern[str] | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.start, self.end, self.stream, self.grep))

    def matches(self, line: LogLine) -> bool:
        if self.start is not None or self.end is not None:
            if line.time is None:
                return False
            if self.start is not None and line.time < self.start:
                return False
            if self.end is not None and line.time >= self.end:
                return False
        if self.stream is not None and line.stream != self.stream:
            return False
        if self.grep is not None:
            text = line.log if line.log is not None else line.raw.decode("utf-8", "replace")
            if not self.grep.search(text):
                return False
        return True


def split_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Raw lines (without ``\\n``) from a stream of blocks; a final unterminated line too."""
    partial = b""
    for block in blocks:
        if not block:
            continue
        data = partial + block if partial else block
        lines = data.split(b"\n")
        partial = lines.pop()
        yield from lines
    if partial:
        yield partial

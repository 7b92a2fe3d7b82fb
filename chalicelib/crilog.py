"""CRI log lines (containerd, CRI-O under kubelet): times, streams, partial records.

One record a line: ``<RFC 3339 nano time> <stdout|stderr> <P|F> <message>\\n``; ``P`` marks a
partial record continued by the next one of the same stream, ``F`` the last (or only) piece of a
line. The archive keeps the original bytes; parsing here is only for metadata, filters and the
``--format jsonl`` output, which writes CRI records in Docker's json-file shape
(``{"log":"…\\n","stream":"stdout","time":"…"}``), partial records joined into whole lines.

The same API as ``dockerlog`` where they overlap (``line_time``, ``TimeSpan``, ``LogLine``), so
readers pick a module by the archive's format (``FORMATS``) and treat both alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from . import dockerlog
from .dockerlog import LogLine, LongLine

DOCKER = "docker"
CRI = "cri"
FORMATS = (DOCKER, CRI)

# Time at the start of a line: ASCII, a fraction of at most 32 digits, then one space.
_TIME_RE = re.compile(rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,32})?(Z|[+-]\d{2}:\d{2}) ")
_RECORD_RE = re.compile(rb"^(\S+) (stdout|stderr) ([A-Z](?::[A-Z])*)(?: |\Z)")


def line_time(line: bytes) -> datetime | None:
    """The time a CRI record starts with, or None (not a CRI record, no such date)."""
    m = _TIME_RE.match(line)
    if not m:
        return None
    frac = (m[2] or b".0")[1:7].decode().ljust(6, "0")
    tz = "+00:00" if m[3] == b"Z" else m[3].decode()
    try:
        return datetime.fromisoformat(f"{m[1].decode()}.{frac}{tz}").astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Record:
    """One CRI record: ``raw`` without its newline (a ``\\r`` before it stays in ``message``)."""

    raw: bytes
    time_text: str | None
    time: datetime | None
    stream: str | None
    partial: bool
    message: bytes  # after the tag and its space; the whole raw line when it is not a record

    @classmethod
    def parse(cls, raw: bytes) -> Record:
        m = _RECORD_RE.match(raw)
        if not m:
            return cls(raw, None, None, None, False, raw)
        return cls(raw, m[1].decode("ascii", "replace"), line_time(raw), m[2].decode(),
                   m[3].split(b":")[0] == b"P", raw[m.end():])

    def log_line(self) -> LogLine:
        """As a filter sees it: the message text, the stream and the time."""
        return LogLine(self.raw, self.message.decode("utf-8", "replace"), self.stream, self.time)


def log_line(raw: bytes) -> LogLine:
    return Record.parse(raw).log_line()


def long_line_time(line: LongLine) -> datetime | None:
    return line_time(line.head)


class TimeSpan(dockerlog.TimeSpan):
    """``dockerlog.TimeSpan`` for CRI records: the time starts each line instead of following
    ``"time":``; counting and the block-at-a-time scan are the same."""

    Z_TIME_RE = re.compile(rb'(?m)^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,32})?)! ')
    OFFSET_TIME_RE = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,32})?[+-]\d\d:\d\d ")

    @staticmethod
    def line_time(line: bytes) -> datetime | None:
        return line_time(line)

    def _long(self, line: LongLine) -> None:
        self._add(line_time(line.head))


def _docker_json(message: str, stream: str, time_text: str) -> bytes:
    return json.dumps({"log": message, "stream": stream, "time": time_text},
                      ensure_ascii=False, separators=(",", ":")).encode()


class Joiner:
    """CRI records → Docker json-file lines, partial (``P``) records joined per stream.

    ``feed`` takes one raw record (without its newline) and returns the whole lines it
    completes; ``close`` flushes partial records never finished (written without a newline, as
    the runtime left them). The time of a joined line is its first record's. A line that is
    not a CRI record passes through as it is. State carries across ``feed`` calls, so records
    continued across files or archives of one container join when fed in order.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, list[bytes]]] = {}  # stream -> (first time, pieces)

    def feed(self, raw: bytes) -> list[bytes]:
        rec = Record.parse(raw)
        if rec.stream is None or rec.time_text is None:
            return [raw]
        first, pieces = self._open.pop(rec.stream, (rec.time_text, []))
        pieces.append(rec.message)
        if rec.partial:
            self._open[rec.stream] = (first, pieces)
            return []
        return [_docker_json(b"".join(pieces).decode("utf-8", "replace") + "\n", rec.stream, first)]

    def close(self) -> list[bytes]:
        out = [_docker_json(b"".join(pieces).decode("utf-8", "replace"), stream, first)
               for stream, (first, pieces) in sorted(self._open.items())]
        self._open.clear()
        return out


def to_docker_lines(lines: Iterator[bytes]) -> Iterator[bytes]:
    """A whole sequence of raw CRI lines as Docker json-file lines (``Joiner`` over them)."""
    j = Joiner()
    for raw in lines:
        yield from j.feed(raw)
    yield from j.close()


def line_time_for(fmt: str):
    """The ``line_time`` of an archive's source format (``docker`` unless ``cri``)."""
    return line_time if fmt == CRI else dockerlog.line_time


def time_span(fmt: str) -> dockerlog.TimeSpan:
    """A ``TimeSpan`` for lines of the source format ``fmt``."""
    return TimeSpan() if fmt == CRI else dockerlog.TimeSpan()

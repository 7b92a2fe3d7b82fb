"""Docker json-file log lines: times, streams and filters.

The archive keeps the original bytes; parsing here is only for metadata and filters. A line
is ``{"log":"…\\n","stream":"stdout","time":"2022-01-01T12:23:45.567812345Z"}``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

# A fraction of at most 32 digits (Docker writes 9): a time match is then at most
# _TIME_MATCH_MAX bytes long, so a line too long to hold is searched through a short window.
_Z_LOW = bytes.maketrans(b"Z", b"!")  # "!" sorts before "." and the digits
_Z_TIME_RE = re.compile(rb'"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,32})?)!"')
_OFFSET_TIME_RE = re.compile(rb'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,32})?[+-]\d\d:\d\d"')
_TIME_RE = re.compile(rb'"time":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,32})?(Z|[+-]\d{2}:\d{2})"')
_TIME_MATCH_MAX = 8 + 19 + 33 + 6 + 1

LONG_LINE = 1 << 20  # a longer line is never held whole: filters judge it by these first bytes…
LONG_TAIL = 64 << 10  # …and these last ones (where Docker writes ``stream`` and ``time``)


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
    return _match_time(m) if m else None


def _match_time(m: re.Match[bytes]) -> datetime | None:
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


@dataclass(frozen=True)
class LongLine:
    """A line longer than ``LONG_LINE``, as a splitter passes it on: never held whole."""

    head: bytes  # its first LONG_LINE bytes
    tail: bytes  # its last LONG_TAIL bytes
    length: int  # bytes, without the newline
    time: datetime | None  # ``line_time`` of the whole line, found while it streamed past
    spool: BinaryIO | None = None  # the whole line, when the splitter was asked to keep it

    def chunks(self, size: int = LONG_LINE) -> Iterator[bytes]:
        """The whole line again, in blocks (only when spooled)."""
        if self.spool is None:
            raise ValueError("this long line was not spooled")
        self.spool.seek(0)
        while block := self.spool.read(size):
            yield block


class _LongLineBuilder:
    def __init__(self, spool: bool) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.length = 0
        self.time: datetime | None = None
        self._unsearched: bytes | None = b""  # the window still to search for a time; None: found
        self.spool: BinaryIO | None = tempfile.TemporaryFile() if spool else None

    def add(self, piece: bytes) -> None:
        if not piece:
            return
        self.length += len(piece)
        if len(self.head) < LONG_LINE:
            self.head += piece[: LONG_LINE - len(self.head)]
        self.tail += piece
        if len(self.tail) > 2 * LONG_TAIL:
            del self.tail[:-LONG_TAIL]
        if self._unsearched is not None:
            # The first match, as line_time finds it: none was found so far, so one can only
            # start within the last _TIME_MATCH_MAX bytes already searched.
            window = self._unsearched + piece
            m = _TIME_RE.search(window)
            if m:
                self.time, self._unsearched = _match_time(m), None
            else:
                self._unsearched = window[-_TIME_MATCH_MAX:]
        if self.spool is not None:
            self.spool.write(piece)

    def build(self) -> LongLine:
        if self.spool is not None:
            self.spool.flush()
        return LongLine(bytes(self.head), bytes(self.tail[-LONG_TAIL:]), self.length, self.time, self.spool)


class LineSplitter:
    """Splits a byte stream into lines in linear time and bounded memory, whatever their length.

    ``lines`` gets runs of complete short lines (ending in ``\\n``) as they came in a block;
    ``long`` gets each line longer than ``LONG_LINE`` as a :class:`LongLine` (with ``spool``,
    its bytes in a temporary file, closed when ``long`` returns unless ``keep_spools``);
    ``last`` a final short line without a newline. No byte is joined more than once: a
    partial line is kept up to ``LONG_LINE`` bytes, then streamed.
    """

    def __init__(self, lines: Callable[[bytes], object], long: Callable[[LongLine], object],
                 last: Callable[[bytes], object], *, spool: bool = False, keep_spools: bool = False) -> None:
        self._lines, self._long_cb, self._last = lines, long, last
        self._spool, self._keep_spools = spool, keep_spools
        self._partial = bytearray()
        self._long: _LongLineBuilder | None = None

    def feed(self, block: bytes) -> None:
        while block:
            if self._long is not None:
                nl = block.find(b"\n")
                if nl < 0:
                    self._long.add(block)
                    return
                self._long.add(block[:nl])
                self._end_long()
                block = block[nl + 1:]
                continue
            cut = block.rfind(b"\n")
            if cut < 0:
                self._partial += block
                if len(self._partial) > LONG_LINE:
                    self._start_long()
                return
            start = 0
            if self._partial:
                nl = block.find(b"\n")
                self._partial += block[:nl]
                if len(self._partial) > LONG_LINE:
                    self._start_long()
                    self._end_long()
                else:
                    self._partial += b"\n"
                    self._lines(bytes(self._partial))
                    self._partial = bytearray()
                start = nl + 1
            if cut + 1 > start:
                self._lines(block[start:cut + 1])
            block = block[cut + 1:]

    def close(self) -> None:
        if self._long is not None:
            self._end_long()
        elif self._partial:
            self._last(bytes(self._partial))
            self._partial = bytearray()

    def discard(self) -> None:
        """Release a long line cut short by an error (its spool, if any)."""
        if self._long is not None and self._long.spool is not None:
            self._long.spool.close()
        self._long = None

    def _start_long(self) -> None:
        self._long = _LongLineBuilder(self._spool)
        self._long.add(bytes(self._partial))
        self._partial = bytearray()

    def _end_long(self) -> None:
        builder, self._long = self._long, None
        assert builder is not None
        try:
            self._long_cb(builder.build())
        finally:
            if builder.spool is not None and not self._keep_spools:
                builder.spool.close()


class TimeSpan:
    """Accumulates the first and last line times and the line count of a byte stream.

    The class attributes say where a line's time is (``crilog.TimeSpan`` puts it elsewhere)."""

    Z_TIME_RE = _Z_TIME_RE
    OFFSET_TIME_RE = _OFFSET_TIME_RE

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.lines = 0
        self.untimed_lines = 0
        self._splitter = LineSplitter(self._scan, self._long, self._line)

    def feed(self, block: bytes) -> None:
        self._splitter.feed(block)

    def _long(self, line: LongLine) -> None:
        self._add(line.time)

    def _scan(self, chunk: bytes) -> None:
        """Complete lines, scanned a block at a time (per-line Python was ~25 MB/s, this ~300).

        With ``Z`` mapped below every digit and ``.``, UTC times of any fraction length sort
        as strings in time order, so min/max run in C. Blocks holding a time with a UTC
        offset (Docker writes ``Z``) take the exact per-line path.
        """
        n = chunk.count(b"\n")
        found = self.Z_TIME_RE.findall(chunk.translate(_Z_LOW))
        extremes = [_z_time(raw) for raw in (min(found), max(found))] if found else []
        if (len(found) < n and self.OFFSET_TIME_RE.search(chunk)) or len(found) > n or None in extremes:
            # an offset time, a line with two, or an extreme that is no date: line by line
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

    @staticmethod
    def line_time(line: bytes) -> datetime | None:
        return line_time(line)

    def _line(self, line: bytes) -> None:
        self._add(self.line_time(line))

    def _add(self, t: datetime | None) -> None:
        self.lines += 1
        if t is None:
            self.untimed_lines += 1
            return
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t

    def close(self) -> None:
        self._splitter.close()


@dataclass(frozen=True)
class LogLine:
    raw: bytes  # the original bytes, without the trailing newline
    log: str | None
    stream: str | None
    time: datetime | None

    @classmethod
    def parse(cls, raw: bytes) -> LogLine:
        try:
            # NULs before the JSON: the zeroed tail a crash leaves, then the next line
            obj = json.loads(raw.lstrip(b"\0"))
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


def split_lines(blocks: Iterable[bytes]) -> Iterator[bytes | LongLine]:
    """Raw lines (without ``\\n``) from a stream of blocks; a final unterminated line too.

    A line longer than ``LONG_LINE`` comes as a spooled :class:`LongLine`, readable until
    the next line is asked for."""
    out: list[bytes | LongLine] = []
    splitter = LineSplitter(lambda run: out.extend(run[:-1].split(b"\n")), out.append, out.append,
                            spool=True, keep_spools=True)

    def release() -> None:
        for item in out:
            if isinstance(item, LongLine) and item.spool is not None:
                item.spool.close()
        out.clear()

    try:
        for block in blocks:
            splitter.feed(block)
            yield from out
            release()
        splitter.close()
        yield from out
    finally:
        release()
        splitter.discard()

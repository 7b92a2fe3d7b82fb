"""A segment's bytes, read from one open file: first to measure, then to send.

The first read fixes everything the staged object's key and metadata need (SHA-256, size,
line count, first and last times, the logical byte range) before a byte is sent: S3 takes
user metadata only when an upload starts. It also hashes each multipart part, so the second
read can stream parts straight from the file (``os.pread``, no part buffers) and check each
one against its hash; the whole object is completed only if every part matched, so a file
that changed in between never yields a torn copy. Both reads use the same file descriptor:
Docker renaming or unlinking the file meanwhile does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from isal import isal_zlib

from ..dockerlog import line_time
from ..staged import GZIP
from .identity import BLOCK, GZIP_ERRORS, GzipIncomplete, iter_range, iter_raw, iter_salvage


class SegmentChanged(Exception):
    """The bytes are not what was measured or planned (truncated, replaced, rewritten)."""


@dataclass(frozen=True)
class Staged:
    """Where the staged bytes come from: the .gz as it lies, or logical bytes [start, end)."""

    fh: BinaryIO
    gz: bool  # the file on disk is gzip
    encoding: str  # of the staged bytes
    start: int
    end: int | None  # None: to the end of a .gz
    salvage: bool = False  # the readable prefix of a damaged .gz (given up), decompressed

    @property
    def contiguous(self) -> bool:
        """Do the staged bytes lie on disk as one byte range (so parts can be pread)?"""
        return self.encoding == GZIP or not self.gz

    @property
    def file_offset(self) -> int:
        return 0 if self.encoding == GZIP else self.start

    def blocks(self) -> Iterator[bytes]:
        if self.encoding == GZIP:
            return iter_raw(self.fh)
        if self.salvage:
            assert self.end is not None
            return iter_salvage(self.fh, self.start, self.end)
        return iter_range(self.fh, self.gz, self.start, self.end)


@dataclass(frozen=True)
class Measured:
    start: int  # logical (decompressed) byte range [start, end) of the source
    end: int
    encoding: str  # of the staged bytes: identity | gzip (the .gz as it lies on disk)
    size: int  # staged bytes
    sha256: str  # of the staged bytes
    lines: int
    first: datetime | None
    last: datetime | None
    part_size: int = 0  # the parts hashed below (0: none)
    parts: tuple[tuple[bytes, int], ...] = field(default=(), repr=False)  # (sha256, crc32) each


class LineStats:
    """Line count and the times of the first and the last timed line, in O(1) per byte.

    ``bytes.count`` does the counting; only the first lines and the last 64 KiB are parsed
    (dockerlog.TimeSpan parses every line, which costs more than hashing on big files).
    A final line without ``\n`` counts as a line, as in TimeSpan.
    """

    TAIL = 65536

    def __init__(self, line_time: Callable[[bytes], datetime | None] = line_time) -> None:
        self.line_time = line_time
        self.lines = 0
        self.first: datetime | None = None
        self._first_done = False
        self._head = b""
        self._tail = b""
        self._last_byte = b"\n"

    def feed(self, block: bytes) -> None:
        if not block:
            return
        self.lines += block.count(b"\n")
        self._last_byte = block[-1:]
        if not self._first_done:
            self._head += block
            lines = self._head.split(b"\n")
            for line in lines[:-1]:
                self.first = self.line_time(line)
                if self.first is not None:
                    break
            if self.first is not None or len(self._head) > self.TAIL:
                self._first_done, self._head = True, b""
            else:
                self._head = lines[-1] if len(lines) > 1 else self._head
        self._tail = (self._tail + block)[-self.TAIL:] if len(block) < self.TAIL else block[-self.TAIL:]

    def close(self) -> tuple[int, datetime | None, datetime | None]:
        lines = self.lines + (0 if self._last_byte == b"\n" else 1)
        last = None
        for line in reversed(self._tail.split(b"\n")):
            last = self.line_time(line)
            if last is not None:
                break
        first = self.first
        if first is None and not self._first_done and self._head:
            first = self.line_time(self._head)  # a single unterminated line
        return lines, first or last, last or first


class _PartHasher:
    """SHA-256 of each part (for S3's ``x-amz-checksum-sha256``) and its CRC-32 (ISA-L, ~25×
    cheaper: what the sending read is checked against, so only two SHA-256 passes in all)."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.done: list[tuple[bytes, int]] = []
        self.cur = hashlib.sha256()
        self.crc = 0
        self.fill = 0

    def feed(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            take = min(len(view), self.part_size - self.fill)
            self.cur.update(view[:take])
            self.crc = isal_zlib.crc32(view[:take], self.crc)
            self.fill += take
            view = view[take:]
            if self.fill == self.part_size:
                self.done.append((self.cur.digest(), self.crc))
                self.cur, self.crc, self.fill = hashlib.sha256(), 0, 0

    def close(self) -> tuple[tuple[bytes, int], ...]:
        if self.fill:
            self.done.append((self.cur.digest(), self.crc))
        return tuple(self.done)


def measure(staged: Staged, part_size: int = 0,
            line_time: Callable[[bytes], datetime | None] = line_time) -> Measured:
    """Read the segment once: hash (whole and per part), count lines, find first/last times
    (``line_time``: of the source's format, ``crilog.line_time`` for CRI).

    A damaged .gz (bad deflate data, bad CRC, trailing garbage) raises GzipIncomplete."""
    try:
        return _measure(staged, part_size, line_time)
    except GZIP_ERRORS as exc:
        raise GzipIncomplete(str(exc) or type(exc).__name__) from None


def _measure(staged: Staged, part_size: int, line_time: Callable[[bytes], datetime | None]) -> Measured:
    sha = hashlib.sha256()
    parts = _PartHasher(part_size) if part_size and staged.contiguous else None
    span = LineStats(line_time)
    size = logical = 0
    inflate = isal_zlib.decompressobj(31) if staged.encoding == GZIP else None
    for block in staged.blocks():
        sha.update(block)
        if parts is not None:
            parts.feed(block)
        size += len(block)
        if inflate is None:
            span.feed(block)
            logical += len(block)
            continue
        data = block
        while data:
            out = inflate.decompress(data, BLOCK)
            span.feed(out)
            logical += len(out)
            while inflate.unconsumed_tail:  # bounded output per call: bounded memory
                out = inflate.decompress(inflate.unconsumed_tail, BLOCK)
                span.feed(out)
                logical += len(out)
            data = inflate.unused_data if inflate.eof else b""
            if data:  # a further gzip member (Docker writes one, gzip allows more)
                inflate = isal_zlib.decompressobj(31)
    start, end = staged.start, staged.end
    if inflate is not None:
        if not inflate.eof:
            raise GzipIncomplete("ends before the gzip end-of-stream marker")
        start, end = 0, logical
    elif end is None:
        end = start + logical
    elif logical != end - start:
        raise SegmentChanged(f"expected {end - start} bytes from offset {start}, read {logical}")
    lines, first, last = span.close()
    return Measured(start, end, staged.encoding, size, sha.hexdigest(), lines, first, last,
                    part_size if parts is not None else 0, parts.close() if parts is not None else ())

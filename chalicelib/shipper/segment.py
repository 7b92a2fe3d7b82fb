"""A segment's bytes, read twice from one open file: first to measure, then to send.

The first read fixes everything the staged object's key and metadata need (SHA-256, size,
line count, first and last times, the logical byte range) before a byte is sent: S3 takes
user metadata only when an upload starts. The second read streams the same bytes to S3 and
must hash to the same SHA-256, or the upload is abandoned (the file changed under us: never
a torn copy). Both reads go through the same file descriptor, so Docker renaming or
unlinking the file meanwhile does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from isal import isal_zlib

from ..dockerlog import TimeSpan
from .identity import GzipIncomplete, iter_range, iter_raw

IDENTITY = "identity"
GZIP = "gzip"


class SegmentChanged(Exception):
    """The bytes are not what was measured or planned (truncated, replaced, rewritten)."""


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


def rfc3339(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def staged_blocks(fh: BinaryIO, gz: bool, encoding: str, start: int, end: int | None) -> Iterator[bytes]:
    """The bytes to stage: the .gz file itself, or logical bytes [start, end)."""
    if encoding == GZIP:
        return iter_raw(fh)
    return iter_range(fh, gz, start, end)


def measure(fh: BinaryIO, gz: bool, encoding: str, start: int, end: int | None) -> Measured:
    """Read the segment once: hash, count lines, find times (end=None: to the end of a .gz)."""
    sha = hashlib.sha256()
    span = TimeSpan()
    size = 0
    logical = 0
    inflate = isal_zlib.decompressobj(31) if encoding == GZIP else None
    for block in staged_blocks(fh, gz, encoding, start, end):
        sha.update(block)
        size += len(block)
        if inflate is None:
            span.feed(block)
            logical += len(block)
            continue
        data = block
        while data:
            out = inflate.decompress(data)
            span.feed(out)
            logical += len(out)
            data = inflate.unused_data if inflate.eof else b""
            if data:  # a further gzip member (Docker writes one, gzip allows more)
                inflate = isal_zlib.decompressobj(31)
    if inflate is not None:
        if not inflate.eof:
            raise GzipIncomplete("ends before the gzip end-of-stream marker")
        start, end = 0, logical
    elif end is None:
        end = start + logical
    elif logical != end - start:
        raise SegmentChanged(f"expected {end - start} bytes from offset {start}, read {logical}")
    span.close()
    return Measured(start, end, encoding, size, sha.hexdigest(), span.lines, span.first, span.last)

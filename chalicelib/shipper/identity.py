"""Recognise a log file by its content, whatever Docker named it since.

A source is the byte stream Docker wrote into one log file over its whole life: live
``-json.log`` → ``.1`` (same inode, renamed) → ``.1.gz`` (new inode, same bytes compressed)
→ ``.2.gz`` → deleted. Its identity is its container plus its head: the SHA-256 of its
first ``HEAD_MAX`` logical (decompressed) bytes, or all of them while it is shorter. Names
and inodes change along the way, the head does not; Docker starts every line with a
nanosecond timestamp, so two distinct files of one container never share a head.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from isal import igzip

HEAD_MAX = 4096
BLOCK = 1 << 20


class GzipIncomplete(Exception):
    """The .gz ends before its end-of-stream marker (Docker is still writing it) or is corrupt."""


def head_sha(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def logical_stream(fh: BinaryIO, gz: bool) -> BinaryIO:
    """The bytes Docker wrote: ``fh`` itself, or its decompression (``fh`` stays open)."""
    fh.seek(0)
    if not gz:
        return fh
    return igzip.IGzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at end of stream); gzip errors become GzipIncomplete."""
    parts = []
    try:
        while n > 0:
            block = stream.read(min(n, BLOCK))
            if not block:
                break
            parts.append(block)
            n -= len(block)
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and not _is_gzip_error(exc):
            raise
        raise GzipIncomplete(str(exc) or type(exc).__name__) from None
    return b"".join(parts)


def _is_gzip_error(exc: OSError) -> bool:
    # gzip.BadGzipFile and isal's errors subclass OSError; real I/O errors carry an errno.
    return exc.errno is None


def read_head(fh: BinaryIO, gz: bool) -> bytes:
    return read_exact(logical_stream(fh, gz), HEAD_MAX)


def iter_range(fh: BinaryIO, gz: bool, start: int, end: int | None) -> Iterator[bytes]:
    """Logical bytes ``[start, end)`` (``end=None``: to the end) in blocks of at most 1 MiB."""
    stream = logical_stream(fh, gz)
    if gz:
        skip = start
        while skip > 0:
            got = read_exact(stream, min(skip, BLOCK))
            if not got:
                return
            skip -= len(got)
    else:
        stream.seek(start)
    remaining = None if end is None else end - start
    while remaining is None or remaining > 0:
        want = BLOCK if remaining is None else min(BLOCK, remaining)
        block = read_exact(stream, want)
        if not block:
            return
        if remaining is not None:
            remaining -= len(block)
        yield block


def iter_raw(fh: BinaryIO, block: int = BLOCK) -> Iterator[bytes]:
    """The bytes on disk from the start (a .gz staged as it lies)."""
    fh.seek(0)
    while True:
        data = fh.read(block)
        if not data:
            return
        yield data


def last_line_end(fh: BinaryIO, start: int, end: int) -> int:
    """Offset just after the last ``\\n`` in ``[start, end)`` of a plain file, or ``start``."""
    pos = end
    while pos > start:
        lo = max(start, pos - 65536)
        fh.seek(lo)
        block = fh.read(pos - lo)
        i = block.rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
    return start


def first_line(fh: BinaryIO, start: int, limit: int = 1 << 20) -> bytes:
    """The line starting at ``start`` of a plain file (at most ``limit`` bytes, no ``\\n``)."""
    fh.seek(start)
    buf = io.BytesIO()
    while buf.tell() < limit:
        block = fh.read(65536)
        if not block:
            break
        i = block.find(b"\n")
        if i >= 0:
            buf.write(block[:i])
            break
        buf.write(block)
    return buf.getvalue()[:limit]


def same_file(fh: BinaryIO, dev: int, ino: int) -> bool:
    st = os.fstat(fh.fileno())
    return (st.st_dev, st.st_ino) == (dev, ino)

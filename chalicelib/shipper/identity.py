"""Recognise a log file by its content, whatever Docker named it since.

A source is the byte stream Docker wrote into one log file over its whole life: live
``-json.log`` → ``.1`` (same inode, renamed) → ``.1.gz`` (new inode, same bytes compressed)
→ ``.2.gz`` → deleted. Its identity is its container plus its head: the SHA-256 of its
first ``HEAD_MAX`` logical (decompressed) bytes, or all of them while it is shorter. Names
and inodes change along the way, the head does not; Docker starts every line with a
nanosecond timestamp, so two distinct files of one container never share a head.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from isal import igzip, isal_zlib

HEAD_MAX = 4096
BLOCK = 1 << 20
SALVAGE_STEP = 256  # compressed bytes per inflate call when salvaging a damaged .gz
LINE_MAX = 64 << 20  # a damaged member's line longer than this ends what is salvaged


class GzipIncomplete(Exception):
    """The .gz ends before its end-of-stream marker (Docker is still writing it) or is corrupt."""


# What reading a damaged .gz raises: gzip.BadGzipFile (an OSError without an errno) from
# IGzipFile's header and CRC checks, EOFError for a stream cut short, isal's IsalError (not
# an OSError, not a zlib.error) for bad deflate data, zlib.error from the standard library.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, isal_zlib.error, zlib.error)


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
    except GZIP_ERRORS as exc:
        raise GzipIncomplete(str(exc) or type(exc).__name__) from None
    return b"".join(parts)


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


def _members(fh: BinaryIO) -> Iterator[bytes | bool]:
    """A damaged .gz inflated member after member, as far as it goes: blocks of decompressed
    bytes, and after each member whose end was reached, whether its CRC-32 and length matched.

    Raw deflate after our own header parse, so a member whose trailer is wrong still yields its
    bytes; output stops silently at a bad header, bad deflate data or the end of the file, and
    after a member that did not check out. Deterministic: the same file yields the same bytes.
    """
    fh.seek(0)
    buf = bytearray()
    eof = False

    def fill(n: int) -> bool:
        nonlocal eof
        while len(buf) < n and not eof:
            block = fh.read(BLOCK)
            if not block:
                eof = True
            buf.extend(block)
        return len(buf) >= n

    while fill(10) and buf[:3] == b"\x1f\x8b\x08":
        flags, pos = buf[3], 10
        if flags & 4:  # FEXTRA
            if not fill(pos + 2):
                return
            pos += 2 + struct.unpack("<H", bytes(buf[pos:pos + 2]))[0]
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                while (end := buf.find(b"\0", pos)) < 0:
                    if not fill(len(buf) + 1):
                        return
                pos = end + 1
        pos += 2 if flags & 2 else 0  # FHCRC
        if not fill(pos):
            return
        del buf[:pos]
        inflate = isal_zlib.decompressobj(-15)
        crc = length = 0
        while not inflate.eof:
            if not buf and not fill(1):
                return
            # Small inputs: a call that meets bad data returns nothing, so little is lost with it.
            data, buf[:] = bytes(buf[:SALVAGE_STEP]), buf[SALVAGE_STEP:]
            try:
                out = inflate.decompress(data, BLOCK)
                while out:
                    crc, length = isal_zlib.crc32(out, crc), length + len(out)
                    yield out
                    tail = inflate.unconsumed_tail
                    out = inflate.decompress(tail, BLOCK) if tail else b""
            except isal_zlib.error:
                return
            if inflate.eof:
                buf[:0] = inflate.unused_data
        ok = fill(8) and struct.unpack("<II", bytes(buf[:8])) == (crc, length & 0xFFFFFFFF)
        yield ok
        if not ok:
            return
        del buf[:8]


def _docker_line(line: bytes) -> bool:
    try:
        rec = json.loads(line)
    except ValueError:
        return False
    return isinstance(rec, dict) and isinstance(rec.get("log"), str) and isinstance(rec.get("time"), str)


def salvage_length(fh: BinaryIO) -> int:
    """How many decompressed bytes of a damaged .gz can be staged: every member that checks
    out, then of the member that does not (bad CRC, or cut short by bad deflate data, which
    can inflate to wrong bytes before it is detected) its complete json-file lines up to the
    first malformed one."""
    kept = pos = line_end = 0  # verified up to; read; after the last complete line
    bad: int | None = None  # start of the first malformed line since ``kept``
    line = bytearray()
    for item in _members(fh):
        if isinstance(item, bool):  # a member's end
            if not item:
                break
            kept, bad = pos, None
            continue
        start = 0
        while (i := item.find(b"\n", start)) >= 0:
            line += item[start:i]
            if bad is None and not _docker_line(bytes(line)):
                bad = line_end
            line_end = pos + i + 1
            line.clear()
            start = i + 1
        pos += len(item)
        line += item[start:]
        if len(line) > LINE_MAX:
            break
    return max(kept, line_end if bad is None else bad)


def iter_salvage(fh: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Logical bytes ``[start, end)`` of a damaged .gz's readable prefix (``salvage_length``)."""
    pos = 0
    for block in _members(fh):
        if isinstance(block, bool):
            continue
        lo, hi = max(start, pos), min(end, pos + len(block))
        if lo < hi:
            yield block[lo - pos:hi - pos]
        pos += len(block)
        if pos >= end:
            return


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

"""Scan one sealed archive: decrypt, gunzip, split lines, filter, write matches (gzip JSON lines).

Small functions so the CLI's retrieval and the retrieval Lambda share them: ``make_filter``
builds the :class:`~chalicelib.dockerlog.LineFilter` of a request (lines are tested through
``linefilter``, shared with the CLI's output writer), ``MatchWriter`` is the sink
``codec.unseal`` writes plaintext into, and ``scan_archive`` runs one archive into a temporary
file. Matches are the archived lines, byte for byte (each a Docker json-file JSON object, or a
CRI record of a Kubernetes archive: ``source="cri"``, judged by ``linefilter.cri_accepts``, each
record on its own time, stream and message), one a line, gzip-compressed. The caller releases
the temporary file only after ``scan_archive`` returned: by then the GCM tag has verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from isal import isal_zlib

from ..codec import FAST_LEVEL, unseal
from ..crilog import DOCKER
from ..dockerlog import LineFilter, LineSplitter, LongLine
from ..envelope import Envelope
from ..grep import compile_grep
from ..keyring import Keyring
from ..linefilter import accepts, matching_lines, raw_needle

__all__ = ["MatchWriter", "ScanStats", "make_filter", "scan_archive"]

GZIP_WBITS = 31


def make_filter(
    start: datetime | None = None,
    end: datetime | None = None,
    stream: str | None = None,
    grep: str | None = None,
) -> LineFilter:
    """``grep`` is an RE2 regular expression (``chalicelib.grep``: linear time, whatever the pattern)."""
    pattern = compile_grep(grep) if grep else None
    return LineFilter(start=start, end=end, stream=stream, grep=pattern)


class MatchWriter:
    """A ``codec.Writable``: splits plaintext into lines and gzips the matching ones into ``out``.

    Linear time and bounded memory whatever the line length: a line longer than
    ``dockerlog.LONG_LINE`` is spooled to a temporary file, judged as ``linefilter`` says, and
    written whole if it passes."""

    def __init__(self, out: BinaryIO, flt: LineFilter, *, level: int = FAST_LEVEL,
                 source: str = DOCKER) -> None:
        self._out = out
        self._flt = flt
        self._source = source
        self._gz = isal_zlib.compressobj(level, isal_zlib.DEFLATED, GZIP_WBITS)
        self._lines = LineSplitter(lambda run: self._emit(run[:-1]), self._emit_long, self._emit, spool=True)
        self._needle = raw_needle(flt) if flt.active else None
        self._accepts = accepts(flt, source) if flt.active else None
        self.lines_seen = 0  # lines, empty ones included
        self.lines_matched = 0
        self.plaintext_bytes = 0

    def write(self, data: bytes) -> int:
        self.plaintext_bytes += len(data)
        self._lines.feed(data)
        return len(data)

    def _emit_long(self, line: LongLine) -> None:
        """A line longer than ``LONG_LINE``: judged by what is held of it, written whole."""
        self.lines_seen += 1
        if self._accepts is not None and not self._accepts(line):
            return
        self.lines_matched += 1
        for block in line.chunks():
            self._out.write(self._gz.compress(block))
        self._out.write(self._gz.compress(b"\n"))

    def _emit(self, block: bytes) -> None:
        """One run of complete lines (without the last newline)."""
        self.lines_seen += block.count(b"\n") + 1
        if self._needle is not None:
            matched = list(self._needle_lines(block))
        else:
            matched = list(matching_lines(block.split(b"\n"), self._flt, self._source))
        if matched:
            self.lines_matched += len(matched)
            self._out.write(self._gz.compress(b"\n".join(matched) + b"\n"))

    def _needle_lines(self, block: bytes) -> Iterator[bytes]:
        """Only the lines holding the needle are even looked at (found by ``bytes.find``)."""
        needle, test = self._needle, self._accepts
        assert needle is not None and test is not None
        pos = 0
        while True:
            i = block.find(needle, pos)
            if i < 0:
                return
            start = block.rfind(b"\n", 0, i) + 1
            end = block.find(b"\n", i)
            end = len(block) if end < 0 else end
            raw = block[start:end]
            if test(raw):
                yield raw
            pos = end + 1

    def close(self) -> None:
        self._lines.close()
        self._out.write(self._gz.flush())


@dataclass(frozen=True)
class ScanStats:
    ciphertext_bytes: int
    plaintext_bytes: int
    lines_seen: int
    lines_matched: int


def scan_archive(
    chunks: Iterable[bytes] | BinaryIO,
    envelope: Envelope,
    keyring: Keyring,
    flt: LineFilter,
    out: BinaryIO,
    *,
    name: str,
    key_id: str | None = None,
    source: str = DOCKER,
) -> ScanStats:
    """Decrypt + gunzip + filter one archive into ``out`` (a temporary file: see module doc);
    ``source``: the format of its lines (``crilog.CRI`` for a Kubernetes archive)."""
    sink = MatchWriter(out, flt, source=source)
    # Tampered ciphertext: codec.unseal holds back the gzip error it causes and reports the
    # failed tag instead, so there is nothing to translate here.
    result = unseal(chunks, sink, envelope, keyring, name=name, key_id=key_id, decompress=True)
    sink.close()
    return ScanStats(result.ciphertext_bytes, sink.plaintext_bytes, sink.lines_seen, sink.lines_matched)

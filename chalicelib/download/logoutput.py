"""Writing a verified archive out: as archived (gzip), decompressed, filtered, formatted.

Works only on files whose GCM tag has already verified (``retrieval`` guarantees it):
gunzipping the output of tampered ciphertext would fail with a gzip error before the tag
could say "tampered", and filtering must never release unverified lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from isal import igzip

from .. import codec, crilog
from ..dockerlog import LineFilter, LogLine, LongLine, split_lines
from ..errors import LogarchiveError
from ..linefilter import accepts

READ_CHUNK = codec.CHUNK
FORMATS = ("jsonl", "text")


@dataclass(frozen=True)
class OutputOptions:
    """How a verified archive is written out.

    Default: the gzip exactly as archived. ``decompress``: the original log bytes.
    ``fmt='jsonl'``: the (filtered) original lines; ``fmt='text'``: only their ``log``
    field. Both formats imply decompression. A line filter without ``decompress``/``fmt``
    re-compresses the kept lines as gzip, so the file is still what its name says.
    """

    decompress: bool = False
    fmt: str | None = None
    line_filter: LineFilter = field(default_factory=LineFilter)

    def __post_init__(self) -> None:
        if self.fmt is not None and self.fmt not in FORMATS:
            raise LogarchiveError(f"unknown output format {self.fmt!r} (jsonl or text)")

    @property
    def plain(self) -> bool:
        """The output is uncompressed."""
        return self.decompress or self.fmt is not None

    @property
    def line_level(self) -> bool:
        """Lines are parsed (filter or text format) rather than copied through."""
        return self.line_filter.active or self.fmt == "text"

    def output_name(self, relative: str) -> str:
        if not self.plain:
            return relative
        base = relative[: -len(".gz")] if relative.endswith(".gz") else relative
        return base + (".txt" if self.fmt == "text" else ".jsonl")


def _docker_lines(lines: Iterable[bytes | LongLine], joiner: crilog.Joiner | None = None, *,
                  close: bool = True) -> Iterator[bytes | LongLine]:
    """CRI records as Docker json-file lines (``crilog.Joiner``: partial records joined);
    a record over ``LONG_LINE`` (no runtime writes one) passes as it is. ``joiner``: one that
    holds partial records of an earlier archive (``CriSeams``); ``close=False`` leaves the
    partial records of this one open in it."""
    joiner = joiner or crilog.Joiner()
    for raw in lines:
        if isinstance(raw, LongLine):
            yield raw
        else:
            yield from joiner.feed(raw)
    if close:
        yield from joiner.close()


def _render(lines: Iterable[bytes | LongLine], opts: OutputOptions, source: str = crilog.DOCKER,
            joiner: crilog.Joiner | None = None, *, close: bool = True) -> Iterator[bytes]:
    """The kept lines of a verified, decompressed stream, in the output format.

    The filter runs through ``linefilter`` (byte-level pre-check, then the exact test). A
    line longer than ``dockerlog.LONG_LINE`` is judged as ``linefilter`` says and, if kept,
    written whole and as it is (in the text format too: it is never parsed whole).
    CRI records (``source="cri"``) in the ``jsonl`` or ``text`` format are first turned into
    Docker's lines, partial records joined, and filtered as those; kept as they are (no
    format), each record is filtered on its own.
    """
    if source == crilog.CRI and opts.fmt is not None:
        lines, source = _docker_lines(lines, joiner, close=close), crilog.DOCKER
    text = opts.fmt == "text"
    test = accepts(opts.line_filter, source) if opts.line_filter.active else None
    for raw in lines:
        kept: LogLine | bool = True if test is None else test(raw)
        if not kept:
            continue
        if isinstance(raw, LongLine):
            yield from raw.chunks()
            yield b"\n"
            continue
        if not text:
            yield raw + b"\n"
            continue
        line = kept if isinstance(kept, LogLine) else LogLine.parse(raw)
        if line.log is not None:
            yield line.log.encode("utf-8", "surrogatepass")
        else:
            yield raw + b"\n"


def _gunzipped(path: str, name: str) -> Iterator[bytes]:
    """Blocks of the verified gzip file ``path``; a corrupt stream is one clear error."""
    try:
        with igzip.open(path, "rb") as src:
            yield from codec.iter_chunks(src, READ_CHUNK)
    except EOFError:
        raise LogarchiveError(f"{name}: decrypted content is a truncated gzip stream") from None
    except Exception as exc:  # BadGzipFile, isal's IsalError on a corrupt deflate stream
        raise LogarchiveError(
            f"{name}: decrypted content is not valid gzip ({type(exc).__name__})"
        ) from None


@dataclass(frozen=True)
class Written:
    bytes: int  # produced, before re-compression when the output is gzip again
    lines: int | None  # lines kept, when lines were parsed (a filter or the text format)


def write_output(verified_gzip_path: str, dst: BinaryIO, opts: OutputOptions, *, name: str,
                 source: str = crilog.DOCKER, seams: CriSeams | None = None) -> Written:
    """Gunzip a verified temp file into ``dst`` (filtering and formatting its lines when asked).

    Decompression runs only on verified bytes: gunzipping the output of tampered ciphertext
    would fail with a gzip error before the tag could say "tampered". ``source``: the lines'
    format (``cri`` for a Kubernetes archive). ``seams``: archives written one after another
    into one output (``CriSeams``: a partial record at the end of this one stays open for the
    next; call ``CriSeams.begin`` first).
    """
    written = 0
    gz_out = None
    if not opts.plain:
        gz_out = igzip.IGzipFile(fileobj=dst, mode="wb", compresslevel=codec.FAST_LEVEL)
    sink: Any = gz_out if gz_out is not None else dst
    blocks = _gunzipped(verified_gzip_path, name)
    line_level = opts.line_level or (source == crilog.CRI and opts.fmt is not None)
    if seams is not None and source == crilog.CRI and opts.fmt is not None:
        pieces = _render(split_lines(blocks), opts, source, seams.joiner, close=False)
    else:
        pieces = _render(split_lines(blocks), opts, source) if line_level else blocks
    buf: list[bytes] = []
    size = lines = 0
    for piece in pieces:
        lines += 1
        buf.append(piece)
        size += len(piece)
        if size >= READ_CHUNK:
            sink.write(b"".join(buf))
            written += size
            buf, size = [], 0
    if buf:
        sink.write(b"".join(buf))
        written += size
    if gz_out is not None:
        gz_out.close()
    return Written(written, lines if line_level else None)


class CriSeams:
    """CRI records of consecutive archives in one output (``--download-location - --format``):
    a partial (``P``) record that ends one archive is joined with the records continuing it at
    the start of the archive that follows it in the output, when that is the next segment of
    the same container run (``<pod uid>_<container>_<restart>``, segment + 1: no byte between
    them is missing). Otherwise (the next segment is not selected, failed, is missing from the
    bucket, or another container comes next) the partial line ends as it stands: written as its
    own line (its ``log`` without a newline, as the runtime left it), never dropped.

    Use: ``begin(archive)`` before each archive (it returns the rendered partial lines the
    previous archive left that this one does not continue), ``write_output(..., seams=self)``,
    ``done()`` once that succeeded, and ``finish()`` after the last."""

    def __init__(self, opts: OutputOptions) -> None:
        self.opts = opts
        self.joiner = crilog.Joiner()
        self._next: tuple[str, int] | None = None  # (container, segment) that continues the open records
        self._after: tuple[str, int] | None = None  # what will, once the archive begun is rendered

    def begin(self, archive: Any) -> tuple[bytes, int]:
        """(rendered bytes, lines) of partial records ``archive`` does not continue."""
        segment = archive.rotation or 0
        continues = self._next == (archive.container_id, segment)
        self._next, self._after = None, (archive.container_id, segment + 1)
        return (b"", 0) if continues else self._flush()

    def done(self) -> None:
        """The archive begun last was rendered whole: the next segment may continue it (an
        archive that failed half-way is continued by nothing: what it left open is written
        first, as its own lines)."""
        self._next = self._after

    def finish(self) -> tuple[bytes, int]:
        self._next = None
        return self._flush()

    def _flush(self) -> tuple[bytes, int]:
        lines = self.joiner.close()
        if not lines:
            return b"", 0
        kept = list(_render(iter(lines), self.opts))
        return b"".join(kept), len(kept)

"""Streaming gunzip for staged ``.N.gz`` files: concatenated members, bounded output."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from isal import isal_zlib

from ..codec import CHUNK, GUNZIP_WBITS
from ..errors import IntegrityError


def gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Streaming gunzip of concatenated members (``gzip -d``), output bounded per step.

    Not ``codec._Gunzip``: that class is private and its interface is being reworked on
    another branch; switch to it once it is public.
    """
    d = isal_zlib.decompressobj(GUNZIP_WBITS)
    fed = False  # the current member has seen input
    for chunk in chunks:
        data = chunk
        while data:
            if d.eof:
                d = isal_zlib.decompressobj(GUNZIP_WBITS)
            fed = True
            out = d.decompress(data, CHUNK)
            if out:
                yield out
            data = d.unused_data if d.eof else d.unconsumed_tail
            while not data and not d.eof and len(out) == CHUNK:  # output still inside
                out = d.decompress(b"", CHUNK)
                if out:
                    yield out
                if d.eof:
                    data = d.unused_data
    if fed and not d.eof:
        raise IntegrityError(f"{name}: gzip stream is truncated")

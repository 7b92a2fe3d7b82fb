"""The naive baseline, as one would write it first: stdlib ``gzip`` level 6 (zlib), streamed in
1 MiB chunks into AES-256-GCM, no hashing, one process. What the peers' S3 outputs and ``gzip``
itself produce; bench_codec.py measures every preset against it.

    python bench/naive_seal.py IN OUT     # the whole-process baseline of ``logarchive seal``
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 1 << 20


class GcmWriter(io.RawIOBase):
    """A file-like sink that AES-GCM encrypts whatever GzipFile writes into it."""

    def __init__(self, dst, key: bytes, iv: bytes) -> None:
        self._dst = dst
        self._enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        ct = self._enc.update(bytes(b))
        self._dst.write(ct)
        self.n += len(b)
        return len(b)

    def finish(self) -> None:
        self._dst.write(self._enc.finalize() + self._enc.tag)


def naive_seal(src: str, dst: str) -> int:
    """stdlib gzip level 6 + AES-256-GCM, streaming; returns the gzip bytes."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        sink = GcmWriter(fout, os.urandom(32), os.urandom(12))
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(fin, gz, BLOCK)
        sink.finish()
        return sink.n


if __name__ == "__main__":
    naive_seal(sys.argv[1], sys.argv[2])

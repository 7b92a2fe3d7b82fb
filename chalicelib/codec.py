"""Streaming seal (gzip, then AES-256-GCM) and unseal, with bounded memory.

Seal: plaintext log bytes -> gzip -> AES-256-GCM with a fresh data key and IV -> ciphertext
followed by the 16-byte tag. The gzip stream is a series of independent RFC 1952 members, one
per ``MEMBER_BYTES`` of plaintext (``gzip -d`` and every stream reader read them as one file,
docs/FORMAT.md), compressed in parallel in order by a compression preset (``PRESETS``). The envelope's
``x-amz-unencrypted-content-length`` is the length of the gzip stream, so the envelope is
complete only when sealing ends: callers write the ciphertext to a file first and attach
the envelope after (S3 metadata is fixed at upload time).

Unseal holds back the last 16 bytes of the stream as the tag and only reports success
after ``finalize_with_tag``; callers write to a temporary file and rename it into place
only then, so plaintext whose tag has not verified is never released.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import deflate
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from isal import isal_zlib
from zlib_ng import zlib_ng

from .envelope import IV_BYTES, TAG_BYTES, Envelope
from .errors import IntegrityError, LogarchiveError
from .keyring import KEY_BYTES, Keyring

CHUNK = 1 << 20  # 1 MiB: large enough for ISA-L and AES-NI to run at speed, small for RAM
GZIP_WBITS = 31  # zlib's "gzip container" flag
GUNZIP_WBITS = 47  # auto-detect zlib or gzip headers
# Outputs we gzip again for a reader (job results, re-gzipped downloads) are short-lived: ISA-L
# level 1, the fastest codec, whatever preset the archives use.
FAST_LEVEL = 1
GUNZIP_IN = 64 << 10  # gzip bytes per decompress call
GUNZIP_OUT = 256 << 10  # most plaintext bytes one decompress call returns

# --- compression presets (measured in bench/bench_codec.py, docs/PERFORMANCE.md) -------------
# Plaintext per gzip member. Large enough that restarting the 32 KiB window at each member costs
# little (0.2% against 16 MiB members, measured) and that a reader which stops after the first
# member fails visibly on any real archive; small enough that the members in flight stay a few
# tens of MB: (threads + 2) x 4 MiB of plaintext plus their compressed output.
MEMBER_BYTES = 4 << 20
PROBE_BYTES = 256 << 10  # sample of a member the default preset compresses every way it may
PROBE_EVERY = 8  # members between probes (every 32 MiB of plaintext); the choice holds till the next
PROBE_TARGET = 0.945  # the size against zlib 6 a codec must reach on the sample to be chosen


def _isal1(data: bytes) -> bytes:
    return isal_zlib.compress(data, 1, wbits=GZIP_WBITS)


def _libdeflate6(data: bytes) -> bytes:
    return deflate.gzip_compress(data, 6)


def _libdeflate7(data: bytes) -> bytes:
    return deflate.gzip_compress(data, 7)


def _libdeflate8(data: bytes) -> bytes:
    return deflate.gzip_compress(data, 8)


def _zlib_ng6(data: bytes) -> bytes:
    return zlib_ng.compress(data, 6, wbits=GZIP_WBITS)


Codec = Callable[[bytes], bytes]  # plaintext -> one complete gzip member


def choose_by_probe(sample: bytes, candidates: tuple[Codec, ...]) -> Codec:
    """The first (fastest) candidate whose output for ``sample`` is at most ``PROBE_TARGET``
    times zlib 6's (the peers' gzip -6); if none is, the one with the smallest output.

    No one codec wins on every log: libdeflate 6 is ~2x zlib 6's speed at 0.91-0.95x its size
    on most logs, but 0.97x on nginx's access log and 1.08x on a word salad, where its
    shallower match search finds shorter matches; zlib-ng 6 and libdeflate 7 search deeper.
    """
    ref = len(zlib.compress(sample, 6, wbits=GZIP_WBITS))
    tried = []
    for codec in candidates:
        size = len(codec(sample))
        if size <= PROBE_TARGET * ref:
            return codec
        tried.append((size, len(tried), codec))
    return min(tried)[2]


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    candidates: tuple[Codec, ...]  # one: always that; more: chosen by probe, fastest first

    def chooser(self) -> Callable[[int, bytes], Codec]:
        """Member index and plaintext -> the codec that compresses it (probing as it goes)."""
        if len(self.candidates) == 1:
            return lambda _i, _data: self.candidates[0]
        chosen = [self.candidates[0]]

        def choose(i: int, data: bytes) -> Codec:
            if i % PROBE_EVERY == 0:
                chosen[0] = choose_by_probe(data[:PROBE_BYTES], self.candidates)
            return chosen[0]

        return choose


PRESETS = {
    p.name: p
    for p in (
        Preset("fast", "ISA-L level 1: fastest, 1.15-1.5x the size of gzip -6", (_isal1,)),
        Preset("default", "the fastest of libdeflate 6, zlib-ng 6, libdeflate 7 that reaches "
               "0.945x the size of gzip -6 on a sample: 0.89-0.95x, 1.3-2x its speed",
               (_libdeflate6, _zlib_ng6, _libdeflate7)),
        Preset("small", "libdeflate level 8: 0.83-0.9x the size of gzip -6, slower than it", (_libdeflate8,)),
    )
}
DEFAULT_COMPRESSION = "default"


def preset(name: str | None) -> Preset:
    """The preset called ``name`` (empty or None: the default), or one line naming the choices."""
    try:
        return PRESETS[name or DEFAULT_COMPRESSION]
    except KeyError:
        raise LogarchiveError(
            f"compression {name!r} is not one of {', '.join(PRESETS)}"
        ) from None


def default_threads() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Writable(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


@dataclass(frozen=True)
class SealResult:
    envelope: Envelope
    plaintext_bytes: int  # raw log bytes read
    plaintext_sha256: str  # of the raw log bytes ("" when not asked for)
    gzip_bytes: int
    ciphertext_bytes: int  # including the tag
    compression: str = DEFAULT_COMPRESSION  # the preset's name


def iter_chunks(src: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while True:
        block = src.read(size)
        if not block:
            return
        yield block


def gzip_members(
    members: Iterable[bytes], chosen: Preset, threads: int
) -> Iterator[bytes]:
    """One gzip member per plaintext member, in order; ``threads`` compress at once.

    At most ``threads + 1`` members are in flight (being compressed or waiting to be
    written), so memory is bounded by the member size whatever the input's.
    """
    choose = chosen.chooser()
    if threads <= 1:
        for i, data in enumerate(members):
            yield choose(i, data)(data)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="gzip-member") as pool:
        pending: deque = deque()
        for i, data in enumerate(members):
            pending.append(pool.submit(choose(i, data), data))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def seal(
    src: BinaryIO | Iterator[bytes],
    dst: Writable,
    keyring: Keyring,
    *,
    compression: str | None = None,
    threads: int | None = None,
    on_plaintext: Callable[[bytes], None] | None = None,
    sha256: bool = True,
) -> SealResult:
    """Compress and encrypt ``src`` into ``dst``; returns the complete envelope.

    ``compression`` names a preset (``PRESETS``; None: the default); ``threads`` compress
    members in parallel (None: every CPU this process may use). ``on_plaintext`` sees every
    raw block in order (the archiver uses it to find line times). ``sha256=False`` skips
    hashing the plaintext (~8% of a default seal) where nobody records the hash.
    """
    chosen = preset(compression)
    wrapped, data_key = keyring.wrap(os.urandom(KEY_BYTES))
    iv = os.urandom(IV_BYTES)
    encryptor = Cipher(algorithms.AES(data_key), modes.GCM(iv)).encryptor()
    digest = hashlib.sha256() if sha256 else None
    plain = [0]
    # A file is read a member at a time: each block is a member, never copied into one.
    blocks = iter_chunks(src, MEMBER_BYTES) if hasattr(src, "read") else src

    def members() -> Iterator[bytes]:
        held: list[bytes] = []
        size = 0
        for block in blocks:
            plain[0] += len(block)
            if digest is not None:
                digest.update(block)
            if on_plaintext is not None:
                on_plaintext(block)
            held.append(block)
            size += len(block)
            if size >= MEMBER_BYTES:
                yield b"".join(held)
                held, size = [], 0
        if held or not plain[0]:  # an empty input still gets one (empty) member: valid gzip
            yield b"".join(held)

    gz = out = 0
    for member in gzip_members(members(), chosen, threads or default_threads()):
        gz += len(member)
        ct = encryptor.update(member)
        out += len(ct)
        dst.write(ct)
    ct = encryptor.finalize() + encryptor.tag
    out += len(ct)
    dst.write(ct)
    envelope = Envelope(
        wrap_alg=wrapped.wrap_alg,
        encrypted_key=wrapped.encrypted_key,
        iv=iv,
        matdesc=wrapped.matdesc,
        unencrypted_length=gz,
    )
    return SealResult(envelope, plain[0], digest.hexdigest() if digest else "", gz, out, chosen.name)


class Gunzip:
    """Streaming gunzip that follows concatenated gzip members (as ``gzip -d`` does).

    Output comes in pieces of at most ``GUNZIP_OUT`` bytes whatever the compression ratio,
    so a small, highly compressible input cannot blow up memory. Input goes in by
    ``GUNZIP_IN`` slices: with both small, ISA-L's working set stays in cache and the
    unconsumed input is never copied around (measured ~1.45 GB/s, against ~0.85 GB/s for
    1 MiB in / unbounded out).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._d = isal_zlib.decompressobj(GUNZIP_WBITS)
        self._fed = False  # has the current member seen any input?

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        view = memoryview(data)
        try:
            for i in range(0, len(view), GUNZIP_IN):
                yield from self._feed(view[i:i + GUNZIP_IN])
        except isal_zlib.error as exc:
            raise IntegrityError(f"{self._name}: not a valid gzip stream ({exc})") from None

    def _feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        while data:
            if self._d.eof:  # previous member ended: the next one starts here
                self._d = isal_zlib.decompressobj(GUNZIP_WBITS)
            self._fed = True
            piece = self._d.decompress(data, GUNZIP_OUT)
            if piece:
                yield piece
            if not self._d.eof:
                data = self._d.unconsumed_tail
                # A full piece may leave output inside the decompressor with no input left.
                while not data and len(piece) == GUNZIP_OUT and not self._d.eof:
                    piece = self._d.decompress(b"", GUNZIP_OUT)
                    if piece:
                        yield piece
            if self._d.eof:
                data = self._d.unused_data

    def close(self) -> None:
        if self._fed and not self._d.eof:
            raise IntegrityError(f"{self._name}: gzip stream is truncated")


def gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Streaming gunzip of an iterable of gzip blocks (``Gunzip`` fed block by block, then closed).

    Raises ``IntegrityError`` naming ``name`` on a corrupt or truncated stream.
    """
    g = Gunzip(name)
    for chunk in chunks:
        yield from g.feed(chunk)
    g.close()


@dataclass(frozen=True)
class UnsealResult:
    ciphertext_bytes: int
    gzip_bytes: int
    output_bytes: int


class _Output:
    """Where decrypted bytes go: optionally through gunzip, counted, into ``dst``.

    A gzip error found before the tag is checked is held back, not raised: damaged
    ciphertext must be reported as an authentication failure, not as bad gzip.
    """

    def __init__(self, dst: Writable, name: str, decompress: bool, check_gzip: bool | str = False) -> None:
        self._dst = dst
        self._name = name
        self._gunzip = Gunzip(name) if decompress else None
        # Writing the gzip as it is, yet proving it is one: gunzipped to nowhere ("header": only
        # its first bytes are checked, see unseal).
        self._check = Gunzip(name) if check_gzip is True and not decompress else None
        self._header: bytes | None = b"" if check_gzip == GZIP_HEADER and not decompress else None
        self.gz = 0  # decrypted (gzip) bytes
        self.out = 0  # bytes written to dst
        self.error: IntegrityError | None = None

    def write(self, pt: bytes) -> None:
        self.gz += len(pt)
        if self._header is not None and len(self._header) < len(GZIP_MAGIC):
            self._header += bytes(pt[: len(GZIP_MAGIC) - len(self._header)])
        if self._gunzip is None:
            if pt:
                self.out += len(pt)
                self._dst.write(pt)
            if self._check is not None and self.error is None:
                try:
                    for _ in self._check.feed(pt):
                        pass
                except IntegrityError as exc:
                    self.error = exc
            return
        if self.error is not None:
            return
        try:
            for piece in self._gunzip.feed(pt):
                self.out += len(piece)
                self._dst.write(piece)
        except IntegrityError as exc:
            self.error = exc

    def close(self) -> None:
        """Call only after the content is authenticated (or for legacy, decrypted)."""
        if self.error is not None:
            raise self.error
        if self._header is not None and self.gz and self._header != GZIP_MAGIC:
            raise IntegrityError(f"{self._name}: decrypted content is not gzip (no gzip header)")
        for gunzip in (self._gunzip, self._check):
            if gunzip is not None:
                gunzip.close()


GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM = deflate (RFC 1952)
GZIP_HEADER = "header"  # unseal(check_gzip=GZIP_HEADER): check the gzip header only


def unseal(
    chunks: Iterator[bytes] | BinaryIO,
    dst: Writable,
    envelope: Envelope,
    keyring: Keyring,
    *,
    name: str,
    key_id: str | None = None,
    decompress: bool = False,
    check_gzip: bool | str = False,
) -> UnsealResult:
    """Decrypt (and optionally gunzip) into ``dst``; raises unless the tag verifies.

    ``check_gzip``: the plaintext is written as it is, and must also be a whole gzip stream
    (an authentic object that is not gzip raises IntegrityError after the tag verified).
    ``GZIP_HEADER``: only its gzip header is checked, not its whole stream. With AES-GCM the
    tag already proves every byte is the archiver's (its gzip), and inflating it all costs
    more than the download (docs/PERFORMANCE.md); legacy CBC content, which no tag
    authenticates, is still inflated whole.

    ``dst`` must be a temporary sink: on any exception its content is not to be used.
    """
    data_key = keyring.unwrap(envelope, name=name, key_id=key_id)
    if envelope.legacy:
        check_gzip = bool(check_gzip)
        return _unseal_cbc(chunks, dst, envelope, data_key, name=name, decompress=decompress,
                           check_gzip=check_gzip)
    decryptor = Cipher(algorithms.AES(data_key), modes.GCM(envelope.iv)).decryptor()
    output = _Output(dst, name, decompress, check_gzip)
    held = b""  # the last TAG_BYTES seen so far: the tag, if the stream ends here
    total = 0
    blocks = iter_chunks(chunks) if hasattr(chunks, "read") else chunks
    for block in blocks:
        total += len(block)
        if len(held) + len(block) <= TAG_BYTES:
            held += block
            continue
        if len(block) >= TAG_BYTES:
            # Common case: no copy of the block, only views of it.
            view = memoryview(block)
            if held:
                output.write(decryptor.update(held))
            output.write(decryptor.update(view[:-TAG_BYTES]))
            held = bytes(view[-TAG_BYTES:])
        else:
            buf = held + block
            output.write(decryptor.update(buf[:-TAG_BYTES]))
            held = buf[-TAG_BYTES:]
    if len(held) < TAG_BYTES:
        raise IntegrityError(f"{name}: ciphertext is truncated (shorter than its tag)")
    try:
        decryptor.finalize_with_tag(held)
    except InvalidTag:
        raise IntegrityError(
            f"{name}: authentication failed (tampered or truncated ciphertext)"
        ) from None
    if envelope.unencrypted_length is not None and envelope.unencrypted_length != output.gz:
        raise IntegrityError(
            f"{name}: decrypted {output.gz} bytes but the envelope says {envelope.unencrypted_length}"
        )
    output.close()
    return UnsealResult(total, output.gz, output.out)


def _unseal_cbc(
    chunks: Iterator[bytes] | BinaryIO,
    dst: Writable,
    envelope: Envelope,
    data_key: bytes,
    *,
    name: str,
    decompress: bool,
    check_gzip: bool | str = False,
) -> UnsealResult:
    """Legacy AES/CBC/PKCS5Padding content (no authentication: opt-in only)."""
    decryptor = Cipher(algorithms.AES(data_key), modes.CBC(envelope.iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    output = _Output(dst, name, decompress, check_gzip)
    total = 0
    blocks = iter_chunks(chunks) if hasattr(chunks, "read") else chunks
    for block in blocks:
        total += len(block)
        output.write(unpadder.update(decryptor.update(block)))
    try:
        tail = unpadder.update(decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise IntegrityError(f"{name}: bad padding (wrong key or damaged legacy object)") from None
    output.write(tail)
    output.close()
    return UnsealResult(total, output.gz, output.out)

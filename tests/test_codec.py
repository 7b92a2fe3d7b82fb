"""chalicelib.codec edge cases: chunk boundaries, bounded output, gzip members and damage."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.codec import GUNZIP_OUT, iter_chunks, seal, unseal
from chalicelib.envelope import Envelope
from chalicelib.errors import IntegrityError
from chalicelib.keyring import Keyring, MasterKey

MASTER = MasterKey(bytes(range(32)))
RING = Keyring([MASTER])


def encrypt_raw(gz: bytes) -> tuple[bytes, Envelope]:
    """An object whose content is ``gz`` exactly (any bytes), sealed the documented way."""
    data_key, wrap_iv, iv = os.urandom(32), os.urandom(12), os.urandom(12)
    wrapped = wrap_iv + AESGCM(MASTER.raw).encrypt(wrap_iv, data_key, b"AES/GCM/NoPadding")
    fields = {
        "x-amz-key-v2": base64.b64encode(wrapped).decode(),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-matdesc": "{}",
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(len(gz)),
    }
    return AESGCM(data_key).encrypt(iv, gz, None), Envelope.from_fields(fields, name="t")


class Recorder:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.largest = 0

    def write(self, data: bytes) -> int:
        self.largest = max(self.largest, len(data))
        return self.buf.write(data)


def pieces(data: bytes, size: int):
    return (data[i:i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("size", [1, 7, 15, 16, 17, 4096, 65537])
def test_unseal_any_chunking(size: int) -> None:
    plain = os.urandom(3000) + b"x" * 50_000
    body = io.BytesIO()
    env = seal(io.BytesIO(plain), body, RING).envelope
    out = io.BytesIO()
    unseal(pieces(body.getvalue(), size), out, env, RING, name="t", decompress=True)
    assert out.getvalue() == plain


def test_seal_accepts_iterator_and_reports_hash_and_sizes() -> None:
    plain = b'{"log":"hi\\n","stream":"stdout","time":"2022-01-01T00:00:00Z"}\n' * 50_000
    seen = []
    body = io.BytesIO()
    result = seal(pieces(plain, 100_000), body, RING, on_plaintext=seen.append)
    assert b"".join(seen) == plain
    assert result.plaintext_bytes == len(plain)
    assert result.plaintext_sha256 == hashlib.sha256(plain).hexdigest()
    assert result.ciphertext_bytes == len(body.getvalue()) == result.gzip_bytes + 16
    assert result.envelope.unencrypted_length == result.gzip_bytes


def test_gunzip_output_is_bounded_for_highly_compressible_content() -> None:
    """48 MiB of zeros is ~50 KiB of gzip: output must still come in bounded pieces."""
    zeros = bytes(48 << 20)
    body = io.BytesIO()
    env = seal(iter_chunks(io.BytesIO(zeros)), body, RING).envelope
    assert len(body.getvalue()) < 1 << 20
    out = Recorder()
    result = unseal(io.BytesIO(body.getvalue()), out, env, RING, name="t", decompress=True)
    assert result.output_bytes == len(zeros)
    assert out.largest <= GUNZIP_OUT
    assert out.buf.getvalue() == zeros


def test_concatenated_gzip_members_decompress_like_gzip_d() -> None:
    gz = gzip.compress(b"first\n") + gzip.compress(b"") + gzip.compress(b"second\n" * 1000)
    body, env = encrypt_raw(gz)
    for size in (5, 1 << 20):
        out = io.BytesIO()
        unseal(pieces(body, size), out, env, RING, name="t", decompress=True)
        assert out.getvalue() == b"first\n" + b"second\n" * 1000


def test_truncated_gzip_inside_valid_ciphertext_is_an_error() -> None:
    gz = gzip.compress(os.urandom(5000))
    body, env = encrypt_raw(gz[:-10])
    with pytest.raises(IntegrityError, match="^t: gzip stream is truncated"):
        unseal(io.BytesIO(body), io.BytesIO(), env, RING, name="t", decompress=True)


def test_garbage_gzip_inside_valid_ciphertext_is_an_error() -> None:
    body, env = encrypt_raw(b"this is not gzip at all" * 10)
    with pytest.raises(IntegrityError, match="^t: not a valid gzip stream"):
        unseal(io.BytesIO(body), io.BytesIO(), env, RING, name="t", decompress=True)


def test_gzip_crc_mismatch_is_an_error() -> None:
    gz = bytearray(gzip.compress(b"hello world\n" * 100))
    gz[-8] ^= 0xFF  # CRC32 in the trailer
    body, env = encrypt_raw(bytes(gz))
    with pytest.raises(IntegrityError):
        unseal(io.BytesIO(body), io.BytesIO(), env, RING, name="t", decompress=True)


def test_tampered_ciphertext_reports_authentication_not_gzip() -> None:
    """Garbage from a damaged ciphertext must not be blamed on gzip: the tag speaks first."""
    plain = os.urandom(200_000)
    writer = io.BytesIO()
    env = seal(io.BytesIO(plain), writer, RING).envelope
    body = bytearray(writer.getvalue())
    body[0] ^= 0x40  # the gzip magic: gunzip fails at once, long before the tag
    with pytest.raises(IntegrityError, match="authentication failed"):
        unseal(io.BytesIO(bytes(body)), io.BytesIO(), env, RING, name="t", decompress=True)

"""chalicelib against the format's test vectors, and chalicelib's output against the
independent decryptor of test_format_independent.py (written from docs/FORMAT.md alone).
If both read the vectors and each other's output, the document, the vectors and the code agree.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from cryptography.exceptions import InvalidTag
from test_format_independent import _flip, independent_decrypt

from chalicelib.codec import seal, unseal
from chalicelib.envelope import Envelope
from chalicelib.errors import IntegrityError, KeyNotFoundError, LogarchiveError, UnsupportedFormatError
from chalicelib.keyring import Keyring, MasterKey

VECTORS = Path(__file__).parent / "vectors"
VECTOR = json.loads((VECTORS / "vector.json").read_text())
MASTER = base64.b64decode((VECTORS / "master.key").read_text().strip())
PLAINTEXT = (VECTORS / "plaintext.log").read_bytes()
GZ = (VECTORS / "plaintext.log.gz").read_bytes()
BODY = (VECTORS / "object.bin").read_bytes()
INSTRUCTION = (VECTORS / "object.bin.instruction").read_bytes()


def json_file_lines(n: int, seed: int) -> bytes:
    """Docker json-file lines with varied content (not very compressible)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msg = f"req {rng.getrandbits(64):016x} user {rng.randrange(10**6)} took {rng.random():.4f}s é \\u003cok\\u003e"
        stream = "stderr" if i % 7 == 0 else "stdout"
        out.append(f'{{"log":"{msg}\\n","stream":"{stream}","time":"2022-08-24T21:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randrange(10**9):09d}Z"}}\n')
    return "".join(out).encode()


# --- (b) chalicelib reads the vectors -----------------------------------------------------
@pytest.mark.parametrize("decompress", [False, True])
def test_chalicelib_unseals_vector(decompress: bool) -> None:
    env = Envelope.from_instruction(INSTRUCTION, name="object.bin")
    ring = Keyring([MasterKey(MASTER)])
    out = io.BytesIO()
    result = unseal(io.BytesIO(BODY), out, env, ring, name="object.bin",
                    key_id=VECTOR["key_id"], decompress=decompress)
    assert out.getvalue() == (PLAINTEXT if decompress else GZ)
    assert (result.ciphertext_bytes, result.gzip_bytes) == (len(BODY), len(GZ))


def test_chalicelib_reads_vector_metadata_and_writes_the_same_envelope() -> None:
    env = Envelope.from_fields(VECTOR["s3_user_metadata"], name="object.bin")
    assert env.to_fields() == VECTOR["s3_user_metadata"]
    assert env.to_instruction().encode() == INSTRUCTION


def test_chalicelib_reads_legacy_vector_only_when_allowed() -> None:
    legacy = VECTOR["legacy_v1"]
    body = (VECTORS / legacy["object_file"]).read_bytes()
    env = Envelope.from_instruction((VECTORS / (legacy["object_file"] + ".instruction")).read_bytes(),
                                    name="legacy-v1.bin")
    assert env.legacy
    with pytest.raises(UnsupportedFormatError):
        unseal(io.BytesIO(body), io.BytesIO(), env, Keyring([MasterKey(MASTER)]), name="legacy-v1.bin")
    out = io.BytesIO()
    unseal(io.BytesIO(body), out, env, Keyring([MasterKey(MASTER)], allow_legacy=True),
           name="legacy-v1.bin", decompress=True)
    assert out.getvalue() == PLAINTEXT


# --- (c) chalicelib's output reads with the independent decryptor and real gzip ------------
@pytest.mark.skipif(shutil.which("gzip") is None, reason="needs the gzip program")
@pytest.mark.parametrize("plaintext", [b"", PLAINTEXT, json_file_lines(40_000, 1)], ids=["empty", "vector", "3MB"])
def test_sealed_by_chalicelib_decrypts_independently_and_gunzips_with_gzip(tmp_path: Path, plaintext: bytes) -> None:
    ring = Keyring([MasterKey(MASTER)])
    body = io.BytesIO()
    result = seal(io.BytesIO(plaintext), body, ring)
    assert result.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    gz = independent_decrypt(body.getvalue(), json.loads(result.envelope.to_instruction()), MASTER)
    assert len(gz) == result.gzip_bytes
    (tmp_path / "x.gz").write_bytes(gz)
    proc = subprocess.run(["gzip", "-d", "-c", str(tmp_path / "x.gz")], capture_output=True, check=True)
    assert proc.stdout == plaintext


def test_sealed_object_through_s3_metadata_decrypts_independently(buckets) -> None:
    """The envelope survives S3 user metadata (x-amz-meta-*) over real HTTP."""
    ring = Keyring([MasterKey(MASTER)])
    body = io.BytesIO()
    result = seal(io.BytesIO(PLAINTEXT), body, ring)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="o", Body=body.getvalue(), Metadata=result.envelope.to_fields())
    got = s3.get_object(Bucket=buckets.archive, Key="o")
    raw_headers = got["ResponseMetadata"]["HTTPHeaders"]
    meta = {k: v for k, v in raw_headers.items() if k.startswith("x-amz-meta-")}
    assert gzip.decompress(independent_decrypt(got["Body"].read(), meta, MASTER)) == PLAINTEXT


# --- (d) tampering with any part fails, in both decryptors ---------------------------------
def _tampered_cases() -> list[tuple[str, bytes, dict[str, str]]]:
    env = dict(VECTOR["s3_user_metadata"])
    wrapped = base64.b64decode(env["x-amz-key-v2"])
    iv = base64.b64decode(env["x-amz-iv"])
    n = len(BODY) - 16
    cases = [
        ("ciphertext-first", _flip(BODY, 0), env),
        ("ciphertext-middle", _flip(BODY, n // 2), env),
        ("ciphertext-last", _flip(BODY, n - 1), env),
        ("tag", _flip(BODY, len(BODY) - 1), env),
        ("truncated-1", BODY[:-1], env),
        ("truncated-tag", BODY[:-16], env),
        ("extended", BODY + b"\0", env),
        ("iv", BODY, {**env, "x-amz-iv": base64.b64encode(_flip(iv, 5)).decode()}),
    ]
    for label, index in (("wrap-iv", 3), ("wrapped-key", 20), ("wrap-tag", 59)):
        cases.append((label, BODY, {**env, "x-amz-key-v2": base64.b64encode(_flip(wrapped, index)).decode()}))
    return cases


@pytest.mark.parametrize("label,body,env", _tampered_cases(), ids=[c[0] for c in _tampered_cases()])
def test_tampering_fails_independent_decryptor(label: str, body: bytes, env: dict[str, str]) -> None:
    with pytest.raises((InvalidTag, ValueError)):
        independent_decrypt(body, env, MASTER)


@pytest.mark.parametrize("decompress", [False, True])
@pytest.mark.parametrize("label,body,env", _tampered_cases(), ids=[c[0] for c in _tampered_cases()])
def test_tampering_fails_chalicelib(label: str, body: bytes, env: dict[str, str], decompress: bool) -> None:
    envelope = Envelope.from_fields(env, name="object.bin")
    ring = Keyring([MasterKey(MASTER)])
    with pytest.raises((IntegrityError, KeyNotFoundError)) as info:
        unseal(io.BytesIO(body), io.BytesIO(), envelope, ring, name="object.bin", decompress=decompress)
    assert str(info.value).startswith("object.bin: ")
    assert MASTER.hex() not in str(info.value) and VECTOR["data_key_hex"] not in str(info.value)


def test_wrong_length_field_fails_chalicelib() -> None:
    env = {**VECTOR["s3_user_metadata"], "x-amz-unencrypted-content-length": str(len(GZ) + 1)}
    envelope = Envelope.from_fields(env, name="object.bin")
    with pytest.raises(LogarchiveError, match="envelope says"):
        unseal(io.BytesIO(BODY), io.BytesIO(), envelope, Keyring([MasterKey(MASTER)]), name="object.bin")



"""The archive format, read by a decryptor written from docs/FORMAT.md alone.

Nothing here imports ``chalicelib``: ``independent_decrypt`` uses cryptography's AESGCM and
the standard library only, as a customer without logarchive would. test_format_vectors.py
uses it to read what chalicelib writes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VECTORS = Path(__file__).parent / "vectors"
VECTOR = json.loads((VECTORS / "vector.json").read_text())
MASTER = base64.b64decode((VECTORS / "master.key").read_text().strip())
PLAINTEXT = (VECTORS / "plaintext.log").read_bytes()
GZ = (VECTORS / "plaintext.log.gz").read_bytes()
BODY = (VECTORS / "object.bin").read_bytes()
INSTRUCTION = (VECTORS / "object.bin.instruction").read_bytes()


# --- the independent decryptor (docs/FORMAT.md, "Decrypting, step by step") -------------
def independent_decrypt(body: bytes, envelope: dict[str, str], master_key: bytes) -> bytes:
    """Returns the gzip stream (the "unencrypted content"); raises on any mismatch."""
    env = {k.lower().removeprefix("x-amz-meta-"): v for k, v in envelope.items()}
    if env["x-amz-cek-alg"] != "AES/GCM/NoPadding" or env["x-amz-wrap-alg"] != "AES/GCM":
        raise ValueError("not an AES/GCM object with a raw-key wrapped data key")
    if env.get("x-amz-tag-len", "128") != "128":
        raise ValueError("tag length is not 128 bits")
    wrapped = base64.b64decode(env["x-amz-key-v2"], validate=True)
    if len(wrapped) != 60:
        raise ValueError("wrapped key is not 12 + 32 + 16 bytes")
    data_key = AESGCM(master_key).decrypt(wrapped[:12], wrapped[12:], b"AES/GCM/NoPadding")
    iv = base64.b64decode(env["x-amz-iv"], validate=True)
    if len(iv) != 12:
        raise ValueError("IV is not 12 bytes")
    gz = AESGCM(data_key).decrypt(iv, body, None)  # body = ciphertext ‖ 16-byte tag
    if "x-amz-unencrypted-content-length" in env and int(env["x-amz-unencrypted-content-length"]) != len(gz):
        raise ValueError("length differs from x-amz-unencrypted-content-length")
    return gz


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


# --- (a) the independent decryptor reads the vector ---------------------------------------
def test_vector_files_are_consistent() -> None:
    assert hashlib.sha256(MASTER).hexdigest() == VECTOR["key_id"]
    assert MASTER.hex() == VECTOR["master_key_hex"]
    assert hashlib.sha256(PLAINTEXT).hexdigest() == VECTOR["plaintext_sha256"]
    assert hashlib.sha256(GZ).hexdigest() == VECTOR["gzip_sha256"]
    assert len(BODY) == len(GZ) + 16 == VECTOR["object_bytes"]
    assert BODY[-16:].hex() == VECTOR["tag_hex"]
    without_length = {k: v for k, v in VECTOR["s3_user_metadata"].items() if k != "x-amz-unencrypted-content-length"}
    assert json.loads(INSTRUCTION) == without_length


def test_vector_generator_is_deterministic() -> None:
    """Regenerating from the fixed inputs and the stored gzip gives the stored files."""
    proc = subprocess.run([sys.executable, str(VECTORS / "make_vectors.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_independent_decryptor_reads_vector_instruction_file() -> None:
    gz = independent_decrypt(BODY, json.loads(INSTRUCTION), MASTER)
    assert gz == GZ
    assert gzip.decompress(gz) == PLAINTEXT


def test_independent_decryptor_reads_vector_s3_headers() -> None:
    gz = independent_decrypt(BODY, VECTOR["s3_headers"], MASTER)
    assert gzip.decompress(gz) == PLAINTEXT


def test_vector_data_key_and_wrapping_as_documented() -> None:
    """The intermediate values of the worked example in docs/FORMAT.md."""
    wrapped = base64.b64decode(VECTOR["s3_user_metadata"]["x-amz-key-v2"])
    assert wrapped.hex() == VECTOR["wrapped_key_hex"]
    assert wrapped[:12].hex() == VECTOR["wrap_iv_hex"]
    data_key = AESGCM(MASTER).decrypt(wrapped[:12], wrapped[12:], b"AES/GCM/NoPadding")
    assert data_key.hex() == VECTOR["data_key_hex"]
    # Without the AAD the wrapped key does not open: the AAD is part of the format.
    with pytest.raises(InvalidTag):
        AESGCM(MASTER).decrypt(wrapped[:12], wrapped[12:], None)


# --- the snippet in docs/FORMAT.md works as printed ----------------------------------------
def test_format_md_python_snippet_decrypts_vector(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()
    marker = doc.index("<!-- snippet: decrypt.py")
    start = doc.index("```python\n", marker) + len("```python\n")
    code = doc[start:doc.index("```", start)]
    assert len(code.strip().splitlines()) <= 15
    (tmp_path / "decrypt.py").write_text(code)
    out = tmp_path / "out.gz"
    subprocess.run([sys.executable, str(tmp_path / "decrypt.py"), str(VECTORS / "master.key"),
                    str(VECTORS / "object.bin"), str(VECTORS / "object.bin.instruction"), str(out)], check=True)
    assert out.read_bytes() == GZ
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(_flip(BODY, 10))
    proc = subprocess.run([sys.executable, str(tmp_path / "decrypt.py"), str(VECTORS / "master.key"),
                           str(tampered), str(VECTORS / "object.bin.instruction"), str(tmp_path / "t.gz")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "InvalidTag" in proc.stderr
    assert not (tmp_path / "t.gz").exists()


def test_format_md_worked_example_matches_vector() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()
    wrapped = bytes.fromhex(VECTOR["wrapped_key_hex"])
    for value in (VECTOR["master_key_hex"], VECTOR["master_key_base64"], VECTOR["key_id"],
                  VECTOR["data_key_hex"], VECTOR["wrap_iv_hex"], wrapped[12:44].hex(), wrapped[44:].hex(),
                  VECTOR["content_iv_hex"], VECTOR["tag_hex"], VECTOR["gzip_sha256"], VECTOR["plaintext_sha256"],
                  VECTOR["s3_user_metadata"]["x-amz-key-v2"], VECTOR["s3_user_metadata"]["x-amz-iv"],
                  VECTOR["ciphertext_sha256"][:8], VECTOR["ciphertext_sha256"][-7:]):
        assert value in doc, value
    assert f"{VECTOR['object_bytes']} bytes" in doc and f"{VECTOR['gzip_bytes']} bytes" in doc

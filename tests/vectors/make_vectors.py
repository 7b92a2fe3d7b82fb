"""Generate the archive-format test vectors in this folder (see docs/FORMAT.md, "Test vectors").

Deterministic: every key and IV below is fixed, and the gzip streams are read from
``plaintext.log.gz`` and ``multimember.log.gz`` (gzip output depends on the compressor and its version, so the stored
bytes *define* the vector; the script makes those files only if they are missing). Running the
script again rewrites identical files. It imports nothing from ``chalicelib`` on purpose:
it is a second, independent implementation of the format.

    python tests/vectors/make_vectors.py          # (re)write the vector files
    python tests/vectors/make_vectors.py --check  # exit 1 if any stored file differs
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent

# Fixed inputs. Never reuse these keys or IVs for anything real.
MASTER_KEY = bytes(range(0x00, 0x20))  # 000102…1f
DATA_KEY = bytes(range(0x20, 0x40))  # 202122…3f
WRAP_IV = bytes(range(0xA0, 0xAC))  # a0a1…ab: IV of the data-key wrapping
CONTENT_IV = bytes(range(0xB0, 0xBC))  # b0b1…bb: IV of the content encryption
LEGACY_IV = bytes(range(0xC0, 0xD0))  # c0c1…cf: 16-byte CBC IV of the legacy v1 vector
MULTI_IV = bytes(range(0xD0, 0xDC))  # d0d1…db: content IV of the multi-member vector

CEK_ALG = "AES/GCM/NoPadding"

# A small Docker json-file log: stdout and stderr, Docker's \u003c-style escapes, raw UTF-8,
# a tab, and a partial line (Docker splits lines over 16 KiB without the trailing \n).
PLAINTEXT = (
    b'{"log":"Starting server on 0.0.0.0:8080\\n","stream":"stdout","time":"2022-08-24T21:12:33.000123456Z"}\n'
    b'{"log":"GET /health 200 1.2ms\\n","stream":"stdout","time":"2022-08-24T21:12:34.1Z"}\n'
    b'{"log":"warning: cache \\u003cmiss\\u003e for k\\u0026v\\tretrying\\n","stream":"stderr",'
    b'"time":"2022-08-24T21:13:00.5Z"}\n'
    b'{"log":"caf\xc3\xa9 \xe2\x98\x95 order #42 \\"latte\\"\\n","stream":"stdout","time":"2022-08-24T21:14:38.987654321Z"}\n'
    b'{"log":"partial line without newline","stream":"stdout","time":"2022-08-24T21:14:38.99Z"}\n'
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wrap_gcm(master: bytes, data_key: bytes, iv: bytes) -> bytes:
    """x-amz-key-v2 bytes for x-amz-wrap-alg AES/GCM: IV ‖ ciphertext ‖ tag, AAD = cek alg."""
    return iv + AESGCM(master).encrypt(iv, data_key, CEK_ALG.encode())


def instruction_fields(envelope: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in envelope.items() if k != "x-amz-unencrypted-content-length"}


def build(gz: bytes, multi: bytes) -> dict[str, bytes]:
    """All vector files, from the stored gzip streams (single- and multi-member)."""
    if gzip.decompress(gz) != PLAINTEXT:
        raise SystemExit("plaintext.log.gz does not decompress to PLAINTEXT")
    if gzip.decompress(multi) != PLAINTEXT:
        raise SystemExit("multimember.log.gz does not decompress to PLAINTEXT")
    multi_body = AESGCM(DATA_KEY).encrypt(MULTI_IV, multi, None)
    wrapped = wrap_gcm(MASTER_KEY, DATA_KEY, WRAP_IV)
    body = AESGCM(DATA_KEY).encrypt(CONTENT_IV, gz, None)  # ciphertext ‖ 16-byte tag
    envelope = {
        "x-amz-key-v2": b64(wrapped),
        "x-amz-iv": b64(CONTENT_IV),
        "x-amz-cek-alg": CEK_ALG,
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-matdesc": "{}",
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(len(gz)),
    }
    # Legacy v1 (S3 Encryption Client v1, "EncryptionOnly"): data key wrapped with
    # AES/ECB/PKCS5Padding, content AES/CBC/PKCS5Padding, no authentication at all.
    pad = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(MASTER_KEY), modes.ECB()).encryptor()
    legacy_wrapped = enc.update(pad.update(DATA_KEY) + pad.finalize()) + enc.finalize()
    pad = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(DATA_KEY), modes.CBC(LEGACY_IV)).encryptor()
    legacy_body = enc.update(pad.update(gz) + pad.finalize()) + enc.finalize()
    legacy_envelope = {
        "x-amz-key": b64(legacy_wrapped),
        "x-amz-iv": b64(LEGACY_IV),
        "x-amz-matdesc": "{}",
        "x-amz-unencrypted-content-length": str(len(gz)),
    }
    vector = {
        "about": "logarchive archive-format test vector; see docs/FORMAT.md",
        "master_key_hex": MASTER_KEY.hex(),
        "master_key_base64": b64(MASTER_KEY),
        "key_id": hashlib.sha256(MASTER_KEY).hexdigest(),
        "data_key_hex": DATA_KEY.hex(),
        "wrap_iv_hex": WRAP_IV.hex(),
        "wrapped_key_hex": wrapped.hex(),
        "content_iv_hex": CONTENT_IV.hex(),
        "plaintext_file": "plaintext.log",
        "plaintext_bytes": len(PLAINTEXT),
        "plaintext_sha256": hashlib.sha256(PLAINTEXT).hexdigest(),
        "gzip_file": "plaintext.log.gz",
        "gzip_bytes": len(gz),
        "gzip_sha256": hashlib.sha256(gz).hexdigest(),
        "object_file": "object.bin",
        "object_bytes": len(body),
        "ciphertext_sha256": hashlib.sha256(body[:-16]).hexdigest(),
        "tag_hex": body[-16:].hex(),
        "s3_user_metadata": envelope,
        "s3_headers": {f"x-amz-meta-{k}": v for k, v in envelope.items()},
        "multi_member": {
            "about": "the same plaintext as three gzip members (RFC 1952 2.2), as codec.seal writes "
                     "one member per 4 MiB; a reader that stops after the first member gets 2 lines of 5",
            "gzip_file": "multimember.log.gz",
            "gzip_bytes": len(multi),
            "gzip_sha256": hashlib.sha256(multi).hexdigest(),
            "member_plaintext_bytes": [len(m) for m in MEMBERS],
            "object_file": "multimember.bin",
            "content_iv_hex": MULTI_IV.hex(),
            "s3_user_metadata": {**envelope, "x-amz-iv": b64(MULTI_IV),
                                 "x-amz-unencrypted-content-length": str(len(multi))},
        },
        "legacy_v1": {
            "object_file": "legacy-v1.bin",
            "iv_hex": LEGACY_IV.hex(),
            "wrapped_key_hex": legacy_wrapped.hex(),
            "s3_user_metadata": legacy_envelope,
        },
    }
    return {
        "plaintext.log": PLAINTEXT,
        "master.key": (b64(MASTER_KEY) + "\n").encode(),
        "object.bin": body,
        # The instruction file exactly as chalicelib writes it (sorted keys, default separators),
        # without x-amz-unencrypted-content-length, which the S3EC instruction-file schema lacks.
        "object.bin.instruction": json.dumps(instruction_fields(envelope), sort_keys=True).encode(),
        "multimember.bin": multi_body,
        "multimember.bin.instruction": json.dumps(
            instruction_fields({**envelope, "x-amz-iv": b64(MULTI_IV)}), sort_keys=True).encode(),
        "legacy-v1.bin": legacy_body,
        "legacy-v1.bin.instruction": json.dumps(instruction_fields(legacy_envelope), sort_keys=True).encode(),
        "vector.json": (json.dumps(vector, indent=2) + "\n").encode(),
    }


def stored_gzip() -> bytes:
    path = HERE / "plaintext.log.gz"
    if not path.exists():
        # Made once; from then on the stored bytes define the vector. mtime=0 keeps the
        # header free of the creation time.
        path.write_bytes(gzip.compress(PLAINTEXT, compresslevel=6, mtime=0))
    return path.read_bytes()


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


# The multi-member vector's members: lines 1-2, 3-4 and 5 of PLAINTEXT.
MEMBERS = [b"".join(_lines(PLAINTEXT)[0:2]), b"".join(_lines(PLAINTEXT)[2:4]), b"".join(_lines(PLAINTEXT)[4:])]


def stored_multi_member() -> bytes:
    path = HERE / "multimember.log.gz"
    if not path.exists():
        path.write_bytes(b"".join(gzip.compress(m, compresslevel=6, mtime=0) for m in MEMBERS))
    return path.read_bytes()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = build(stored_gzip(), stored_multi_member())
    differ = [n for n, data in files.items() if not (HERE / n).exists() or (HERE / n).read_bytes() != data]
    if check:
        for n in differ:
            print(f"differs: {n}")
        return 1 if differ else 0
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} files in {HERE}" + (f" ({len(differ)} changed)" if differ else " (unchanged)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

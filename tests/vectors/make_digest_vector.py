"""Generate the digest test vectors in ``digest/`` (docs/AUDIT.md, "Test vector").

Deterministic: fixed keys, fixed documents, Ed25519 (deterministic by design) and ECDSA P-256
with RFC 6979 deterministic nonces, so running it again rewrites identical files. It imports
nothing from ``chalicelib``: a second implementation of the digest format, written from
docs/AUDIT.md.

    python tests/vectors/make_digest_vector.py          # (re)write the vector files
    python tests/vectors/make_digest_vector.py --check  # exit 1 if any stored file differs
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

OUT = Path(__file__).resolve().parent / "digest"

# Fixed keys. Never use them for anything real.
ED25519_SEED = bytes(range(0x40, 0x60))  # 404142…5f
P256_SCALAR = int.from_bytes(bytes(range(0x60, 0x80)), "big")  # 606162…7f (< the curve order)

ARCHIVE = {
    "key": "teststack/shareable/v3/" + "ab" * 32 + "/apps-1234/service-5678/"
    + "cd" * 32 + "-json.log.3.2026-11-30T10:00:00.2026-11-30T10:59:59.archived.gz",
    "stored_sha256": hashlib.sha256(b"stored object").hexdigest(),
    "stored_size": 1234,
    "s3_checksum_sha256": "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm8=",
    "s3_part_size": None,
    "raw_sha256": hashlib.sha256(b"raw log").hexdigest(),
    "raw_bytes": 4567,
    "lines": 42,
    "key_id": "ab" * 32,
    "container_id": "cd" * 32,
    "host": "host-1",
    "source": "staging/teststack/host-1/" + "cd" * 32 + "/00000003-0123456789abcdef.log",
    "segment": 3,
    "byte_start": 10000,
    "byte_end": 14567,
    "first_time": "2026-11-30T10:00:00.000001Z",
    "last_time": "2026-11-30T10:59:59.999999Z",
}
EVENT = {
    "type": "quarantined",
    "container_id": "ef" * 32,
    "host": "host-2",
    "source": "staging/teststack/host-2/" + "ef" * 32 + "/00000007-fedcba9876543210.log",
    "segment": 7,
    "byte_start": 0,
    "byte_end": 99,
    "reason": "sha256 mismatch: metadata 0011…, bytes 2233…",
    "at": "2026-11-30T11:29:00.000000Z",
    "location": "quarantine/staging/teststack/host-2/" + "ef" * 32 + "/00000007-fedcba9876543210.log",
}


def canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def spki_id(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def key_of(stack: str, seq: int, end: str) -> str:
    day = end[:10].replace("-", "/")
    compact = end[:19].replace("-", "").replace(":", "") + "Z"
    return f"_logarchive/digests/{stack}/{day}/{seq:010d}-{compact}.json"


def document(seq, start, end, prev_key, prev_sha, prev_sig, alg, key_id, archives, events) -> dict:
    return {
        "version": 1, "stack": "teststack", "sequence": seq,
        "digest_start_time": start, "digest_end_time": end,
        "previous_digest_key": prev_key, "previous_digest_sha256": prev_sha,
        "previous_digest_signature": prev_sig,
        "signature_algorithm": alg, "signing_key_id": key_id,
        "archives": archives, "events": events,
    }


def files() -> dict[str, bytes]:
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
    p256 = ec.derive_private_key(P256_SCALAR, ec.SECP256R1())
    pem = serialization.Encoding.PEM
    out = {
        "ed25519-private.pem": ed.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()),
        "ed25519-public.pem": ed.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
        "p256-private.pem": p256.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
        "p256-public.pem": p256.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    # 1: the stack's first digest, Ed25519, one archive.
    end1 = "2026-11-30T11:30:00.000000Z"
    doc1 = document(1, "2026-11-30T10:30:00.000000Z", end1, None, None, None, "Ed25519",
                    spki_id(ed.public_key()), [ARCHIVE], [])
    body1 = canonical(doc1)
    key1 = key_of("teststack", 1, end1)
    string1 = "\n".join((end1, key1, hashlib.sha256(body1).hexdigest(), "null")).encode()
    sig1 = ed.sign(string1)
    # 2: the next one, ECDSA_SHA_256 (as KMS signs with MessageType=RAW), no archive, one event.
    end2 = "2026-11-30T12:30:00.000000Z"
    doc2 = document(2, end1, end2, key1, hashlib.sha256(body1).hexdigest(), sig1.hex(), "ECDSA_SHA_256",
                    spki_id(p256.public_key()), [], [EVENT])
    body2 = canonical(doc2)
    key2 = key_of("teststack", 2, end2)
    string2 = "\n".join((end2, key2, hashlib.sha256(body2).hexdigest(), sig1.hex())).encode()
    sig2 = p256.sign(string2, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    out.update({
        "digest-1.json": body1, "digest-1.key": key1.encode(), "digest-1.signing-string": string1,
        "digest-1.sig": sig1,
        "digest-2.json": body2, "digest-2.key": key2.encode(), "digest-2.signing-string": string2,
        "digest-2.sig": sig2,
    })
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    bad = 0
    OUT.mkdir(exist_ok=True)
    for name, data in files().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_bytes() != data:
                print(f"{path}: differs")
                bad += 1
        else:
            path.write_bytes(data)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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


# The envelope of one archive object, as a HEAD returns its user metadata (names without
# ``x-amz-meta-``), with logarchive fields the envelope form leaves out, and an x-amz-matdesc whose
# spacing a re-serialisation would change.
ENVELOPE_METADATA = {
    "logarchive-bytes": "4567",
    "logarchive-key-id": "ab" * 32,
    "x-amz-cek-alg": "AES/GCM/NoPadding",
    "x-amz-iv": "AAECAwQFBgcICQoL",
    "x-amz-key-v2": "ZmFrZSB3cmFwcGVkIGRhdGEga2V5IChub3QgcmVhbCk=",
    "x-amz-matdesc": '{"kms_cmk_id": "alias/logarchive", "aws:x-amz-cek-alg": "AES/GCM/NoPadding"}',
    "x-amz-tag-len": "128",
    "x-amz-unencrypted-content-length": "1218",
    "x-amz-wrap-alg": "kms+context",
}
ENVELOPE_NAMES = ("x-amz-cek-alg", "x-amz-iv", "x-amz-key", "x-amz-key-v2", "x-amz-matdesc",
                  "x-amz-tag-len", "x-amz-unencrypted-content-length", "x-amz-wrap-alg")


def envelope_form(metadata: dict) -> bytes:
    """docs/FORMAT.md: present envelope fields in byte order of name, ``name:value\\n``."""
    return "".join(f"{n}:{metadata[n]}\n" for n in ENVELOPE_NAMES if n in metadata).encode()


POD_UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CRI_CONTAINER = f"{POD_UID}_web_2"
HOST = {
    "host": "node-1", "time": "2026-11-30T13:25:00.123456Z", "shipper_version": "0.9.0",
    "containers_seen": 3, "bytes_shipped": 123456, "bytes_waiting": 0,
    "oldest_waiting_age_seconds": None, "last_error": "",
}
RETIRED = {"host": "host-2", "at": "2026-11-30T13:00:00.000000Z", "reason": "decommissioned"}


def archive_v2() -> dict:
    return {
        **ARCHIVE,
        "key": "teststack/shareable/v3/" + "ab" * 32 + "/apps-1234/service-5678/" + CRI_CONTAINER
        + "-json.log.1.2026-11-30T12:00:00.2026-11-30T12:59:59.archived.gz",
        "container_id": CRI_CONTAINER, "host": "node-1",
        "source": f"staging/teststack/node-1/{CRI_CONTAINER}/00000001-0123456789abcdef.log",
        "segment": 1, "byte_start": 0, "byte_end": 4567,
        "first_time": "2026-11-30T12:00:00.000001Z", "last_time": "2026-11-30T12:59:59.999999Z",
        "envelope_sha256": hashlib.sha256(envelope_form(ENVELOPE_METADATA)).hexdigest(),
        "source_format": "cri",
        "k8s": {"namespace": "shop", "pod_name": "web-7d9f", "pod_uid": POD_UID, "container_name": "web",
                "restart_count": 2, "container_id": ""},
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


def document(seq, start, end, prev_key, prev_sha, prev_sig, alg, key_id, archives, events,
             version=1, hosts=(), retired=()) -> dict:
    doc = {
        "version": version, "stack": "teststack", "sequence": seq,
        "digest_start_time": start, "digest_end_time": end,
        "previous_digest_key": prev_key, "previous_digest_sha256": prev_sha,
        "previous_digest_signature": prev_sig,
        "signature_algorithm": alg, "signing_key_id": key_id,
        "archives": archives, "events": events,
    }
    if version >= 2:
        doc["hosts"] = list(hosts)
        doc["retired_hosts"] = list(retired)
    return doc


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
    # 3: version 2, Ed25519, chained on digest 2: a CRI archive with its envelope hash, a docker
    # abandoned event, one host's heartbeat, one retired host.
    end3 = "2026-11-30T13:30:00.000000Z"
    event3 = {**EVENT, "type": "abandoned", "location": "", "reason": "bytes deleted by Docker before staging",
              "segment": 8, "source": "/var/lib/docker/containers/" + "ef" * 32 + "/" + "ef" * 32 + "-json.log",
              "source_format": "docker", "k8s": None}
    doc3 = document(3, end2, end3, key2, hashlib.sha256(body2).hexdigest(), sig2.hex(), "Ed25519",
                    spki_id(ed.public_key()), [archive_v2()], [event3], version=2, hosts=[HOST],
                    retired=[RETIRED])
    body3 = canonical(doc3)
    key3 = key_of("teststack", 3, end3)
    string3 = "\n".join((end3, key3, hashlib.sha256(body3).hexdigest(), sig2.hex())).encode()
    sig3 = ed.sign(string3)
    canon = envelope_form(ENVELOPE_METADATA)
    out.update({
        "digest-3.json": body3, "digest-3.key": key3.encode(), "digest-3.signing-string": string3,
        "digest-3.sig": sig3,
        "envelope-metadata.json": canonical(ENVELOPE_METADATA),
        "envelope.canonical": canon,
        "envelope.sha256": hashlib.sha256(canon).hexdigest().encode(),
    })
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

"""The digest format against its test vector (tests/vectors/digest/, made by an independent
implementation), and the openssl commands docs/AUDIT.md gives to verify a digest by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib import digest
from chalicelib.digest import (
    ArchiveEntry,
    DigestError,
    Ed25519Signer,
    ExplainedEvent,
    HostHeartbeat,
    HostRetirement,
    SignedDigest,
    load_public_key,
)

VECTORS = Path(__file__).parent / "vectors"
V = VECTORS / "digest"


def vec(name: str) -> bytes:
    return (V / name).read_bytes()


def stored(n: int) -> SignedDigest:
    return digest.from_object(vec(f"digest-{n}.json"), {digest.SIGNATURE_META: vec(f"digest-{n}.sig").hex()},
                              name=f"digest-{n}")


ED_PUB = load_public_key(vec("ed25519-public.pem"))
P256_PUB = load_public_key(vec("p256-public.pem"))


def test_vector_files_are_what_the_generator_makes():
    subprocess.run([sys.executable, str(VECTORS / "make_digest_vector.py"), "--check"], check=True)


def test_build_and_sign_give_the_vector_bytes_and_signature():
    """Digests 1 and 2 are version 1 (the format before envelopes were proven): built as version
    1 they give the same bytes, so version 1 still parses and verifies byte for byte."""
    first = digest.parse(vec("digest-1.json"))
    assert first.version == 1
    signer = Ed25519Signer.from_pem(vec("ed25519-private.pem"))
    again = replace(digest.build(
        stack="teststack", end=datetime(2026, 11, 30, 11, 30, tzinfo=UTC), signing_key_id=signer.key_id,
        signature_algorithm=signer.algorithm,
        archives=[ArchiveEntry.from_dict(a.to_dict(1)) for a in first.archives],
        start=datetime(2026, 11, 30, 10, 30, tzinfo=UTC),
    ), version=1)
    signed = digest.sign(again, signer)
    assert signed.body == vec("digest-1.json")
    assert signed.key == vec("digest-1.key").decode()
    assert signed.signing_string == vec("digest-1.signing-string")
    assert signed.signature == vec("digest-1.sig")  # Ed25519 is deterministic
    # The second digest: chained on the first, an explained event, no archive.
    second = digest.parse(vec("digest-2.json"))
    rebuilt = replace(digest.build(
        stack="teststack", end=datetime(2026, 11, 30, 12, 30, tzinfo=UTC), signing_key_id=second.signing_key_id,
        signature_algorithm=digest.ECDSA_SHA_256, archives=[],
        events=[ExplainedEvent.from_dict(e.to_dict(1)) for e in second.events], previous=signed,
    ), version=1)
    assert rebuilt.to_bytes() == vec("digest-2.json")
    assert rebuilt.key == vec("digest-2.key").decode()


def test_version_2_vector_is_what_build_writes():
    """Digest 3: version 2 (envelope hash, a CRI container's identity, hosts, retired hosts),
    chained on the version-1 digest 2; build() writes exactly its bytes and signature."""
    doc = json.loads(vec("digest-3.json"))
    signer = Ed25519Signer.from_pem(vec("ed25519-private.pem"))
    built = digest.build(
        stack="teststack", end=datetime(2026, 11, 30, 13, 30, tzinfo=UTC), signing_key_id=signer.key_id,
        signature_algorithm=signer.algorithm, previous=stored(2),
        archives=[ArchiveEntry(**a) for a in doc["archives"]],
        events=[ExplainedEvent(**e) for e in doc["events"]],
        hosts=[HostHeartbeat(**h) for h in doc["hosts"]],
        retired_hosts=[HostRetirement(**r) for r in doc["retired_hosts"]],
    )
    assert built.version == digest.FORMAT_VERSION == 2
    signed = digest.sign(built, signer)
    assert signed.body == vec("digest-3.json")
    assert signed.key == vec("digest-3.key").decode()
    assert signed.signing_string == vec("digest-3.signing-string")
    assert signed.signature == vec("digest-3.sig")
    three = stored(3)
    assert digest.verify(three, [ED_PUB]) is ED_PUB
    assert digest.follows(three, stored(2)) is None
    entry = three.digest.archives[0]
    assert entry.source_format == "cri" and entry.k8s["restart_count"] == 2
    assert entry.envelope_sha256 == vec("envelope.sha256").decode()
    assert three.digest.events[0].source_format == "docker" and three.digest.events[0].k8s is None
    assert [h.host for h in three.digest.hosts] == ["node-1"]
    assert three.digest.retired_hosts[0].reason == "decommissioned"


def test_version_2_refuses_what_it_cannot_mean():
    doc = json.loads(vec("digest-3.json"))

    def body(edit) -> bytes:
        d = json.loads(vec("digest-3.json"))
        edit(d)
        return digest.canonical_json(d)
    assert digest.parse(body(lambda d: None)) == digest.parse(vec("digest-3.json"))
    for edit, why in (
        (lambda d: d["archives"][0].pop("envelope_sha256"), "lacks envelope_sha256"),
        (lambda d: d.pop("hosts"), "KeyError"),
        (lambda d: d["archives"][0].update(source_format="rkt"), "source_format 'rkt'"),
        (lambda d: d["archives"][0].update(k8s=None), "a cri source needs k8s"),
        (lambda d: d["events"][0].update(k8s=doc["archives"][0]["k8s"]), "a docker source has no k8s"),
        (lambda d: d["archives"][0].update(envelope_sha256="x"), "not hex SHA-256"),
        (lambda d: d.update(version=3), "version 3 is not one of 1, 2"),
    ):
        with pytest.raises(DigestError, match=why):
            digest.parse(body(edit), name="d")
    # Version 1 has none of the version-2 fields; they are not invented when reading it.
    one = digest.parse(vec("digest-1.json"))
    assert one.archives[0].envelope_sha256 is None and "hosts" not in one.to_dict()


def test_envelope_canonical_form_vector():
    """docs/FORMAT.md's envelope form: the present envelope fields in byte order of name,
    ``name:value\\n``, values byte for byte (x-amz-matdesc not re-serialised)."""
    meta = json.loads(vec("envelope-metadata.json"))
    assert digest.envelope_canonical(meta) == vec("envelope.canonical")
    assert digest.envelope_sha256(meta) == vec("envelope.sha256").decode()
    # As a raw HEAD names them (x-amz-meta- prefix, any case): the same form.
    assert digest.envelope_sha256({f"X-Amz-Meta-{k}": v for k, v in meta.items()}) == vec("envelope.sha256").decode()
    # The logarchive-* fields are not part of it; every envelope field is.
    assert digest.envelope_sha256({**meta, "logarchive-bytes": "1"}) == vec("envelope.sha256").decode()
    for name in ("x-amz-iv", "x-amz-key-v2", "x-amz-matdesc", "x-amz-cek-alg", "x-amz-wrap-alg",
                 "x-amz-tag-len", "x-amz-unencrypted-content-length"):
        assert digest.envelope_sha256({**meta, name: meta[name] + " "}) != vec("envelope.sha256").decode(), name
        dropped = {k: v for k, v in meta.items() if k != name}
        assert digest.envelope_sha256(dropped) != vec("envelope.sha256").decode(), name
    # Same JSON, other spacing: another envelope (nothing is re-serialised).
    respaced = json.dumps(json.loads(meta["x-amz-matdesc"]), separators=(",", ":"))
    assert digest.envelope_sha256({**meta, "x-amz-matdesc": respaced}) != vec("envelope.sha256").decode()
    with pytest.raises(DigestError, match="x-amz-iv holds a line break"):
        digest.envelope_canonical({**meta, "x-amz-iv": "a\nb"})


def test_vector_signatures_verify_and_chain():
    one, two = stored(1), stored(2)
    assert digest.verify(one, [P256_PUB, ED_PUB]) is ED_PUB
    assert digest.verify(two, [ED_PUB, P256_PUB]) is P256_PUB
    assert two.signing_string == vec("digest-2.signing-string")
    assert digest.follows(two, one) is None
    assert "sequence 1 follows 2" in digest.follows(one, two)


def test_edits_wrong_keys_and_broken_chains_are_named():
    one, two = stored(1), stored(2)
    with pytest.raises(DigestError, match=r"0000000001-20261130T113000Z.json: signed by key .* no public key given matches"):
        digest.verify(one, [P256_PUB])
    # A changed value, re-serialised canonically: parses, but the signature fails.
    edited = vec("digest-1.json").replace(b'"raw_bytes":4567', b'"raw_bytes":4568')
    tampered = SignedDigest(body=edited, signature=one.signature, digest=digest.parse(edited))
    with pytest.raises(DigestError, match="^x: bad signature$"):
        digest.verify(tampered, [ED_PUB], name="x")
    assert "has changed" in digest.follows(two, tampered)
    # Same JSON, other bytes: refused as an edit before any signature check.
    with pytest.raises(DigestError, match="d: body is not in canonical form"):
        digest.parse(vec("digest-1.json") + b"\n", name="d")
    with pytest.raises(DigestError, match="^d: not a digest"):
        digest.parse(b"{}", name="d")
    with pytest.raises(DigestError, match="no logarchive-digest-signature metadata"):
        digest.from_object(vec("digest-1.json"), {}, name="d")
    # A signature from another digest does not verify this one.
    swapped = SignedDigest(body=two.body, signature=one.signature, digest=two.digest)
    with pytest.raises(DigestError, match="bad signature"):
        digest.verify(swapped, [P256_PUB])


def test_digest_keys_parse_back():
    key = digest.digest_key("my-stack", 12, datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC))
    assert key == "_logarchive/digests/my-stack/2026/01/02/0000000012-20260102T030405Z.json"
    assert digest.parse_digest_key(key) == ("my-stack", 12, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert digest.parse_digest_key("my-stack/shareable/v3/x") is None
    assert digest.parse_digest_key(key.replace("/02/", "/03/")) is None


def test_signing_key_id_is_the_sha256_of_the_public_key_der():
    der = ED_PUB.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib

    assert digest.public_key_id(ED_PUB) == hashlib.sha256(der).hexdigest() == stored(1).digest.signing_key_id
    assert "PRIVATE" not in repr(Ed25519Signer.from_pem(vec("ed25519-private.pem")))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_openssl_alone_verifies_both_algorithms(tmp_path: Path):
    """The commands of docs/AUDIT.md, step by step, with nothing but openssl and printf."""
    for n, pub, cmd in (
        (1, "ed25519-public.pem", ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "{pub}", "-rawin",
                                   "-in", "{msg}", "-sigfile", "{sig}"]),
        (2, "p256-public.pem", ["openssl", "dgst", "-sha256", "-verify", "{pub}", "-signature", "{sig}", "{msg}"]),
    ):
        body = tmp_path / f"d{n}.json"
        body.write_bytes(vec(f"digest-{n}.json"))
        sha = subprocess.run(["openssl", "dgst", "-sha256", "-r", str(body)], check=True, capture_output=True,
                             text=True).stdout.split()[0]
        d = digest.parse(body.read_bytes())
        msg = tmp_path / f"d{n}.msg"
        msg.write_bytes(f"{d.end_time}\n{vec(f'digest-{n}.key').decode()}\n{sha}\n"
                        f"{d.previous_digest_signature or 'null'}".encode())
        assert msg.read_bytes() == vec(f"digest-{n}.signing-string")
        sig = tmp_path / f"d{n}.sig"
        sig.write_bytes(vec(f"digest-{n}.sig"))
        args = [a.format(pub=V / pub, msg=msg, sig=sig) for a in cmd]
        ok = subprocess.run(args, capture_output=True, text=True)
        assert ok.returncode == 0 and "Verified" in ok.stdout, ok.stdout + ok.stderr
        msg.write_bytes(msg.read_bytes().replace(b"\nnull", b"\nnul1") if n == 1 else msg.read_bytes() + b"x")
        bad = subprocess.run(args, capture_output=True, text=True)
        assert bad.returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("xxd") is None, reason="no openssl or xxd")
def test_the_verify_script_of_docs_audit_md(tmp_path: Path):
    """docs/AUDIT.md's shell script, as printed there, on both vector digests and an edited one."""
    doc = (Path(__file__).parent.parent / "docs" / "AUDIT.md").read_text()
    script = doc.split("```sh\n# verify-digest.sh", 1)[1].split("```", 1)[0]
    (tmp_path / "verify.sh").write_text("# verify-digest.sh" + script)

    def run(n: int, body: bytes, pub: str) -> subprocess.CompletedProcess:
        (tmp_path / "d.json").write_bytes(body)
        (tmp_path / "sig.hex").write_text(vec(f"digest-{n}.sig").hex() + "\n")
        return subprocess.run(["bash", "verify.sh", "d.json", vec(f"digest-{n}.key").decode(), "sig.hex",
                               str(V / pub)], cwd=tmp_path, capture_output=True, text=True)

    assert run(1, vec("digest-1.json"), "ed25519-public.pem").returncode == 0
    assert (tmp_path / "signing-string").read_bytes() == vec("digest-1.signing-string")
    assert run(2, vec("digest-2.json"), "p256-public.pem").returncode == 0
    assert (tmp_path / "signing-string").read_bytes() == vec("digest-2.signing-string")
    edited = vec("digest-1.json").replace(b'"raw_bytes":4567', b'"raw_bytes":4568')
    assert run(1, edited, "ed25519-public.pem").returncode == 1
    assert run(2, vec("digest-2.json"), "ed25519-public.pem").returncode != 0  # wrong key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_the_envelope_hash_by_hand_of_docs_format_md():
    """docs/FORMAT.md's by-hand pipeline (head-object's metadata → form → openssl), as printed
    there, gives the vector's envelope hash from its metadata."""
    doc = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()
    block = doc.split("### 3.4 The envelope in the digest", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    pipeline = block.split("\\\n", 1)[1].replace("\\\n", "")  # after `aws s3api head-object … \`
    got = subprocess.run(["bash", "-c", pipeline.strip().lstrip("| ")], input=vec("envelope-metadata.json"),
                         capture_output=True, check=True).stdout.decode().split()[0]
    assert got == vec("envelope.sha256").decode()

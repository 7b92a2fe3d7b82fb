"""The digest format against its test vector (tests/vectors/digest/, made by an independent
implementation), and the openssl commands docs/AUDIT.md gives to verify a digest by hand."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
    first = digest.parse(vec("digest-1.json"))
    signer = Ed25519Signer.from_pem(vec("ed25519-private.pem"))
    again = digest.build(
        stack="teststack", end=datetime(2026, 11, 30, 11, 30, tzinfo=UTC), signing_key_id=signer.key_id,
        signature_algorithm=signer.algorithm, archives=[ArchiveEntry.from_dict(a.to_dict()) for a in first.archives],
        start=datetime(2026, 11, 30, 10, 30, tzinfo=UTC),
    )
    signed = digest.sign(again, signer)
    assert signed.body == vec("digest-1.json")
    assert signed.key == vec("digest-1.key").decode()
    assert signed.signing_string == vec("digest-1.signing-string")
    assert signed.signature == vec("digest-1.sig")  # Ed25519 is deterministic
    # The second digest: chained on the first, an explained event, no archive.
    second = digest.parse(vec("digest-2.json"))
    rebuilt = digest.build(
        stack="teststack", end=datetime(2026, 11, 30, 12, 30, tzinfo=UTC), signing_key_id=second.signing_key_id,
        signature_algorithm=digest.ECDSA_SHA_256, archives=[],
        events=[ExplainedEvent.from_dict(e.to_dict()) for e in second.events], previous=signed,
    )
    assert rebuilt.to_bytes() == vec("digest-2.json")
    assert rebuilt.key == vec("digest-2.key").decode()


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

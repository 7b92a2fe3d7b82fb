"""Interoperability with AWS's own S3 Encryption Client (amazon-s3-encryption-client-python).

That client implements only KMS wrapping (``kms+context``), so these tests use a KMS key on
the local AWS over HTTP. Raw-key (``AES/GCM``) objects are covered by the vectors and the
independent decryptor in test_format_independent.py. Newer S3EC releases default to key-
committing suites; reading our (v2, non-committing) objects needs a commitment policy that
allows decrypting them, as docs/FORMAT.md says.
"""

from __future__ import annotations

import gzip
import io
import json

import boto3
import pytest

from chalicelib.codec import seal, unseal
from chalicelib.envelope import Envelope
from chalicelib.keyring import Keyring, key_id_of_kms

s3_encryption = pytest.importorskip("s3_encryption")
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig  # noqa: E402
from s3_encryption.materials.kms_keyring import KmsKeyring  # noqa: E402
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy  # noqa: E402

DATA = b"".join(
    b'{"log":"line %d \\u003cok\\u003e\\n","stream":"stdout","time":"2022-08-24T21:12:33.%09dZ"}\n' % (i, i)
    for i in range(5000)
)


@pytest.fixture
def kms_key(buckets) -> str:
    return boto3.client("kms").create_key()["KeyMetadata"]["Arn"]


def official_client(kms_key: str, *, write_v2: bool = False) -> S3EncryptionClient:
    kms = boto3.client("kms")
    if write_v2:
        config = S3EncryptionClientConfig(
            keyring=KmsKeyring(kms_client=kms, kms_key_id=kms_key),
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        )
    else:
        config = S3EncryptionClientConfig(
            keyring=KmsKeyring(kms_client=kms, kms_key_id=kms_key),
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
        )
    return S3EncryptionClient(wrapped_s3_client=boto3.client("s3"), config=config)


def sealed_with_kms(kms_key: str):
    ring = Keyring(kms_key_id=kms_key)
    body = io.BytesIO()
    return ring, body, seal(io.BytesIO(DATA), body, ring)


def test_official_client_reads_our_object_metadata_envelope(buckets, kms_key: str) -> None:
    _, body, result = sealed_with_kms(kms_key)
    assert result.envelope.wrap_alg == "kms+context"
    assert json.loads(result.envelope.matdesc) == {"aws:x-amz-cek-alg": "AES/GCM/NoPadding"}
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="ours.gz", Body=body.getvalue(), Metadata=result.envelope.to_fields())
    got = official_client(kms_key).get_object(Bucket=buckets.archive, Key="ours.gz")["Body"].read()
    assert gzip.decompress(got) == DATA


def test_official_client_reads_our_instruction_file(buckets, kms_key: str) -> None:
    _, body, result = sealed_with_kms(kms_key)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="ours.gz", Body=body.getvalue())
    s3.put_object(Bucket=buckets.archive, Key="ours.gz.instruction", Body=result.envelope.to_instruction().encode(),
                  Metadata={"x-amz-crypto-instr-file": ""})
    got = official_client(kms_key).get_object(Bucket=buckets.archive, Key="ours.gz")["Body"].read()
    assert gzip.decompress(got) == DATA


def test_we_read_the_official_clients_v2_object(buckets, kms_key: str) -> None:
    gz = gzip.compress(DATA)
    official_client(kms_key, write_v2=True).put_object(Bucket=buckets.archive, Key="theirs.gz", Body=gz)
    got = boto3.client("s3").get_object(Bucket=buckets.archive, Key="theirs.gz")
    env = Envelope.from_fields(got["Metadata"], name="theirs.gz")
    assert (env.wrap_alg, env.cek_alg) == ("kms+context", "AES/GCM/NoPadding")
    out = io.BytesIO()
    unseal(got["Body"].iter_chunks(1 << 16), out, env, Keyring(kms_key_id=kms_key), name="theirs.gz",
           decompress=True)
    assert out.getvalue() == DATA


def test_kms_key_id_is_sha256_of_configured_id(kms_key: str) -> None:
    import hashlib

    ring = Keyring(kms_key_id=kms_key)
    assert ring.encrypting_key_id == key_id_of_kms(kms_key) == hashlib.sha256(kms_key.encode()).hexdigest()

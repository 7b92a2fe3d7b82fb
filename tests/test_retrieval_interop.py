"""Interop with AWS's official S3 Encryption Client for Python (amazon-s3-encryption-client-python
4.0.0), configured for the v2 message format (AES-256-GCM, IV 12, tag 16, no KDF), against the
local S3 and KMS over HTTP."""

from __future__ import annotations

import gzip
import json
import os

import boto3
import pytest
from attrs import define, field
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from retrieval_helpers import STACK, archive_key, docker_lines, put_archive, run_cli, t, upload_sealed
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.exceptions import S3EncryptionClientError
from s3_encryption.materials.encrypted_data_key import EncryptedDataKey
from s3_encryption.materials.keyring import S3Keyring
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

from chalicelib.keyring import Keyring, MasterKey, key_id_of_kms

CEK_ALG = b"AES/GCM/NoPadding"


@define
class RawAesGcmKeyring(S3Keyring):
    """Test-only: the AWS SDKs' raw AES keyring (``AES/GCM`` wrap), which this client lacks.

    Wrapped key = 12-byte IV || AES-GCM(master, data key, AAD "AES/GCM/NoPadding") || tag;
    material description ``{}``.
    """

    master: bytes = field(repr=False)

    def on_encrypt(self, enc_materials):
        enc_materials = super().on_encrypt(enc_materials)
        data_key, iv = os.urandom(32), os.urandom(12)
        enc_materials.encrypted_data_key = EncryptedDataKey(
            key_provider_info="AES/GCM", key_provider_id=b"S3Keyring",
            encrypted_data_key=iv + AESGCM(self.master).encrypt(iv, data_key, CEK_ALG),
        )
        enc_materials.plaintext_data_key = data_key
        return enc_materials

    def on_decrypt(self, dec_materials, encrypted_data_keys=None):
        dec_materials = super().on_decrypt(dec_materials, encrypted_data_keys)
        edk = (encrypted_data_keys or dec_materials.encrypted_data_keys)[0]
        if edk.key_provider_info != "AES/GCM":
            raise S3EncryptionClientError(f"raw AES keyring cannot unwrap {edk.key_provider_info!r}")
        blob = edk.encrypted_data_key
        dec_materials.plaintext_data_key = AESGCM(self.master).decrypt(blob[:12], blob[12:], CEK_ALG)
        return dec_materials


def s3ec(keyring) -> S3EncryptionClient:
    # A fresh client: the encryption client installs event handlers on the one it wraps.
    return S3EncryptionClient(
        wrapped_s3_client=boto3.client("s3"),
        config=S3EncryptionClientConfig(
            keyring=keyring,
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        ),
    )


@pytest.fixture
def kms_arn(aws_endpoint) -> str:
    return boto3.client("kms").create_key(Description="logarchive interop")["KeyMetadata"]["Arn"]


def _sample(i: int = 0) -> tuple[tuple, bytes]:
    s, e = t(f"2022-11-01T{i:02d}:00:00"), t(f"2022-11-01T{i:02d}:40:00")
    return (s, e), docker_lines(s, e, n=20, tag=f"interop{i} ")


def _fetch(bucket: str, dest, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["logs-from-archive", "--bucket", bucket, "--stack", STACK, "--app-id", "70",
                    "--download-location", str(dest), *extra], capsys)


def _rel(key: str) -> str:
    return "/".join(key.split("/")[4:])


# -- the official client writes, logarchive reads ------------------------------------------


def test_s3ec_kms_objects_found_and_decrypted_by_logs_from_archive(buckets, kms_arn, capsys, tmp_path) -> None:
    client = s3ec(KmsKeyring(kms_client=boto3.client("kms"), kms_key_id=kms_arn))
    (s, e), data = _sample(1)
    key = archive_key("apps", "70", "7a" * 32, s, e, key_id_of_kms(kms_arn))
    gz = gzip.compress(data)
    client.put_object(Bucket=buckets.customer, Key=key, Body=gz)
    meta = boto3.client("s3").head_object(Bucket=buckets.customer, Key=key)["Metadata"]
    assert meta["x-amz-wrap-alg"] == "kms+context" and meta["x-amz-cek-alg"] == "AES/GCM/NoPadding"

    rc, out, err = _fetch(buckets.customer, tmp_path / "gz", capsys)  # no raw key: KMS unwraps
    assert rc == 0, err
    assert (tmp_path / "gz" / _rel(key)).read_bytes() == gz
    rc, out, err = _fetch(buckets.customer, tmp_path / "plain", capsys, "--decompress")
    assert rc == 0, err
    assert (tmp_path / "plain" / (_rel(key)[:-3] + ".jsonl")).read_bytes() == data


def test_s3ec_raw_aes_objects_are_mislabelled_kms_by_that_client(buckets, capsys, tmp_path) -> None:
    """Found while writing this test: 4.0.0 writes ``x-amz-wrap-alg: kms+context`` whatever the
    keyring (pipelines.py, PutEncryptedObjectPipeline._encrypt_gcm hard-codes it), so a raw-key
    object it writes claims KMS. We refuse it with one clear line; once that one header is
    corrected to what the keyring did (``AES/GCM``), we decrypt it: the rest is the v2 format."""
    master = MasterKey.generate()
    client = s3ec(RawAesGcmKeyring(master=master.raw))
    (s, e), data = _sample(2)
    key = archive_key("apps", "70", "7b" * 32, s, e, master.key_id)
    gz = gzip.compress(data)
    client.put_object(Bucket=buckets.customer, Key=key, Body=gz)
    plain_s3 = boto3.client("s3")
    meta = plain_s3.head_object(Bucket=buckets.customer, Key=key)["Metadata"]
    assert meta["x-amz-wrap-alg"] == "kms+context"  # the client's bug, not ours
    assert meta["x-amz-matdesc"] == "{}"

    rc, out, err = _fetch(buckets.customer, tmp_path / "a", capsys, "--decryption-keys", master.to_base64())
    assert rc == 1
    # The envelope claims KMS, but its material description is not a KMS encryption context.
    assert err.splitlines() == [
        f"logarchive: error: {key}: KMS encryption context does not name the content algorithm AES/GCM/NoPadding"
    ]

    plain_s3.copy_object(Bucket=buckets.customer, Key=key, CopySource={"Bucket": buckets.customer, "Key": key},
                         Metadata={**meta, "x-amz-wrap-alg": "AES/GCM"}, MetadataDirective="REPLACE")
    rc, out, err = _fetch(buckets.customer, tmp_path / "b", capsys, "--decryption-keys", master.to_base64())
    assert rc == 0, err
    assert (tmp_path / "b" / _rel(key)).read_bytes() == gz


# -- logarchive writes, the official client reads ------------------------------------------


def test_our_kms_objects_decrypted_by_s3ec(buckets, kms_arn) -> None:
    ring = Keyring(kms_key_id=kms_arn, kms_client_factory=lambda: boto3.client("kms"))
    (s, e), data = _sample(3)
    key = archive_key("apps", "70", "7c" * 32, s, e, ring.encrypting_key_id)
    assert ring.encrypting_key_id == key_id_of_kms(kms_arn)
    put_archive(boto3.client("s3"), buckets.customer, key, data, ring)
    client = s3ec(KmsKeyring(kms_client=boto3.client("kms"), kms_key_id=kms_arn))
    body = client.get_object(Bucket=buckets.customer, Key=key)["Body"].read()
    assert gzip.decompress(body) == data


@pytest.mark.parametrize("instruction", [False, True], ids=["metadata", "instruction-file"])
def test_our_raw_key_objects_decrypted_by_s3ec(buckets, instruction) -> None:
    master = MasterKey.generate()
    (s, e), data = _sample(4)
    key = archive_key("apps", "70", "7d" * 32, s, e, master.key_id)
    put_archive(boto3.client("s3"), buckets.customer, key, data, Keyring([master]), instruction=instruction)
    if instruction:  # the envelope is only in the instruction file
        meta = boto3.client("s3").head_object(Bucket=buckets.customer, Key=key)["Metadata"]
        assert "x-amz-key-v2" not in meta
    client = s3ec(RawAesGcmKeyring(master=master.raw))
    body = client.get_object(Bucket=buckets.customer, Key=key)["Body"].read()
    assert gzip.decompress(body) == data
    # And the official client refuses it under another key: the test keyring is not a stub.
    other = s3ec(RawAesGcmKeyring(master=MasterKey.generate().raw))
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag, wrapped or not
        other.get_object(Bucket=buckets.customer, Key=key)["Body"].read()


def test_our_instruction_file_keeps_only_keys_the_sdk_accepts() -> None:
    """Why ``seal`` and S3 instruction files leave out x-amz-unencrypted-content-length: this
    client rejects an instruction file holding any key outside its list (the SDKs keep that
    length in object metadata)."""
    from s3_encryption.instruction_file import parse_instruction_file

    from chalicelib.envelope import Envelope

    env = Envelope(wrap_alg="AES/GCM", encrypted_key=b"k" * 60, iv=b"i" * 12, unencrypted_length=123)
    with pytest.raises(S3EncryptionClientError, match="x-amz-unencrypted-content-length"):
        parse_instruction_file(json.dumps(env.to_fields()).encode(), "k")
    assert "x-amz-unencrypted-content-length" not in parse_instruction_file(env.to_instruction().encode(), "k")
    assert Envelope.from_instruction(env.to_instruction(), name="k") == Envelope(
        wrap_alg="AES/GCM", encrypted_key=b"k" * 60, iv=b"i" * 12
    )


def test_files_sealed_by_logarchive_seal_decrypted_by_s3ec(buckets, capsys, tmp_path, monkeypatch) -> None:
    """``logarchive seal`` output and its instruction file, uploaded as they are, read by the
    official client (which fetches ``<key>.instruction`` itself)."""
    monkeypatch.delenv("LOGARCHIVE_KEYS", raising=False)
    master = MasterKey.generate()
    (tmp_path / "keys").write_text(master.to_base64() + "\n")
    (s, e), data = _sample(5)
    (tmp_path / "in.log").write_bytes(data)
    rc, _, err = run_cli(["seal", "--key-file", str(tmp_path / "keys"), str(tmp_path / "in.log"),
                          str(tmp_path / "out")], capsys)
    assert rc == 0, err
    key = archive_key("apps", "70", "7e" * 32, s, e, master.key_id)
    upload_sealed(buckets.customer, key, str(tmp_path / "out"))
    body = s3ec(RawAesGcmKeyring(master=master.raw)).get_object(Bucket=buckets.customer, Key=key)["Body"].read()
    assert gzip.decompress(body) == data

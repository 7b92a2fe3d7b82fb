"""Opening an archive object (GET, envelope from metadata or instruction file) on the local S3."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from retrieval_helpers import put_archive

from chalicelib import awserrors, codec
from chalicelib.archive_object import open_archive
from chalicelib.errors import EnvelopeError, LogarchiveError
from chalicelib.keyring import Keyring, MasterKey

RING = Keyring([MasterKey(b"\x05" * 32)])
DATA = b'{"log":"hello\\n","stream":"stdout","time":"2022-01-01T12:00:00Z"}\n' * 50


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


def unsealed(obj, name: str) -> bytes:
    sink = Sink()
    with obj.body:
        codec.unseal(obj.body.iter_chunks(1 << 16), sink, obj.envelope, RING, name=name, decompress=True)
    return sink.data


@pytest.mark.parametrize("instruction", [False, True])
def test_the_envelope_comes_from_metadata_or_the_instruction_file(buckets, instruction) -> None:
    s3 = boto3.client("s3")
    put_archive(s3, buckets.archive, "a/b.log.gz", DATA, RING, instruction=instruction)
    obj = open_archive(s3, buckets.archive, "a/b.log.gz")
    assert unsealed(obj, "a/b.log.gz") == DATA
    assert obj.envelope.unencrypted_length is not None


def test_a_version_is_opened_by_its_id(buckets) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=buckets.archive, VersioningConfiguration={"Status": "Enabled"})
    put_archive(s3, buckets.archive, "v.log.gz", DATA, RING)
    first = s3.head_object(Bucket=buckets.archive, Key="v.log.gz")["VersionId"]
    put_archive(s3, buckets.archive, "v.log.gz", b"other\n", RING)
    assert unsealed(open_archive(s3, buckets.archive, "v.log.gz", version_id=first), "v") == DATA


def test_failures_name_the_object(buckets) -> None:
    s3 = boto3.client("s3")
    with pytest.raises(ClientError) as missing:  # the GET's own error: the caller decides
        open_archive(s3, buckets.archive, "nothing.log.gz")
    assert awserrors.is_not_found(missing.value)
    # no envelope in the metadata and no instruction file
    s3.put_object(Bucket=buckets.archive, Key="bare.log.gz", Body=b"x")
    with pytest.raises(EnvelopeError, match=r"^s3://b/bare: no encryption envelope .*bare.log.gz.instruction"):
        open_archive(s3, buckets.archive, "bare.log.gz", name="s3://b/bare")
    # a broken instruction file
    s3.put_object(Bucket=buckets.archive, Key="bad.log.gz", Body=b"x", Metadata={"x-amz-crypto-instr-file": ""})
    s3.put_object(Bucket=buckets.archive, Key="bad.log.gz.instruction", Body=b"not json")
    with pytest.raises(LogarchiveError, match=r"^bad.log.gz: instruction file is not JSON"):
        open_archive(s3, buckets.archive, "bad.log.gz")

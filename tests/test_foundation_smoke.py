"""Smoke tests of the foundation modules against the local AWS over HTTP."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import boto3
import pytest

from chalicelib import layout
from chalicelib.codec import seal, unseal
from chalicelib.envelope import Envelope
from chalicelib.errors import IntegrityError, KeyNotFoundError, LayoutError
from chalicelib.keyring import Keyring, MasterKey

CID = "a" * 64


def test_v3_key_round_trip() -> None:
    k = layout.ArchiveKey(
        stack="prod", key_id="f" * 64, kind="apps", resource_id="42", service_id="7",
        container_id=CID, rotation=3,
        start=datetime(2022, 8, 24, 21, 12, 33, tzinfo=UTC),
        end=datetime(2022, 8, 24, 21, 14, 38, tzinfo=UTC),
    )
    key = k.key()
    assert key == (
        f"prod/shareable/v3/{'f' * 64}/apps-42/service-7/{CID}-json.log.3."
        "2022-08-24T21:12:33.2022-08-24T21:14:38.archived.gz"
    )
    assert layout.parse(key) == k
    assert k.download_path(key) == f"apps-42/service-7/{CID}-json.log.3.2022-08-24T21:12:33.2022-08-24T21:14:38.archived.gz"


def test_v2_key_parses() -> None:
    k = layout.parse(f"prod/shareable/v2/{'0' * 64}/databases-9/{CID}-json.1.log.2021-01-02T03:04:05Z.bck.gz")
    assert (k.schema, k.kind, k.resource_id, k.rotation) == ("v2", "databases", "9", 1)


@pytest.mark.parametrize("bad", ["prod/other/x", f"prod/shareable/v3/{'0' * 64}/weird-1/{CID}-json.log.x.archived.gz"])
def test_unknown_keys_raise_layout_error(bad: str) -> None:
    with pytest.raises(LayoutError):
        layout.parse(bad)


def test_seal_unseal_through_local_s3(buckets) -> None:
    ring = Keyring([MasterKey.generate()])
    data = b'{"log":"hello\\n","stream":"stdout","time":"2022-01-01T12:23:45.5678Z"}\n' * 1000
    out = io.BytesIO()
    result = seal(io.BytesIO(data), out, ring)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="obj", Body=out.getvalue(),
                  Metadata=result.envelope.to_fields())
    got = s3.get_object(Bucket=buckets.archive, Key="obj")
    env = Envelope.from_fields(got["Metadata"], name="obj")
    dst = io.BytesIO()
    unseal(got["Body"].iter_chunks(65536), dst, env, ring, name="obj", decompress=True)
    assert dst.getvalue() == data

    with pytest.raises(KeyNotFoundError):
        unseal(io.BytesIO(out.getvalue()), io.BytesIO(), env, Keyring([MasterKey.generate()]), name="obj")
    with pytest.raises(IntegrityError):
        unseal(io.BytesIO(out.getvalue()[:-1]), io.BytesIO(), env, ring, name="obj")

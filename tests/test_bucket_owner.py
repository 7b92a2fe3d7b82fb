"""ExpectedBucketOwner on every call into a stage's buckets (the customer's above all): S3 then
refuses a bucket someone else holds under the name. The local AWS ignores the header, so this
checks what is sent (statically, on the requests the real handlers make), not S3's refusal."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from archiver_support import archiver_env, deliver, docker_lines, lambda_client, run_scheduler, stage

from chalicelib import aws
from chalicelib.settings import Settings

ACCOUNT = "123456789012"  # the local AWS's account: it owns every bucket there
CUSTOMER_ACCOUNT = "444455556666"


class Requests:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, str | None]] = []

    def __call__(self, request: Any, **_: Any) -> None:
        path = request.url.split("://", 1)[1].split("/", 2)
        bucket = path[1].split("?")[0] if len(path) > 1 else ""
        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        self.seen.append((request.method, bucket, header("x-amz-expected-bucket-owner"),
                          header("x-amz-source-expected-bucket-owner")))


def test_every_call_into_the_stages_buckets_names_their_owner(buckets, monkeypatch, tmp_path) -> None:
    env = archiver_env(monkeypatch, buckets)
    monkeypatch.setenv("LOGARCHIVE_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("LOGARCHIVE_BUCKET_OWNERS", f"{buckets.customer}={ACCOUNT}")
    aws.reset_clients()
    seen = Requests()
    aws.client("s3").meta.events.register("before-send.s3", seen)
    stage(boto3.client("s3"), buckets.staging, "a-json.log.1", docker_lines(50, seed=3))
    client = lambda_client(tmp_path)
    assert run_scheduler(client)["scheduled"] == 1
    assert deliver(client, env["queue_url"]) == 1
    into = {b: [s for s in seen.seen if s[1] == b] for b in buckets.all()}
    assert into[buckets.customer] and into[buckets.archive] and into[buckets.staging]
    for bucket, calls in into.items():
        for method, _, owner, _ in calls:
            assert owner == ACCOUNT, (bucket, method)


def test_owners_come_from_the_stage() -> None:
    s = Settings.from_env({"LOGARCHIVE_STACK": "p", "LOGARCHIVE_ACCOUNT_ID": ACCOUNT,
                           "LOGARCHIVE_REGION": "eu-west-1", "LOGARCHIVE_REPLICATE_TO": "cust",
                           "LOGARCHIVE_BUCKET_OWNERS": f"cust={CUSTOMER_ACCOUNT}"})
    assert s.expected_owners() == {f"logarchive-p-staging-{ACCOUNT}-eu-west-1": ACCOUNT,
                                   f"logarchive-p-archive-{ACCOUNT}-eu-west-1": ACCOUNT,
                                   "cust": CUSTOMER_ACCOUNT}
    with pytest.raises(Exception, match="LOGARCHIVE_BUCKET_OWNERS must be bucket=12-digit-account"):
        Settings.from_env({"LOGARCHIVE_BUCKET_OWNERS": "cust"})


def test_presigned_urls_carry_no_owner_condition(monkeypatch) -> None:
    monkeypatch.setenv("LOGARCHIVE_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("LOGARCHIVE_ARCHIVE_BUCKET", "arc")
    url = aws.client("s3", region="eu-west-1", presign=True).generate_presigned_url(
        "get_object", Params={"Bucket": "arc", "Key": "k"}, ExpiresIn=60)
    assert "expected-bucket-owner" not in url.lower()

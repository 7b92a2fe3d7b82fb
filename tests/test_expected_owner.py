"""``--expected-owner ACCOUNT`` on the commands that read a customer's bucket — logs-from-archive,
audit, status, setup check --bucket: every S3 call into that bucket sends ``ExpectedBucketOwner``,
and S3's refusal is one line naming the bucket, exit 1, no traceback (issue 19).

The local AWS (moto 5.2.5) ignores ``ExpectedBucketOwner``: tried, HeadBucket, ListObjectsV2,
HeadObject and GetObject naming another account all succeed there. So:

- that every call carries it is checked on the requests themselves (a botocore ``before-send``
  hook on the CLI's own clients, ``aws.observe``), for each command, on a real archive;
- S3 refuses another account's bucket with a 403 AccessDenied, the answer it also gives to
  credentials that may not list the bucket. The CLI's handling of that answer is tested with a
  real 403 from a local AWS with IAM enforced (devkit/local_iam.py), for credentials allowed
  only ``s3:GetObject`` in the bucket; and the customer's read-only policy allows the check.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from test_audit import STACK, Scene, logs

from chalicelib import aws
from chalicelib.cli import main
from chalicelib.devkit import local_aws, local_iam
from chalicelib.setup.iam import customer_reader_policy

OWNER = "123456789012"  # the local AWS's account: it owns every bucket there
OTHER = "444455556666"


class Requests:
    """Each S3 request a client of :mod:`chalicelib.aws` sends: method, bucket, path, owner header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str | None]] = []

    def __call__(self, request: Any, **_: Any) -> None:
        path = request.url.split("://", 1)[1].split("?", 1)[0].split("/", 2)
        owner = request.headers.get("x-amz-expected-bucket-owner")
        self.seen.append((request.method, path[1] if len(path) > 1 else "", path[2] if len(path) > 2 else "",
                          owner.decode() if isinstance(owner, bytes) else owner))

    def into(self, bucket: str) -> list[tuple[str, str, str, str | None]]:
        return [s for s in self.seen if s[1] == bucket]


@pytest.fixture
def scene(buckets, tmp_path, capsys) -> Scene:
    """One host's stopped container shipped and archived once, signed: archives and a digest."""
    sc = Scene(buckets, tmp_path, capsys)
    assert sc.cli("keys", "generate", "--output", str(sc.key_file))[0] == 0
    assert sc.cli("keys", "signing-generate", "--private-key-file", str(sc.private),
                  "--public-key-file", str(sc.public))[0] == 0
    web = sc.hosts["host-a"].add("web-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "7"})
    logs(web, 20, "web")
    web.stop()
    sc.ship("host-a")
    sc.archive()
    return sc


def test_every_call_into_the_customer_bucket_names_its_owner(scene: Scene) -> None:
    customer, out = scene.b.customer, scene.tmp / "downloaded"
    commands = {
        "logs-from-archive": ["logs-from-archive", "--bucket", customer, "--stack", STACK, "--app-id", "42",
                              "--key-file", str(scene.key_file), "--download-location", str(out)],
        "audit": ["audit", "--bucket", customer, "--stack", STACK, "--public-key-file", str(scene.public),
                  "--deep"],
        "status": ["status", "--bucket", customer, "--stack", STACK, "--public-key-file", str(scene.public)],
        "setup check": ["setup", "check", "--bucket", customer, "--stack-region", "us-east-1", "--stack", STACK],
    }
    for name, argv in commands.items():
        seen = Requests()
        with aws.observe("before-send.s3", seen):
            rc, stdout, err = scene.cli(*argv, "--expected-owner", OWNER)
        assert "Traceback" not in err, (name, err)
        if name in ("logs-from-archive", "audit"):
            assert rc == 0, (name, stdout, err)
        calls = seen.into(customer)
        assert calls, name
        assert [c for c in calls if c[3] != OWNER] == [], name
        assert calls[0][:3] == ("GET", customer, ""), (name, calls[0])  # the owner is checked first
        if name in ("logs-from-archive", "audit"):  # archive bodies read too
            assert any(method == "GET" and key.startswith(f"{STACK}/") for method, _, key, _ in calls), name
    assert list(out.rglob("*.log*")), "logs-from-archive downloaded nothing"
    # Without the option, nothing is pinned (the stage's own owners are set by its environment).
    seen = Requests()
    with aws.observe("before-send.s3", seen):
        scene.cli(*commands["audit"])
    assert {c[3] for c in seen.into(customer)} == {None}


def test_a_bucket_that_does_not_exist_is_one_line(buckets, capsys) -> None:
    rc = main(["setup", "check", "--bucket", "no-such-bucket-here", "--stack-region", "us-east-1",
               "--expected-owner", OWNER])
    err = capsys.readouterr().err
    assert rc == 1 and err == "logarchive: error: bucket no-such-bucket-here: does not exist\n", err


def test_option_misuse_is_a_usage_error(buckets, capsys) -> None:
    for argv in (
        ["audit", "--bucket", buckets.customer, "--stack", STACK, "--public-key-file", "k.pem",
         "--expected-owner", "12345"],
        ["logs-from-archive", "--api-url", "https://example.com/api", "--stack", STACK, "--app-id", "1",
         "--expected-owner", OWNER],
        ["setup", "check", "--stage", "dev", "--expected-owner", OWNER],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--expected-owner" in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def refused() -> Any:
    """A local AWS with IAM enforced, a bucket, and credentials S3 answers 403 on listing it."""
    with local_aws.moto_server() as endpoint:
        admin = local_iam.enforce(endpoint)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        bucket = "logarchive-owned-elsewhere"
        boto3.client("s3", aws_access_key_id=admin.access_key, aws_secret_access_key=admin.secret_key,
                     **kw).create_bucket(Bucket=bucket)
        iam = boto3.client("iam", aws_access_key_id=admin.access_key, aws_secret_access_key=admin.secret_key,
                           **kw)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="objects-only", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"],
                                                     "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        # The customer's read-only policy (docs/RETRIEVAL.md, "Permissions") allows the HEAD.
        iam.create_user(UserName="customer-reader")
        iam.put_user_policy(UserName="customer-reader", PolicyName="reader", PolicyDocument=json.dumps(
            customer_reader_policy(bucket, STACK)))
        reader = iam.create_access_key(UserName="customer-reader")["AccessKey"]
        yield (endpoint, bucket, aws.Credentials(key["AccessKeyId"], key["SecretAccessKey"]),
               aws.Credentials(reader["AccessKeyId"], reader["SecretAccessKey"]))
    aws.reset_clients()


@pytest.mark.parametrize("command", ["logs-from-archive", "audit", "status", "setup check"])
def test_s3s_refusal_is_one_line_naming_the_bucket(refused, command: str, tmp_path, capsys) -> None:
    endpoint, bucket, creds, _ = refused
    pem = tmp_path / "signing.pub"
    assert main(["keys", "signing-generate", "--private-key-file", str(tmp_path / "signing.pem"),
                 "--public-key-file", str(pem)]) == 0
    key_file = tmp_path / "master.key"
    assert main(["keys", "generate", "--output", str(key_file)]) == 0
    capsys.readouterr()
    argv = {
        "logs-from-archive": ["logs-from-archive", "--bucket", bucket, "--stack", STACK, "--app-id", "42",
                              "--key-file", str(key_file)],
        "audit": ["audit", "--bucket", bucket, "--stack", STACK, "--public-key-file", str(pem)],
        "status": ["status", "--bucket", bucket, "--stack", STACK, "--public-key-file", str(pem)],
        "setup check": ["setup", "check", "--bucket", bucket, "--stack-region", "us-east-1"],
    }[command]
    seen = Requests()
    with aws.credentials(creds), aws.observe("before-send.s3", seen):
        rc = main([*argv, "--expected-owner", OTHER, "--endpoint-url", endpoint])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err == (f"logarchive: error: bucket {bucket}: S3 refused access (AccessDenied): it is not owned by account "
                   f"{OTHER} (--expected-owner), or these credentials may not list it\n"), err
    assert seen.seen == [("GET", bucket, "", OTHER)]  # the owner check's listing; nothing more read


def test_the_customer_reader_policy_allows_the_owner_check(refused, tmp_path, capsys) -> None:
    endpoint, bucket, _, reader = refused
    key_file = tmp_path / "master.key"
    assert main(["keys", "generate", "--output", str(key_file)]) == 0
    capsys.readouterr()
    seen = Requests()
    with aws.credentials(reader), aws.observe("before-send.s3", seen):
        rc = main(["logs-from-archive", "--bucket", bucket, "--stack", STACK, "--app-id", "42",
                   "--key-file", str(key_file), "--expected-owner", OWNER, "--endpoint-url", endpoint])
    err = capsys.readouterr().err
    # The check passed under the policy; the (empty) bucket was listed, with the owner named.
    assert rc == 1 and err == "logarchive: error: No files found that matched all criteria\n", err
    assert len(seen.seen) > 1 and {c[3] for c in seen.seen} == {OWNER}, seen.seen

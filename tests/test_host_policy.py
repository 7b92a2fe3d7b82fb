"""The host policy (issue 18, finding 4): each Docker host may write only under its own
``<prefix>/<stack>/<host>/`` and read only its own ``archived/<prefix>/<stack>/<host>/`` markers.

Checked statically (the generated document) and enforced: a local AWS that evaluates IAM
(moto's ``INITIAL_NO_AUTH_ACTION_COUNT``: the first N requests set up, every later one is
authenticated and authorised), host-a's role assumed through STS, doing what its shipper does
in its own path and being refused in host-b's.
"""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib import cli
from chalicelib.devkit import local_aws
from chalicelib.setup import host_policy
from chalicelib.staged import parse_staged_key, staged_key

BUCKET, PREFIX, STACK = "prod-logarchive-staging", "staged", "prod"
CID = "ab" * 32


def _policy(host: str) -> dict:
    return host_policy.policy(stack=STACK, host=host, staging_bucket=BUCKET, staging_prefix=PREFIX)


def test_the_policy_names_only_the_hosts_own_path() -> None:
    doc = _policy("web-1")
    resources = sorted(r for s in doc["Statement"] for r in s["Resource"])
    assert resources == [
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:s3:::{BUCKET}/archived/staged/prod/web-1/*",
        f"arn:aws:s3:::{BUCKET}/quarantine/staged/prod/web-1/*",
        f"arn:aws:s3:::{BUCKET}/staged/prod/web-1/*",
    ]
    writes = [s for s in doc["Statement"] if "s3:PutObject" in s["Action"]]
    assert [s["Resource"] for s in writes] == [[f"arn:aws:s3:::{BUCKET}/staged/prod/web-1/*"]]
    assert not [a for s in doc["Statement"] for a in s["Action"] if "*" in a or a.startswith("s3:Delete")]
    assert not [s for s in doc["Statement"] if "Condition" in s]  # no evaluator can read it otherwise
    # what the shipper writes lies under it, and parses back to this host
    key = staged_key(PREFIX, STACK, "web-1", CID, 7, "cd" * 32, "identity")
    assert key.startswith("staged/prod/web-1/") and parse_staged_key(key, PREFIX).host == "web-1"
    assert host_policy.policy(stack=STACK, host="web-1", staging_bucket=BUCKET, staging_prefix="")[
        "Statement"][0]["Resource"] == [f"arn:aws:s3:::{BUCKET}/prod/web-1/*"]


@pytest.mark.parametrize("host", ["*", "web-?", "${aws:username}", "a/b", "", "-x", "web 1"])
def test_a_host_name_iam_would_read_as_a_pattern_is_refused(host: str, capsys) -> None:
    rc = cli.main(["setup", "host-policy", "--staging", f"s3://{BUCKET}/{PREFIX}", "--stack", STACK,
                   f"--host={host}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--host" in err, err


def test_role_names_fit_iam_and_differ_per_host(capsys) -> None:
    assert host_policy.role_name("prod", "web-1") == "prod-logarchive-ship-web-1"
    long_a, long_b = "h" * 60 + "a", "h" * 60 + "b"
    names = {host_policy.role_name("prod", long_a), host_policy.role_name("prod", long_b)}
    assert len(names) == 2 and all(len(n) <= 64 for n in names)
    assert cli.main(["setup", "host-policy", "--staging", f"s3://{BUCKET}/{PREFIX}", "--stack", STACK,
                     "--host", "web-1", "--role-name"]) == 0
    assert capsys.readouterr().out == "prod-logarchive-ship-web-1\n"
    assert cli.main(["setup", "host-policy", "--staging", f"s3://{BUCKET}/{PREFIX}", "--stack", STACK,
                     "--host", "web-1"]) == 0
    assert json.loads(capsys.readouterr().out) == _policy("web-1")


TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/ops"}, "Action": "sts:AssumeRole"}]})
OPS = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
SETUP = 12  # the requests below made before IAM is enforced


def _denied(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_under_iam_a_host_reaches_only_its_own_path(monkeypatch) -> None:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(SETUP))
    with local_aws.moto_server() as endpoint:
        cfg = Config(retries={"max_attempts": 1})
        setup = boto3.Session(aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1")
        s3, iam = setup.client("s3", endpoint_url=endpoint, config=cfg), setup.client("iam", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)  # 1
        arns = {}
        for host in ("host-a", "host-b"):  # 2-5
            arns[host] = iam.create_role(RoleName=host_policy.role_name(STACK, host),
                                         AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
            iam.put_role_policy(RoleName=host_policy.role_name(STACK, host), PolicyName="ship",
                                PolicyDocument=json.dumps(_policy(host)))
        iam.create_user(UserName="ops")  # 6
        iam.put_user_policy(UserName="ops", PolicyName="assume", PolicyDocument=OPS)  # 7
        ops_key = iam.create_access_key(UserName="ops")["AccessKey"]  # 8
        markers = {h: f"archived/{staged_key(PREFIX, STACK, h, CID, 1, 'ef' * 32, 'identity')}" for h in arns}
        for marker in markers.values():  # 9-10
            s3.put_object(Bucket=BUCKET, Key=marker, Body=b"")
        theirs = staged_key(PREFIX, STACK, "host-b", CID, 1, "ef" * 32, "identity")
        s3.put_object(Bucket=BUCKET, Key=theirs, Body=b"host-b's line\n")  # 11
        s3.list_buckets()  # 12: the last request before enforcement
        assert _denied(lambda: s3.list_buckets()) in ("InvalidAccessKeyId", "InvalidClientTokenId", "AccessDenied")

        ops = boto3.Session(aws_access_key_id=ops_key["AccessKeyId"],
                            aws_secret_access_key=ops_key["SecretAccessKey"], region_name="us-east-1")
        creds = ops.client("sts", endpoint_url=endpoint, config=cfg).assume_role(
            RoleArn=arns["host-a"], RoleSessionName="ship")["Credentials"]
        host_a = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                               aws_session_token=creds["SessionToken"], region_name="us-east-1"
                               ).client("s3", endpoint_url=endpoint, config=cfg)
        body = b"host-a's line\n"
        mine = staged_key(PREFIX, STACK, "host-a", CID, 1, hashlib.sha256(body).hexdigest(), "identity")
        # What its shipper does, in its own path: create, HEAD, HEAD its marker, a missing key is 404.
        host_a.put_object(Bucket=BUCKET, Key=mine, Body=body, IfNoneMatch="*")
        assert host_a.head_object(Bucket=BUCKET, Key=mine)["ContentLength"] == len(body)
        host_a.head_object(Bucket=BUCKET, Key=markers["host-a"])
        assert _denied(lambda: host_a.head_object(Bucket=BUCKET, Key=mine + ".missing")) == "404"
        host_a.list_multipart_uploads(Bucket=BUCKET, Prefix=mine)
        # Anywhere else: refused.
        forged = staged_key(PREFIX, STACK, "host-b", CID, 3, hashlib.sha256(body).hexdigest(), "identity")
        for key in (forged, staged_key(PREFIX, STACK, "host-a2", CID, 1, "00" * 32, "identity"),
                    staged_key(PREFIX, "other", "host-a", CID, 1, "00" * 32, "identity"),
                    f"{PREFIX}/{STACK}/x", f"archived/{mine}", "quarantine/x"):
            assert _denied(lambda k=key: host_a.put_object(Bucket=BUCKET, Key=k, Body=body)) == "AccessDenied", key
        assert _denied(lambda: host_a.head_object(Bucket=BUCKET, Key=markers["host-b"])) == "403"
        assert _denied(lambda: host_a.get_object(Bucket=BUCKET, Key=theirs)) == "AccessDenied"
        assert _denied(lambda: host_a.delete_object(Bucket=BUCKET, Key=theirs)) == "AccessDenied"
        assert _denied(lambda: host_a.delete_object(Bucket=BUCKET, Key=mine)) == "AccessDenied"

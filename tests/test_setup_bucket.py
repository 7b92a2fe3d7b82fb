"""``logarchive setup``: bucket policy, S3 Replication and customer bucket checks.

Every case runs the CLI against the local AWS (moto's server over HTTP). moto stores a
replication configuration but answers GetBucketReplication with a fixed Filter and
DeleteMarkerReplication, and does not replicate; so the configuration we send is also
captured with a botocore event hook on the real client.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.cli import main
from chalicelib.setup import bucket_policy

ROLE = "arn:aws:iam::111122223333:role/logarchive-prod-replication"
OTHER_ROLE = "arn:aws:iam::999988887777:role/someone-else"
# The seed's policy, verbatim but for the two placeholders.
SEED_POLICY = """{
  "Version": "2012-10-17",
  "Id": "Aptible log sync",
  "Statement": [
    {"Sid": "dest_objects", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::916150859591:role/s3-stack-log-replication"},
     "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ObjectOwnerOverrideToBucketOwner"],
     "Resource": "arn:aws:s3:::YOUR_BUCKET_NAME/*"},
    {"Sid": "dest_bucket", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::916150859591:role/s3-stack-log-replication"},
     "Action": ["s3:List*", "s3:GetBucketVersioning", "s3:PutBucketVersioning"],
     "Resource": "arn:aws:s3:::YOUR_BUCKET_NAME"}
  ]
}"""


def seed_policy(bucket: str, role: str = ROLE) -> dict:
    text = SEED_POLICY.replace("YOUR_BUCKET_NAME", bucket)
    return json.loads(text.replace("arn:aws:iam::916150859591:role/s3-stack-log-replication", role))


def s3():
    return boto3.client("s3")


# --- bucket-policy ---------------------------------------------------------------------------

def test_bucket_policy_is_the_seeds_narrowed_to_what_replication_uses(capsys) -> None:
    assert main(["setup", "bucket-policy", "--bucket", "cust-logs", "--role-arn", ROLE]) == 0
    printed = json.loads(capsys.readouterr().out)
    seed = seed_policy("cust-logs")
    # The seed's statements (principal, resources), each narrowed to the actions replication uses.
    for ours, theirs in zip(printed["Statement"], seed["Statement"], strict=True):
        assert {k: v for k, v in ours.items() if k != "Action"} == {k: v for k, v in theirs.items() if k != "Action"}
        assert set(ours["Action"]) < set(theirs["Action"])
    assert "YOUR_BUCKET_NAME" not in json.dumps(printed)


def test_bucket_policy_role_from_environment(capsys, monkeypatch) -> None:
    monkeypatch.setenv("LOGARCHIVE_REPLICATION_ROLE_ARN", ROLE)
    assert main(["setup", "bucket-policy", "--bucket", "b"]) == 0
    assert ROLE in capsys.readouterr().out


def test_bucket_policy_without_role_fails(capsys, monkeypatch) -> None:
    monkeypatch.delenv("LOGARCHIVE_REPLICATION_ROLE_ARN", raising=False)
    assert main(["setup", "bucket-policy", "--bucket", "b"]) == 2  # a usage error
    assert "--role-arn" in capsys.readouterr().err


# --- replication -----------------------------------------------------------------------------

@pytest.fixture
def sent(buckets) -> list[dict]:
    """ReplicationConfigurations the CLI sends, seen on the real (cached) client."""
    calls: list[dict] = []
    client = aws.client("s3")
    client.meta.events.register(
        "before-parameter-build.s3.PutBucketReplication",
        lambda params, **_: calls.append(json.loads(json.dumps(params["ReplicationConfiguration"]))),
    )
    return calls


def replicate(buckets, *extra: str) -> int:
    return main(["setup", "replication", "--source-bucket", buckets.archive,
                 "--dest-bucket", buckets.customer, "--role-arn", ROLE, *extra])


def stored_rules(bucket: str) -> list[dict]:
    return s3().get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"]


def test_replication_configures_v2_rule_with_owner_override(buckets, sent) -> None:
    assert replicate(buckets, "--dest-account", "444455556666", "--prefix", "teststack/shareable/") == 0
    config = s3().get_bucket_replication(Bucket=buckets.archive)["ReplicationConfiguration"]
    assert config["Role"] == ROLE
    [rule] = config["Rules"]
    assert rule["ID"] == f"logarchive-{buckets.customer}"
    assert rule["Status"] == "Enabled"
    assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{buckets.customer}"
    assert rule["Destination"]["Account"] == "444455556666"
    assert rule["Destination"]["AccessControlTranslation"] == {"Owner": "Destination"}
    [config_sent] = sent
    [rule_sent] = config_sent["Rules"]
    assert rule_sent["Filter"] == {"Prefix": "teststack/shareable/"}
    assert rule_sent["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert "Prefix" not in rule_sent  # V2 schema: the prefix lives in the Filter


def test_replication_without_dest_account_has_no_owner_override(buckets, sent) -> None:
    assert replicate(buckets) == 0
    [rule] = sent[0]["Rules"]
    assert "AccessControlTranslation" not in rule["Destination"]
    assert "Account" not in rule["Destination"]


def test_replication_dry_run_prints_and_changes_nothing(buckets, sent, capsys) -> None:
    assert replicate(buckets, "--dry-run", "--dest-account", "444455556666") == 0
    config = json.loads(capsys.readouterr().out)
    assert config["Role"] == ROLE
    assert config["Rules"][0]["Filter"] == {"Prefix": ""}
    assert config["Rules"][0]["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert sent == []
    with pytest.raises(ClientError, match="ReplicationConfigurationNotFound"):
        s3().get_bucket_replication(Bucket=buckets.archive)


def test_replication_is_idempotent_and_keeps_other_rules(buckets, sent, capsys) -> None:
    other = {"ID": "customer-own-rule", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "x/"},
             "DeleteMarkerReplication": {"Status": "Disabled"},
             "Destination": {"Bucket": f"arn:aws:s3:::{buckets.staging}"}}
    s3().put_bucket_replication(Bucket=buckets.archive,
                                ReplicationConfiguration={"Role": ROLE, "Rules": [other]})
    assert replicate(buckets, "--prefix", "a/") == 0
    assert replicate(buckets, "--prefix", "b/") == 0
    rules = stored_rules(buckets.archive)
    assert sorted(r["ID"] for r in rules) == ["customer-own-rule", f"logarchive-{buckets.customer}"]
    assert len({r["Priority"] for r in rules}) == 2
    ours = [r for r in sent[-1]["Rules"] if r["ID"].startswith("logarchive-")]
    assert [r["Filter"] for r in ours] == [{"Prefix": "b/"}]
    assert sent[-1]["Rules"][0]["ID"] == "customer-own-rule"


def test_replication_refuses_a_second_role(buckets, sent, capsys) -> None:
    other = {"ID": "theirs", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
             "DeleteMarkerReplication": {"Status": "Disabled"},
             "Destination": {"Bucket": f"arn:aws:s3:::{buckets.staging}"}}
    s3().put_bucket_replication(Bucket=buckets.archive,
                                ReplicationConfiguration={"Role": OTHER_ROLE, "Rules": [other]})
    assert replicate(buckets) == 1
    assert OTHER_ROLE in capsys.readouterr().err
    assert sent == []


@pytest.mark.parametrize("which", ["archive", "customer"])
def test_replication_needs_versioning_on_both_buckets(buckets, sent, capsys, which) -> None:
    bucket = getattr(buckets, which)
    s3().put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert replicate(buckets) == 1
    err = capsys.readouterr().err
    assert f"bucket {bucket} has versioning Suspended" in err
    assert sent == []


# --- check -----------------------------------------------------------------------------------

def ready_bucket(name: str, region: str = "us-east-1", role: str = ROLE) -> None:
    client = boto3.client("s3", region_name=region)
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=name, **kwargs)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(seed_policy(name, role)))
    client.put_object(Bucket=name, Key="teststack/shareable/v3/abc/apps-1/x.archived.gz", Body=b"x")


def run_check(capsys, bucket: str, *extra: str, region: str = "us-east-1") -> tuple[int, str]:
    rc = main(["setup", "check", "--bucket", bucket, "--stack-region", region, *extra])
    return rc, capsys.readouterr().out


def test_check_passes_on_a_ready_bucket(aws_endpoint, capsys) -> None:
    ready_bucket("cust-ok")
    rc, out = run_check(capsys, "cust-ok", "--role-arn", ROLE, "--stack", "teststack")
    assert rc == 0, out
    assert "FAIL" not in out
    assert "ready for log archives" in out


def test_check_passes_without_role_when_one_principal_has_everything(aws_endpoint, capsys) -> None:
    ready_bucket("cust-ok")
    rc, out = run_check(capsys, "cust-ok")
    assert rc == 0, out


def test_check_passes_in_another_region(aws_endpoint, capsys) -> None:
    ready_bucket("cust-eu", region="eu-west-1")
    rc, out = run_check(capsys, "cust-eu", "--role-arn", ROLE, region="eu-west-1")
    assert rc == 0, out


@pytest.mark.parametrize("status", ["Suspended", None])
def test_check_fails_without_versioning(aws_endpoint, capsys, status) -> None:
    if status:
        ready_bucket("cust-v")
        s3().put_bucket_versioning(Bucket="cust-v", VersioningConfiguration={"Status": status})
    else:
        s3().create_bucket(Bucket="cust-v")
        s3().put_bucket_policy(Bucket="cust-v", Policy=json.dumps(seed_policy("cust-v")))
    rc, out = run_check(capsys, "cust-v", "--role-arn", ROLE)
    assert rc == 1
    assert f"FAIL versioning: versioning is {status or 'never enabled'}" in out
    assert "click Edit under Bucket Versioning, choose Enable, and then Save Changes" in out
    assert "ok   policy" in out  # the other checks still ran


def test_check_fails_in_another_region(aws_endpoint, capsys) -> None:
    ready_bucket("cust-far", region="eu-west-1")
    rc, out = run_check(capsys, "cust-far", "--role-arn", ROLE, region="us-east-1")
    assert rc == 1
    assert "FAIL region: bucket is in eu-west-1, the stack is in us-east-1" in out
    assert "same region as your Stack" in out


def test_check_fails_on_foreign_objects(aws_endpoint, capsys) -> None:
    ready_bucket("cust-mixed")
    s3().put_object(Bucket="cust-mixed", Key="backups/db.sql", Body=b"x")
    rc, out = run_check(capsys, "cust-mixed", "--role-arn", ROLE)
    assert rc == 1
    assert "FAIL dedicated: 1 foreign key(s)" in out and "backups/db.sql" in out
    assert "This must be the sole purpose of your S3 bucket" in out


def test_check_sees_deleted_foreign_objects(aws_endpoint, capsys) -> None:
    ready_bucket("cust-deleted")
    s3().put_object(Bucket="cust-deleted", Key="notes.txt", Body=b"x")
    s3().delete_object(Bucket="cust-deleted", Key="notes.txt")
    rc, out = run_check(capsys, "cust-deleted", "--role-arn", ROLE)
    assert rc == 1
    assert "notes.txt" in out


def test_check_with_stack_rejects_other_stacks_keys(aws_endpoint, capsys) -> None:
    ready_bucket("cust-stacks")
    s3().put_object(Bucket="cust-stacks", Key="otherstack/shareable/v3/k", Body=b"x")
    assert run_check(capsys, "cust-stacks", "--role-arn", ROLE)[0] == 0
    rc, out = run_check(capsys, "cust-stacks", "--role-arn", ROLE, "--stack", "teststack")
    assert rc == 1 and "otherstack/shareable/v3/k" in out


def test_check_fails_without_policy(aws_endpoint, capsys) -> None:
    ready_bucket("cust-nopol")
    s3().delete_bucket_policy(Bucket="cust-nopol")
    rc, out = run_check(capsys, "cust-nopol", "--role-arn", ROLE)
    assert rc == 1
    assert "FAIL policy: the bucket has no bucket policy" in out
    assert f"logarchive setup bucket-policy --bucket cust-nopol --role-arn {ROLE}" in out


def put_policy(bucket: str, policy: dict) -> None:
    s3().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_check_fails_when_an_action_is_missing(aws_endpoint, capsys) -> None:
    ready_bucket("cust-partial")
    policy = seed_policy("cust-partial")
    policy["Statement"][0]["Action"].remove("s3:ObjectOwnerOverrideToBucketOwner")
    policy["Statement"][1]["Action"] = ["s3:List*"]
    put_policy("cust-partial", policy)
    rc, out = run_check(capsys, "cust-partial", "--role-arn", ROLE)
    assert rc == 1
    assert "s3:ObjectOwnerOverrideToBucketOwner on arn:aws:s3:::cust-partial/*" in out
    assert "s3:GetBucketVersioning on arn:aws:s3:::cust-partial" in out


def test_check_fails_when_policy_grants_another_role(aws_endpoint, capsys) -> None:
    ready_bucket("cust-other", role=OTHER_ROLE)
    rc, out = run_check(capsys, "cust-other", "--role-arn", ROLE)
    assert rc == 1 and f"the policy does not give {ROLE}" in out


def test_check_fails_when_resources_name_another_bucket(aws_endpoint, capsys) -> None:
    ready_bucket("cust-typo")
    put_policy("cust-typo", seed_policy("YOUR_BUCKET_NAME"))  # the seed's warning, ignored
    rc, out = run_check(capsys, "cust-typo", "--role-arn", ROLE)
    assert rc == 1 and "s3:ReplicateObject on arn:aws:s3:::cust-typo/*" in out


def test_check_honours_deny(aws_endpoint, capsys) -> None:
    ready_bucket("cust-deny")
    policy = seed_policy("cust-deny")
    policy["Statement"].append({"Sid": "no", "Effect": "Deny", "Principal": {"AWS": ROLE},
                                "Action": "s3:Replicate*", "Resource": "arn:aws:s3:::cust-deny/*"})
    put_policy("cust-deny", policy)
    rc, out = run_check(capsys, "cust-deny", "--role-arn", ROLE)
    assert rc == 1 and "s3:ReplicateObject" in out


def test_check_accepts_broader_grants(aws_endpoint, capsys) -> None:
    ready_bucket("cust-broad")
    put_policy("cust-broad", {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:*",
        "Resource": ["arn:aws:s3:::cust-broad", "arn:aws:s3:::cust-broad/*"]}]})
    rc, out = run_check(capsys, "cust-broad", "--role-arn", ROLE)
    assert rc == 0, out


def test_check_of_a_missing_bucket_says_it_does_not_exist(aws_endpoint, capsys) -> None:
    rc, out = run_check(capsys, "no-such-bucket", "--role-arn", ROLE)
    assert rc == 1
    assert "FAIL exists: bucket no-such-bucket does not exist" in out
    assert "cannot check" not in out


def test_conditional_statements_do_not_count_as_grants() -> None:
    policy = seed_policy("b")
    for st in policy["Statement"]:
        st["Condition"] = {"Bool": {"aws:SecureTransport": "true"}}
    assert len(bucket_policy.missing_grants(policy, "b", ROLE)) == 3
    assert bucket_policy.missing_grants(seed_policy("b"), "b", ROLE) == []


def test_our_policy_grants_only_what_replication_uses_and_no_wildcard() -> None:
    policy = bucket_policy.render("cust", ROLE)
    actions = [a for st in policy["Statement"] for a in st["Action"]]
    assert sorted(actions) == sorted(["s3:ReplicateObject", "s3:ObjectOwnerOverrideToBucketOwner",
                                      "s3:GetBucketVersioning"])
    assert not any("*" in a for a in actions)
    # Each action is justified in a sentence of OPERATIONS.md.
    from pathlib import Path

    ops = (Path(__file__).resolve().parents[1] / "docs" / "OPERATIONS.md").read_text()
    section = ops[ops.index("## 4. Customer bucket set-up"):ops.index("## 5. IAM summary")]
    for action in actions:
        assert f"`{action}`:" in section, action
    # The seed's older policy still passes (a superset of ours).
    assert bucket_policy.missing_grants(seed_policy("cust"), "cust", ROLE) == []

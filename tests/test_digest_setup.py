"""Deployment and customer set-up for digests: only the scheduler signs (IAM), workers only
record, the customer bucket takes the digests prefix (replication rule, bucket policy, check)."""

from __future__ import annotations

import json

import boto3
import pytest
from test_deployment_files import ENV, actions_on
from test_setup_bucket import ROLE, ready_bucket, run_check, seed_policy, sent  # noqa: F401 (fixture)

from chalicelib.cli import main
from chalicelib.setup import bucket_policy, iam
from chalicelib.setup.resources import FUNCTIONS, DeploymentConfigError, StageResources

SIGNING_KEY = "arn:aws:kms:eu-west-1:123456789012:key/signing"


def statements_with(policy: dict, action: str) -> list[dict]:
    return [st for st in policy["Statement"] if action in st["Action"]]


def test_only_the_scheduler_may_sign_and_workers_only_record() -> None:
    res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_SIGNING_KMS_KEY_ID": SIGNING_KEY})
    policies = {fn: iam.function_policy(res, fn) for fn in FUNCTIONS}
    signers = [fn for fn, p in policies.items() if actions_on(p, SIGNING_KEY)]
    assert signers == ["archive_scheduler"]
    assert actions_on(policies["archive_scheduler"], SIGNING_KEY) == {"kms:Sign", "kms:GetPublicKey"}
    # The records and the chain's state are items of the idempotency table, not bucket objects:
    # the worker may only create records of its stack; the scheduler reads and moves the chain.
    table = res.table_arn("idem")
    (record,) = [st for st in policies["archive_worker"]["Statement"] if st["Sid"] == "RecordForDigest"]
    assert (record["Action"], record["Resource"]) == (["dynamodb:PutItem"], [table])
    assert record["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["digest-record#s1#*"]}}
    assert actions_on(policies["archive_worker"], table) == {"dynamodb:PutItem"}
    (chain,) = [st for st in policies["archive_scheduler"]["Statement"] if st["Sid"] == "DigestChainState"]
    assert chain["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["digest-chain#s1"]}}
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:BatchWriteItem"} <= actions_on(
        policies["archive_scheduler"], table)
    for fn, policy in policies.items():  # nobody else writes the idempotency table's digest items
        if fn not in ("archive_scheduler", "archive_worker"):
            assert "digest-" not in json.dumps(policy), fn
    # Digests go where the worker writes archives directly: the archive bucket and each customer's.
    for bucket in ("arc", "cust-a", "cust-b"):
        assert actions_on(policies["archive_scheduler"], f"arn:aws:s3:::{bucket}/_logarchive/digests/s1/*") == {
            "s3:GetObject", "s3:PutObject"}
    assert actions_on(policies["archive_scheduler"], "arn:aws:s3:::arc/_logarchive/digest-staged/s1/*") == {
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert not any("pending-digest" in r or "digest-head" in r
                   for p in policies.values() for st in p["Statement"] for r in st["Resource"])
    for fn, policy in policies.items():  # nobody else touches the digests
        if fn != "archive_scheduler":
            assert not any("_logarchive/digest" in r for st in policy["Statement"] for r in st["Resource"]), fn


def test_a_signing_key_in_a_secret_or_parameter_is_read_by_the_scheduler_only() -> None:
    for setting, action in (("LOGARCHIVE_SIGNING_KEY_SECRET", "secretsmanager:GetSecretValue"),
                            ("LOGARCHIVE_SIGNING_KEY_PARAMETER", "ssm:GetParameter")):
        res = StageResources.from_env("t", {**ENV, setting: "logarchive/t/signing"})
        readers = {fn for fn in FUNCTIONS for st in statements_with(iam.function_policy(res, fn), action)
                   if any("signing" in r for r in st["Resource"])}
        assert readers == {"archive_scheduler"}, setting


def test_no_signing_key_no_digest_grants_and_a_bare_kms_id_is_refused() -> None:
    res = StageResources.from_env("t", ENV)
    for fn in FUNCTIONS:
        text = json.dumps(iam.function_policy(res, fn))
        assert "_logarchive" not in text and "kms:Sign" not in text
    with pytest.raises(DeploymentConfigError, match="LOGARCHIVE_SIGNING_KMS_KEY_ID must be a key ARN"):
        StageResources.from_env("t", {**ENV, "LOGARCHIVE_SIGNING_KMS_KEY_ID": "alias/signing"})


def test_replication_with_a_stack_adds_the_digests_rule(buckets, sent) -> None:  # noqa: F811
    """And the Kubernetes archives' rule (_k8s/<stack>/, issue 20)."""
    argv = ["setup", "replication", "--source-bucket", buckets.archive, "--dest-bucket", buckets.customer,
            "--role-arn", ROLE, "--stack", "teststack"]
    assert main(argv) == 0
    assert main(argv) == 0  # idempotent: the same three rules
    rules = {r["ID"]: r for r in sent[-1]["Rules"]}
    assert sorted(rules) == sorted([f"logarchive-{buckets.customer}", f"logarchive-digests-{buckets.customer}",
                                    f"logarchive-k8s-{buckets.customer}"])
    assert rules[f"logarchive-{buckets.customer}"]["Filter"] == {"Prefix": "teststack/shareable/"}
    assert rules[f"logarchive-k8s-{buckets.customer}"]["Filter"] == {"Prefix": "_k8s/teststack/"}
    assert rules[f"logarchive-digests-{buckets.customer}"]["Filter"] == {"Prefix": "_logarchive/digests/teststack/"}
    assert len({r["Priority"] for r in rules.values()}) == 3
    assert all(r["DeleteMarkerReplication"] == {"Status": "Disabled"} for r in rules.values())


def test_check_accepts_the_stacks_digests_and_nothing_else_reserved(aws_endpoint, capsys) -> None:
    ready_bucket("cust-digests")
    s3 = boto3.client("s3")
    s3.put_object(Bucket="cust-digests", Key="_logarchive/digests/teststack/2026/01/01/0000000001-x.json", Body=b"{}")
    rc, out = run_check(capsys, "cust-digests", "--role-arn", ROLE, "--stack", "teststack")
    assert rc == 0, out
    rc, out = run_check(capsys, "cust-digests", "--role-arn", ROLE)
    assert rc == 0, out
    # The sealer's own records and chain head never belong in a customer's bucket.
    s3.put_object(Bucket="cust-digests", Key="_logarchive/pending-digest/teststack/a-1.json", Body=b"{}")
    rc, out = run_check(capsys, "cust-digests", "--role-arn", ROLE, "--stack", "teststack")
    assert rc == 1 and "_logarchive/pending-digest/teststack/a-1.json" in out


def test_a_policy_scoped_to_the_stack_prefix_misses_the_digests() -> None:
    policy = seed_policy("b")
    policy["Statement"][0]["Resource"] = "arn:aws:s3:::b/teststack/*"
    missing = bucket_policy.missing_grants(policy, "b", ROLE)
    assert "s3:ReplicateObject on arn:aws:s3:::b/*" in missing
    assert bucket_policy.missing_grants(seed_policy("b"), "b", ROLE) == []

"""The deployment generator: policies and templates from a stage's environment variables."""

from __future__ import annotations

import json

import pytest

from chalicelib.errors import LogarchiveError
from chalicelib.settings import ReplicationMode, Settings
from chalicelib.setup import iam, templates
from chalicelib.setup.resources import FUNCTIONS, DeploymentConfigError, StageResources

ENV = {
    "LOGARCHIVE_STACK": "s1",
    "LOGARCHIVE_ACCOUNT_ID": "123456789012",
    "LOGARCHIVE_REGION": "eu-west-1",
    "LOGARCHIVE_STAGING_BUCKET": "stg",
    "LOGARCHIVE_STAGING_PREFIX": "staged/",
    "LOGARCHIVE_ARCHIVE_BUCKET": "arc",
    "LOGARCHIVE_REPLICATE_TO": "cust-a,cust-b",
    "LOGARCHIVE_WORK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/w",
    "LOGARCHIVE_RETRIEVAL_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/r",
    "LOGARCHIVE_IDEMPOTENCY_TABLE": "idem",
    "LOGARCHIVE_INDEX_TABLE": "idx",
    "LOGARCHIVE_JOBS_TABLE": "jobs",
    "LOGARCHIVE_RESULTS_BUCKET": "res",
    "LOGARCHIVE_KMS_KEY_ID": "arn:aws:kms:eu-west-1:123456789012:key/k1",
}


def actions_on(policy: dict, resource: str) -> set[str]:
    return {a for st in policy["Statement"] if resource in st["Resource"] for a in st["Action"]}


def test_kms_key_is_used_to_encrypt_by_the_worker_and_decrypt_by_retrieval() -> None:
    res = StageResources.from_env("t", ENV)
    key = ENV["LOGARCHIVE_KMS_KEY_ID"]
    assert actions_on(iam.function_policy(res, "archive_worker"), key) == {"kms:GenerateDataKey"}
    assert actions_on(iam.function_policy(res, "retrieval_worker"), key) == {"kms:Decrypt"}
    for fn in ("archive_scheduler", "index_archive", "api_handler"):
        assert actions_on(iam.function_policy(res, fn), key) == set()


def test_direct_mode_writes_every_destination_replication_mode_only_the_archive() -> None:
    direct = iam.function_policy(StageResources.from_env("t", ENV), "archive_worker")
    for bucket in ("arc", "cust-a", "cust-b"):
        assert "s3:PutObject" in actions_on(direct, f"arn:aws:s3:::{bucket}/s1/shareable/*")
    replicated = StageResources.from_env("t", {**ENV, "LOGARCHIVE_REPLICATION_MODE": "s3-replication"})
    policy = iam.function_policy(replicated, "archive_worker")
    assert actions_on(policy, "arn:aws:s3:::cust-a/s1/shareable/*") == set()
    role = templates.infra_resources(replicated)["ReplicationRole"]
    doc = role["Properties"]["Policies"][0]["PolicyDocument"]
    assert "s3:ReplicateObject" in actions_on(doc, "arn:aws:s3:::cust-b/*")
    assert role["Properties"]["RoleName"] == "logarchive-t-replication"
    assert replicated.replication_role_arn == "arn:aws:iam::123456789012:role/logarchive-t-replication"


def test_scheduler_may_sweep_abandoned_uploads_where_workers_write() -> None:
    """scheduler.run aborts day-old multipart uploads in the archive and direct destinations."""
    for mode, swept in (("direct", ("arc", "cust-a", "cust-b")), ("s3-replication", ("arc",))):
        res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_REPLICATION_MODE": mode})
        policy = iam.function_policy(res, "archive_scheduler")
        for bucket in swept:
            assert "s3:ListBucketMultipartUploads" in actions_on(policy, f"arn:aws:s3:::{bucket}")
            assert "s3:AbortMultipartUpload" in actions_on(policy, f"arn:aws:s3:::{bucket}/s1/shareable/*")


def test_indexer_reads_metadata_and_writes_the_index_only() -> None:
    policy = iam.function_policy(StageResources.from_env("t", ENV), "index_archive")
    assert actions_on(policy, "arn:aws:s3:::arc") == {"s3:ListBucket", "s3:ListBucketVersions"}
    assert actions_on(policy, "arn:aws:s3:::arc/s1/shareable/*") == {"s3:GetObject", "s3:GetObjectVersion"}
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/idx"
    # the head and items, the selector's years item (ADD), the deletion of schema-1 items
    assert actions_on(policy, table) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                         "dynamodb:BatchWriteItem"}


def test_queue_urls_and_default_bucket_names_derive_from_the_stages_account_and_region() -> None:
    env = {k: v for k, v in ENV.items() if not k.endswith(("_QUEUE_URL", "_BUCKET"))}
    env |= {"LOGARCHIVE_WORK_QUEUE": "w", "LOGARCHIVE_RETRIEVAL_QUEUE": "r",
            "LOGARCHIVE_REPLICATE_TO": "stand-in-{account}-{region},cust-b",
            "LOGARCHIVE_KMS_KEY_ID": "arn:aws:kms:{region}:{account}:key/k1"}
    res = StageResources.from_env("t", env)
    assert res.work_queue.url == "https://sqs.eu-west-1.amazonaws.com/123456789012/w"
    assert res.retrieval_queue.arn == "arn:aws:sqs:eu-west-1:123456789012:r"
    assert res.staging_bucket == "logarchive-s1-staging-123456789012-eu-west-1"
    assert res.archive_bucket == "logarchive-s1-archive-123456789012-eu-west-1"
    assert res.results_bucket == res.staging_bucket
    assert res.replicate_to == ("stand-in-123456789012-eu-west-1", "cust-b")
    s = Settings.from_env(env)  # the Lambdas derive the same names at run time
    assert (s.work_queue_url, s.staging_bucket, s.replicate_to) == (
        res.work_queue.url, res.staging_bucket, res.replicate_to)
    # Within S3's 63 characters for the longest region names; a stack too long is refused.
    longest = StageResources.from_env("t", {**env, "LOGARCHIVE_REGION": "ap-southeast-2"})
    assert max(len(longest.staging_bucket), len(longest.archive_bucket)) <= 63
    with pytest.raises(DeploymentConfigError, match="longer than S3's 63 characters"):
        StageResources.from_env("t", {**env, "LOGARCHIVE_STACK": "a-very-long-stack-name-indeed"})


def test_arns_come_from_the_stages_account_and_region() -> None:
    res = StageResources.from_env("t", ENV)
    text = json.dumps([iam.function_policy(res, fn) for fn in FUNCTIONS])
    assert "arn:aws:dynamodb:eu-west-1:123456789012:table/idem" in text
    assert "arn:aws:sqs:eu-west-1:123456789012:w" in text
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/logarchive-t-archive_worker" in text


def test_secret_and_parameter_arns() -> None:
    res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_KMS_KEY_ID": "",
                                        "LOGARCHIVE_KEYS_SECRET": "lk/keys",
                                        "LOGARCHIVE_KEYS_PARAMETER": "/lk/keys"})
    assert res.secret_arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lk/keys-??????"
    assert res.parameter_arn == "arn:aws:ssm:eu-west-1:123456789012:parameter/lk/keys"


@pytest.mark.parametrize("change, message", [
    ({"LOGARCHIVE_KMS_KEY_ID": ""}, "no key source"),
    ({"LOGARCHIVE_KMS_KEY_ID": "alias/mine"}, "must be a key ARN"),
    ({"LOGARCHIVE_WORK_QUEUE_URL": "logarchive-work"}, "not an SQS queue URL"),
    ({"LOGARCHIVE_INDEX_TABLE": ""}, "LOGARCHIVE_INDEX_TABLE is not set"),
    ({"LOGARCHIVE_REPLICATION_MODE": "both"}, "LOGARCHIVE_REPLICATION_MODE"),
    ({"LOGARCHIVE_COMPRESSION": "zstd"}, "LOGARCHIVE_COMPRESSION: compression 'zstd' is not one of fast, default, small"),
    ({"LOGARCHIVE_RETRIEVAL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/r"},
     "LOGARCHIVE_RETRIEVAL_QUEUE_URL is in 123456789012/us-east-1, the stage in 123456789012/eu-west-1"),
    ({"LOGARCHIVE_KMS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/k1"},
     "LOGARCHIVE_KMS_KEY_ID is in us-east-1, the stage in eu-west-1"),
    ({"LOGARCHIVE_REGION": ""}, "LOGARCHIVE_REGION is not set"),
    ({"LOGARCHIVE_REGION": "Europe"}, "LOGARCHIVE_REGION must be an AWS region"),
    ({"LOGARCHIVE_ACCOUNT_ID": "1234"}, "LOGARCHIVE_ACCOUNT_ID must be a 12-digit"),
    ({"LOGARCHIVE_ARCHIVE_MAX_CONCURRENCY": "1"}, "LOGARCHIVE_ARCHIVE_MAX_CONCURRENCY must be .* 2 to 1000"),
    ({"LOGARCHIVE_RETRIEVAL_MAX_CONCURRENCY": "ten"}, "LOGARCHIVE_RETRIEVAL_MAX_CONCURRENCY"),
    # read by the Lambdas' own reader (Settings.from_env): refused at deploy time, not at run time
    ({"LOGARCHIVE_WORKER_RESERVE_MS": "soon"}, "stage t: .LOGARCHIVE_WORKER_RESERVE_MS must be a number"),
])
def test_bad_settings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(DeploymentConfigError, match=message):
        StageResources.from_env("t", {**ENV, **change})


def test_worker_concurrency_caps_default_to_docs_scaling_and_follow_the_stage() -> None:
    res = StageResources.from_env("t", ENV)
    assert (res.archive_max_concurrency, res.retrieval_max_concurrency) == (25, 25)
    res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_ARCHIVE_MAX_CONCURRENCY": "40",
                                        "LOGARCHIVE_RETRIEVAL_MAX_CONCURRENCY": " 8 "})
    assert (res.archive_max_concurrency, res.retrieval_max_concurrency) == (40, 8)


def test_the_stage_is_read_as_the_lambdas_read_it() -> None:
    # One reader: the deploy-time view and the Lambdas' Settings agree field by field.
    env = {**ENV, "LOGARCHIVE_REPLICATE_TO": " a , b,", "LOGARCHIVE_REPLICATION_MODE": "s3-replication",
           "LOGARCHIVE_STAGING_PREFIX": " staged/ "}
    res, s = StageResources.from_env("t", env), Settings.from_env(env)
    assert (res.replicate_to, res.staging_prefix, res.results_prefix) == (("a", "b"), "staged/", "retrievals/")
    assert (res.replicate_to, res.staging_prefix, res.results_prefix) == (s.replicate_to, s.staging_prefix,
                                                                         s.results_prefix)
    assert res.replication_mode is s.replication_mode is ReplicationMode.S3_REPLICATION
    assert res.direct_destinations == s.direct_destinations == ()
    with pytest.raises(LogarchiveError, match=r"^\$LOGARCHIVE_REPLICATION_MODE must be one of direct, s3-"):
        Settings.from_env({**env, "LOGARCHIVE_REPLICATION_MODE": "both"})


def _project_copy(tmp_path):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / ".chalice", tmp_path / ".chalice")
    return tmp_path


def _cli(*argv: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "AWS_REGION"} | (env or {})
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", "setup", "deployment-files", *argv],
                          capture_output=True, text=True, env=environ)


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2"])
def test_any_region_no_us_east_1_left_in_any_generated_file(tmp_path, region: str) -> None:
    project = _project_copy(tmp_path)
    done = _cli("--project-dir", str(project), "--stage", "dev", "--stage", "prod",
                "--set-account", "444455556666", "--set-region", region, env={"AWS_REGION": region})
    assert done.returncode == 0, done.stderr
    files = sorted((project / ".chalice").glob("*.json"))
    assert len(files) == 15
    for path in files:
        text = path.read_text()
        assert "us-east-1" not in text, path.name
        assert "111122223333" not in text, path.name
    policy = (project / ".chalice" / "policy-prod-archive_worker.json").read_text()
    assert f"arn:aws:sqs:{region}:444455556666:logarchive-prod-work" in policy
    assert f"logarchive-prod-archive-444455556666-{region}" in policy
    assert _cli("--project-dir", str(project), "--check", env={"AWS_REGION": region}).returncode == 0


def test_aws_region_disagreeing_with_the_stage_is_refused_in_one_line(tmp_path) -> None:
    project = _project_copy(tmp_path)
    before = {p.name: p.read_text() for p in (project / ".chalice").glob("*.json")}
    (project / ".chalice" / "policy-dev-api_handler.json").unlink()
    done = _cli("--project-dir", str(project), "--stage", "dev", env={"AWS_REGION": "eu-west-1"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "stage dev is in us-east-1 (LOGARCHIVE_REGION) but AWS_REGION is eu-west-1" in done.stderr
    assert not (project / ".chalice" / "policy-dev-api_handler.json").exists()  # nothing written
    assert (project / ".chalice" / "config.json").read_text() == before["config.json"]
    # The same region (or none set) goes through.
    assert _cli("--project-dir", str(project), "--stage", "dev", env={"AWS_REGION": "us-east-1"}).returncode == 0


def test_replication_role_grants_on_the_destination_what_the_customer_policy_grants() -> None:
    """Checked statically: no replication runs locally (docs/OPERATIONS.md, "Checked locally")."""
    from chalicelib.setup import bucket_policy

    res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_REPLICATION_MODE": "s3-replication"})
    doc = iam.replication_role_policy(res)
    for bucket in res.replicate_to:
        assert actions_on(doc, f"arn:aws:s3:::{bucket}/*") == set(bucket_policy.OBJECT_ACTIONS)
    assert not any("*" in a for st in doc["Statement"] for a in st["Action"])

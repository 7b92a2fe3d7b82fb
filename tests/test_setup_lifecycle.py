"""``logarchive setup lifecycle`` and the lifecycle part of ``setup check``, on the local AWS."""

from __future__ import annotations

import json

import boto3
import pytest

from chalicelib.cli import main
from chalicelib.setup import lifecycle

BUCKET = "cust-retention"
OTHER_RULES = [
    {"ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    {"ID": "customer-own", "Status": "Enabled", "Filter": {"Prefix": "reports/"},
     "Expiration": {"Days": 10}},
]


def s3():
    return boto3.client("s3")


@pytest.fixture
def bucket(aws_endpoint) -> str:
    s3().create_bucket(Bucket=BUCKET)
    s3().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


def rules(name: str = BUCKET) -> list[dict]:
    return s3().get_bucket_lifecycle_configuration(Bucket=name)["Rules"]


def set_lifecycle(*extra: str, stack: str = "teststack", name: str = BUCKET) -> int:
    return main(["setup", "lifecycle", "--bucket", name, "--stack", stack, *extra])


def test_lifecycle_sets_one_rule_on_each_archive_prefix(bucket, capsys) -> None:
    """Docker's archives (<stack>/shareable/) and Kubernetes' (_k8s/<stack>/), the same plan."""
    rc = set_lifecycle("--transition-days", "30", "--storage-class", "DEEP_ARCHIVE", "--expire-days", "2555")
    out = capsys.readouterr().out
    assert rc == 0, out
    rule, k8s = rules()
    assert rule["ID"] == "logarchive-teststack-retention"
    assert rule["Filter"] == {"Prefix": "teststack/shareable/"}
    assert k8s["ID"] == "logarchive-teststack-k8s-retention"
    assert k8s["Filter"] == {"Prefix": "_k8s/teststack/"}
    for r in (rule, k8s):
        assert r["Transitions"] == [{"Days": 30, "StorageClass": "DEEP_ARCHIVE"}]
        assert r["Expiration"] == {"Days": 2555}
        assert r["NoncurrentVersionExpiration"] == {"NoncurrentDays": lifecycle.NONCURRENT_DAYS}
    assert "rules logarchive-teststack-retention and logarchive-teststack-k8s-retention set (2 rule(s) in all)" in out


def test_lifecycle_merges_with_other_rules_and_a_rerun_replaces_only_ours(bucket, capsys) -> None:
    s3().put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": OTHER_RULES})
    assert set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER") == 0
    assert set_lifecycle("--transition-days", "90", "--storage-class", "GLACIER", stack="otherstack") == 0
    assert set_lifecycle("--transition-days", "60", "--storage-class", "DEEP_ARCHIVE",
                         "--expire-days", "400") == 0
    by_id = {r["ID"]: r for r in rules()}
    assert set(by_id) == {"abort-incomplete-uploads", "customer-own", "logarchive-teststack-retention",
                          "logarchive-otherstack-retention", "logarchive-teststack-k8s-retention",
                          "logarchive-otherstack-k8s-retention"}
    assert by_id["customer-own"]["Expiration"] == {"Days": 10}
    assert by_id["logarchive-otherstack-retention"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    ours = by_id["logarchive-teststack-retention"]
    assert ours["Transitions"] == [{"Days": 60, "StorageClass": "DEEP_ARCHIVE"}]
    assert ours["Expiration"] == {"Days": 400}
    assert by_id["logarchive-teststack-k8s-retention"]["Expiration"] == {"Days": 400}
    assert "logarchive-teststack-k8s-retention set (6 rule(s) in all)" in capsys.readouterr().out


def test_lifecycle_dry_run_prints_the_merged_configuration_and_changes_nothing(bucket, capsys) -> None:
    s3().put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": OTHER_RULES})
    assert set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", "--dry-run") == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["ID"] for r in printed["Rules"]] == ["abort-incomplete-uploads", "customer-own",
                                                   "logarchive-teststack-retention",
                                                   "logarchive-teststack-k8s-retention"]
    assert [r["ID"] for r in rules()] == ["abort-incomplete-uploads", "customer-own"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transition-days", "10", "--storage-class", "STANDARD_IA"], "after 30 days at the earliest"),
        (["--transition-days", "30", "--storage-class", "GLACIER", "--expire-days", "30"],
         "must be later than --transition-days 30"),
        (["--transition-days", "30", "--storage-class", "GLACIER", "--expire-days", "365",
          "--retention-days", "1095"], "comes before the retention of 1095 days (--retention-days)"),
    ],
)
def test_lifecycle_refuses_a_bad_rule_in_one_line(bucket, capsys, args, message) -> None:
    assert set_lifecycle(*args) == 2  # options that contradict each other: a usage error
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    with pytest.raises(s3().exceptions.ClientError):
        rules()


def test_lifecycle_refuses_expiry_before_the_object_lock_default(aws_endpoint, capsys) -> None:
    s3().create_bucket(Bucket="cust-locked", ObjectLockEnabledForBucket=True)
    s3().put_object_lock_configuration(Bucket="cust-locked", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 730}}})
    rc = set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", "--expire-days", "365",
                       name="cust-locked")
    assert rc == 1
    assert "retention of 730 days (the bucket's Object Lock default)" in capsys.readouterr().err


def test_lifecycle_warns_of_early_deletion_fees(bucket, capsys) -> None:
    assert set_lifecycle("--transition-days", "30", "--storage-class", "DEEP_ARCHIVE", "--expire-days", "90") == 0
    assert "S3 bills 180 days there" in capsys.readouterr().err


def test_lifecycle_of_a_missing_bucket_is_one_line(aws_endpoint, capsys) -> None:
    rc = set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", name="no-such-bucket-here")
    err = capsys.readouterr().err
    assert rc == 1
    assert "no-such-bucket-here" in err and "NoSuchBucket" in err
    assert "Traceback" not in err


# --- setup check --------------------------------------------------------------------------------

def run_check(capsys, name: str, *extra: str) -> tuple[int, str]:
    rc = main(["setup", "check", "--bucket", name, "--stack-region", "us-east-1", "--stack", "teststack",
               *extra])
    return rc, capsys.readouterr().out


def warnings_of(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warn lifecycle:")]


def test_check_reports_the_rules_that_reach_the_stack(bucket, capsys) -> None:
    s3().put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": OTHER_RULES})
    set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", "--expire-days", "1095")
    set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", stack="otherstack")
    capsys.readouterr()
    _, out = run_check(capsys, bucket)
    [line] = [x for x in out.splitlines() if x.startswith("ok   lifecycle:")]
    assert "logarchive-teststack-retention (teststack/shareable/*: GLACIER after 30 days, expire after " \
           "1095 days" in line
    assert "abort-incomplete-uploads (whole bucket" in line
    assert "customer-own" not in line and "otherstack" not in line
    assert warnings_of(out) == []


def test_check_warns_when_expiry_comes_before_the_stated_retention(bucket, capsys) -> None:
    set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER", "--expire-days", "365")
    capsys.readouterr()
    rc, out = run_check(capsys, bucket, "--retention-days", "2555")
    warning, k8s_warning = warnings_of(out)  # one for each of our rules (Docker's, Kubernetes')
    assert "logarchive-teststack-retention expires archives after 365 days, before the retention of " \
           "2555 days (--retention-days)" in warning
    assert "logarchive-teststack-k8s-retention expires archives after 365 days" in k8s_warning
    assert "FAIL lifecycle" not in out  # a warning, not a failed check


def test_check_warns_when_object_lock_and_expiry_disagree(aws_endpoint, capsys) -> None:
    s3().create_bucket(Bucket="cust-locked", ObjectLockEnabledForBucket=True)
    s3().put_object_lock_configuration(Bucket="cust-locked", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 400}}})
    # Set behind setup lifecycle's back (it would refuse this rule).
    rule = lifecycle.build_rule(lifecycle.RetentionPlan("teststack", 30, "GLACIER", 200))
    s3().put_bucket_lifecycle_configuration(Bucket="cust-locked", LifecycleConfiguration={"Rules": [rule]})
    _, out = run_check(capsys, "cust-locked")
    assert any("expires archives after 200 days, before the retention of 400 days (the Object Lock default)"
               in w for w in warnings_of(out)), out
    _, out = run_check(capsys, "cust-locked", "--retention-days", "100")
    assert any("after 200 days but Object Lock keeps each version 400 days" in w for w in warnings_of(out)), out
    _, out = run_check(capsys, "cust-locked", "--retention-days", "1000")
    assert any("Object Lock keeps versions 400 days, less than the stated retention of 1000 days" in w
               for w in warnings_of(out)), out


def test_check_warns_when_a_rule_without_prefix_would_move_digests_to_glacier(bucket, capsys) -> None:
    s3().put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        *OTHER_RULES,
        {"ID": "everything-cold", "Status": "Enabled", "Filter": {},
         "Transitions": [{"Days": 60, "StorageClass": "DEEP_ARCHIVE"}]},
    ]})
    set_lifecycle("--transition-days", "30", "--storage-class", "GLACIER")
    capsys.readouterr()
    _, out = run_check(capsys, bucket)
    [warning] = warnings_of(out)
    assert "rule everything-cold has no prefix filter: it moves the digests under _logarchive/digests/ to " \
           "DEEP_ARCHIVE after 60 days" in warning


def test_review_treats_tag_filtered_rules_as_reaching_everything() -> None:
    rule = {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "a", "Value": "b"}},
            "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}
    report = lifecycle.review([rule], stack="teststack")
    assert report.touching == ["tagged (tag/size-filtered: GLACIER after 1 days)"]
    assert len(report.warnings) == 1 and "tagged has no prefix filter" in report.warnings[0]

"""``logarchive setup object-lock`` and the lock report of ``setup check``, against the local AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from chalicelib.cli import main

BUCKET = "locked-logs"
KEY = "teststack/shareable/v3/abc/apps-1/x.archived.gz"


def s3():
    return boto3.client("s3")


def versioned(name: str = BUCKET) -> None:
    s3().create_bucket(Bucket=name)
    s3().put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def lock(capsys, *extra: str) -> tuple[int, str, str]:
    rc = main(["setup", "object-lock", "--bucket", BUCKET, *extra])
    got = capsys.readouterr()
    return rc, got.out, got.err


def lock_check_line(capsys) -> tuple[int, str]:
    rc = main(["setup", "check", "--bucket", BUCKET, "--stack-region", "us-east-1", "--stack", "teststack"])
    out = capsys.readouterr().out
    return rc, next(line for line in out.splitlines() if "object lock:" in line)


def test_governance_default_retention_reaches_new_objects_and_check_reports_it(aws_endpoint, capsys) -> None:
    versioned()
    _, line = lock_check_line(capsys)
    assert line.startswith("ok   object lock: not enabled")

    rc, out, err = lock(capsys, "--mode", "governance", "--days", "30", "--dry-run")
    assert rc == 0 and err == ""
    assert '"Mode": "GOVERNANCE"' in out and '"Days": 30' in out
    _, line = lock_check_line(capsys)
    assert "not enabled" in line  # the dry run changed nothing

    rc, out, err = lock(capsys, "--mode", "governance", "--days", "30")
    assert rc == 0, err
    assert out.splitlines()[-1] == f"s3://{BUCKET}: Object Lock GOVERNANCE, default retention 30 days"
    s3().put_object(Bucket=BUCKET, Key=KEY, Body=b"x")
    head = s3().head_object(Bucket=BUCKET, Key=KEY)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    _, line = lock_check_line(capsys)
    assert line.startswith("ok   object lock: Object Lock GOVERNANCE, default retention 30 days; "
                           f"newest object {KEY}: GOVERNANCE until ")


def test_check_fails_when_the_newest_object_is_held_for_less(aws_endpoint, capsys) -> None:
    versioned()
    # (the local AWS enables Object Lock only on an empty bucket; AWS on any versioned one)
    assert lock(capsys, "--mode", "governance", "--days", "30")[0] == 0
    soon = datetime.now(UTC) + timedelta(days=1)
    s3().put_object(Bucket=BUCKET, Key=KEY, Body=b"x", ObjectLockMode="GOVERNANCE",
                    ObjectLockRetainUntilDate=soon)
    rc, line = lock_check_line(capsys)
    assert rc == 1
    assert line.startswith("FAIL object lock: ") and line.endswith("less than 30 days)")


def test_compliance_needs_yes(aws_endpoint, capsys) -> None:
    versioned()
    rc, out, err = lock(capsys, "--mode", "compliance", "--days", "7")
    assert rc == 2  # the help says it needs --yes: a usage error
    assert "cannot be undone: run again with --yes" in err and "root user" in out
    _, line = lock_check_line(capsys)
    assert "not enabled" in line
    rc, out, err = lock(capsys, "--mode", "compliance", "--days", "7", "--yes")
    assert rc == 0, err
    assert out.splitlines()[-1].endswith("Object Lock COMPLIANCE, default retention 7 days")
    # and nothing weaker afterwards
    rc, _, err = lock(capsys, "--mode", "governance", "--days", "7")
    assert rc == 1 and "refusing to set a weaker default" in err


def test_needs_versioning(aws_endpoint, capsys) -> None:
    s3().create_bucket(Bucket=BUCKET)
    rc, _, err = lock(capsys, "--mode", "governance", "--days", "1")
    assert rc == 1
    assert err.count("\n") == 1 and "Object Lock needs versioning enabled" in err

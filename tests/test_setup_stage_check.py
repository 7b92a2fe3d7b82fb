"""``logarchive setup check --stage S``: each bucket of the stage exists, is owned by the expected
account and is in the stage's region."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest

from chalicelib import aws
from chalicelib.cli import main

ACCOUNT = "123456789012"  # the local AWS's default account
OTHER = "210987654321"
REGION = "eu-west-1"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, aws_endpoint):
    shutil.copytree(ROOT / ".chalice", tmp_path / ".chalice")
    assert main(["setup", "deployment-files", "--project-dir", str(tmp_path), "--stage", "dev",
                 "--set-account", ACCOUNT, "--set-region", REGION]) == 0
    return tmp_path


def names() -> list[str]:
    return [f"logarchive-dev-{role}-{ACCOUNT}-{REGION}" for role in ("staging", "archive", "customer-logs")]


def create(bucket: str, s3=None, region: str = REGION) -> None:
    s3 = s3 or boto3.client("s3", region_name=region)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def check(capsys, project) -> tuple[int, str]:
    rc = main(["setup", "check", "--stage", "dev", "--project-dir", str(project)])
    return rc, capsys.readouterr().out


def test_every_bucket_of_the_stage_exists_owned_and_in_region(project, capsys) -> None:
    for b in names():
        create(b)
    rc, out = check(capsys, project)
    assert rc == 0, out
    for b in names():
        assert f"ok   {b}: exists, owned by {ACCOUNT}, in {REGION}" in out
    assert "all 3 bucket(s)" in out


def test_a_missing_bucket_and_one_in_another_region_fail(project, capsys) -> None:
    staging, archive, customer = names()
    create(staging)
    create(archive, region="us-west-2")
    rc, out = check(capsys, project)
    assert rc == 1
    assert f"FAIL {archive}: owned by {ACCOUNT}, but in us-west-2, the stage in {REGION}" in out
    assert f"FAIL {customer}: does not exist" in out
    assert "2 bucket(s) failed" in out


def test_a_name_another_account_holds_fails(project, capsys) -> None:
    """Bucket names are global: someone else may hold (or have taken first) the expected name."""
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="squatter", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    foreign = role.replace(ACCOUNT, OTHER)
    creds = boto3.client("sts").assume_role(RoleArn=foreign, RoleSessionName="squat")["Credentials"]
    other_s3 = boto3.client("s3", region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    staging, archive, customer = names()
    create(staging, other_s3)
    create(archive)
    create(customer)
    aws.reset_clients()
    rc, out = check(capsys, project)
    assert rc == 1
    assert f"FAIL {staging}: exists, but account {ACCOUNT} does not own it" in out

"""aws.client(): one cached client per service, endpoint, region and credentials."""

from __future__ import annotations

import boto3
import pytest

from chalicelib import aws


def _user(name: str) -> tuple[str, aws.Credentials]:
    iam = boto3.client("iam")
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return arn, aws.Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def test_each_credentials_get_their_own_client(aws_endpoint: str) -> None:
    first_arn, first = _user("first-function")
    second_arn, second = _user("second-function")
    with aws.credentials(first):
        assert aws.client("sts").get_caller_identity()["Arn"] == first_arn
    with aws.credentials(second):
        # Before the credentials were part of the cache key, this was the first user's client.
        assert aws.client("sts").get_caller_identity()["Arn"] == second_arn
    with aws.credentials(first):
        assert aws.client("sts").get_caller_identity()["Arn"] == first_arn
    # Outside any block: the environment's credentials, not the last block's.
    assert aws.client("sts").get_caller_identity()["Arn"] not in (first_arn, second_arn)


def test_environment_credentials_are_part_of_the_key(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    arn, creds = _user("from-environment")
    before = aws.client("sts").get_caller_identity()["Arn"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_key)
    assert aws.client("sts").get_caller_identity()["Arn"] == arn != before


def test_credentials_never_print_their_secret() -> None:
    creds = aws.Credentials("AKIAEXAMPLE", "very-secret", "session-token")
    assert "very-secret" not in repr(creds) and "session-token" not in repr(creds)

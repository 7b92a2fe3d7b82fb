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


def test_parallel_index_reads_keep_the_callers_credentials(aws_endpoint: str) -> None:
    """The index store reads hours in a thread pool: each read signs with the caller's
    credentials (aws.credentials), not the process environment's."""
    from datetime import UTC, datetime

    from chalicelib.devkit import local_stack
    from chalicelib.index import IndexStore, Selector

    local_stack.create_table("creds-index")
    _, creds = _user("index-reader")
    signed: list[str] = []

    def record(request, **_) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        signed.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

    with aws.credentials(creds), aws.observe("before-send.dynamodb", record):
        IndexStore("creds-index").query(Selector("s", "apps", "42"), datetime(2022, 1, 1, tzinfo=UTC),
                                        datetime(2022, 1, 1, 12, tzinfo=UTC))
    assert len(signed) > 1 and set(signed) == {creds.access_key}

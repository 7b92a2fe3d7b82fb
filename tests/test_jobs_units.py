"""Pure units of jobs/ and the shared pieces it uses: messages, index positions, AWS error codes."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib import awserrors
from chalicelib.index.store import OldPosition, Position
from chalicelib.jobs import messages
from chalicelib.jobs.messages import BadMessage, Plan, Scan

J, A = "0123456789abcdef" * 2, "fedcba9876543210" * 2
C_POS = Position("C", "C#2022-01-01T12#2022-01-01T12:30:00.000000Z#" + A)
S_POS = Position("2022", "S#2022-01-01T12:00:00.000000Z#" + A)


def test_messages_keep_the_wire_format_of_the_dict_messages() -> None:
    # Exactly the bodies the dict-based code sent: messages in flight survive a deploy.
    assert Plan(J).to_body() == '{"type":"plan","job_id":"' + J + '","after":null}'
    assert Scan(J, A).to_body() == '{"type":"scan","job_id":"' + J + '","archive_id":"' + A + '"}'
    assert json.loads(Plan(J, S_POS).to_body())["after"] == {"v": 2, "p": "2022", "k": S_POS.sk}


@pytest.mark.parametrize("msg", [Plan(J), Plan(J, C_POS), Plan(J, S_POS), Scan(J, A)])
def test_messages_round_trip(msg) -> None:
    assert messages.from_body(msg.to_body()) == msg


@pytest.mark.parametrize("body, error", [
    ({"type": "plan", "job_id": "nothex"}, "malformed ids"),
    ({"type": "scan", "job_id": J, "archive_id": A.upper()}, "malformed ids"),
    ({"type": "scan", "job_id": J}, "malformed ids"),
    ({"type": "reap", "job_id": J}, "unknown type 'reap'"),
    ({"job_id": J}, "unknown type None"),
])
def test_bad_messages_are_refused_in_one_line(body, error) -> None:
    with pytest.raises(BadMessage, match=error):
        messages.from_body(json.dumps(body))


def test_a_bad_position_in_a_plan_message_is_refused() -> None:
    with pytest.raises(ValueError):
        messages.from_body(json.dumps({"type": "plan", "job_id": J, "after": {"v": 2, "p": "2022", "k": "X#"}}))


def test_a_plan_message_of_the_old_index_schema_plans_again_from_the_start() -> None:
    old = {"type": "plan", "job_id": J, "after": {"h": "2022-01-01T12", "s": "S", "k": "S#x"}}
    assert messages.from_body(json.dumps(old)) == Plan(J, None)
    with pytest.raises(OldPosition, match="earlier version of the index"):
        Position.from_token(old["after"])


def test_positions_round_trip_through_tokens() -> None:
    for p in (C_POS, S_POS):
        assert Position.from_token(p.to_token()) == p
    assert Position.from_token(None) is None and Position.from_token({}) is None


@pytest.mark.parametrize("token", [
    {"v": 2, "p": "Q", "k": "S#x"},  # unknown part
    {"v": 2, "p": "2022", "k": "C#x"},  # sort key of another part
    {"v": 2, "p": "C", "k": 5},
    {"v": 3, "p": "2022", "k": "S#x"},
    {"p": "2022", "k": "S#x"},
])
def test_malformed_position_tokens_are_refused(token) -> None:
    with pytest.raises(ValueError):
        Position.from_token(token)


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")


def test_aws_error_vocabulary() -> None:
    for code in ("404", "NoSuchKey", "NoSuchVersion", "NotFound"):
        assert awserrors.is_not_found(_client_error(code))
    assert not awserrors.is_not_found(_client_error("AccessDenied"))
    assert awserrors.is_precondition_failed(_client_error("PreconditionFailed"))
    assert awserrors.is_precondition_failed(_client_error("412"))
    assert awserrors.is_conditional_check_failed(_client_error("ConditionalCheckFailedException"))
    assert awserrors.is_transaction_canceled(_client_error("TransactionCanceledException"))
    assert not awserrors.is_transaction_canceled(_client_error("ConditionalCheckFailedException"))
    # no code: empty, and the label falls back to the exception's class
    timeout = ReadTimeoutError(endpoint_url="http://x")
    assert awserrors.error_code(timeout) == "" and awserrors.error_label(timeout) == "ReadTimeoutError"
    assert awserrors.error_code(ValueError("x")) == "" and not awserrors.is_not_found(ValueError("x"))
    assert awserrors.error_label(_client_error("SlowDown")) == "SlowDown"

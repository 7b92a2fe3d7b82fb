"""The local SQS event source: rounds, redelivery of failures, fan-out, what is left behind."""

from __future__ import annotations

import uuid

import boto3
import pytest

from chalicelib.sqs_pump import pump


@pytest.fixture
def queue(aws_endpoint: str) -> tuple[object, str]:
    sqs = boto3.client("sqs")
    return sqs, sqs.create_queue(QueueName=f"pump-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def _visible(sqs, url: str) -> list[str]:
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    return sorted(m["Body"] for m in msgs)


def test_failures_are_redelivered_in_later_rounds_and_successes_deleted(queue) -> None:
    sqs, url = queue
    for body in ("a", "b", "flaky"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    seen: list[list[str]] = []
    flaky_deliveries = 0

    def handle(records: list[dict]) -> list[str]:
        nonlocal flaky_deliveries
        seen.append(sorted(r["body"] for r in records))
        assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"].endswith(url.rsplit("/", 1)[-1])
                   for r in records)
        flaky = [r["messageId"] for r in records if r["body"] == "flaky"]
        flaky_deliveries += len(flaky)
        return flaky if flaky_deliveries < 3 else []  # fails its first two deliveries

    result = pump(sqs, url, handle, attempts=3)
    assert result.failed == set() and result.deliveries == 5
    assert [b for batch in seen for b in batch].count("flaky") == 3  # one delivery per round
    assert _visible(sqs, url) == []


def test_a_message_out_of_attempts_stays_queued_visible_or_hidden(queue) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody="bad")
    result = pump(sqs, url, lambda records: [r["messageId"] for r in records], attempts=2, release_failed=False)
    assert result.deliveries == 2 and len(result.failed) == 1
    assert _visible(sqs, url) == []  # hidden for the rest of the run
    sqs.send_message(QueueUrl=url, MessageBody="worse")
    result = pump(sqs, url, lambda records: [r["messageId"] for r in records], attempts=1)
    assert result.deliveries == 1 and len(result.failed) == 1
    assert _visible(sqs, url) == ["worse"]  # released, as after the visibility timeout


def test_messages_sent_by_the_handler_are_delivered_in_the_same_run(queue) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody="plan")
    bodies: list[str] = []

    def handle(records: list[dict]) -> list[str]:
        for r in records:
            bodies.append(r["body"])
            if r["body"] == "plan":
                for i in range(12):
                    sqs.send_message(QueueUrl=url, MessageBody=f"scan{i}")
        return []

    assert pump(sqs, url, handle).deliveries == 13
    assert sorted(bodies) == sorted(["plan", *(f"scan{i}" for i in range(12))])

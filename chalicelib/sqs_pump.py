"""Lambda's SQS event source, played locally: the one pump every local run and test uses.

``pump`` receives the queue's messages in batches of up to 10, hands them to ``handle`` as
the records Lambda would send, deletes what succeeded and makes what failed (the ids
``handle`` returns, as in ``batchItemFailures``) visible again for the next round. Each round
delivers every message at most once; failures are held invisible until the round ends, so a
round never sees its own failures again. Messages a handler sends meanwhile (a fan-out) are
delivered in the same round.

Used by ``logarchive archive --once --queue-url`` (so it lives outside ``devkit``), by the
devkit's local stack and by the tests. No Lambda imports it: in AWS the event source does this.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

BATCH = 10  # Lambda's default batch size for SQS, and receive_message's maximum
RECEIVE_COUNT = "ApproximateReceiveCount"
Handler = Callable[[list[dict[str, Any]]], Collection[str]]  # records -> ids of the failed ones


def queue_arn(sqs: Any, queue_url: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` from a queue URL (``…/<account>/<name>``)."""
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{sqs.meta.region_name}:{account}:{name}"


def records(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``Records`` of the SQS event Lambda would send for ``messages``."""
    arn = queue_arn(sqs, queue_url)
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": m.get("Attributes", {}).get(RECEIVE_COUNT, "1")},
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": sqs.meta.region_name,
        }
        for m in messages
    ]


@dataclass
class Pumped:
    deliveries: int = 0  # messages handed to the handler, redeliveries included
    failed: set[str] = field(default_factory=set)  # ids that failed their last delivery (still queued)


def pump(sqs: Any, queue_url: str, handle: Handler, *, attempts: int = 1, visibility_timeout: int = 300,
         release_failed: bool = True) -> Pumped:
    """Deliver the queue until it is empty or every message left failed ``attempts`` times.

    A message that failed its last attempt stays in the queue (where a redrive policy would
    move it to the dead-letter queue): visible again with ``release_failed``, as after
    Lambda's visibility timeout; else hidden for ``visibility_timeout`` seconds, so that this
    run does not see it again.
    """
    result = Pumped()
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        failed: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=0,
                VisibilityTimeout=visibility_timeout, AttributeNames=[RECEIVE_COUNT],
            ).get("Messages", [])
            if not messages:
                break
            result.deliveries += len(messages)
            bad = set(handle(records(sqs, queue_url, messages)))
            done = [m for m in messages if m["MessageId"] not in bad]
            if done:
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            failed.extend(m for m in messages if m["MessageId"] in bad)
        result.failed = {m["MessageId"] for m in failed}
        if not failed or (attempt == attempts and not release_failed):
            break
        for m in failed:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"],
                                          VisibilityTimeout=0)
    return result

"""The retrieval queue's messages: ``Plan`` (page through the index) and ``Scan`` (one archive).

Wire format (JSON bodies; unchanged, so messages in flight survive a deploy):
``{"type": "plan", "job_id": <32 hex>, "after": <index position token> | null}`` and
``{"type": "scan", "job_id": <32 hex>, "archive_id": <32 hex>}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .. import aws
from ..errors import LogarchiveError
from ..index.store import OldPosition, Position

_HEX32 = re.compile(r"^[0-9a-f]{32}\Z")
SQS_BATCH = 10


class BadMessage(LogarchiveError):
    """A body that is not a retrieval message (malformed ids, unknown type)."""


def _valid_id(x: Any) -> bool:
    return isinstance(x, str) and bool(_HEX32.match(x))


@dataclass(frozen=True)
class Plan:
    job_id: str
    after: Position | None = None

    def to_body(self) -> str:
        after = None if self.after is None else self.after.to_token()
        return _dumps({"type": "plan", "job_id": self.job_id, "after": after})


@dataclass(frozen=True)
class Scan:
    job_id: str
    archive_id: str

    def to_body(self) -> str:
        return _dumps({"type": "scan", "job_id": self.job_id, "archive_id": self.archive_id})


Message = Plan | Scan


def from_body(text: str) -> Message:
    """Parse and validate one body. A malformed position raises ``ValueError``/``KeyError``
    (the message fails as it did before the types existed)."""
    body = json.loads(text)
    kind = body.get("type")
    ids = [body.get("job_id"), *([body.get("archive_id")] if kind == "scan" else [])]
    if not all(_valid_id(x) for x in ids):
        raise BadMessage("retrieval message with malformed ids")
    if kind == "plan":
        try:
            after = Position.from_token(body.get("after"))
        except OldPosition:
            # Sent before the index schema changed: plan the job again from the start (tasks
            # already recorded are found again and counted once, as for a replayed page).
            after = None
        return Plan(body["job_id"], after)
    if kind == "scan":
        return Scan(body["job_id"], body["archive_id"])
    raise BadMessage(f"retrieval message of unknown type {kind!r}")


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def send(queue_url: str, messages: list[Message]) -> None:
    """Send in batches of ten; any message SQS refuses fails the step (its message comes back)."""
    sqs = aws.client("sqs")
    for i in range(0, len(messages), SQS_BATCH):
        batch = messages[i : i + SQS_BATCH]
        resp = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "MessageBody": m.to_body()} for n, m in enumerate(batch)],
        )
        if resp.get("Failed"):
            raise LogarchiveError(f"queue {queue_url}: {len(resp['Failed'])} messages not sent")

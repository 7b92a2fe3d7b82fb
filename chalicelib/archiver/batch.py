"""One SQS batch: partial batch failure reporting and the Lambda's remaining time.

Records are taken one at a time; before each, the remaining time must cover a pessimistic
estimate for that object (``Worker.needed_ms``), otherwise it and every record after it are
reported in ``batchItemFailures`` untouched, and SQS delivers them again (to this or another
worker). A record that fails is reported alone; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .. import telemetry
from .messages import Job
from .worker import Outcome, Status, Worker

log = logging.getLogger(__name__)


def handle_batch(
    records: Iterable[Mapping[str, Any]], context: Any, worker: Worker, outcomes: list[Outcome] | None = None
) -> dict[str, list[dict[str, str]]]:
    """Process SQS records; returns ``{"batchItemFailures": [...]}`` for the Lambda response."""
    records = list(records)
    failures: list[str] = []
    for i, rec in enumerate(records):
        message_id = rec["messageId"]
        try:
            job = Job.from_body(rec["body"])
        except Exception as exc:
            log.error("message %s: %s", message_id, exc)
            telemetry.count("ArchiveFailures")
            failures.append(message_id)
            continue
        if context is not None and context.get_remaining_time_in_millis() < worker.needed_ms(job.size):
            rest = [r["messageId"] for r in records[i:]]
            log.warning("%d record(s) left for redelivery: %.0f ms remain", len(rest),
                        context.get_remaining_time_in_millis())
            telemetry.count("ArchiveDeferred", len(rest))
            failures.extend(rest)
            break
        try:
            outcome = worker.archive(job)
        except Exception as exc:
            # One line, no traceback: boto/codec errors never hold key bytes, but keep it terse.
            log.error("%s: not archived this time (%s: %s)", job.name, type(exc).__name__, str(exc)[:300])
            telemetry.count("ArchiveFailures")
            failures.append(message_id)
            continue
        record(outcome)
        if outcomes is not None:
            outcomes.append(outcome)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}


def record(outcome: Outcome) -> None:
    if outcome.status in (Status.ARCHIVED, Status.ALREADY_ARCHIVED):
        telemetry.count("ObjectsArchived")
        telemetry.add_bytes("BytesIn", outcome.bytes_in)
        telemetry.add_bytes("BytesOut", outcome.bytes_out)
        if outcome.lag_seconds is not None:
            telemetry.add_seconds("ArchiveLag", outcome.lag_seconds)
        if outcome.status is Status.ALREADY_ARCHIVED:
            telemetry.count("ObjectsAlreadyArchived")
        log.info("%s: %s as %s (%d → %d bytes)", outcome.job.name, outcome.status.value,
                 outcome.archive_key, outcome.bytes_in, outcome.bytes_out)
    elif outcome.status is Status.QUARANTINED:
        telemetry.count("ObjectsQuarantined")
    elif outcome.status is Status.EXPLAINED:
        telemetry.count("ObjectsExplained")
        log.info("%s: %s", outcome.job.name, outcome.reason)
    else:  # GONE or SUPERSEDED: a duplicate delivery or a re-staged key, nothing to archive
        telemetry.count("ObjectsGone" if outcome.status is Status.GONE else "ObjectsSuperseded")
        log.info("%s: %s", outcome.job.name, outcome.status.value)

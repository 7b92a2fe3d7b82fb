"""The scheduler: list staged segments, fan out one work item per staged object version.

Runs at minute 30 of every hour. Scale comes from SQS + Lambda concurrency: the scheduler only
lists and sends (about 1,000 objects a second), the workers do the bytes. It also aborts
multipart uploads abandoned by crashed workers (older than a day) and, in ``s3-replication``
mode, checks the replication of recent archive objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .. import telemetry
from ..awserrors import error_label
from ..settings import ReplicationMode
from ..staged import is_reserved
from . import s3io
from .lease import Leases
from .messages import Job
from .replication import ReplicationReport, check_pending

log = logging.getLogger(__name__)
ABANDONED_UPLOAD_AGE = timedelta(days=1)


class Sender(Protocol):
    def send(self, jobs: list[Job]) -> list[Job]:
        """Send work items; returns the ones that could not be sent."""


class SqsSender:
    def __init__(self, sqs: Any, queue_url: str):
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, jobs: list[Job]) -> list[Job]:
        failed: list[Job] = []
        for i in range(0, len(jobs), 10):
            chunk = jobs[i:i + 10]
            try:
                resp = self.sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "MessageBody": j.to_body()} for n, j in enumerate(chunk)],
                )
            except Exception as exc:
                log.error("SQS send of %d items failed: %s", len(chunk),
                          error_label(exc))
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(f["Id"])] for f in resp.get("Failed", []))
        return failed


class ListSender:
    """In-process hand-off (``logarchive archive --once``): the same message bodies, in a list."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, jobs: list[Job]) -> list[Job]:
        self.bodies.extend(j.to_body() for j in jobs)
        return []


@dataclass
class ScheduleReport:
    listed: int = 0
    scheduled: int = 0
    in_flight: int = 0
    send_failed: int = 0
    staged_bytes: int = 0
    oldest_age_seconds: float = 0.0
    aborted_uploads: int = 0
    stopped_early: bool = False
    replication: ReplicationReport | None = field(default=None)


def _acquire(leases: Leases, job: Job) -> bool:
    try:
        return leases.acquire(job)
    except Exception as exc:
        # Availability over de-duplication: the worker is idempotent, a duplicate costs only work.
        log.warning("%s: lease not taken (%s); sending anyway", job.name,
                    error_label(exc))
        return True


def run(
    settings: Any,
    sender: Sender,
    *,
    s3: Any,
    leases: Leases | None = None,
    keep_going: Callable[[], bool] | None = None,
    now: datetime | None = None,
    tmpdir: str | None = None,
) -> ScheduleReport:
    now = now or datetime.now(UTC)
    report = ScheduleReport()
    destinations = settings.direct_destinations
    for bucket in (settings.archive_bucket, *destinations):
        try:
            report.aborted_uploads += s3io.abort_uploads(s3, bucket, older_than=ABANDONED_UPLOAD_AGE)
        except Exception as exc:  # the bucket's AbortIncompleteMultipartUpload rule is the backstop
            log.warning("s3://%s: sweep of abandoned uploads failed (%s)", bucket,
                        error_label(exc))
    pending: list[Job] = []

    def flush() -> None:
        failed = sender.send(pending)
        report.scheduled += len(pending) - len(failed)
        report.send_failed += len(failed)
        for job in failed:
            if leases is not None:
                try:
                    leases.release(job)  # so the next run sends it instead of waiting out the lease
                except Exception:
                    log.warning("%s: lease not released; it expires by itself", job.name)
        pending.clear()

    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.staging_bucket, Prefix=settings.staging_prefix):
        if keep_going is not None and not keep_going():
            report.stopped_early = True
            break
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if is_reserved(key) or (key.endswith("/") and obj["Size"] == 0):
                continue
            report.listed += 1
            report.staged_bytes += obj["Size"]
            age = (now - obj["LastModified"]).total_seconds()
            report.oldest_age_seconds = max(report.oldest_age_seconds, age)
            job = Job(bucket=settings.staging_bucket, key=key, etag=obj["ETag"], size=obj["Size"])
            if leases is not None and not _acquire(leases, job):
                report.in_flight += 1
                continue
            pending.append(job)
            if len(pending) >= 10:
                flush()
    flush()
    if settings.replication_mode == ReplicationMode.S3_REPLICATION:
        report.replication = check_pending(s3, settings, now=now, tmpdir=tmpdir, keep_going=keep_going)
    telemetry.count("StagedObjects", report.listed)
    telemetry.count("ObjectsScheduled", report.scheduled)
    telemetry.count("ObjectsInFlight", report.in_flight)
    telemetry.count("ScheduleFailures", report.send_failed)
    telemetry.add_bytes("StagedBytes", report.staged_bytes)
    telemetry.add_seconds("StagedOldestAge", report.oldest_age_seconds)
    log.info("scheduled %d of %d staged objects (%d in flight, %d not sent)", report.scheduled, report.listed,
             report.in_flight, report.send_failed)
    return report

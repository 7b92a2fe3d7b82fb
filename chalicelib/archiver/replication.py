"""Getting archive objects into the customer's bucket(s): ``direct`` and ``s3-replication``.

``direct``: the worker writes the very bytes and metadata of the archive object to every
``replicate_to`` bucket with a conditional create and verifies each copy (S3-compatible stores
without replication, and the embedded local AWS).

``s3-replication``: S3 Replication copies the archive bucket; the worker leaves a marker
``replication-pending/<archive key>`` in the staging bucket, and the scheduler HEADs each marked
archive object: ``COMPLETED`` → marker removed; ``FAILED`` (S3 never retries those by itself) or
still ``PENDING`` after ``replication_pending_seconds`` → reported (log + metric) and re-driven.

Re-drive is a direct conditional copy to each destination, not a copy-in-place: copying in
place would add a second version to the archive bucket (and S3 Batch Replication is a job per
manifest, too heavy for an hourly check). If S3 later delivers a PENDING object after all, the
destination holds a replica version beside ours: both decrypt to the same bytes. moto stores a
replication configuration but neither replicates nor reports ``ReplicationStatus``; tests
drive FAILED through a botocore hook on the real client's HeadObject response.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from ..awserrors import error_label, is_precondition_failed
from ..errors import LogarchiveError
from ..settings import Settings
from ..staged import PENDING_PREFIX
from . import s3io

log = logging.getLogger(__name__)


class ReplicationConflict(LogarchiveError):
    """A destination already holds other bytes under an archive key."""


def replicate_file(
    s3: Any, key: str, fh: BinaryIO, size: int, metadata: Mapping[str, str],
    destinations: Iterable[str], part_size: int, sums: s3io.Checksums | None = None,
) -> None:
    sha, nbytes = metadata["logarchive-sha256"], int(metadata["logarchive-bytes"])
    for bucket in destinations:
        s3io.create_once(s3, bucket, key, fh, size=size, metadata=metadata, part_size=part_size, sums=sums)
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get("logarchive-sha256") != sha:
            raise ReplicationConflict(f"s3://{bucket}/{key}: holds other bytes than the archive object")
        s3io.verify_archive(head, name=f"s3://{bucket}/{key}", sha256=sha, raw_bytes=nbytes)


def replicate_object(
    s3: Any, source_bucket: str, key: str, destinations: Iterable[str], part_size: int,
    tmpdir: str | None = None,
) -> None:
    """Copy an existing archive object (bytes and metadata) to every destination lacking it."""
    todo = []
    head = s3.head_object(Bucket=source_bucket, Key=key)
    metadata = head.get("Metadata", {})
    for bucket in destinations:
        found = s3io.head_or_none(s3, bucket, key)
        if found is None:
            todo.append(bucket)
        elif found.get("Metadata", {}).get("logarchive-sha256") != metadata.get("logarchive-sha256"):
            raise ReplicationConflict(f"s3://{bucket}/{key}: holds other bytes than the archive object")
    if not todo:
        return
    with tempfile.TemporaryFile(dir=tmpdir) as fh:
        resp = s3.get_object(Bucket=source_bucket, Key=key, IfMatch=head["ETag"])
        for chunk in resp["Body"].iter_chunks(1 << 20):
            fh.write(chunk)
        size = fh.tell()
        if size != head["ContentLength"]:
            raise LogarchiveError(f"s3://{source_bucket}/{key}: read {size} of {head['ContentLength']} bytes")
        replicate_file(s3, key, fh, size, metadata, todo, part_size)


def mark_pending(s3: Any, settings: Settings, key: str) -> None:
    """Remember ``key`` for the scheduler's replication check (idempotent)."""
    try:
        s3.put_object(
            Bucket=settings.staging_bucket, Key=PENDING_PREFIX + key, Body=b"", IfNoneMatch="*",
            Metadata={"logarchive-archive-bucket": settings.archive_bucket},
        )
    except Exception as exc:
        if not is_precondition_failed(exc):
            raise


@dataclass
class ReplicationReport:
    checked: int = 0
    completed: int = 0
    failed: int = 0
    stalled: int = 0
    redriven: int = 0
    missing: int = 0
    errors: int = 0


def check_pending(
    s3: Any, settings: Settings, *, now: datetime | None = None, tmpdir: str | None = None,
    keep_going: Any = None,
) -> ReplicationReport:
    """The scheduler's replication check over the pending markers (s3-replication mode)."""
    from .. import telemetry

    now = now or datetime.now(UTC)
    report = ReplicationReport()
    max_pending = timedelta(seconds=settings.replication_pending_seconds)
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.staging_bucket, Prefix=PENDING_PREFIX):
        for obj in page.get("Contents", []):
            if keep_going is not None and not keep_going():
                return report
            marker = obj["Key"]
            key = marker[len(PENDING_PREFIX):]
            report.checked += 1
            try:
                _check_one(s3, settings, marker, key, now - obj["LastModified"], max_pending, report, tmpdir)
            except Exception as exc:
                report.errors += 1
                log.error("replication check of s3://%s/%s failed: %s", settings.archive_bucket, key,
                          error_label(exc))
    telemetry.count("ReplicationFailed", report.failed)
    telemetry.count("ReplicationStalled", report.stalled)
    telemetry.count("ReplicationRedriven", report.redriven)
    return report


def _check_one(
    s3: Any, settings: Settings, marker: str, key: str, age: timedelta, max_pending: timedelta,
    report: ReplicationReport, tmpdir: str | None,
) -> None:
    head = s3io.head_or_none(s3, settings.archive_bucket, key)
    if head is None:
        report.missing += 1
        log.error("s3://%s/%s: archive object is gone; nothing to replicate", settings.archive_bucket, key)
        s3.delete_object(Bucket=settings.staging_bucket, Key=marker)
        return
    status = head.get("ReplicationStatus")
    if status == "COMPLETED":
        report.completed += 1
        s3.delete_object(Bucket=settings.staging_bucket, Key=marker)
        return
    if status == "FAILED":
        report.failed += 1
        log.error("s3://%s/%s: replication FAILED; re-driving", settings.archive_bucket, key)
    elif age > max_pending:
        report.stalled += 1
        log.error("s3://%s/%s: replication %s for %s; re-driving", settings.archive_bucket, key,
                  status or "not reported", str(age).split(".")[0])
    else:
        return  # still within the time S3 Replication may take
    if not settings.replicate_to:
        log.error("s3://%s/%s: cannot re-drive: LOGARCHIVE_REPLICATE_TO is empty",
                  settings.archive_bucket, key)
        return
    replicate_object(s3, settings.archive_bucket, key, settings.replicate_to,
                     settings.part_size_mb * 1024 * 1024, tmpdir)
    report.redriven += 1
    s3.delete_object(Bucket=settings.staging_bucket, Key=marker)

"""The indexer: S3 events (notification or EventBridge) -> index entries, from key and HEAD only.

Events are treated as *triggers*, not as the truth: for each record the indexer reads the
object's current state (HEAD; on 404 the version listing of that one key) and writes that
state, guarded by the event's sequencer. Replays, duplicates and out-of-order delivery
therefore converge on what S3 holds. The object body is never read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from .. import aws, layout
from ..awserrors import is_not_found
from ..errors import LayoutError, LogarchiveError
from . import schema
from .schema import Entry
from .store import IndexStore

log = logging.getLogger(__name__)
META = "logarchive-"
# S3's EventBridge events the index_archive function receives. The first three change what the
# index records; S3 sends a storage class change (a lifecycle transition) without a new version.
OBJECT_CREATED, OBJECT_DELETED = "Object Created", "Object Deleted"
STORAGE_CLASS_CHANGED = "Object Storage Class Changed"
RESTORE_COMPLETED = "Object Restore Completed"  # resumes retrieval jobs waiting for the archive
INDEXER_EVENTS = (OBJECT_CREATED, OBJECT_DELETED, STORAGE_CLASS_CHANGED, RESTORE_COMPLETED)


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    sequencer: str
    detail_type: str = ""  # EventBridge's; "" for S3 notification records


def parse_event(event: dict[str, Any]) -> list[ObjectEvent]:
    """Records of an S3 notification (``Records``) or one EventBridge ``aws.s3`` event."""
    out = []
    if "Records" in event:
        for rec in event["Records"]:
            s3 = rec.get("s3") or {}
            obj = s3.get("object") or {}
            if "key" in obj and "bucket" in s3:
                out.append(
                    ObjectEvent(s3["bucket"]["name"], unquote_plus(obj["key"]), obj.get("sequencer", ""))
                )
    elif event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        detail = event["detail"]
        obj = detail.get("object") or {}
        if "key" in obj:
            # EventBridge keys are URL-encoded like notifications; archive keys never hold % or +.
            out.append(
                ObjectEvent(detail["bucket"]["name"], unquote_plus(obj["key"]), obj.get("sequencer", ""),
                            str(event.get("detail-type") or ""))
            )
    return out


def _int(v: str | None) -> int:
    try:
        return int(v or 0)
    except ValueError:
        return 0


def _meta_time(v: str | None) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def entry_from_head(
    bucket: str, key: str, parsed: layout.ArchiveKey, head: dict[str, Any] | None, *, state: str, seq: str
) -> Entry:
    """The index entry of one archive from its key and (when it still exists) its HEAD."""
    meta = {k.lower(): v for k, v in ((head or {}).get("Metadata") or {}).items()}
    first = _meta_time(meta.get(META + "first-time")) or parsed.start or parsed.uploaded_at
    last = _meta_time(meta.get(META + "last-time")) or parsed.end or first
    if first is None or last is None:
        raise LayoutError(f"{key}: no time in the key or the metadata")
    if last < first:
        first, last = last, first
    return Entry(
        archive_id=schema.archive_id_of(key),
        stack=parsed.stack,
        kind=parsed.kind,
        resource_id=parsed.resource_id or "",
        service_id=parsed.service_id or "",
        container_id=parsed.container_id,
        first=first,
        last=last,
        key_id=parsed.key_id,
        bucket=bucket,
        key=key,
        version_id=(head or {}).get("VersionId") or "",
        etag=((head or {}).get("ETag") or "").strip('"'),
        size=int((head or {}).get("ContentLength") or 0),
        raw_bytes=_int(meta.get(META + "bytes")),
        lines=_int(meta.get(META + "lines")),
        sha256=meta.get(META + "sha256", ""),
        host=meta.get(META + "host", ""),
        container_name=meta.get(META + "container-name", ""),
        rotation=parsed.rotation or 0,
        schema=parsed.schema,
        state=state,
        storage_class=(head or {}).get("StorageClass") or "STANDARD",
        seq=seq,
        indexed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        pod_name=parsed.pod_name or "",
        source_format="cri" if parsed.kind == layout.K8S else "docker",
    )


def _head(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return s3.head_object(**kwargs)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def _newest_data_version(s3: Any, bucket: str, key: str) -> str | None:
    """The newest non-delete-marker version of exactly ``key``, if any is left."""
    paginator = s3.get_paginator("list_object_versions")
    best: tuple[datetime, str] | None = None
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for v in page.get("Versions", []):
            if v["Key"] == key and (best is None or v["LastModified"] > best[0]):
                best = (v["LastModified"], v["VersionId"])
    return best[1] if best else None


def current_entry(s3: Any, bucket: str, key: str, *, seq: str) -> Entry | None:
    """What S3 holds now under ``key`` as an entry; None if ``key`` is not an archive key."""
    try:
        parsed = layout.parse(key)
    except LayoutError as exc:
        log.info("not indexed: %s", exc)
        return None
    head = _head(s3, bucket, key)
    if head is not None:
        return entry_from_head(bucket, key, parsed, head, state="live", seq=seq)
    version = _newest_data_version(s3, bucket, key)
    if version is not None:  # a delete marker hides the data, which is still there
        head = _head(s3, bucket, key, version)
        return entry_from_head(bucket, key, parsed, head, state="deleted", seq=seq)
    entry = entry_from_head(bucket, key, parsed, None, state="removed", seq=seq)
    entry.expires_at = int(datetime.now(UTC).timestamp()) + 30 * 86400
    return entry


class Indexer:
    """Indexes objects of one archive bucket (``bucket=None``: any) for one stack (or any)."""

    def __init__(
        self, store: IndexStore, *, bucket: str | None = None, stack: str | None = None, s3: Any = None
    ) -> None:
        self.store, self.bucket, self.stack = store, bucket, stack
        self._s3 = s3

    @property
    def s3(self) -> Any:
        return self._s3 or aws.client("s3")

    def index_object(self, bucket: str, key: str, sequencer: str = "", *, in_place: bool = False) -> str:
        """``in_place``: the event changed the object without a new version (a storage class
        change), so it may carry no sequencer: the current state is written with the sequencer
        the index already holds, which passes the guard without outranking a newer event."""
        if self.bucket and bucket != self.bucket:
            log.warning("ignored: event for bucket %s, indexer serves %s", bucket, self.bucket)
            return "ignored"
        seq = schema.norm_seq(sequencer)
        if in_place:
            try:
                held = self.store.get(layout.parse(key).stack, schema.archive_id_of(key))
            except LayoutError:
                held = None
            if held is not None:
                seq = max(seq, held.seq)
        entry = current_entry(self.s3, bucket, key, seq=seq)
        if entry is None:
            return "skipped"
        if self.stack and entry.stack != self.stack:
            log.warning("ignored: %s belongs to stack %s, not %s", key, entry.stack, self.stack)
            return "ignored"
        outcome = self.store.apply(entry)
        log.info("indexed %s: %s (%s)", key, outcome, entry.archive_id)
        return outcome

    def handle_event(self, event: dict[str, Any]) -> list[str]:
        """One S3 notification or EventBridge event; raises (so Lambda retries) on AWS errors."""
        return [
            self.index_object(r.bucket, r.key, r.sequencer, in_place=r.detail_type == STORAGE_CLASS_CHANGED)
            for r in parse_event(event)
        ]

    def backfill(self, *, prefix: str = "") -> Iterator[tuple[str, str]]:
        """Index every key of the bucket under ``prefix``: yields (key, outcome); one bad object
        is reported as ``error: ...`` and the rest are still indexed."""
        if not self.bucket:
            raise ValueError("backfill needs a bucket")
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                try:
                    yield obj["Key"], self.index_object(self.bucket, obj["Key"], "")
                except LogarchiveError as exc:
                    yield obj["Key"], f"error: {exc}"

"""The worker: one staged segment in, one verified archive object (per destination) out.

Per work item:
  GET the staged version → (gunzip if ``logarchive-encoding: gzip``) → ``codec.seal`` (the
  ``LOGARCHIVE_COMPRESSION`` preset, members compressed on every CPU the Lambda has) into a
  temporary file (bounded memory; the envelope is complete only at the end, and S3 metadata is
  fixed at upload) → conditional create of the v3 key in the archive bucket → HEAD-verify →
  ``direct`` mode: the same bytes and metadata to every ``replicate_to`` bucket, verified;
  ``s3-replication`` mode: a marker for the scheduler's replication check → ``archived/<staged
  key>`` (the archive key in its metadata, for a shipper that lost its record of the PUT) →
  delete exactly the staged version that was archived. Bad input is quarantined, never dropped,
  never retried forever.

Exactly once: see ``chalicelib/archiver/__init__.py``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, BinaryIO

from .. import aws
from ..archive_object import envelope_fields
from ..awserrors import is_not_found, is_precondition_failed
from ..codec import CHUNK, gunzip, seal
from ..crilog import time_span
from ..digest import (
    EVENT_ABANDONED,
    EVENT_CUT_BACK,
    EVENT_QUARANTINED,
    SOURCE_CRI,
    SOURCE_DOCKER,
    ArchiveEntry,
    ExplainedEvent,
    envelope_sha256,
    same_s3_checksum,
)
from ..dockerlog import TimeSpan
from ..errors import IntegrityError, LayoutError, LogarchiveError
from ..keyring import Keyring
from ..layout import ArchiveKey
from ..settings import ReplicationMode, Settings
from ..staged import (
    CUT_FROM_META,
    EVENT_META,
    EVENT_REASON_META,
    QUARANTINE_PREFIX,
    StagedMeta,
    fmt_time,
    metadata_value,
    parse_staged_key,
    path_disagreement,
)
from . import s3io
from .digest_table import DigestTable, require_table
from .messages import Job
from .metadata import archive_metadata, ascii_value
from .prefetch import read_ahead
from .quarantine import quarantine
from .replication import mark_pending, replicate_file, replicate_object

log = logging.getLogger(__name__)
MAX_VARIANTS = 100


class Status(StrEnum):
    ARCHIVED = "archived"  # this run created the archive object
    ALREADY_ARCHIVED = "already-archived"  # an earlier (crashed or duplicate) run had created it
    GONE = "gone"  # the staged version no longer exists: someone finished it
    SUPERSEDED = "superseded"  # the staged key now holds other bytes; that version gets its own item
    QUARANTINED = "quarantined"
    EXPLAINED = "explained"  # an explanation of a gap (no bytes): recorded for the digest, unstaged


@dataclass
class Outcome:
    status: Status
    job: Job
    archive_key: str | None = None
    bytes_in: int = 0  # raw log bytes
    bytes_out: int = 0  # archive object bytes (per copy)
    lag_seconds: float | None = None  # last log line -> archived
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: read+seal, upload, copies, delete


class _Phases:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._t
        self._t = now


class BadStagedObject(LogarchiveError):
    """The staged object cannot be archived as it is: it goes to quarantine."""


def _source(meta: StagedMeta) -> dict[str, Any]:
    """A digest entry's or event's ``source_format`` and ``k8s`` (docs/AUDIT.md, digest v2)."""
    if meta.k8s is None:
        return {"source_format": SOURCE_DOCKER, "k8s": None}
    return {"source_format": SOURCE_CRI, "k8s": meta.k8s.to_dict()}


class Worker:
    def __init__(self, settings: Settings, keyring: Keyring, *, s3: Any = None, tmpdir: str | None = None):
        self.settings = settings
        self.keyring = keyring
        self.s3 = s3 if s3 is not None else aws.client("s3")
        self.tmpdir = tmpdir
        self.part_size = settings.part_size_mb * 1024 * 1024
        self._tables: dict[str, DigestTable] = {}

    def digest_table(self, stack: str) -> DigestTable:
        """Where this worker's records for the stack's next digest go (the idempotency table)."""
        if stack not in self._tables:
            self._tables[stack] = DigestTable(aws.client("dynamodb"), require_table(self.settings), stack)
        return self._tables[stack]

    def needed_ms(self, size: int) -> float:
        """A pessimistic time budget for one object: reserve + size at the minimum throughput."""
        return self.settings.worker_reserve_ms + size / (self.settings.worker_min_mb_per_s * 1e6) * 1000

    # -- one work item --------------------------------------------------------------------
    def archive(self, job: Job) -> Outcome:
        s3 = self.s3
        get: dict[str, Any] = {"Bucket": job.bucket, "Key": job.key}
        if job.version_id:
            get["VersionId"] = job.version_id
        else:
            get["IfMatch"] = job.etag
        try:
            resp = s3.get_object(**get)
        except Exception as exc:
            if is_not_found(exc):
                return Outcome(Status.GONE, job)
            if is_precondition_failed(exc):
                # Overwritten since it was listed. In a versioned bucket the listed bytes are
                # still there as a noncurrent version: archive that one, by version id.
                version_id = s3io.find_version(s3, job.bucket, job.key, job.etag)
                if version_id is None:
                    return Outcome(Status.SUPERSEDED, job)
                return self.archive(replace(job, version_id=version_id))
            raise
        version_id = resp.get("VersionId") or job.version_id
        etag = resp.get("ETag", job.etag)
        exact = replace(job, etag=etag, version_id=version_id, size=resp.get("ContentLength", job.size))
        raw_meta = resp.get("Metadata", {})
        try:
            if raw_meta.get(EVENT_META) == "abandoned" and resp.get("ContentLength", 0) == 0:
                resp["Body"].close()
                return self._explain(exact, raw_meta)
            return self._archive_body(exact, resp, raw_meta)
        except BadStagedObject as exc:
            resp["Body"].close()
            self._record_quarantine(exact, raw_meta, str(exc))
            dest = quarantine(s3, exact, raw_meta, str(exc))
            return Outcome(Status.QUARANTINED, exact, archive_key=dest, reason=str(exc))

    def _trusted(self, job: Job, raw_meta: dict[str, str]) -> StagedMeta:
        """The staged metadata, checked against the key's path, which it must not contradict:
        host, container, segment and stack are the path's (each host may write only under its
        own ``<prefix>/<stack>/<host>/``, docs/SHIPPER.md), so no shipper writes into another
        host's history by naming its container in metadata."""
        meta = StagedMeta.parse(raw_meta)
        if meta.problem:
            raise BadStagedObject(f"bad metadata: {meta.problem}")
        path = parse_staged_key(job.key, self.settings.staging_prefix)
        if path is None:
            where = self.settings.staging_prefix.strip("/") or "the bucket's root"
            raise BadStagedObject(
                f"key is not <stack>/<host>/<container>/<segment:08d>-<sha256[:16]>.log[.gz] under {where}")
        why = path_disagreement(path, meta)
        if why:
            raise BadStagedObject(f"metadata disagrees with the key's path: {why}")
        if self.settings.stack and path.stack != self.settings.stack:
            raise BadStagedObject(f"staged for stack {path.stack!r}, not {self.settings.stack!r}")
        return replace(meta, stack=path.stack, host=metadata_value(path.host), container_id=path.container,
                       segment=path.segment)

    def _archive_body(self, job: Job, resp: dict, raw_meta: dict[str, str]) -> Outcome:
        meta = self._trusted(job, raw_meta)
        if resp.get("ContentLength", 0) == 0:
            raise BadStagedObject("empty object (zero bytes)")
        stack = meta.stack
        warnings: list[str] = []
        clock = _Phases()
        with tempfile.TemporaryFile(dir=self.tmpdir) as fh:
            # identity: the staged bytes are the log bytes, whose sha256 seal computes anyway
            staged_digest = hashlib.sha256() if meta.encoding == "gzip" else None
            span = time_span(meta.source_format)
            got = [0]  # staged bytes read
            try:
                sealed = seal(
                    self._plain_blocks(resp["Body"], meta.encoding, staged_digest, job.name, got),
                    fh, self.keyring, compression=self.settings.compression, on_plaintext=span.feed,
                )
            except IntegrityError as exc:  # codec.gunzip reports any gzip damage as one
                raise BadStagedObject(f"gzip stream is damaged ({ascii_value(str(exc), 80)})") from None
            span.close()
            clock.lap("read+seal")
            if got[0] != job.size:  # a short read is a transport fault: retry, do not judge the bytes
                raise LogarchiveError(f"{job.name}: read {got[0]} of {job.size} bytes")
            staged_sha = staged_digest.hexdigest() if staged_digest else sealed.plaintext_sha256
            if meta.sha256 is None:
                warnings.append("no logarchive-sha256: bytes archived unverified")
            elif meta.sha256 != staged_sha:
                raise BadStagedObject(
                    f"sha256 mismatch: metadata {meta.sha256[:16]}…, bytes {staged_sha[:16]}…"
                )
            if sealed.plaintext_bytes == 0:
                raise BadStagedObject("no log bytes after gunzip")
            first, last = span.first, span.last
            if first is None or last is None:
                if meta.first_time is None or meta.last_time is None:
                    raise BadStagedObject(f"no line has a time ({span.lines} lines) and no times in metadata")
                first, last = meta.first_time, meta.last_time
                warnings.append("no line has a time: key uses the staged metadata times")
            else:
                warnings.extend(self._compare(meta, span))
            if span.untimed_lines:
                warnings.append(f"{span.untimed_lines} of {span.lines} lines have no time (kept byte-exact)")
            try:  # what the layout cannot name would be archived unreadable: quarantine it
                base = ArchiveKey(
                    stack=stack, key_id=self.keyring.encrypting_key_id, kind=meta.kind,
                    resource_id=meta.resource_id, service_id=meta.service_id, container_id=meta.container_id,
                    rotation=meta.segment, start=first, end=last,
                    pod_name=meta.k8s.pod_name if meta.k8s else None,
                )
                base.key()
            except LayoutError as exc:
                raise BadStagedObject(f"segment {meta.segment} has no archive key: {exc}") from None
            metadata = archive_metadata(
                sealed, key_id=self.keyring.encrypting_key_id, first=first, last=last, lines=span.lines,
                host=meta.host, container_name=meta.container_name, segment=meta.segment, source=job.key,
                cut_from=meta.cut_from, k8s=meta.k8s, byte_start=meta.byte_start, byte_end=meta.byte_end,
                source_head=meta.source_head,
            )
            sums = s3io.file_checksums(fh, sealed.ciphertext_bytes, self.part_size)
            key, created, head = self._place(
                base, meta.segment or 0, fh, sealed.ciphertext_bytes, metadata, sums)
            warnings.extend(self._same_number(base, key, meta))
            clock.lap("upload+verify")
            self._replicate(key, created, fh, sealed.ciphertext_bytes, metadata, sums)
            clock.lap("replicate")
            if self.settings.digests:
                # Durable before the staged version goes: the sealer folds it into the next digest.
                # The envelope hash is of what S3 kept (an earlier attempt's object, on a retry).
                entry = ArchiveEntry(
                    key=key, **self._stored(key, created, head, sums),
                    raw_sha256=sealed.plaintext_sha256, raw_bytes=sealed.plaintext_bytes, lines=span.lines,
                    key_id=self.keyring.encrypting_key_id, container_id=meta.container_id,
                    host=ascii_value(meta.host), source=job.key, segment=meta.segment,
                    byte_start=meta.byte_start, byte_end=meta.byte_end,
                    first_time=fmt_time(first), last_time=fmt_time(last), **_source(meta),
                    envelope_sha256=envelope_sha256(envelope_fields(
                        self.s3, self.settings.archive_bucket, key, head.get("Metadata", {}))),
                )
                self.digest_table(stack).record_archive(entry, fmt_time(datetime.now(UTC)))
                self._record_cut_back(entry, head.get("Metadata", {}), stack)
        for w in warnings:
            log.warning("%s: %s", job.name, w)
        # The marker first: a shipper that staged this key but did not record it finds it there.
        s3io.mark_archived(self.s3, job.bucket, job.key, archive_key=key, sha256=meta.sha256,
                           byte_start=meta.byte_start, byte_end=meta.byte_end, source_head=meta.source_head)
        s3io.delete_exact(self.s3, job.bucket, job.key, version_id=job.version_id, etag=job.etag)
        clock.lap("delete")
        return Outcome(
            Status.ARCHIVED if created else Status.ALREADY_ARCHIVED, job, archive_key=key,
            bytes_in=sealed.plaintext_bytes, bytes_out=sealed.ciphertext_bytes,
            lag_seconds=(datetime.now(UTC) - last).total_seconds(), warnings=warnings, seconds=clock.laps,
        )

    @staticmethod
    def _plain_blocks(
        body: Any, encoding: str, digest: Any | None, name: str, got: list[int]
    ) -> Iterator[bytes]:
        """Staged bytes (hashed as they lie) → raw log bytes."""

        def staged() -> Iterator[bytes]:
            for chunk in read_ahead(body.iter_chunks(CHUNK)):
                got[0] += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                yield chunk

        if encoding == "gzip":
            yield from gunzip(staged(), name)
        else:
            yield from staged()

    @staticmethod
    def _compare(meta: StagedMeta, span: TimeSpan) -> list[str]:
        """The shipper states the first and last *timed line*'s times; the key uses the earliest
        and latest (the same for in-order logs, and safe for time filters when a line is out of
        order). A stated time outside [earliest, latest] contradicts the bytes."""
        out = []
        lo, hi = span.first, span.last
        for label, t in (("first-time", meta.first_time), ("last-time", meta.last_time)):
            if t is not None and lo is not None and hi is not None and not lo <= t <= hi:
                out.append(f"metadata {label} {fmt_time(t)} outside lines' {fmt_time(lo)}..{fmt_time(hi)}")
        if meta.lines is not None and meta.lines != span.lines:
            out.append(f"metadata lines {meta.lines} != {span.lines}")
        return out

    def _stored(self, key: str, created: bool, head: dict, sums: s3io.Checksums) -> dict[str, Any]:
        """What S3 kept at ``key``: this run's bytes (S3's checksum of them must match), or an
        earlier attempt's, read back."""
        bucket = self.settings.archive_bucket
        held = head.get("ChecksumSHA256")
        if created:
            if held and not same_s3_checksum(held, sums.s3_sha256):
                raise s3io.VerifyError(f"s3://{bucket}/{key}: S3's checksum is not that of the bytes sent")
            kept = sums
        else:
            kept = s3io.stored_checksums(self.s3, bucket, key, self.part_size, etag=head.get("ETag"))
        return {
            "stored_sha256": kept.sha256, "stored_size": head["ContentLength"],
            "s3_checksum_sha256": held or None,
            # The part size is known when S3's checksum is that of these parts.
            "s3_part_size": kept.part_size if same_s3_checksum(held, kept.s3_sha256) else None,
        }

    def _explain(self, job: Job, raw_meta: dict[str, str]) -> Outcome:
        """The shipper's explanation of an abandoned segment: into the digest records, then unstaged.

        Recorded only when the event object's staged key names the same stack, host, container
        and segment as its metadata (``_trusted``): the key is what the host's policy confines it
        to; otherwise it is quarantined."""
        meta = self._trusted(job, raw_meta)
        reason = ascii_value(raw_meta.get(EVENT_REASON_META, ""), 512)
        stack = meta.stack
        if self.settings.digests and stack:
            self.digest_table(stack).record_event(ExplainedEvent(
                type=EVENT_ABANDONED, container_id=meta.container_id, host=ascii_value(meta.host),
                source=job.key, segment=meta.segment, byte_start=meta.byte_start, byte_end=meta.byte_end,
                reason=reason, at=fmt_time(datetime.now(UTC)), **_source(meta),
            ))
        s3io.delete_exact(self.s3, job.bucket, job.key, version_id=job.version_id, etag=job.etag)
        return Outcome(Status.EXPLAINED, job,
                       reason=f"segment {meta.segment} abandoned by the shipper: {reason}")

    def _record_cut_back(self, entry: ArchiveEntry, archived_meta: dict[str, str], stack: str) -> None:
        """The shipper found the source cut back before this segment (``logarchive-cut-from``: what
        it had shipped up to): the byte discontinuity is explained, not a loss. Taken from the
        archived segment's own metadata (verified: the object S3 kept), with the record's range."""
        text = archived_meta.get(CUT_FROM_META, "")
        if not text.isdigit():
            return
        cut_from = int(text)
        self.digest_table(stack).record_event(ExplainedEvent(
            type=EVENT_CUT_BACK, container_id=entry.container_id, host=entry.host, source=entry.source,
            segment=entry.segment, byte_start=entry.byte_start, byte_end=cut_from,
            reason=f"source cut back after bytes up to {cut_from} had shipped; this segment starts at "
                   f"{entry.byte_start}", at=fmt_time(datetime.now(UTC)),
            source_format=entry.source_format, k8s=entry.k8s,
        ))

    def _record_quarantine(self, job: Job, raw_meta: dict[str, str], reason: str) -> None:
        """An explained event for the digest, recorded before the staged version goes. Host,
        container and segment are those the staged key names (the metadata's only without one:
        the metadata may be what was wrong)."""
        meta = StagedMeta.parse(raw_meta)
        path = parse_staged_key(job.key, self.settings.staging_prefix)
        if path is not None:
            meta = replace(meta, host=metadata_value(path.host), container_id=path.container,
                           segment=path.segment)
        stack = self.settings.stack or meta.stack
        if not (self.settings.digests and stack):
            return
        self.digest_table(stack).record_event(ExplainedEvent(
            type=EVENT_QUARANTINED, container_id=meta.container_id[:64], host=ascii_value(meta.host),
            source=job.key, segment=meta.segment, byte_start=meta.byte_start, byte_end=meta.byte_end,
            reason=ascii_value(reason, 512), at=fmt_time(datetime.now(UTC)),
            location=QUARANTINE_PREFIX + job.key, **_source(meta),
        ))

    def _same_number(self, base: ArchiveKey, key: str, meta: StagedMeta) -> list[str]:
        """Other archive objects of this container under this segment number: a shipper whose
        state was lost or replaced numbered other bytes again (issue 18). Archived all the same
        (nothing is lost), and reported by name; the audit reports it too."""
        # ``…<name>.log.<N>.<start>.<end>.archived.gz`` (Docker and CRI alike): all times of N.
        prefix = base.key().rsplit(".", 4)[0] + "."
        resp = self.s3.list_objects_v2(Bucket=self.settings.archive_bucket, Prefix=prefix)
        others = sorted(o["Key"] for o in resp.get("Contents", []) if o["Key"] != key)
        if not others:
            return []
        names = ", ".join(k.rsplit("/", 1)[-1] for k in others[:3])
        log.error("duplicate segment %s of container %s (host %s): archived as %s, and already as %s",
                  base.rotation, base.container_id[:12], ascii_value(meta.host) or "?", key, names)
        return [f"duplicate segment {base.rotation}: also archived as {names}"]

    # -- placing the archive object ---------------------------------------------------------
    def _place(
        self, base: ArchiveKey, segment: int, fh: BinaryIO, size: int, metadata: dict[str, str],
        sums: s3io.Checksums | None = None,
    ) -> tuple[str, bool, dict]:
        """Create the archive object once; returns (key, created by this run, its HEAD).

        The key exists already: same ``logarchive-sha256`` and byte count → it is this segment,
        archived by an earlier attempt. Different → a genuine collision (two different segments
        claim one segment number and the same second-precision start and end): variant ``k``
        is segment ``N*1000+k``, tried in order, so every retry lands on the same key.
        """
        bucket = self.settings.archive_bucket
        sha, nbytes = metadata["logarchive-sha256"], int(metadata["logarchive-bytes"])
        for k in range(MAX_VARIANTS):
            akey = base if k == 0 else replace(base, rotation=segment * 1000 + k)
            key = akey.key()
            meta = metadata if k == 0 else {**metadata, "logarchive-collision-of": base.key()}
            created = s3io.create_once(
                self.s3, bucket, key, fh, size=size, metadata=meta, part_size=self.part_size, sums=sums
            )
            head = self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            existing = head.get("Metadata", {})
            same = (existing.get("logarchive-sha256"), existing.get("logarchive-bytes")) == (sha, str(nbytes))
            if created or same:
                s3io.verify_archive(head, name=f"s3://{bucket}/{key}", sha256=sha, raw_bytes=nbytes)
                return key, created, head
            log.warning("s3://%s/%s holds other bytes (source %s): collision, trying variant %d",
                        bucket, key, existing.get("logarchive-source", "?"), k + 1)
        raise LogarchiveError(f"{base.key()}: {MAX_VARIANTS} colliding archive objects")

    def _replicate(
        self, key: str, created: bool, fh: BinaryIO, size: int, metadata: dict[str, str],
        sums: s3io.Checksums | None = None,
    ) -> None:
        s = self.settings
        if s.replication_mode == ReplicationMode.S3_REPLICATION:
            mark_pending(self.s3, s, key)
            return
        if not s.replicate_to:
            return
        if created:
            # Our file holds exactly the archive object's bytes: copies are byte-identical.
            replicate_file(self.s3, key, fh, size, metadata, s.replicate_to, self.part_size, sums)
        else:
            # An earlier run's archive object (other data key): copy that one, not ours.
            replicate_object(self.s3, s.archive_bucket, key, s.replicate_to, self.part_size, self.tmpdir)

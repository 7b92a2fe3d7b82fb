"""Digests of what the archiver finished: records left by workers, sealed by one sealer.

Workers run in parallel and must not each extend the chain (two digests naming the same
previous digest would fork it). So a worker only leaves a durable record of each archive it
finished (and of each segment it quarantined), and one sealer at a time folds the records into
the next digest: the scheduler, hourly, under a lease; ``logarchive archive --once`` at its end.

Records are small S3 objects under ``_logarchive/pending-digest/<stack>/`` in the archive
bucket, not DynamoDB items: the worker already writes to that bucket (no new table or grant
besides the prefix, and ``archive --once`` runs without any table); a record is durable when its
PUT returns, before the staged version is deleted; its key is derived from the archive key, so
a retried worker rewrites the same record instead of adding one; and an hour's records are one
listing. The prefix is outside every stack's keys and outside the digests' replication.

The chain head is ``_logarchive/digest-head/<stack>.json``: a copy of the newest digest (body,
signature in metadata). Sealing is: read the head → build and sign the next digest → replace the
head with a conditional PUT (``If-Match`` its ETag, ``If-None-Match: *`` for the first) — the one
commit point, so two sealers racing cannot both extend the chain, lease or not → write the
digest object (and its direct copies) → delete the records it consumed. A sealer that crashed
after the commit is completed by the next one: it re-writes the head's digest object where it is
missing and drops records that digest already lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import digest as fmt
from .. import telemetry
from ..awserrors import is_not_found, is_precondition_failed
from ..digest import ArchiveEntry, ExplainedEvent, SignedDigest, Signer, canonical_json
from ..errors import LogarchiveError
from .heartbeats import HostView

log = logging.getLogger(__name__)
HEAD_PREFIX = fmt.RESERVED_PREFIX + "digest-head/"
MAX_RECORDS = 20000  # per digest; the rest waits for the next seal
READ_THREADS = 16
SEAL_LEASE_SECONDS = 900  # a Lambda's longest run


def head_key(stack: str) -> str:
    return f"{HEAD_PREFIX}{stack}.json"


def _record_name(kind: str, identity: str) -> str:
    return f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:40]}.json"


def archive_record_key(stack: str, archive_key: str) -> str:
    return fmt.pending_prefix(stack) + _record_name("a", archive_key)


def event_record_key(stack: str, event: ExplainedEvent) -> str:
    return fmt.pending_prefix(stack) + _record_name("e", f"{event.type}\n{event.source}")


def record_archive(s3: Any, bucket: str, stack: str, entry: ArchiveEntry) -> None:
    """Leave the record of a finished archive (a plain PUT: a repeat writes the same record)."""
    body = canonical_json({"archive": entry.to_dict(), "recorded_at": fmt.fmt_time(datetime.now(UTC))})
    s3.put_object(Bucket=bucket, Key=archive_record_key(stack, entry.key), Body=body,
                  ContentType="application/json", ChecksumAlgorithm="SHA256")


def record_event(s3: Any, bucket: str, stack: str, event: ExplainedEvent) -> None:
    body = canonical_json({"event": event.to_dict(), "recorded_at": event.at})
    s3.put_object(Bucket=bucket, Key=event_record_key(stack, event), Body=body,
                  ContentType="application/json", ChecksumAlgorithm="SHA256")


@dataclass
class SealReport:
    key: str | None = None  # the new digest's key (None: nothing sealed)
    sequence: int = 0
    archives: int = 0
    events: int = 0
    repeats_dropped: int = 0  # records the previous digest already listed
    records_left: int = 0  # over MAX_RECORDS: for the next seal
    unreadable: list[str] = field(default_factory=list)
    lost_race: bool = False  # another sealer moved the head first; nothing written


class SealError(LogarchiveError):
    """The chain cannot be extended (its head is unreadable, or a copy holds other bytes)."""


class Sealer:
    def __init__(
        self, s3: Any, *, bucket: str, stack: str, signer: Signer, copies: Sequence[str] = (),
        hosts: HostView | None = None,
    ):
        self.s3 = s3
        self.bucket = bucket
        self.stack = stack
        self.signer = signer
        self.copies = tuple(copies)  # direct-mode customer buckets: digests go there as archives do
        self.hosts = hosts  # the hosts' heartbeats and retirement requests (heartbeats.py)

    # -- the chain head --------------------------------------------------------------------
    def read_head(self) -> tuple[SignedDigest | None, str | None]:
        """(newest digest, head ETag), or (None, None) before the first digest."""
        key = head_key(self.stack)
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_not_found(exc):
                return None, None
            raise
        body = resp["Body"].read()
        try:
            signed = fmt.from_object(body, resp.get("Metadata", {}), name=f"s3://{self.bucket}/{key}")
        except fmt.DigestError as exc:
            raise SealError(f"chain head unreadable: {exc}") from None
        return signed, resp["ETag"]

    def _store(self, signed: SignedDigest) -> None:
        """The digest object in the archive bucket and every direct copy: create once, and a key
        that exists must hold these very bytes."""
        for bucket in (self.bucket, *self.copies):
            try:
                self.s3.put_object(Bucket=bucket, Key=signed.key, Body=signed.body, IfNoneMatch="*",
                                   Metadata=signed.metadata(), ContentType="application/json",
                                   ChecksumAlgorithm="SHA256")
                continue
            except Exception as exc:
                if not is_precondition_failed(exc):
                    raise
            held = self.s3.get_object(Bucket=bucket, Key=signed.key)
            if held["Body"].read() != signed.body:
                raise SealError(f"s3://{bucket}/{signed.key}: holds another digest")

    # -- records ---------------------------------------------------------------------------
    def _records(self) -> tuple[list[str], int]:
        keys: list[str] = []
        total = 0
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=fmt.pending_prefix(self.stack))
        for page in pages:
            for obj in page.get("Contents", []):
                total += 1
                if len(keys) < MAX_RECORDS:
                    keys.append(obj["Key"])
        return keys, total - len(keys)

    def _read(self, key: str) -> dict | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:
            if is_not_found(exc):
                return None  # consumed by a sealer that lost the lease meanwhile
            if isinstance(exc, ValueError):
                log.error("s3://%s/%s: digest record is not JSON; left in place", self.bucket, key)
                return {"unreadable": True}
            raise

    def _delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            resp = self.s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            for err in resp.get("Errors", []):  # left for the next seal, which drops the repeat
                log.warning("s3://%s/%s: record not deleted (%s)", self.bucket, err.get("Key"),
                            err.get("Code"))

    # -- sealing ---------------------------------------------------------------------------
    def seal(self, *, now: datetime | None = None) -> SealReport:
        report = SealReport()
        previous, etag = self.read_head()
        if previous is not None:
            self._store(previous)  # completes a seal that crashed after its commit (else a no-op)
        keys, report.records_left = self._records()
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="digest-record") as pool:
            bodies = list(pool.map(self._read, keys))
        listed = {a.key for a in previous.digest.archives} if previous else set()
        explained = {(e.type, e.source) for e in previous.digest.events} if previous else set()
        archives: dict[str, ArchiveEntry] = {}
        events: dict[tuple[str, str], ExplainedEvent] = {}
        consumed: list[str] = []
        for key, body in zip(keys, bodies, strict=True):
            if body is None:
                continue
            try:
                if "archive" in body:
                    entry = ArchiveEntry.from_dict(body["archive"])
                    if entry.key in listed:
                        report.repeats_dropped += 1
                    else:
                        archives[entry.key] = entry
                elif "event" in body:
                    event = ExplainedEvent.from_dict(body["event"])
                    if (event.type, event.source) in explained:
                        report.repeats_dropped += 1
                    else:
                        events[(event.type, event.source)] = event
                else:
                    raise ValueError("neither an archive nor an event")
            except (TypeError, ValueError, KeyError):
                report.unreadable.append(key)
                continue
            consumed.append(key)
        end = now or datetime.now(UTC)
        if previous is not None and end <= fmt.parse_time(previous.digest.end_time):
            end = fmt.parse_time(previous.digest.end_time).replace(microsecond=0) + timedelta(seconds=1)
        starts = [fmt.parse_time(b["recorded_at"]) for b in bodies if b and "recorded_at" in b]
        before = previous.digest if previous else None
        beats = self.hosts.for_digest(before) if self.hosts else []
        retiring = self.hosts.requests(before) if self.hosts else []
        next_digest = fmt.build(
            stack=self.stack, end=end, signing_key_id=self.signer.key_id,
            signature_algorithm=self.signer.algorithm, archives=archives.values(), events=events.values(),
            previous=previous, start=min([*starts, end]),
            hosts=beats, retired_hosts=[r.retirement for r in retiring],
        )
        signed = fmt.sign(next_digest, self.signer)
        commit: dict[str, Any] = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=head_key(self.stack), Body=signed.body,
                               Metadata=signed.metadata(), ContentType="application/json",
                               ChecksumAlgorithm="SHA256", **commit)
        except Exception as exc:
            if is_precondition_failed(exc):
                log.warning("digest of %s: another sealer extended the chain first; records left for it",
                            self.stack)
                report.lost_race = True
                return report
            raise
        self._store(signed)
        self._delete(consumed)
        if self.hosts and retiring:
            self.hosts.retired(retiring)
        report.key, report.sequence = signed.key, next_digest.sequence
        report.archives, report.events = len(archives), len(events)
        telemetry.count("DigestsSealed")
        telemetry.count("DigestArchives", report.archives)
        log.info("sealed digest %s: %d archives, %d explained events", signed.key, report.archives,
                 report.events)
        return report



def signer_from_settings(settings: Any) -> Signer | None:
    """The digest signer a stage names (None: digests are off): a KMS key (ECC_NIST_P256, signs
    inside KMS), else an Ed25519 PEM private key from Secrets Manager, SSM, or a local file."""
    from .. import aws

    if settings.signing_kms_key_id:
        return fmt.KmsSigner(aws.client("kms"), settings.signing_kms_key_id)
    if settings.signing_key_file:
        return fmt.Ed25519Signer.from_file(settings.signing_key_file)
    if settings.signing_key_secret or settings.signing_key_parameter:
        from aws_lambda_powertools.utilities import parameters

        if settings.signing_key_secret:
            name = settings.signing_key_secret
            value = parameters.get_secret(name, max_age=300)
        else:
            name = settings.signing_key_parameter
            value = parameters.get_parameter(name, decrypt=True, max_age=300)
        pem = value if isinstance(value, bytes) else str(value).encode()
        return fmt.Ed25519Signer.from_pem(pem, name=f"signing key {name}")
    return None


def seal_lease_id(bucket: str, stack: str) -> str:
    return f"digest-seal#{bucket}/{stack}"


def seal_digest(settings: Any, s3: Any, *, leases: Any = None, signer: Signer | None = None,
                now: datetime | None = None, hosts: HostView | None = None) -> SealReport | None:
    """Seal the next digest of ``settings.stack`` if digests are on, under the seal lease when
    there is a lease table (a second scheduler run waits for the next hour instead of racing;
    the head's conditional PUT keeps the chain whole either way)."""
    signer = signer or signer_from_settings(settings)
    if signer is None:
        return None
    if not settings.stack:
        raise SealError("digests need a stack name (LOGARCHIVE_STACK)")
    lease = seal_lease_id(settings.archive_bucket, settings.stack)
    if leases is not None and not leases.acquire_id(lease, seconds=SEAL_LEASE_SECONDS):
        log.info("digest of %s: another run holds the seal lease", settings.stack)
        return SealReport(lost_race=True)
    try:
        sealer = Sealer(s3, bucket=settings.archive_bucket, stack=settings.stack, signer=signer,
                        copies=settings.direct_destinations, hosts=hosts or HostView.of(settings, s3))
        return sealer.seal(now=now)
    finally:
        if leases is not None:
            leases.release_id(lease)

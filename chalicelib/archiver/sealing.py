"""Digests of what the archiver finished: records left by workers, sealed by one sealer.

Workers run in parallel and must not each extend the chain (two digests naming the same
previous digest would fork it). So a worker only leaves a durable record of each archive it
finished (and of each explained event), and one sealer at a time folds the records into the
next digest: the scheduler, hourly, under a lease; ``logarchive archive --once`` at its end.

Why the chain's state and the records live in the idempotency table, not in the bucket: whoever
can write the archive bucket (an operator, a leaked role, a compromised tool) could otherwise
rewind the head object to an older digest — the sealer would then sign the rollback with the
real key — or plant a record the sealer would sign into the next digest. The table is written by
the archiver's roles alone (docs/AUDIT.md, threat model). So digests need that table
(``digest_table.require_table``): no table, no digest.

* The chain's state is the ``digest-chain#<stack>`` item (``digest_table.ChainState``: newest
  sequence, key, body SHA-256). Before extending, the sealer reads the digest the item names from
  the bucket and checks that it is that digest (SHA-256, key, sequence) and that its signature
  verifies; on any disagreement it seals nothing and raises ``SealRefused`` (one line; the
  scheduler counts ``DigestSealFailures``; docs/OPERATIONS.md says what to do).
* Records are ``digest-record#…`` items, created once by the worker. Before signing an archive
  entry the sealer HEADs the archive and checks size, S3 checksum and envelope hash against the
  record: a mismatch is reported (``SealReport.rejected``, ``DigestRecordsRejected``), not signed.

Sealing is: read and verify the head → read the pending records, check each archive → build and
sign the next digest → stage its body at ``_logarchive/digest-staged/<stack>/<sha256>.json`` →
the one commit point: a conditional write of the chain item naming the state read (two sealers
racing cannot both commit, lease or not) → write the digest object (and its direct copies,
create once) → drop the staged body → mark the records sealed. A sealer that crashed after the
commit is completed by the next one: it writes the named digest from its staged body where the
digest object is missing, and marks records the named digest already lists instead of listing
them twice. A commit whose response was lost is recognised by reading the item back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import digest as fmt
from .. import telemetry
from ..archive_object import envelope_fields
from ..awserrors import error_label, is_conditional_check_failed, is_not_found, is_precondition_failed
from ..digest import ArchiveEntry, ExplainedEvent, SignedDigest, Signer
from ..errors import LogarchiveError
from .digest_table import ChainState, DigestTable, Record, require_table
from .heartbeats import HostView

log = logging.getLogger(__name__)
STAGED_PREFIX = fmt.RESERVED_PREFIX + "digest-staged/"
MAX_RECORDS = 20000  # per digest; the rest waits for the next seal
READ_THREADS = 16
SEAL_LEASE_SECONDS = 900  # a Lambda's longest run


def staged_prefix(stack: str) -> str:
    return f"{STAGED_PREFIX}{stack}/"


def staged_key(stack: str, body_sha256: str) -> str:
    """Where a digest's body waits between the chain's commit and the digest object's write."""
    return f"{staged_prefix(stack)}{body_sha256}.json"


@dataclass
class SealReport:
    key: str | None = None  # the new digest's key (None: nothing sealed)
    sequence: int = 0
    archives: int = 0
    events: int = 0
    repeats_dropped: int = 0  # records the previous digest already listed
    records_left: int = 0  # over MAX_RECORDS: for the next seal
    unreadable: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "<archive>: <why>": records S3 contradicts
    lost_race: bool = False  # another sealer moved the chain first; nothing written


class SealError(LogarchiveError):
    """The chain cannot be extended (a copy holds other bytes, the commit is in doubt)."""


class SealRefused(SealError):
    """The chain's state and the bucket disagree: nothing is sealed until an operator looks."""


class Sealer:
    def __init__(
        self, s3: Any, *, bucket: str, stack: str, signer: Signer, table: DigestTable,
        copies: Sequence[str] = (), public_keys: Sequence[Any] = (), hosts: HostView | None = None,
    ):
        self.s3 = s3
        self.bucket = bucket
        self.stack = stack
        self.signer = signer
        self.table = table
        self.copies = tuple(copies)  # direct-mode customer buckets: digests go there as archives do
        self.public_keys = [signer.public_key, *public_keys]  # older keys verify an older head
        self.hosts = hosts  # the hosts' heartbeats and retirement requests (heartbeats.py)

    def _refuse(self, why: str) -> SealRefused:
        return SealRefused(f"digest of {self.stack} not sealed: {why}")

    # -- the chain head --------------------------------------------------------------------
    def _get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return resp["Body"].read(), resp.get("Metadata", {})

    def read_head(self, state: ChainState | None) -> SignedDigest | None:
        """The digest the table names as the newest, verified (None before the first digest);
        ``SealRefused`` on any disagreement between the table and the bucket."""
        if state is None:
            listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=fmt.stack_digests_prefix(self.stack),
                                              MaxKeys=1)
            if listing.get("KeyCount") or listing.get("Contents"):
                raise self._refuse(
                    f"table {self.table.table} holds no chain state for it, but s3://{self.bucket}/"
                    f"{fmt.stack_digests_prefix(self.stack)} holds digests (the table was replaced or "
                    "emptied, or the digests were planted; docs/OPERATIONS.md, \"A refused seal\")")
            return None
        name = f"s3://{self.bucket}/{state.key}"
        got = self._get(state.key) or self._get(staged_key(self.stack, state.sha256))
        if got is None:
            raise self._refuse(f"the chain's newest digest, {name} (sequence {state.sequence}), is gone "
                               "(deleted, or the chain rolled back)")
        body, metadata = got
        sha = hashlib.sha256(body).hexdigest()
        if sha != state.sha256:
            raise self._refuse(f"{name} is not the digest the chain names (SHA-256 {sha[:16]}…, the table "
                               f"holds {state.sha256[:16]}…): replaced")
        try:
            signed = fmt.from_object(body, metadata, name=name)
            named = (signed.key, signed.digest.sequence, signed.digest.stack)
            if named != (state.key, state.sequence, self.stack):
                raise fmt.DigestError(f"{name}: its body names {signed.key}, not sequence {state.sequence}")
            if signed.digest.signing_key_id in {fmt.public_key_id(k) for k in self.public_keys}:
                fmt.verify(signed, self.public_keys, name=name)
            # else signed by a key since rotated away: the table's SHA-256 is the proof it is ours
        except fmt.DigestError as exc:
            raise self._refuse(str(exc)) from None
        return signed

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

    def _stage(self, signed: SignedDigest) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=staged_key(self.stack, signed.sha256), Body=signed.body,
                           Metadata=signed.metadata(), ContentType="application/json",
                           ChecksumAlgorithm="SHA256")

    def _unstage(self, sha256: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=staged_key(self.stack, sha256))
        except Exception as exc:  # noqa: BLE001 - a leftover staged body is harmless
            log.warning("s3://%s/%s: not deleted (%s)", self.bucket, staged_key(self.stack, sha256),
                        error_label(exc))

    def _commit(self, state: ChainState | None, new: ChainState) -> bool:
        """The one commit point. True: the chain is now ``new``; False: another sealer moved it."""
        try:
            self.table.commit(state, new)
            return True
        except Exception as exc:
            cause, conditional = error_label(exc), is_conditional_check_failed(exc)
        try:
            now = self.table.state()
        except Exception as again:
            raise SealError(f"digest {new.key}: commit not confirmed ({cause}), chain state unreadable "
                            f"({error_label(again)}); the next seal completes or replaces it") from None
        if now == new:  # ours landed; its response was lost (a retry of it then failed its condition)
            log.warning("digest %s: the commit's answer was lost (%s); the table holds it", new.key, cause)
            return True
        if now != state:
            log.warning("digest of %s: another sealer extended the chain first (to sequence %s); "
                        "records left for it", self.stack, now.sequence if now else "?")
            return False
        if conditional:
            raise SealError(f"digest {new.key}: commit refused although the chain state is unchanged")
        raise SealError(f"digest {new.key}: not committed ({cause}); the records wait for the next seal")

    # -- records ---------------------------------------------------------------------------
    def check_archive(self, entry: ArchiveEntry) -> str:
        """Why S3's object contradicts the record ("" when it matches): size, S3's checksum and the
        envelope, from one HEAD (and ``<key>.instruction`` for an envelope kept there)."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=entry.key, ChecksumMode="ENABLED")
        except Exception as exc:
            if is_not_found(exc):
                return "not in the bucket"
            return f"cannot HEAD ({error_label(exc)})"
        problems = []
        if int(head.get("ContentLength", -1)) != entry.stored_size:
            problems.append(f"{head.get('ContentLength')} bytes, the record says {entry.stored_size}")
        held = head.get("ChecksumSHA256")
        if (held or entry.s3_checksum_sha256) and not fmt.same_s3_checksum(held, entry.s3_checksum_sha256):
            problems.append(f"S3's checksum is {held}, the record says {entry.s3_checksum_sha256}")
        try:
            fields = envelope_fields(self.s3, self.bucket, entry.key, head.get("Metadata", {}))
            envelope = fmt.envelope_sha256(fields)
        except LogarchiveError as exc:
            envelope = f"unreadable ({str(exc)[-80:]})"
        if envelope != entry.envelope_sha256:
            problems.append("its envelope is not the one recorded" if entry.envelope_sha256
                            else "the record has no envelope hash")
        return "; ".join(problems)

    def _sort(self, records: list[Record], previous: SignedDigest | None, report: SealReport) -> tuple[
            list[tuple[Record, ArchiveEntry]], list[tuple[Record, ExplainedEvent]], list[Record]]:
        listed = {a.key for a in previous.digest.archives} if previous else set()
        explained = {(e.type, e.source) for e in previous.digest.events} if previous else set()
        archives: list[tuple[Record, ArchiveEntry]] = []
        events: list[tuple[Record, ExplainedEvent]] = []
        repeats: list[Record] = []
        for r in records:
            try:
                entry, event = r.archive, r.event
            except (TypeError, ValueError, KeyError):
                entry = event = None
            if entry is not None:
                (repeats.append(r) if entry.key in listed else archives.append((r, entry)))
            elif event is not None:
                (repeats.append(r) if (event.type, event.source) in explained else events.append((r, event)))
            else:
                report.unreadable.append(r.id)
                log.error("table %s: digest record %s is unreadable; left in place", self.table.table, r.id)
        return archives, events, repeats

    # -- sealing ---------------------------------------------------------------------------
    def seal(self, *, now: datetime | None = None) -> SealReport:
        """Seal the next digest: the records, and what ``self.hosts`` says of the shipper hosts
        (each host's latest heartbeat since the previous digest, the retirements requested)."""
        report = SealReport()
        state = self.table.state()
        previous = self.read_head(state)
        if previous is not None:
            self._store(previous)  # completes a seal that crashed after its commit (else a no-op)
            self._unstage(previous.sha256)
        records = self.table.pending()
        report.records_left = max(0, len(records) - MAX_RECORDS)
        archives, events, repeats = self._sort(records[:MAX_RECORDS], previous, report)
        report.repeats_dropped = len(repeats)
        if repeats and previous is not None:
            self.table.mark_sealed(repeats, previous.key)
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="digest-check") as pool:
            verdicts = list(pool.map(lambda pair: self.check_archive(pair[1]), archives))
        taken: dict[str, tuple[Record, ArchiveEntry]] = {}
        for (r, entry), why in zip(archives, verdicts, strict=True):
            if why:
                report.rejected.append(f"s3://{self.bucket}/{entry.key}: {why}")
                log.error("digest of %s: s3://%s/%s not sealed: %s (record %s)", self.stack, self.bucket,
                          entry.key, why, r.id)
            else:
                taken[entry.key] = (r, entry)
        end = now or datetime.now(UTC)
        if previous is not None and end <= fmt.parse_time(previous.digest.end_time):
            end = fmt.parse_time(previous.digest.end_time).replace(microsecond=0) + timedelta(seconds=1)
        consumed = [r for r, _ in taken.values()] + [r for r, _ in events]
        starts = [fmt.parse_time(r.recorded_at) for r in consumed if _is_time(r.recorded_at)]
        before = previous.digest if previous else None
        beats = self.hosts.for_digest(before) if self.hosts else []
        retiring = self.hosts.requests(before) if self.hosts else []
        next_digest = fmt.build(
            stack=self.stack, end=end, signing_key_id=self.signer.key_id,
            signature_algorithm=self.signer.algorithm, archives=[e for _, e in taken.values()],
            events=[e for _, e in events], previous=previous, start=min([*starts, end]),
            hosts=beats, retired_hosts=[r.retirement for r in retiring],
        )
        signed = fmt.sign(next_digest, self.signer)
        self._stage(signed)
        if not self._commit(state, ChainState(next_digest.sequence, signed.key, signed.sha256)):
            self._unstage(signed.sha256)
            report.lost_race = True
            return report
        self._store(signed)
        self._unstage(signed.sha256)
        self.table.mark_sealed(consumed, signed.key)
        if self.hosts and retiring:
            self.hosts.retired(retiring)
        report.key, report.sequence = signed.key, next_digest.sequence
        report.archives, report.events = len(taken), len(events)
        telemetry.count("DigestsSealed")
        telemetry.count("DigestArchives", report.archives)
        if report.rejected:
            telemetry.count("DigestRecordsRejected", len(report.rejected))
        log.info("sealed digest %s: %d archives, %d explained events", signed.key, report.archives,
                 report.events)
        return report


def _is_time(text: str) -> bool:
    try:
        fmt.parse_time(text)
    except ValueError:
        return False
    return True


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


def seal_digest(settings: Any, s3: Any, *, leases: Any, signer: Signer | None = None,
                now: datetime | None = None, hosts: HostView | None = None) -> SealReport | None:
    """Seal the next digest of ``settings.stack`` if digests are on, under the seal lease (a
    second scheduler run waits for the next hour instead of racing; the chain item's conditional
    write keeps the chain whole either way). Digests need the idempotency table. ``hosts``: the
    shipper hosts whose heartbeats and retirements it seals (default: the staging bucket's)."""
    from .. import aws

    signer = signer or signer_from_settings(settings)
    if signer is None:
        return None
    if not settings.stack:
        raise SealError("digests need a stack name (LOGARCHIVE_STACK)")
    table = DigestTable(aws.client("dynamodb"), require_table(settings), settings.stack)
    lease = seal_lease_id(settings.archive_bucket, settings.stack)
    if leases is not None and not leases.acquire_id(lease, seconds=SEAL_LEASE_SECONDS):
        log.info("digest of %s: another run holds the seal lease", settings.stack)
        return SealReport(lost_race=True)
    try:
        sealer = Sealer(s3, bucket=settings.archive_bucket, stack=settings.stack, signer=signer, table=table,
                        copies=settings.direct_destinations, hosts=hosts or HostView.of(settings, s3))
        return sealer.seal(now=now)
    finally:
        if leases is not None:
            leases.release_id(lease)

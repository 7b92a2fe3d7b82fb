"""``logarchive digest backfill``: seal the archives that predate the first digest.

They are read back (the whole body: its SHA-256 is what a digest proves), recorded as the
workers record a finished archive, and sealed into the next digest of the chain by the same
sealer, so the chain stays one. A backfilled entry proves the object unchanged since the
backfill, not since it was archived. Only archives older than the first digest are taken: an
archive in no digest but newer than the first is an audit finding, not something to seal.

Every digest it reads to decide that is verified first (signature by a given public key, its body
naming the key it is stored at): a digest planted in the bucket could otherwise steer what is
sealed. The first that fails stops the backfill before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import digest as digestfmt
from .. import layout
from ..archive_object import envelope_fields
from ..archiver import s3io
from ..archiver.digest_table import DigestTable
from ..archiver.sealing import Sealer, SealReport
from ..awserrors import error_code
from ..errors import LayoutError, LogarchiveError
from . import bucket as reads


@dataclass
class BackfillResult:
    candidates: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line each: "<object>: <cause>"
    sealed: SealReport | None = None


def _digested(s3: Any, bucket: str, stack: str, public_keys: list[Any]) -> tuple[set[str], datetime | None]:
    """Keys any digest of the stack lists, and when the first digest began; every digest read is
    verified, and the first that does not verify stops the backfill (``LogarchiveError``)."""
    listed = reads.list_digests(s3, bucket, [digestfmt.stack_digests_prefix(stack)])
    keys: set[str] = set()
    first: tuple[int, datetime] | None = None
    for item in listed:
        d = reads.load_digest(s3, bucket, item.key)
        name = f"s3://{bucket}/{item.key}"
        try:
            if d.signed is None:
                raise digestfmt.DigestError(f"{name}: {d.error}")
            if (d.signed.key, d.signed.digest.stack) != (item.key, stack):
                raise digestfmt.DigestError(f"{name}: its body names {d.signed.key}")
            digestfmt.verify(d.signed, public_keys, name=name)
        except digestfmt.DigestError as exc:
            raise LogarchiveError(f"{exc}; backfill stopped, nothing recorded") from None
        doc = d.signed.digest
        keys.update(a.key for a in doc.archives)
        start = digestfmt.parse_time(doc.start_time)
        if first is None or doc.sequence < first[0]:
            first = (doc.sequence, start)
    return keys, first[1] if first else None


def _entry(s3: Any, bucket: str, key: str, part_size: int) -> digestfmt.ArchiveEntry:
    parsed = layout.parse(key)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    kept = s3io.stored_checksums(s3, bucket, key, part_size, etag=head.get("ETag"))
    held = head.get("ChecksumSHA256")
    meta = head.get("Metadata", {})

    def number(name: str) -> int | None:
        text = meta.get(name, "")
        return int(text) if text.isdigit() else None

    times = [meta.get("logarchive-first-time", ""), meta.get("logarchive-last-time", "")]
    for i, t in enumerate(times):
        try:
            digestfmt.parse_time(t)
        except ValueError:  # an older archive: the key's times, to the second
            when = parsed.start if i == 0 else parsed.end
            times[i] = digestfmt.fmt_time(when) if when else digestfmt.fmt_time(head["LastModified"])
    return digestfmt.ArchiveEntry(
        key=key, stored_sha256=kept.sha256, stored_size=int(head["ContentLength"]),
        s3_checksum_sha256=held or None,
        s3_part_size=kept.part_size if digestfmt.same_s3_checksum(held, kept.s3_sha256) else None,
        raw_sha256=meta.get("logarchive-sha256", ""), raw_bytes=number("logarchive-bytes") or 0,
        lines=number("logarchive-lines") or 0, key_id=parsed.key_id, container_id=parsed.container_id,
        host=meta.get("logarchive-host", ""), source=meta.get("logarchive-source", ""),
        segment=number("logarchive-segment") if "logarchive-segment" in meta else parsed.rotation,
        byte_start=None, byte_end=None, first_time=times[0], last_time=times[1],
        envelope_sha256=digestfmt.envelope_sha256(envelope_fields(s3, bucket, key, meta)),
    )


def backfill(s3: Any, *, bucket: str, stack: str, signer: digestfmt.Signer, table: DigestTable,
             public_keys: tuple[Any, ...] = (), copies: tuple[str, ...] = (),
             part_size: int = 16 * 1024 * 1024, dry_run: bool = False, workers: int = 8,
             progress: Callable[[int, str], Any] | None = None) -> BackfillResult:
    """``public_keys``: older keys of the chain (the signer's own is always used)."""
    res = BackfillResult()
    digested, first_start = _digested(s3, bucket, stack, [signer.public_key, *public_keys])
    for item in reads.list_archives(s3, bucket, stack):
        if item.key in digested or (first_start is not None
                                    and item.last_modified >= first_start.replace(microsecond=0)):
            continue
        try:
            layout.parse(item.key)
        except LayoutError:
            continue  # not an archive: the audit names it
        res.candidates.append(item.key)
    if dry_run or not res.candidates:
        return res
    bar = progress(len(res.candidates), "archives") if progress else None

    def one(key: str) -> tuple[str, str]:
        try:
            table.record_archive(_entry(s3, bucket, key, part_size), digestfmt.fmt_time(datetime.now(UTC)))
            return key, ""
        except Exception as exc:  # noqa: BLE001 - one object's failure is its line; the rest go on
            return key, error_code(exc) or str(exc).split("\n")[0][:200]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for key, err in pool.map(one, res.candidates):
            if err:
                res.failed.append(f"s3://{bucket}/{key}: {err}")
            else:
                res.recorded.append(key)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    if res.recorded:
        res.sealed = Sealer(s3, bucket=bucket, stack=stack, signer=signer, table=table, copies=copies,
                            public_keys=public_keys).seal()
    return res

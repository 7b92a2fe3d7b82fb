"""The audit: digests verified and chained, archives held unchanged, segments contiguous, and,
with the shippers' states, every staged segment archived.

Proof comes only from what the signing key signed (the digests) and what S3 computed itself
(its SHA-256 checksum, or the body's hash with ``deep``); the archive's own ``logarchive-*``
metadata is never taken as proof (whoever can replace an object can write its metadata).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from botocore.exceptions import ClientError

from .. import digest as digestfmt
from .. import hostrecord, layout
from ..awserrors import error_label
from ..errors import LayoutError, LogarchiveError
from ..setup import object_lock
from ..setup.object_lock import LockState
from . import bucket as reads
from . import model
from .model import AuditResult, DigestRow, Finding
from .shipstate import ShippedSegment, read_segments


@dataclass
class Options:
    bucket: str
    stack: str
    public_keys: Sequence[Any]
    start_date: date | None = None
    end_date: date | None = None
    ship_states: Sequence[str] = ()
    grace: timedelta = timedelta(hours=2)
    max_digest_age: timedelta = timedelta(hours=2)
    silent_after: timedelta = hostrecord.DEFAULT_SILENT_AFTER
    deep: bool = False
    workers: int = 16
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def present(self) -> datetime:
        """The time the chain must reach: now, or the end of an ``end_date`` in the past."""
        window = self.window()
        return min(self.now, window[1]) if window else self.now

    def window(self) -> tuple[datetime, datetime] | None:
        if self.start_date is None or self.end_date is None:
            return None
        return (datetime.combine(self.start_date, time(), UTC),
                datetime.combine(self.end_date + timedelta(days=1), time(), UTC))


@dataclass
class _Archive:
    """One archive key in view: listed, named by a verified digest, or both."""

    key: str
    parsed: layout.ArchiveKey
    listed: reads.Listed | None = None
    entry: digestfmt.ArchiveEntry | None = None
    digest_key: str = ""
    head: reads.Head | None = None

    @property
    def resource(self) -> str:
        return self.parsed.resource_folder

    @property
    def day(self) -> date | None:
        t = self.parsed.start or self.parsed.uploaded_at
        return t.date() if t else None

    def segment(self, known: set[int]) -> int | None:
        if self.entry is not None and self.entry.segment is not None:
            return int(self.entry.segment)
        n = self.parsed.rotation
        if n is not None and is_variant(n, known):
            return n // 1000
        return n


def is_variant(n: int, known: set[int]) -> bool:
    """Is key number ``n`` the archiver's collision variant ``N*1000+k`` of segment N (not a real
    segment ``n``)? Segment N is there and segment N*1000 is not: a container with that many
    segments has real numbers there."""
    return n > 1000 and n % 1000 != 0 and n // 1000 in known and (n // 1000) * 1000 not in known


def _in_window(a: layout.ArchiveKey, window: tuple[datetime, datetime] | None) -> bool:
    if window is None:
        return True
    lo, hi = window
    start = a.start or a.uploaded_at
    end = a.end or start
    if start is None or end is None:
        return False
    return start < hi and end >= lo


def _url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def run(opts: Options, s3: Any, progress: Callable[[int, str], Any] | None = None) -> AuditResult:
    """The whole audit; ``progress(total, what)`` returns something with ``update()`` and
    ``close()`` (a tqdm bar), or is None."""
    res = AuditResult(bucket=opts.bucket, stack=opts.stack)
    shipped = [seg for path in opts.ship_states for seg in read_segments(path)]  # bad files fail first
    window = opts.window()
    try:
        policy = object_lock.state(s3, opts.bucket)
    except ClientError as exc:
        raise LogarchiveError(f"s3://{opts.bucket}: cannot read its Object Lock configuration "
                              f"({error_label(exc)})") from None
    res.lock = policy.describe()

    listed = reads.list_archives(s3, opts.bucket, opts.stack)
    archives: dict[str, _Archive] = {}
    known_segments: dict[str, set[int]] = defaultdict(set)  # the whole stack's, from the listing
    for item in listed:
        try:
            parsed = layout.parse(item.key)
        except LayoutError as exc:
            res.findings.append(Finding(model.UNKNOWN_OBJECT, _url(opts.bucket, item.key),
                                        str(exc).split(": ", 1)[-1]))
            continue
        if parsed.rotation is not None:
            known_segments[parsed.container_id].add(parsed.rotation)
        if _in_window(parsed, window):
            archives[item.key] = _Archive(item.key, parsed, listed=item)

    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        verified = _digests(opts, s3, pool, res, policy, progress)
        _silent_hosts(opts, res, verified)
        first_start, last_end = _span(verified)
        events: list[digestfmt.ExplainedEvent] = []
        for signed in verified:
            events += signed.digest.events
            for entry in signed.digest.archives:
                if entry.segment is not None:  # archived, even if deleted since: not "never archived"
                    known_segments[entry.container_id].add(int(entry.segment))
                try:
                    parsed = layout.parse(entry.key)
                except LayoutError:
                    continue  # a signed digest names only keys the archiver wrote
                if not _in_window(parsed, window):
                    continue
                a = archives.setdefault(entry.key, _Archive(entry.key, parsed))
                if a.entry is None:
                    a.entry, a.digest_key = entry, signed.key
        _heads(opts, s3, pool, archives, progress, envelope=any(s.digest.version >= 2 for s in verified))
        deep = _deep_hashes(opts, s3, pool, archives, progress) if opts.deep else {}

    res.archives = len(archives)
    for a in sorted(archives.values(), key=lambda x: x.key):
        _judge(opts, res, a, policy, deep, first_start, last_end)
    explained, skipped = _explained(events, shipped, opts)
    _completeness(opts, res, archives, known_segments, explained, skipped)
    if opts.ship_states:
        abandoned = {(e.container_id, int(e.segment)) for e in events
                     if e.type == digestfmt.EVENT_ABANDONED and e.segment is not None}
        _ship_states(opts, res, shipped, known_segments, explained, abandoned)
    where = _url(opts.bucket, digestfmt.stack_digests_prefix(opts.stack))
    if not verified and not res.digests and archives:
        res.findings.append(Finding(model.DIGEST_MISSING, where,
                                    f"no digest of stack {opts.stack}, but {len(archives)} archives"))
    elif not res.digests and not listed:
        res.findings.append(Finding(
            model.NOTHING_TO_PROVE, _url(opts.bucket, f"{opts.stack}/"),
            f"no digest and no archive of stack {opts.stack} in s3://{opts.bucket}"
            + (f" since {opts.start_date}" if opts.start_date else "")
            + " (a wrong bucket or stack, or everything deleted)"))
    elif not res.digests and not (window and opts.present - window[0] <= opts.max_digest_age):
        since = f" since {opts.start_date}" if opts.start_date else ""
        res.findings.append(Finding(
            model.CHAIN_STOPS, where, f"no digest of stack {opts.stack}{since}: every digest was deleted, or "
            "sealing never ran (the archiver seals one every hour, even when nothing finished)"))
    return res


# -- digests --------------------------------------------------------------------------------------

def verify_chain(opts: Options, s3: Any) -> tuple[list[digestfmt.SignedDigest], AuditResult]:
    """The digests of ``opts``' scope alone, verified and chained (``digest adopt``): the verified
    ones in chain order, and the result whose findings say what does not hold."""
    res = AuditResult(bucket=opts.bucket, stack=opts.stack)
    try:
        policy = object_lock.state(s3, opts.bucket)
    except ClientError as exc:
        raise LogarchiveError(f"s3://{opts.bucket}: cannot read its Object Lock configuration "
                              f"({error_label(exc)})") from None
    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        return _digests(opts, s3, pool, res, policy, None), res


def _digests(opts: Options, s3: Any, pool: ThreadPoolExecutor, res: AuditResult,
             policy: LockState, progress: Callable | None) -> list[digestfmt.SignedDigest]:
    """Load, verify and chain the digests in view; returns the verified ones in chain order."""
    today = opts.now.astimezone(UTC).date()
    listed = reads.list_digests(s3, opts.bucket, reads.digest_prefixes(opts.stack, opts.start_date, today),
                                since=opts.start_date, pool=pool)
    bar = progress(len(listed), "digests") if progress and listed else None
    loaded: list[reads.LoadedDigest] = []
    for d in pool.map(lambda item: reads.load_digest(s3, opts.bucket, item.key), listed):
        loaded.append(d)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    verified: list[digestfmt.SignedDigest] = []
    chain: list[digestfmt.SignedDigest] = []  # parsed, in sequence order, verified or not
    for d in loaded:
        name = _url(opts.bucket, d.key)
        named = digestfmt.parse_digest_key(d.key)
        if d.signed is None:
            kind = (model.BAD_SIGNATURE if "no logarchive-digest-signature" in d.error
                    else model.DIGEST_MISSING if d.error.startswith("cannot read") else model.DIGEST_EDITED)
            res.findings.append(Finding(kind, name, d.error))
            res.digests.append(DigestRow(d.key, named[1] if named else None, "", 0, 0, "", kind))
            continue
        doc = d.signed.digest
        row = DigestRow(d.key, doc.sequence, doc.end_time, len(doc.archives), len(doc.events),
                        doc.signing_key_id, "verified")
        res.digests.append(row)
        if doc.stack != opts.stack or doc.key != d.key:
            row.status = model.DIGEST_EDITED
            res.findings.append(Finding(model.DIGEST_EDITED, name,
                                        f"its body names {doc.key}, stack {doc.stack}"))
            continue
        chain.append(d.signed)
        try:
            digestfmt.verify(d.signed, opts.public_keys, name=name)
        except digestfmt.DigestError as exc:
            text = str(exc).removeprefix(f"{name}: ")
            kind = model.DIGEST_EDITED if text == "bad signature" else model.BAD_SIGNATURE
            if kind == model.DIGEST_EDITED:
                text = "the signature does not verify: body or signature changed since sealing"
            row.status = kind
            res.findings.append(Finding(kind, name,
                                        f"{text}; the {len(doc.archives)} archives it lists are unproven"))
            continue
        _check_retention(res, name, d.last_modified, d.lock_mode, d.retain_until, policy)
        verified.append(d.signed)
    _chain(opts, res, chain)
    if opts.start_date is not None and chain:
        _edge(opts, s3, res, min(chain, key=lambda s: s.digest.sequence))
    _reaches_present(opts, res, verified)  # an unverified digest proves no freshness
    verified.sort(key=lambda s: s.digest.sequence)
    return verified


def _chain(opts: Options, res: AuditResult, chain: list[digestfmt.SignedDigest]) -> None:
    chain.sort(key=lambda s: (s.digest.sequence, s.key))
    by_seq: dict[int, list[digestfmt.SignedDigest]] = defaultdict(list)
    for s in chain:
        by_seq[s.digest.sequence].append(s)
    for seq, same in by_seq.items():
        if len(same) > 1:
            res.findings.append(Finding(model.BROKEN_CHAIN, _url(opts.bucket, same[1].key),
                                        f"forks the chain: sequence {seq} is also {same[0].key}"))
    if not chain:
        return
    first = chain[0]
    if first.digest.sequence != 1 and opts.start_date is None:
        before = _url(opts.bucket, first.digest.previous_digest_key or "?")
        res.findings.append(Finding(model.DIGEST_MISSING, before, f"named as previous by {first.key} "
                                    f"(sequence {first.digest.sequence - 1})"))
    for prev, cur in zip(chain, chain[1:], strict=False):
        if cur.digest.sequence == prev.digest.sequence:
            continue
        if cur.digest.sequence > prev.digest.sequence + 1:
            lo, hi = prev.digest.sequence + 1, cur.digest.sequence - 1
            seqs = f"sequence {lo}" if lo == hi else f"sequences {lo}–{hi}"
            res.findings.append(Finding(
                model.DIGEST_MISSING, _url(opts.bucket, cur.digest.previous_digest_key or "?"),
                f"{seqs} between {prev.key} and {cur.key} gone"))
            continue
        why = digestfmt.follows(cur, prev)
        if why:
            res.findings.append(Finding(model.BROKEN_CHAIN, _url(opts.bucket, cur.key), why))


def _edge(opts: Options, s3: Any, res: AuditResult, first: digestfmt.SignedDigest) -> None:
    """A dated audit's first digest links into the digest just before the window (or is the
    chain's first): deleting the window's earliest digests shows."""
    if first.digest.sequence == 1:
        return
    key = first.digest.previous_digest_key or "?"
    before = reads.load_digest(s3, opts.bucket, key)
    name = _url(opts.bucket, key)
    if before.signed is None:
        kind = model.DIGEST_MISSING if before.error.startswith("cannot read") else model.DIGEST_EDITED
        res.findings.append(Finding(kind, name, f"the digest before the window, named as previous by "
                                    f"{first.key} (sequence {first.digest.sequence - 1}): {before.error}"))
        return
    try:
        digestfmt.verify(before.signed, opts.public_keys, name=name)
    except digestfmt.DigestError as exc:
        res.findings.append(Finding(model.BAD_SIGNATURE, name, str(exc).removeprefix(f"{name}: ")))
        return
    why = digestfmt.follows(first, before.signed)
    if why:
        res.findings.append(Finding(model.BROKEN_CHAIN, _url(opts.bucket, first.key), why))


def _reaches_present(opts: Options, res: AuditResult, chain: list[digestfmt.SignedDigest]) -> None:
    """The newest digest ends within ``max_digest_age`` of now (or of an ``end_date`` in the past):
    the archiver seals one every hour, so a chain that stops earlier lost its newest digests (and
    with them the proof of what they listed), or sealing stopped."""
    if not chain:
        return
    newest = max(chain, key=lambda s: s.digest.sequence)
    ends = digestfmt.parse_time(newest.digest.end_time)
    present = opts.present
    if present - ends > opts.max_digest_age:
        res.findings.append(Finding(
            model.CHAIN_STOPS, _url(opts.bucket, newest.key),
            f"the chain stops at sequence {newest.digest.sequence}, which ends {newest.digest.end_time}: "
            f"{_fmt_grace(present - ends)} before {digestfmt.fmt_time(present)}, more than --max-digest-age "
            f"{_fmt_grace(opts.max_digest_age)}. Newer digests were deleted (with the archives they list, "
            "unprovably), or sealing stopped"))


def _silent_hosts(opts: Options, res: AuditResult, verified: list[digestfmt.SignedDigest]) -> None:
    """"host h silent since T" from the signed heartbeats (a range that ends before today: not judged)."""
    if opts.end_date is not None and opts.end_date < opts.now.astimezone(UTC).date():
        return
    for rec in hostrecord.silent(hostrecord.fold(verified), opts.now, opts.silent_after):
        res.findings.append(Finding(model.HOST_SILENT, f"host {rec.host}", (
            f"silent since {rec.last.time if rec.last else '?'}: no heartbeat for over "
            f"{_fmt_grace(opts.silent_after)} and no signed retirement (last in {rec.last_digest})")))


def _span(verified: list[digestfmt.SignedDigest]) -> tuple[datetime | None, datetime | None]:
    if not verified:
        return None, None
    return (digestfmt.parse_time(verified[0].digest.start_time),
            max(digestfmt.parse_time(s.digest.end_time) for s in verified))


# -- archives -------------------------------------------------------------------------------------

def _heads(opts: Options, s3: Any, pool: ThreadPoolExecutor, archives: dict[str, _Archive],
           progress: Callable | None, *, envelope: bool) -> None:
    keys = sorted(archives)
    bar = progress(len(keys), "archives") if progress and keys else None

    def one(k: str) -> reads.Head:
        a = archives[k]
        return reads.head_archive(s3, opts.bucket, k, envelope=envelope and a.entry is not None
                                  and a.entry.envelope_sha256 is not None)
    for head in pool.map(one, keys):
        archives[head.key].head = head
        if bar:
            bar.update(1)
    if bar:
        bar.close()


def _deep_hashes(opts: Options, s3: Any, pool: ThreadPoolExecutor, archives: dict[str, _Archive],
                 progress: Callable | None) -> dict[str, str]:
    keys = sorted(k for k, a in archives.items() if a.entry is not None and a.head and a.head.found)
    bar = progress(len(keys), "bodies (--deep)") if progress and keys else None
    out: dict[str, str] = {}

    def one(k: str) -> tuple[str, str]:
        try:
            return k, reads.body_sha256(s3, opts.bucket, k)
        except Exception as exc:  # noqa: BLE001 - one object's read error is its finding
            return k, f"unreadable ({type(exc).__name__})"
    for k, h in pool.map(one, keys):
        out[k] = h
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return out


def _judge(opts: Options, res: AuditResult, a: _Archive, policy: LockState,
           deep: dict[str, str], first_start: datetime | None, last_end: datetime | None) -> None:
    name = _url(opts.bucket, a.key)
    cell = res.cell(a.resource, a.day) if a.day else None

    def finding(kind: str, detail: str) -> None:
        res.findings.append(Finding(kind, name, detail, a.parsed.container_id, a.resource, a.day))
        if cell:
            cell.findings += 1

    head = a.head
    if head is not None and head.error:
        finding(model.ARCHIVE_MISSING, head.error)
        return
    if a.entry is None:
        modified = a.listed.last_modified if a.listed else None
        # LastModified has whole seconds: only a second wholly before the first digest is before it.
        if first_start is not None and modified and modified < first_start.replace(microsecond=0):
            res.before_digests.append(a.key)
            if cell:
                cell.pending += 1
        elif last_end is None or (modified and modified > last_end - opts.grace):
            res.pending.append(a.key)
            if cell:
                cell.pending += 1
        else:
            finding(model.ARCHIVE_IN_NO_DIGEST, f"last modified {modified:%Y-%m-%dT%H:%M:%SZ}, "
                    f"before the last digest ended ({last_end:%Y-%m-%dT%H:%M:%SZ})")
        if head is not None and head.found and _check_retention(
                res, name, head.last_modified, head.lock_mode, head.retain_until, policy, a) and cell:
            cell.findings += 1  # a pending archive must be held as long as any other
        return
    e = a.entry
    if head is None or not head.found:
        finding(model.ARCHIVE_MISSING, f"listed in {a.digest_key}, not in the bucket (deleted?)")
        return
    problems = []
    if head.size != e.stored_size:
        problems.append(f"{head.size} bytes, the digest recorded {e.stored_size}")
    body = deep.get(a.key)
    if body is not None:
        if body != e.stored_sha256:
            problems.append(f"its body's SHA-256 is {body[:16]}…, the digest recorded "
                            f"{e.stored_sha256[:16]}…")
    elif e.s3_checksum_sha256:
        if head.checksum_sha256 is None:
            problems.append("no S3 checksum where the digest recorded one (--deep re-hashes the body)")
        elif not digestfmt.same_s3_checksum(head.checksum_sha256, e.s3_checksum_sha256):
            problems.append(f"S3's SHA-256 checksum is {head.checksum_sha256}, the digest recorded "
                            f"{e.s3_checksum_sha256}")
    if e.envelope_sha256 is not None and head.envelope_sha256 != e.envelope_sha256:
        held = head.envelope_sha256
        problems.append("its envelope (the x-amz-* fields a reader decrypts with) is not the one sealed"
                        + (f": {held}" if held.startswith("unreadable") else "")
                        + "; the object cannot be decrypted as archived")
    size_only = body is None and not e.s3_checksum_sha256
    if problems:
        finding(model.ARCHIVE_CHANGED, "; ".join(problems) + f" (digest {a.digest_key})")
        return
    if _check_retention(res, name, head.last_modified, head.lock_mode, head.retain_until, policy, a):
        if cell:
            cell.findings += 1
        return
    if e.envelope_sha256 is None:
        res.envelope_unproven.append(a.key)
    if size_only:  # the digest recorded no S3 checksum: only --deep proves these bytes
        res.size_only.append(a.key)
        if cell:
            cell.explained += 1
        return
    res.verified += 1
    if cell:
        cell.verified += 1


def _check_retention(res: AuditResult, name: str, modified: datetime | None, mode: str | None,
                     until: datetime | None, policy: LockState, a: _Archive | None = None) -> bool:
    """A finding when the object is held for less than the bucket's default retention."""
    why = object_lock.retention_short(modified, mode, until, policy) if modified else ""
    if why:
        res.findings.append(Finding(model.RETENTION_SHORT, name, f"{why}; the bucket's default is "
                                    f"{policy.mode} {policy.days} days",
                                    a.parsed.container_id if a else "", a.resource if a else "",
                                    a.day if a else None))
    return bool(why)


# -- completeness ---------------------------------------------------------------------------------

def _explained(events: Iterable[digestfmt.ExplainedEvent], shipped: list[ShippedSegment],
               opts: Options) -> tuple[dict[str, dict[int, str]], dict[str, list[tuple[int, int]]]]:
    """(container → segment → why) for every explained gap (digests' events, shippers'
    abandons), and (container → byte ranges) explained without a segment (a source cut back)."""
    out: dict[str, dict[int, str]] = defaultdict(dict)
    skips: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        if e.segment is not None:
            out[e.container_id][int(e.segment)] = f"{e.type}: {e.reason}"
        elif e.byte_start is not None and e.byte_end is not None:
            skips[e.container_id].append((int(e.byte_start), int(e.byte_end)))
    for s in shipped:
        if s.state in ("abandoned", "explained") and s.stack in ("", opts.stack):
            out[s.container_id][s.segment] = f"abandoned on host {s.host} (bytes deleted before staging)"
    return out, skips


def _completeness(opts: Options, res: AuditResult, archives: dict[str, _Archive],
                  known: dict[str, set[int]], explained: dict[str, dict[int, str]],
                  skipped: dict[str, list[tuple[int, int]]]) -> None:
    """Per container: segment numbers 1, 2, 3… with no hole, and each segment's bytes continuing
    the previous one's (or starting a new file at byte 0)."""
    by_container: dict[str, list[_Archive]] = defaultdict(list)
    for a in archives.values():
        by_container[a.parsed.container_id].append(a)
    for cid, items in sorted(by_container.items()):
        if all(a.parsed.schema != "v3" for a in items):
            continue
        res.containers += 1
        present = {s for a in items if (s := a.segment(known[cid])) is not None}
        present |= {s for s in known[cid] if not is_variant(s, known[cid])}
        why = explained.get(cid, {})
        gaps_before = len(res.findings)
        low, top = 1, max(present | set(why), default=0)
        if opts.window() is not None:
            # Only between this range's first and last segment: archives outside the range may
            # have expired by the bucket's lifecycle, and the next range's are not ours to judge.
            in_range = {s for a in items if (s := a.segment(known[cid])) is not None}
            low, top = min(in_range, default=1), max(in_range, default=0)
        missing = [n for n in range(low, top + 1) if n not in present and n not in why]
        for n in sorted(set(why) & set(range(low, top + 1)) - present):
            res.explained.append(f"container {cid[:12]} segment {n}: {why[n]}")
        sample = min(items, key=lambda a: a.key)
        for run_ in _runs(missing):
            lo, hi = run_[0], run_[-1]
            seg = f"segment {lo}" if lo == hi else f"segments {lo}–{hi}"
            after = _neighbour(items, known[cid], lo - 1)
            res.findings.append(Finding(
                model.SEGMENT_GAP, f"container {cid}",
                f"{seg} missing" + (f" (after {after})" if after else ""), cid, sample.resource, sample.day))
            if sample.day:
                res.cell(sample.resource, sample.day).findings += 1
        _bytes(opts, res, cid, items, why, skipped.get(cid, []))
        _twice(opts, res, cid, [a for a in items if a.parsed.schema == "v3"], known[cid])
        if len(res.findings) == gaps_before:
            res.containers_contiguous += 1


def _twice(opts: Options, res: AuditResult, cid: str, items: list[_Archive], known: set[int]) -> None:
    """What a lost or replaced shipper state lets through (issue 18): one segment number archived
    under two keys, and bytes of one source file (``logarchive-source-head`` of the HEAD) archived
    in two segments whose byte ranges overlap."""

    def finding(a: _Archive, detail: str) -> None:
        res.findings.append(Finding(model.SEGMENT_TWICE, _url(opts.bucket, a.key), detail, cid,
                                    a.resource, a.day))
        if a.day:
            res.cell(a.resource, a.day).findings += 1

    claims: dict[int, list[_Archive]] = defaultdict(list)
    ranges: dict[str, list[tuple[int, int, _Archive]]] = defaultdict(list)
    for a in items:
        n = a.segment(known)
        if n is not None:
            claims[n].append(a)
        meta = (a.head.metadata if a.head is not None else None) or {}
        lo, hi = (a.entry.byte_start, a.entry.byte_end) if a.entry is not None else (None, None)
        if lo is None or hi is None:
            lo, hi = _number(meta.get("logarchive-byte-start")), _number(meta.get("logarchive-byte-end"))
        if meta.get("logarchive-source-head") and lo is not None and hi is not None and hi > lo:
            ranges[meta["logarchive-source-head"]].append((int(lo), int(hi), a))
    for n, same in sorted(claims.items()):
        if len(same) > 1:
            names = sorted(a.key.rsplit("/", 1)[-1] for a in same)
            finding(max(same, key=lambda a: a.key),
                    f"segment {n} of container {cid[:12]} archived {len(same)} times: {', '.join(names)}")
    for spans in ranges.values():
        spans.sort(key=lambda s: (s[0], s[1]))
        reach, by = -1, None
        for lo, hi, a in spans:
            if by is not None and lo < reach:
                finding(a, f"bytes [{lo}, {hi}) of a source file of container {cid[:12]} overlap bytes "
                           f"archived as {by.key.rsplit('/', 1)[-1]} (up to byte {reach})")
            if hi > reach:
                reach, by = hi, a


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def _runs(numbers: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][-1] == n - 1:
            out[-1].append(n)
        else:
            out.append([n])
    return out


def _neighbour(items: list[_Archive], known: set[int], n: int) -> str:
    for a in items:
        if a.segment(known) == n:
            return a.key.rsplit("/", 1)[-1]
    return ""


def _bytes(opts: Options, res: AuditResult, cid: str, items: list[_Archive], why: dict[int, str],
           skips: list[tuple[int, int]]) -> None:
    """Signed byte ranges only: each segment starts at 0 (a new file), where an earlier one of the
    container ended, or where an explained range that began there ends."""
    signed = sorted((a for a in items if a.entry is not None and a.entry.byte_start is not None
                     and a.entry.segment is not None), key=lambda a: int(a.entry.segment))  # type: ignore[union-attr]
    ends: set[int] = set()
    prev: int | None = None
    for a in signed:
        e = a.entry
        assert e is not None and e.byte_start is not None and e.byte_end is not None and e.segment is not None
        n = int(e.segment)
        skipped = any(hi == e.byte_start and lo in ends for lo, hi in skips)  # a cut-back range
        if (prev is not None and n == prev + 1 and e.byte_start != 0 and e.byte_start not in ends
                and not skipped and n not in why and (n - 1) not in why):
            res.findings.append(Finding(
                model.SEGMENT_GAP, _url(opts.bucket, a.key),
                f"bytes [{e.byte_start}, {e.byte_end}) do not continue segment {prev} of container "
                f"{cid[:12]} (no earlier segment ends at byte {e.byte_start})", cid, a.resource, a.day))
            if a.day:
                res.cell(a.resource, a.day).findings += 1
        ends.discard(e.byte_start)
        ends.add(e.byte_end)
        prev = n


def _ship_states(opts: Options, res: AuditResult, shipped: list[ShippedSegment],
                 known: dict[str, set[int]], explained: dict[str, dict[int, str]],
                 abandoned: set[tuple[str, int]]) -> None:
    """Every segment a host staged (state ``shipped``) must be archived once the grace is over. A
    digest's ``abandoned`` event does not excuse a segment the host's own state says it shipped:
    the host abandons only what it never staged, so that event was staged by someone else."""
    window = opts.window()
    for s in shipped:
        if s.state != "shipped" or s.stack not in ("", opts.stack) or not _segment_in_window(s, window):
            continue
        numbers = known.get(s.container_id, set())
        archived = s.segment in numbers or any(
            n // 1000 == s.segment for n in numbers if is_variant(n, numbers))
        forged = (s.container_id, s.segment) in abandoned
        if archived or (s.segment in explained.get(s.container_id, {}) and not forged):
            continue
        if s.finished is not None and s.finished > opts.now - opts.grace:
            res.shipped_pending += 1
            continue
        when = f"{s.finished:%Y-%m-%dT%H:%M:%SZ}" if s.finished else "at an unknown time"
        res.findings.append(Finding(
            model.SHIPPED_NOT_ARCHIVED, s.name(),
            f"container {s.container_id[:12]} segment {s.segment} (bytes [{s.byte_start}, {s.byte_end})) "
            f"staged {when}, no archive after the {_fmt_grace(opts.grace)} grace"
            + ("; a digest says the host abandoned it, but its state says it shipped it" if forged else ""),
            s.container_id))


def _segment_in_window(s: ShippedSegment, window: tuple[datetime, datetime] | None) -> bool:
    if window is None:
        return True
    try:
        first = digestfmt.parse_time(s.first_time)
        last = digestfmt.parse_time(s.last_time)
    except ValueError:
        return True  # no line time: the audit cannot place it, so it checks it
    return first < window[1] and last >= window[0]


def _fmt_grace(g: timedelta) -> str:
    secs = int(g.total_seconds())
    if secs and secs % 3600 == 0:
        return f"{secs // 3600}h"
    if secs and secs % 60 == 0:
        return f"{secs // 60}m"
    return f"{secs}s"


def parse_grace(text: str, option: str = "--grace") -> timedelta:
    """``2h``, ``90m``, ``30s``, ``1d`` (a bare number: seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    unit = units.get(t[-1:], None)
    num = t[:-1] if unit else t
    if not num.isdigit():
        raise ValueError(f"{option} {text!r}: expected a number with s, m, h or d (e.g. 2h)")
    return timedelta(seconds=int(num) * (unit or 1))

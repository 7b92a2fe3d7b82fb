"""The archive's health from its buckets: hosts, the last archive run, quarantines, a verdict.

What it reads, and what it trusts:

- the stack's digests in the archive bucket (or the customer's copy): the newest one is the last
  archive run; those of the last ``days`` days, once verified with the public keys, give each
  host's latest heartbeat, its retirement (hostrecord.py) and the quarantines of that time. A
  digest that does not verify is a reason to fail, never a source of facts;
- with ``staging``: the hosts' current heartbeats (fresher than the last digest, not signed),
  the staged objects still waiting for an archive run, and the quarantined ones.

Verdict: **failing** when no digest verifies, the last archive run is older than ``RUN_LIMIT``,
a digest in view does not verify, or a host is silent (no heartbeat for ``silent_after``, not
retired); **degraded** when a host reports an error or a complete line waiting longer than
``WAITING_LIMIT``, a quarantine is recorded in view, or (with ``staging``) objects are
quarantined or a staged object waits longer than ``RUN_LIMIT``; else **healthy**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import digest as digestfmt
from .. import hostrecord
from ..archiver.heartbeats import HostView
from ..audit import bucket as reads
from ..awserrors import error_label
from ..errors import LogarchiveError
from ..shipper.report import human
from ..staged import QUARANTINE_PREFIX, is_reserved

HEALTHY, DEGRADED, FAILING = "healthy", "degraded", "failing"
EXIT = {HEALTHY: 0, FAILING: 1, DEGRADED: 3}
RUN_LIMIT = timedelta(hours=2)  # archive runs are hourly: two missed is the alarm's threshold too
WAITING_LIMIT = timedelta(hours=2)  # --max-age 1 h and the daemon's interval, with room to spare


@dataclass
class Host:
    host: str
    time: str | None  # last heartbeat's pass time
    source: str  # "digest" (signed) or "staging" (the host's current heartbeat, unsigned)
    bytes_waiting: int | None = None
    oldest_waiting_age_seconds: float | None = None
    last_error: str = ""
    shipper_version: str = ""
    retired_at: str = ""
    retired_reason: str = ""
    silent: bool = False


@dataclass
class Staging:
    url: str
    pending: int = 0
    pending_bytes: int = 0
    oldest_pending_seconds: float | None = None
    quarantined: int = 0
    quarantined_examples: list[str] = field(default_factory=list)


@dataclass
class Status:
    stack: str
    bucket: str
    now: str
    last_run: dict[str, Any] | None = None
    hosts: list[Host] = field(default_factory=list)
    quarantines: list[dict[str, Any]] = field(default_factory=list)
    digests_unverified: list[str] = field(default_factory=list)
    staging: Staging | None = None
    failing: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return FAILING if self.failing else DEGRADED if self.degraded else HEALTHY

    @property
    def reasons(self) -> list[str]:
        return self.failing or self.degraded


def ago(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d"


def _digests(s3: Any, bucket: str, stack: str,
             since: datetime) -> tuple[list[reads.Listed], list[reads.Listed]]:
    """(every digest of the stack, newest last; those ending within the view)."""
    listed = reads.list_digests(s3, bucket, [digestfmt.stack_digests_prefix(stack)])
    named = [(p, x) for x in listed if (p := digestfmt.parse_digest_key(x.key)) is not None]
    named.sort(key=lambda px: px[0][1])  # by sequence
    return [x for _, x in named], [x for p, x in named if p[2] >= since.replace(microsecond=0)]


def gather(s3: Any, *, bucket: str, stack: str, public_keys: list[Any], days: int = 7,
           silent_after: timedelta = hostrecord.DEFAULT_SILENT_AFTER, staging: str = "",
           now: datetime | None = None) -> Status:
    now = now or datetime.now(UTC)
    st = Status(stack=stack, bucket=bucket, now=digestfmt.fmt_time(now))
    since = now - timedelta(days=days)
    every, in_view = _digests(s3, bucket, stack, since)
    if every and every[-1] not in in_view:
        in_view.append(every[-1])  # the last run, however old
    verified: list[digestfmt.SignedDigest] = []
    for item in in_view:
        loaded = reads.load_digest(s3, bucket, item.key)
        if loaded.signed is None:
            st.digests_unverified.append(f"s3://{bucket}/{item.key}: {loaded.error}")
            continue
        try:
            if loaded.signed.digest.stack != stack or loaded.signed.key != item.key:
                raise digestfmt.DigestError(f"its body names {loaded.signed.key}")
            digestfmt.verify(loaded.signed, public_keys)
        except digestfmt.DigestError as exc:
            st.digests_unverified.append(f"s3://{bucket}/{item.key}: {str(exc).split(': ')[-1]}")
            continue
        verified.append(loaded.signed)
    verified.sort(key=lambda s: s.digest.sequence)
    _last_run(st, verified, every, now)
    records = hostrecord.fold(verified)
    beats = _staged_beats(s3, staging, stack) if staging else {}
    _hosts(st, records, beats, now, silent_after)
    for signed in verified:
        if digestfmt.parse_time(signed.digest.end_time) < since:
            continue
        for e in signed.digest.events:
            if e.type == digestfmt.EVENT_QUARANTINED:
                st.quarantines.append({"source": e.source, "reason": e.reason, "at": e.at,
                                       "location": e.location, "digest": signed.key})
    if staging:
        st.staging = _staging(s3, staging, stack, now)
    _judge(st, now, days)
    return st


def _last_run(st: Status, verified: list[digestfmt.SignedDigest], every: list[reads.Listed],
              now: datetime) -> None:
    if not verified:
        return
    newest = verified[-1]
    end = digestfmt.parse_time(newest.digest.end_time)
    st.last_run = {"digest": newest.key, "sequence": newest.digest.sequence,
                   "end_time": newest.digest.end_time, "age_seconds": round((now - end).total_seconds(), 3),
                   "archives": len(newest.digest.archives), "newest_listed": every[-1].key if every else None}


def _staged_beats(s3: Any, staging: str, stack: str) -> dict[str, digestfmt.HostHeartbeat]:
    bucket, _, prefix = staging.removeprefix("s3://").partition("/")
    view = HostView(s3, bucket, prefix, stack)
    try:
        return {s.host: s.heartbeat for s in view.seen() if s.heartbeat is not None}
    except Exception as exc:
        raise LogarchiveError(f"{staging}: cannot read the hosts' heartbeats ({error_label(exc)})") from None


def _hosts(st: Status, records: dict[str, hostrecord.HostRecord], beats: dict[str, digestfmt.HostHeartbeat],
           now: datetime, silent_after: timedelta) -> None:
    for name in sorted(set(records) | set(beats)):
        rec = records.get(name) or hostrecord.HostRecord(name)
        hb, source = rec.last, "digest"
        fresh = beats.get(name)
        if fresh is not None and (hb is None or fresh.time > hb.time):  # RFC 3339 micros: text order
            hb, source = fresh, "staging"
        view = hostrecord.HostRecord(name, hb, rec.last_digest, rec.retirement)
        h = Host(name, hb.time if hb else None, source if hb else "")
        if hb is not None:
            h.bytes_waiting, h.oldest_waiting_age_seconds = hb.bytes_waiting, hb.oldest_waiting_age_seconds
            h.last_error, h.shipper_version = hb.last_error, hb.shipper_version
        if view.retired and rec.retirement is not None:
            h.retired_at, h.retired_reason = rec.retirement.at, rec.retirement.reason
        h.silent = view.silent(now, silent_after)
        st.hosts.append(h)


def _staging(s3: Any, url: str, stack: str, now: datetime) -> Staging:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    stack_prefix = "/".join(p for p in (prefix, stack) if p) + "/"
    out = Staging(url=url)
    pages = s3.get_paginator("list_objects_v2")
    try:
        for page in pages.paginate(Bucket=bucket, Prefix=stack_prefix):
            for o in page.get("Contents", []):
                if is_reserved(o["Key"]):
                    continue
                out.pending += 1
                out.pending_bytes += int(o["Size"])
                age = (now - o["LastModified"]).total_seconds()
                out.oldest_pending_seconds = max(out.oldest_pending_seconds or 0.0, age)
        for page in pages.paginate(Bucket=bucket, Prefix=QUARANTINE_PREFIX + stack_prefix):
            for o in page.get("Contents", []):
                out.quarantined += 1
                if len(out.quarantined_examples) < 5:
                    out.quarantined_examples.append(f"s3://{bucket}/{o['Key']}")
    except Exception as exc:
        raise LogarchiveError(f"{url}: cannot list ({error_label(exc)})") from None
    return out


def _judge(st: Status, now: datetime, days: int) -> None:
    if st.last_run is None:
        st.failing.append(f"no verified digest of stack {st.stack} in s3://{st.bucket}: no archive run "
                          "sealed one (digests off?), or none verifies with the public key")
    elif st.last_run["age_seconds"] > RUN_LIMIT.total_seconds():
        st.failing.append(f"no archive run for {ago(st.last_run['age_seconds'])} (the newest digest ended "
                          f"{st.last_run['end_time']}; runs are hourly)")
    for line in st.digests_unverified:
        st.failing.append(f"digest does not verify: {line}")
    for h in st.hosts:
        if h.silent:
            st.failing.append(f"host {h.host} silent since {h.time}: no heartbeat for "
                              f"{ago(_age(h.time, now))}")
    for h in st.hosts:
        if h.retired_at or h.silent:
            continue
        if h.last_error:
            st.degraded.append(f"host {h.host} reports an error: {h.last_error}")
        waited = _waited(h, now)
        if waited is not None and waited > WAITING_LIMIT.total_seconds():
            st.degraded.append(f"host {h.host} holds a complete line unshipped for {ago(waited)} (limit "
                               f"{ago(WAITING_LIMIT.total_seconds())})")
    if st.quarantines:
        st.degraded.append(f"{len(st.quarantines)} quarantined segment(s) recorded in the last {days} days")
    if st.staging is not None:
        if st.staging.quarantined:
            st.degraded.append(f"{st.staging.quarantined} quarantined object(s) in {st.staging.url}")
        oldest = st.staging.oldest_pending_seconds
        if oldest is not None and oldest > RUN_LIMIT.total_seconds():
            st.degraded.append(f"a staged object waits for {ago(oldest)} in {st.staging.url} (archive "
                               "runs are behind)")


def _age(time: str | None, now: datetime) -> float:
    return (now - digestfmt.parse_time(time)).total_seconds() if time else 0.0


def _waited(h: Host, now: datetime) -> float | None:
    """How long the host's oldest waiting line has waited by ``now`` (its age at the heartbeat
    plus the time since), or None."""
    if h.oldest_waiting_age_seconds is None:
        return None
    return float(h.oldest_waiting_age_seconds) + _age(h.time, now)


def to_dict(st: Status) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(st)
    d["verdict"], d["reasons"] = st.verdict, st.reasons
    return d


def render(st: Status, now: datetime) -> str:
    lines = [f"logarchive status: stack {st.stack}, s3://{st.bucket}"]
    if st.last_run:
        r = st.last_run
        lines.append(f"  last archive run: {r['end_time']} ({ago(r['age_seconds'])} ago), digest "
                     f"{r['sequence']} with {r['archives']} archives")
    else:
        lines.append("  last archive run: none sealed (no verified digest)")
    lines.append(f"  hosts: {len(st.hosts)}")
    for h in st.hosts:
        if h.retired_at:
            state = f"retired {h.retired_at} ({h.retired_reason})"
        elif h.time is None:
            state = "no heartbeat"
        else:
            waiting = "" if h.bytes_waiting is None else f", {human(h.bytes_waiting)} waiting"
            waited = _waited(h, now)
            if waited is not None:
                waiting += f" (the oldest complete line for {ago(waited)})"
            source = "signed" if h.source == "digest" else "staging, not signed yet"
            state = (f"last heartbeat {h.time} ({ago(_age(h.time, now))} ago, {source}){waiting}"
                     + (" SILENT" if h.silent else "") + (f"; error: {h.last_error}" if h.last_error else ""))
        lines.append(f"    {h.host}: {state}")
    lines.append(f"  quarantines recorded: {len(st.quarantines)}")
    for q in st.quarantines[:10]:
        lines.append(f"    {q['source']}: {q['reason']} ({q['at']})")
    if st.staging is not None:
        s = st.staging
        oldest = "" if s.oldest_pending_seconds is None else f", oldest {ago(s.oldest_pending_seconds)}"
        lines.append(f"  staging {s.url}: {s.pending} pending ({human(s.pending_bytes)}{oldest}), "
                     f"{s.quarantined} quarantined")
        lines += [f"    {k}" for k in s.quarantined_examples]
    lines.append(f"verdict: {st.verdict}" + (": " + "; ".join(st.reasons) if st.reasons else ""))
    return "\n".join(lines)


"""The hosts as the signed digests record them: each host's latest heartbeat, its retirement, and
whether it has gone silent. Read by the audit ("host h silent since T") and ``logarchive status``;
both take digests that verified, so a host's record is only ever what the signing key signed (a
retirement request in the staging bucket is never read here).

A host is silent when its latest recorded heartbeat is older than ``silent_after`` and no signed
retirement came after that heartbeat (a host that reports again after its retirement is back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .digest import HostHeartbeat, HostRetirement, SignedDigest, parse_time

DEFAULT_SILENT_AFTER = timedelta(hours=6)


@dataclass
class HostRecord:
    host: str
    last: HostHeartbeat | None = None
    last_digest: str = ""  # the key of the digest that recorded ``last``
    retirement: HostRetirement | None = None

    @property
    def last_time(self) -> datetime | None:
        return parse_time(self.last.time) if self.last else None

    @property
    def retired(self) -> bool:
        """Retired, and not heard from since."""
        if self.retirement is None:
            return False
        return self.last is None or parse_time(self.last.time) <= parse_time(self.retirement.at)

    def silent(self, now: datetime, silent_after: timedelta) -> bool:
        t = self.last_time
        return not self.retired and t is not None and now - t > silent_after


def fold(digests: Iterable[SignedDigest]) -> dict[str, HostRecord]:
    """Host → its record, over ``digests`` (any order: the newest heartbeat and retirement win)."""
    out: dict[str, HostRecord] = {}
    for signed in digests:
        for hb in signed.digest.hosts:
            rec = out.setdefault(hb.host, HostRecord(hb.host))
            if rec.last is None or parse_time(hb.time) > parse_time(rec.last.time):
                rec.last, rec.last_digest = hb, signed.key
        for r in signed.digest.retired_hosts:
            rec = out.setdefault(r.host, HostRecord(r.host))
            if rec.retirement is None or parse_time(r.at) > parse_time(rec.retirement.at):
                rec.retirement = r
    return dict(sorted(out.items()))


def silent(records: dict[str, HostRecord], now: datetime, silent_after: timedelta) -> list[HostRecord]:
    return [r for r in records.values() if r.silent(now, silent_after)]

"""The hosts as the archive run sees them: their heartbeats and retirement requests in the staging
bucket, for the next digest (``hosts``, ``retired_hosts``; digest version 2) and for the metrics
``HostsReporting``, ``HostsSilent`` and ``OldestWaitingAge``.

- A heartbeat is ``<prefix>/<stack>/<host>/_heartbeat.json`` (``staged.heartbeat_key``), replaced
  by the host's shipper every pass (shipper/heartbeat.py). The host is taken from the key, never
  from the body: a host can only write under its own prefix, so it can only speak for itself.
- A retirement request is ``retire/<stack>/<host>.json`` (``staged.retirement_key``), written by
  ``logarchive hosts retire`` with ``{"host", "at", "reason"}``; hosts have no grant there. The
  request is no evidence: the sealer copies it into the next signed digest's ``retired_hosts``,
  then deletes it and the host's heartbeat (a retired host is no longer expected to report). The
  audit and ``logarchive status`` trust only the signed digest.

Which heartbeats go into a digest: each host's current one when it is newer than the previous
digest's end less ``RACE_MARGIN`` (a pass that wrote while the previous seal was reading), unless
the previous digest already holds that very heartbeat.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..awserrors import error_label, is_not_found
from ..digest import Digest, HostHeartbeat, HostRetirement, fmt_time, parse_time
from ..staged import RETIRE_PREFIX, heartbeat_key

log = logging.getLogger(__name__)
RACE_MARGIN = timedelta(minutes=5)
READ_THREADS = 16
MAX_REASON = 500  # characters of a retirement's reason kept in the digest


@dataclass(frozen=True)
class Seen:
    """One host with a folder in staging, and its heartbeat (None: none, or unreadable)."""

    host: str
    heartbeat: HostHeartbeat | None
    problem: str = ""  # why the heartbeat could not be read


@dataclass(frozen=True)
class Request:
    key: str
    retirement: HostRetirement


@dataclass
class HostReport:
    reporting: int = 0
    silent: list[str] = field(default_factory=list)
    oldest_waiting_seconds: float = 0.0


def _heartbeat(host: str, body: bytes) -> HostHeartbeat:
    d = json.loads(body)
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    hb = HostHeartbeat.from_dict({**d, "host": host})  # the key names the host, not the body
    parse_time(hb.time)
    for name in ("containers_seen", "bytes_shipped", "bytes_waiting"):
        if not isinstance(getattr(hb, name), int) or isinstance(getattr(hb, name), bool):
            raise ValueError(f"{name} is not a whole number")
    age = hb.oldest_waiting_age_seconds
    if age is not None and (not isinstance(age, int | float) or isinstance(age, bool)):
        raise ValueError("oldest_waiting_age_seconds is not a number")
    if not isinstance(hb.shipper_version, str) or not isinstance(hb.last_error, str):
        raise ValueError("shipper_version and last_error must be strings")
    return hb


class HostView:
    """The hosts of one stack in one staging bucket."""

    def __init__(self, s3: Any, bucket: str, prefix: str, stack: str) -> None:
        self.s3, self.bucket, self.stack = s3, bucket, stack
        self.prefix = prefix.strip("/")
        self._seen: list[Seen] | None = None

    @classmethod
    def of(cls, settings: Any, s3: Any) -> HostView | None:
        if not settings.staging_bucket or not settings.stack:
            return None
        return cls(s3, settings.staging_bucket, settings.staging_prefix, settings.stack)

    def _stack_prefix(self) -> str:
        return "/".join(p for p in (self.prefix, self.stack) if p) + "/"

    # -- heartbeats --------------------------------------------------------------------------
    def seen(self) -> list[Seen]:
        """Every host folder under ``<prefix>/<stack>/`` with its heartbeat, by host (read once)."""
        if self._seen is None:
            hosts: list[str] = []
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._stack_prefix(), Delimiter="/")
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    hosts.append(cp["Prefix"][len(self._stack_prefix()):].rstrip("/"))
            with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="heartbeat") as pool:
                self._seen = sorted(pool.map(self._read, hosts), key=lambda s: s.host)
        return self._seen

    def _read(self, host: str) -> Seen:
        key = heartbeat_key(self.prefix, self.stack, host)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if is_not_found(exc):
                return Seen(host, None)  # segments but no heartbeat (a shipper before heartbeats)
            return Seen(host, None, f"s3://{self.bucket}/{key}: {error_label(exc)}")
        try:
            return Seen(host, _heartbeat(host, body))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("s3://%s/%s: not a heartbeat (%s); the host counts as not reporting",
                        self.bucket, key, str(exc)[:200])
            return Seen(host, None, f"s3://{self.bucket}/{key}: not a heartbeat")

    def for_digest(self, previous: Digest | None) -> list[HostHeartbeat]:
        """The heartbeats the next digest records (see the module's docstring)."""
        since = parse_time(previous.end_time) - RACE_MARGIN if previous is not None else None
        recorded = set(previous.hosts) if previous is not None else set()
        out = []
        for s in self.seen():
            hb = s.heartbeat
            if hb is None or hb in recorded:
                continue
            if since is None or parse_time(hb.time) > since:
                out.append(hb)
        return out

    # -- retirements -------------------------------------------------------------------------
    def requests(self, previous: Digest | None) -> list[Request]:
        """Retirement requests of this stack; one the previous digest sealed already is dropped."""
        prefix = f"{RETIRE_PREFIX}{self.stack}/"
        sealed = {(r.host, r.at) for r in previous.retired_hosts} if previous is not None else set()
        out: list[Request] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                host = key[len(prefix):].removesuffix(".json")
                if "/" in host or not key.endswith(".json") or not host:
                    continue
                try:
                    d = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                    at = fmt_time(parse_time(d["at"]))
                    reason = str(d.get("reason", ""))[:MAX_REASON]
                except Exception as exc:  # noqa: BLE001 - one bad request is logged and left
                    if is_not_found(exc):
                        continue
                    log.warning("s3://%s/%s: not a retirement request (%s); left in place", self.bucket, key,
                                type(exc).__name__)
                    continue
                if (host, at) in sealed:
                    self._delete([key])  # sealed by a run that crashed before deleting it
                    continue
                out.append(Request(key, HostRetirement(host=host, at=at, reason=reason)))
        return out

    def retired(self, requests: Sequence[Request]) -> None:
        """After the digest holding ``requests`` is committed: drop them, and the heartbeats of the
        retired hosts that are not newer than their retirement (a host back since then stays)."""
        keys = [r.key for r in requests]
        beats = {s.host: s.heartbeat for s in self.seen()}
        gone = set()
        for r in requests:
            hb = beats.get(r.retirement.host)
            if hb is None or parse_time(hb.time) <= parse_time(r.retirement.at):
                keys.append(heartbeat_key(self.prefix, self.stack, r.retirement.host))
                gone.add(r.retirement.host)
        self._delete(keys)
        self._seen = [s for s in self.seen() if s.host not in gone]

    def _delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except Exception as exc:  # noqa: BLE001 - the next seal drops a sealed request again
                log.warning("s3://%s/%s: not deleted (%s)", self.bucket, key, error_label(exc))

    # -- metrics -----------------------------------------------------------------------------
    def report(self, now: datetime, silent_after: timedelta) -> HostReport:
        """Hosts reporting within ``silent_after``, the silent ones, and the oldest waiting line's
        age now (its age at the heartbeat plus the time since)."""
        rep = HostReport()
        for s in self.seen():
            if s.heartbeat is None:
                continue  # staged segments but no heartbeat: a shipper that writes none (yet)
            at = parse_time(s.heartbeat.time)
            if now - at > silent_after:
                rep.silent.append(s.host)
                continue
            rep.reporting += 1
            if s.heartbeat.oldest_waiting_age_seconds is not None:
                age = float(s.heartbeat.oldest_waiting_age_seconds) + max(0.0, (now - at).total_seconds())
                rep.oldest_waiting_seconds = max(rep.oldest_waiting_seconds, age)
        return rep

    def publish(self, now: datetime | None = None,
                silent_after: timedelta = timedelta(hours=6)) -> HostReport:
        from .. import telemetry  # here: ``logarchive status`` reads hosts without Powertools

        rep = self.report(now or datetime.now(UTC), silent_after)
        telemetry.count("HostsReporting", rep.reporting)
        telemetry.count("HostsSilent", len(rep.silent))
        telemetry.add_seconds("OldestWaitingAge", rep.oldest_waiting_seconds)
        for host in rep.silent:
            log.warning("host %s of %s: no heartbeat for over %s", host, self.stack, silent_after)
        return rep

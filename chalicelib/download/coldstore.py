"""Archives in cold storage: which can be read now, restoring the others, waiting for them.

S3 serves GLACIER and DEEP_ARCHIVE objects, and INTELLIGENT_TIERING objects in an archive
tier, only after a restore (``RestoreObject``) made a temporary copy; a GET before that
answers ``InvalidObjectState``. GLACIER_IR, STANDARD_IA and the other classes read like
STANDARD. The listing gives the class; a HEAD gives the restore state (``Restore``:
``ongoing-request="true"`` while S3 works, ``"false"`` with an expiry date once the copy is
there) and Intelligent-Tiering's tier (``ArchiveStatus``).

A library: no printing. ``logarchive logs-from-archive`` drives it (``commands/fetch.py``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..awserrors import error_code, error_label
from ..errors import LogarchiveError

COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
TIERS = ("Bulk", "Standard", "Expedited")
DEFAULT_TIER = "Bulk"
DEFAULT_DAYS = 7

READABLE = "readable"  # never cold: read it now
COLD = "cold"  # archived, no restore asked (or the last one expired)
RESTORING = "restoring"  # a restore is under way
RESTORED = "restored"  # the temporary copy is there: read it now

_ONGOING = re.compile(r'ongoing-request="(true|false)"')
_EXPIRY = re.compile(r'expiry-date="([^"]*)"')


@dataclass(frozen=True)
class ColdState:
    """Where one archive stands: its class (and Intelligent-Tiering tier) and restore state."""

    storage_class: str
    state: str
    archive_tier: str | None = None  # ARCHIVE_ACCESS | DEEP_ARCHIVE_ACCESS
    restore_expiry: str | None = None

    @property
    def readable(self) -> bool:
        return self.state in (READABLE, RESTORED)

    @property
    def label(self) -> str:
        """``GLACIER``, ``DEEP_ARCHIVE``, ``INTELLIGENT_TIERING/DEEP_ARCHIVE_ACCESS``…"""
        return f"{self.storage_class}/{self.archive_tier}" if self.archive_tier else self.storage_class

    @property
    def price_class(self) -> str:
        """The class whose restore prices and times apply."""
        if self.archive_tier == "DEEP_ARCHIVE_ACCESS":
            return "DEEP_ARCHIVE"
        if self.archive_tier == "ARCHIVE_ACCESS":
            return "GLACIER"
        return self.storage_class


def may_be_cold(storage_class: str | None) -> bool:
    """Whether an object of this (listed) class may need a restore: a HEAD tells."""
    return storage_class in COLD_CLASSES or storage_class == INTELLIGENT_TIERING


def state_of(storage_class: str | None, head: dict[str, Any]) -> ColdState:
    """The state of an object from its listed class and a HEAD response."""
    cls = head.get("StorageClass") or storage_class or "STANDARD"
    tier = head.get("ArchiveStatus") or None
    restore = head.get("Restore") or ""
    ongoing = _ONGOING.search(restore)
    expiry = _EXPIRY.search(restore)
    if cls not in COLD_CLASSES and not (cls == INTELLIGENT_TIERING and tier):
        return ColdState(cls, READABLE)
    if ongoing is None:
        return ColdState(cls, COLD, tier)
    if ongoing.group(1) == "true":
        return ColdState(cls, RESTORING, tier)
    return ColdState(cls, RESTORED, tier, expiry.group(1) if expiry else None)


def head(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore: 403, 404, connection errors
        code = error_label(exc)
        raise LogarchiveError(f"{key}: cannot read its storage class (S3 error {code})") from None


def head_state(s3: Any, bucket: str, key: str, storage_class: str | None) -> ColdState:
    return state_of(storage_class, head(s3, bucket, key))


# ---------------------------------------------------------------------------------------
# Restores
# ---------------------------------------------------------------------------------------


def restore_request(state: ColdState, tier: str, days: int) -> dict[str, Any]:
    """``RestoreRequest`` for one archive. Intelligent-Tiering's archive tiers take neither
    days (S3 answers InvalidArgument: the restored object stays until it cools again) nor a tier
    here (Standard, its free default)."""
    if state.storage_class == INTELLIGENT_TIERING:
        return {}
    return {"Days": days, "GlacierJobParameters": {"Tier": tier}}


def check_tier(key: str, state: ColdState, tier: str) -> None:
    """Refuse before asking S3 what S3 refuses for this class."""
    if tier == "Expedited" and state.price_class == "DEEP_ARCHIVE":
        raise LogarchiveError(f"{key}: restore refused: {state.label} has no Expedited retrieval: use "
                              "--restore-tier Standard or Bulk")


def restore_error(key: str, exc: BaseException, state: ColdState, tier: str) -> LogarchiveError:
    """One line per refused restore, by S3's error code."""
    code = error_label(exc)
    if code == "InvalidObjectState":
        why = f"S3 says it is not archived (InvalidObjectState; listed as {state.label}): nothing to restore"
    elif code == "GlacierExpeditedRetrievalNotAvailable":
        why = ("no Expedited capacity now (GlacierExpeditedRetrievalNotAvailable): retry later, or use "
               "--restore-tier Standard")
    elif code == "InvalidArgument" and tier == "Expedited":
        why = f"S3 refused an Expedited restore of {state.label} (InvalidArgument): use Standard or Bulk"
    elif code in ("AccessDenied", "403"):
        why = "access denied (AccessDenied): restoring needs s3:RestoreObject on the bucket's objects"
    else:
        why = f"S3 error {code}"
    return LogarchiveError(f"{key}: restore refused: {why}")


def request_restore(s3: Any, bucket: str, key: str, state: ColdState, tier: str, days: int) -> str:
    """Ask S3 to restore one cold archive. Returns ``requested``, or ``in progress`` when S3
    already works on it (asked again after a HEAD said so, by another run, or concurrently)."""
    check_tier(key, state, tier)
    try:
        s3.restore_object(Bucket=bucket, Key=key, RestoreRequest=restore_request(state, tier, days))
    except Exception as exc:
        if error_code(exc) == "RestoreAlreadyInProgress":
            return "in progress"
        raise restore_error(key, exc, state, tier) from None
    return "requested"


# ---------------------------------------------------------------------------------------
# Estimates (list prices, dated)
# ---------------------------------------------------------------------------------------

# S3 list prices in us-east-1 as published on aws.amazon.com/s3/pricing in May 2026: per GB
# retrieved, per 1,000 restore requests, and the typical time to a readable copy.
PRICES_AS_OF = "us-east-1 list prices, May 2026"
RESTORE_PRICES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("GLACIER", "Expedited"): (0.03, 10.00, "1-5 minutes"),
    ("GLACIER", "Standard"): (0.01, 0.05, "3-5 hours"),
    ("GLACIER", "Bulk"): (0.0, 0.0, "5-12 hours"),
    ("DEEP_ARCHIVE", "Standard"): (0.02, 0.10, "within 12 hours"),
    ("DEEP_ARCHIVE", "Bulk"): (0.0025, 0.025, "within 48 hours"),
}
# Intelligent-Tiering charges no retrieval; its archive tiers restore in Standard's times.
INTELLIGENT_TIERING_TIMES = {"GLACIER": "3-5 hours", "DEEP_ARCHIVE": "within 12 hours"}
# The restored copy is billed as S3 Standard, per GB-month, for the days it is kept.
STANDARD_GB_MONTH = 0.023
GB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    archives: int
    bytes: int
    cost: float
    times: tuple[str, ...]

    def text(self, tier: str, days: int) -> str:
        size = f"{self.bytes / GB:.2f} GB" if self.bytes >= GB // 100 else f"{self.bytes / (1 << 20):.1f} MB"
        return (f"estimated cost of restoring {self.archives} archive(s) ({size}, {tier}, kept {days} days): "
                f"${self.cost:.2f}; ready {' / '.join(self.times)} ({PRICES_AS_OF}; excludes transfer)")


def estimate(items: Iterable[tuple[ColdState, int]], tier: str, days: int) -> Estimate:
    """Retrieval + request charges of ``tier`` and the restored copies' storage for ``days``."""
    n = total = 0
    cost = 0.0
    times: list[str] = []
    for state, size in items:
        n += 1
        total += size
        cls = state.price_class
        if state.storage_class == INTELLIGENT_TIERING:
            when = INTELLIGENT_TIERING_TIMES.get(cls, "hours")
        else:
            per_gb, per_k, when = RESTORE_PRICES.get((cls, tier), (0.0, 0.0, "unknown"))
            cost += size / GB * per_gb + per_k / 1000
            cost += size / GB * STANDARD_GB_MONTH * days / 30
        if when not in times:
            times.append(when)
    return Estimate(n, total, cost, tuple(times))


# ---------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------

FIRST_POLL_SECONDS = 60.0
MAX_POLL_SECONDS = 900.0


def poll_intervals(first: float = FIRST_POLL_SECONDS, most: float = MAX_POLL_SECONDS) -> Iterable[float]:
    """Seconds between rounds of HEADs: doubling from ``first`` up to ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * 2)


def wait_restored(
    s3: Any,
    bucket: str,
    pending: dict[str, str | None],
    on_ready: Callable[[str, ColdState], None],
    on_error: Callable[[str, LogarchiveError], None],
    *,
    first_interval: float = FIRST_POLL_SECONDS,
    max_interval: float = MAX_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> None:
    """Poll ``pending`` (key → listed class) with backoff until every restore completed.

    ``on_ready`` is called once per key as soon as a HEAD sees its copy; ``on_error`` when
    it can no longer be read or its restore vanished (expired before it was seen, or never
    asked): that key is dropped, the others still waited for.
    """
    left = dict(pending)
    for delay in poll_intervals(first_interval, max_interval):
        if not left or (stop is not None and stop.is_set()):
            return
        sleep(delay)
        for key, cls in list(left.items()):
            try:
                st = head_state(s3, bucket, key, cls)
            except LogarchiveError as exc:
                del left[key]
                on_error(key, exc)
                continue
            if st.readable:
                del left[key]
                on_ready(key, st)
            elif st.state == COLD:
                del left[key]
                on_error(key, LogarchiveError(f"{key}: its restore is no longer under way and no copy is "
                                              "there: run again with --restore"))


Head = dict[str, Any]


def heads(s3: Any, bucket: str, keys: list[str], *, jobs: int = 4) -> dict[str, Head | LogarchiveError]:
    """HEAD each key, in parallel; a failure is that key's one-line error."""
    def one(key: str) -> Head | LogarchiveError:
        try:
            return head(s3, bucket, key)
        except LogarchiveError as exc:
            return exc

    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="logarchive-head") as pool:
        return dict(zip(keys, pool.map(one, keys), strict=True))


class ColdArchiveError(LogarchiveError):
    """S3 will not serve the archive before a restore (``InvalidObjectState`` on GET)."""

    def __init__(self, key: str, storage_class: str, how: str) -> None:
        super().__init__(f"{key}: in cold storage ({storage_class}), not restored: {how}")
        self.storage_class = storage_class


def cold_error(key: str, exc: BaseException, how: str) -> ColdArchiveError | None:
    """The ``ColdArchiveError`` a botocore GET error means, if it means one."""
    if error_code(exc) != "InvalidObjectState":
        return None
    response = getattr(exc, "response", None) or {}
    cls = (response.get("Error") or {}).get("StorageClass") or "an archive storage class"
    return ColdArchiveError(key, str(cls), how)

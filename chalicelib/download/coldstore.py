"""``logs-from-archive`` and archives in cold storage: restore state, estimates, waiting.

Which classes are cold and how a restore is asked for: ``chalicelib/restores.py``. A library:
no printing; ``commands/fetch.py`` drives it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..awserrors import error_code, error_label
from ..errors import LogarchiveError
from ..restores import COLD, INTELLIGENT_TIERING, ColdState, state_of

DEFAULT_DAYS = 7


Head = dict[str, Any]


def head(s3: Any, bucket: str, key: str) -> Head:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore: 403, 404, connection errors
        code = error_label(exc)
        raise LogarchiveError(f"{key}: cannot read its storage class (S3 error {code})") from None


def head_state(s3: Any, bucket: str, key: str, storage_class: str | None) -> ColdState:
    return state_of(storage_class, head(s3, bucket, key))


# ---------------------------------------------------------------------------------------
# Estimates (list prices, dated)
# ---------------------------------------------------------------------------------------

# S3 list prices in us-east-1 as known for May 2026 (aws.amazon.com/s3/pricing; not re-read
# from AWS on the build machine, which has no internet; Flexible Retrieval Bulk is free per
# AWS's restore documentation): per GB retrieved, per 1,000 restore requests, and the typical
# time to a readable copy. Check them before quoting.
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

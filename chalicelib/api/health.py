"""``GET /health`` (no authorizer): whether the API's dependencies answer.

The index table (a GetItem of a key that never exists), the retrieval queue (its attributes)
and the archive bucket (its location) are each asked once; any failure answers 503. The result
is cached for ``CACHE_SECONDS`` in the warm Lambda, so the unauthenticated route cannot be used
to flood them. Which dependency failed, and why, goes to the log, never to the caller.
"""

from __future__ import annotations

import logging
import time

from .. import aws
from ..awserrors import error_label
from ..settings import Settings

log = logging.getLogger(__name__)
CACHE_SECONDS = 60.0
_cached: tuple[float, bool] | None = None


def _probes(s: Settings) -> dict[str, object]:
    return {
        f"index table {s.index_table}": lambda: aws.client("dynamodb").get_item(
            TableName=s.index_table, Key={"pk": {"S": "_health"}, "sk": {"S": "_health"}}),
        f"retrieval queue {s.retrieval_queue_url}": lambda: aws.client("sqs").get_queue_attributes(
            QueueUrl=s.retrieval_queue_url, AttributeNames=["QueueArn"]),
        f"archive bucket {s.archive_bucket}": lambda: aws.client("s3").get_bucket_location(
            Bucket=s.archive_bucket),
    }


def healthy(s: Settings | None = None) -> bool:
    """True when every dependency answered (at most one round of probes a minute)."""
    global _cached
    now = time.monotonic()
    if _cached is not None and now - _cached[0] < CACHE_SECONDS:
        return _cached[1]
    s = s or Settings.from_env()
    ok = True
    for name, probe in _probes(s).items():
        if not name.split()[-1]:
            log.error("health: %s is not configured", name.strip())
            ok = False
            continue
        try:
            probe()  # type: ignore[operator]
        except Exception as exc:  # any failure: the dependency does not answer
            log.error("health: %s does not answer (%s)", name, error_label(exc))
            ok = False
    _cached = (now, ok)
    return ok


def clear_cache() -> None:
    global _cached
    _cached = None

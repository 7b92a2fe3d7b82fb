"""The index and indexer of this stack, built from :class:`~chalicelib.settings.Settings`, and
the ``index_archive`` Lambda's handler.

Lambda handlers and the API call these, so every entry point reads the same settings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import telemetry
from ..settings import Settings, require
from .indexer import Indexer
from .store import IndexStore


def index_store(s: Settings | None = None) -> IndexStore:
    s = s or Settings.from_env()
    return IndexStore(require(s.index_table, "LOGARCHIVE_INDEX_TABLE"))


def indexer(s: Settings | None = None) -> Indexer:
    s = s or Settings.from_env()
    return Indexer(index_store(s), bucket=s.archive_bucket or None, stack=s.stack or None)


# Indexer.index_object outcomes -> metric: entries written (by the state they record), or
# records that wrote nothing (an older event than the index holds, not an archive key, or
# another bucket's or stack's object).
INDEX_METRICS = {
    "live": "IndexEntriesLive",
    "deleted": "IndexEntriesDeleted",
    "removed": "IndexEntriesRemoved",
    "stale": "IndexRecordsStale",
    "skipped": "IndexRecordsSkipped",
    "ignored": "IndexRecordsIgnored",
}


def index_archive_event(event: dict[str, Any]) -> dict[str, Any]:
    """S3 notification or EventBridge event -> index; raises on AWS errors so Lambda retries."""
    outcomes = indexer().handle_event(event)
    telemetry.count("IndexRecords", len(outcomes))  # 0 too: an event without an object record
    for outcome, n in Counter(outcomes).items():
        telemetry.count(INDEX_METRICS.get(outcome, "IndexRecordsOther"), n)
    return {"outcomes": outcomes}

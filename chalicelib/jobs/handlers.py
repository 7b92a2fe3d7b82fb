"""The index, indexer and jobs of this stack, built from :class:`~chalicelib.settings.Settings`.

Lambda handlers and the API call these, so every entry point reads the same settings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from . import telemetry
from .errors import LogarchiveError
from .index import Indexer, IndexStore
from .jobs import Jobs
from .settings import Settings


def settings() -> Settings:
    return Settings.from_env()


def _need(value: str, name: str) -> str:
    if not value:
        raise LogarchiveError(f"{name} is not set")
    return value


def index_store(s: Settings | None = None) -> IndexStore:
    s = s or settings()
    return IndexStore(_need(s.index_table, "LOGARCHIVE_INDEX_TABLE"))


def indexer(s: Settings | None = None) -> Indexer:
    s = s or settings()
    return Indexer(index_store(s), bucket=s.archive_bucket or None, stack=s.stack or None)


def jobs(s: Settings | None = None) -> Jobs:
    s = s or settings()
    return Jobs(
        _need(s.jobs_table, "LOGARCHIVE_JOBS_TABLE"),
        _need(s.retrieval_queue_url, "LOGARCHIVE_RETRIEVAL_QUEUE_URL"),
        # Never the archive bucket: results are plaintext and must not replicate to the customer.
        results_bucket=_need(s.results_bucket, "LOGARCHIVE_RESULTS_BUCKET"),
        results_prefix=s.results_prefix,
        index=index_store(s),
    )


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


def retrieval_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """SQS batch -> plan/scan steps; failed records are reported, the rest are deleted."""
    import json

    s = settings()
    j = jobs(s)

    def record_handler(record: Any) -> str:
        return j.handle(json.loads(record.body), s.keyring)

    # A batch whose every record failed is still answered with the list (not an exception):
    # Lambda then retries exactly those records, as it would retry the whole batch.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Per-step counts come from Jobs (plan, scan); these say how many messages came and failed.
    telemetry.count("RetrievalMessages", len(event.get("Records", [])))
    telemetry.count("RetrievalMessageErrors", len(response.get("batchItemFailures", [])))
    return response

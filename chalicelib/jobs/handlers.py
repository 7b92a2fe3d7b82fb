"""The retrieval jobs of this stack, built from :class:`~chalicelib.settings.Settings`, and the
``retrieval_worker`` Lambda's handler."""

from __future__ import annotations

from typing import Any

from .. import telemetry
from ..index.handlers import index_store
from ..index.indexer import parse_event
from ..settings import Settings, require
from .service import Jobs


def jobs(s: Settings | None = None) -> Jobs:
    s = s or Settings.from_env()
    return Jobs(
        require(s.jobs_table, "LOGARCHIVE_JOBS_TABLE"),
        require(s.retrieval_queue_url, "LOGARCHIVE_RETRIEVAL_QUEUE_URL"),
        # Never the archive bucket: results are plaintext and must not replicate to the customer.
        results_bucket=require(s.results_bucket, "LOGARCHIVE_RESULTS_BUCKET"),
        results_prefix=s.results_prefix,
        index=index_store(s),
    )


def retrieval_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """SQS batch -> plan/scan steps; failed records are reported, the rest are deleted."""
    # Powertools' batch utility (and its event data classes) only in the function that uses it:
    # every function of the app imports this module.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    s = Settings.from_env()
    j = jobs(s)

    def record_handler(record: Any) -> str:
        return j.handle(record.body, s.keyring)

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


def restore_completed_event(event: dict[str, Any]) -> dict[str, Any]:
    """S3's "Object Restore Completed" (EventBridge, to the index_archive function): resume the
    retrieval jobs waiting for that archive. Another bucket's events are ignored."""
    s = Settings.from_env()
    j = jobs(s)
    resumed = 0
    for record in parse_event(event):
        if s.archive_bucket and record.bucket != s.archive_bucket:
            continue
        resumed += j.restore_completed(record.key)
    telemetry.count("RetrievalTasksResumed", resumed)  # 0 too: no job was waiting
    return {"resumed": resumed}

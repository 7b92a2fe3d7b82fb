"""Turn on partial batch responses for SQS event sources that ``chalice deploy`` created.

Chalice 1.34 creates SQS event source mappings without ``FunctionResponseTypes``; Lambda
then ignores a handler's ``batchItemFailures`` and deletes the whole batch when the handler
returns. ``chalice package`` gets the setting from the merge template; after ``chalice
deploy`` this sets it on the live mappings (idempotent).
"""

from __future__ import annotations

from typing import Any

REPORT_FAILURES = "ReportBatchItemFailures"
SQS_FUNCTIONS = ("archive_worker", "retrieval_worker")


def sqs_mappings(lambda_client: Any, function_name: str) -> list[dict[str, Any]]:
    paginator = lambda_client.get_paginator("list_event_source_mappings")
    return [m for page in paginator.paginate(FunctionName=function_name)
            for m in page.get("EventSourceMappings", []) if ":sqs:" in m.get("EventSourceArn", "")]


def enable_partial_batch_responses(lambda_client: Any, function_name: str) -> list[tuple[str, bool]]:
    """(queue ARN, changed) for every SQS mapping of the function."""
    out = []
    for m in sqs_mappings(lambda_client, function_name):
        types = list(m.get("FunctionResponseTypes") or [])
        changed = REPORT_FAILURES not in types
        if changed:
            lambda_client.update_event_source_mapping(
                UUID=m["UUID"], FunctionResponseTypes=[*types, REPORT_FAILURES]
            )
        out.append((m["EventSourceArn"], changed))
    return out

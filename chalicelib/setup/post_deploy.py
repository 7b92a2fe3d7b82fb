"""What ``chalice deploy`` cannot configure, set on the deployed functions (idempotent).

- Chalice 1.34 creates SQS event source mappings without ``FunctionResponseTypes``; Lambda
  then ignores a handler's ``batchItemFailures`` and deletes the whole batch when the
  handler returns.
- Chalice has no ephemeral storage setting; the workers stage a sealed archive (or a
  retrieval's results) in /tmp, which must hold the largest (2 GB) object.

``chalice package`` gets both from the merge template (``templates.py``).
"""

from __future__ import annotations

from typing import Any

REPORT_FAILURES = "ReportBatchItemFailures"
SQS_FUNCTIONS = ("archive_worker", "retrieval_worker")
# /tmp of the workers, MB: a 2 GB staged object that does not compress, plus headroom.
EPHEMERAL_STORAGE_MB = 3072


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


def ensure_ephemeral_storage(
    lambda_client: Any, function_name: str, size_mb: int = EPHEMERAL_STORAGE_MB
) -> bool:
    """Raise the function's /tmp to ``size_mb`` if it is smaller; True if changed."""
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    if int(config.get("EphemeralStorage", {}).get("Size", 512)) >= size_mb:
        return False
    lambda_client.update_function_configuration(
        FunctionName=function_name, EphemeralStorage={"Size": size_mb}
    )
    return True

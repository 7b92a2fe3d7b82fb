"""What ``chalice deploy`` cannot configure, set on the deployed functions (idempotent).

- Chalice 1.34 creates SQS event source mappings without ``FunctionResponseTypes``; Lambda
  then ignores a handler's ``batchItemFailures`` and deletes the whole batch when the
  handler returns.
- Chalice has no ephemeral storage setting; the workers stage a sealed archive (or a
  retrieval's results) in /tmp, which must hold the largest (2 GB) object.

- Chalice has no GatewayResponses: API Gateway's own errors (403, 413, 429, 5xx) would answer
  ``{"message"}`` instead of the API's one error shape (``api/errors.py``).

``chalice package`` gets all three from the merge template (``templates.py``).
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


def rest_api_of(apigw: Any, app_name: str, api_function: str) -> str | None:
    """The id of the REST API ``chalice deploy`` made for the stage: named after the app, with a
    method invoking the stage's API function."""
    from .teardown import _integrates

    for page in apigw.get_paginator("get_rest_apis").paginate():
        for api in page["items"]:
            if api["name"] == app_name and _integrates(apigw, api["id"], api_function):
                return str(api["id"])
    return None


def ensure_gateway_responses(apigw: Any, rest_api_id: str, stage_name: str) -> list[str]:
    """Put the API's GatewayResponses (the same as the packaged template's) and redeploy the
    stage so they take effect; the response types written."""
    from ..api.errors import gateway_responses

    written = []
    for resource in gateway_responses({"Ref": "RestAPI"}).values():
        p = resource["Properties"]
        kwargs = {"restApiId": rest_api_id, "responseType": p["ResponseType"],
                  "responseParameters": p["ResponseParameters"], "responseTemplates": p["ResponseTemplates"]}
        if "StatusCode" in p:
            kwargs["statusCode"] = p["StatusCode"]
        apigw.put_gateway_response(**kwargs)
        written.append(p["ResponseType"])
    apigw.create_deployment(restApiId=rest_api_id, stageName=stage_name,
                            description="logarchive setup post-deploy: gateway responses")
    return written

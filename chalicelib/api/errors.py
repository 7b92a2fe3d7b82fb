"""The one shape of every error the retrieval API answers: ``{"error": {"code", "message"}}``.

Three producers, one shape:

- the routes (``routes._error``, ``routes._guard``): 400, 404, 413, 500;
- Chalice itself, before a route runs (a method the path does not have: 405; a body that is not
  JSON where JSON is required: 415; an unhandled exception: 500), reshaped by :func:`reshape`,
  the blueprint's middleware, in AWS and locally alike;
- API Gateway, before the Lambda runs (an unsigned or refused request, an unknown path or a
  method the path does not have: 403; a body over its limit: 413; throttling: 429; its own
  failures: 5xx), through the stage's GatewayResponses (:func:`gateway_responses`), and
  locally ``local up``'s server (``devkit.local_stack.api_server``) for the 403 it answers.

docs/API.md lists each status with an example; tests/test_api_errors.py checks every example.
"""

from __future__ import annotations

import json
from typing import Any

# Chalice's own error codes -> ours
_CHALICE_CODES = {
    "MethodNotAllowedError": "MethodNotAllowed",
    "UnsupportedMediaType": "UnsupportedMediaType",
    "BadRequestError": "BadRequest",
    "NotFoundError": "NotFound",
    "InternalServerError": "InternalError",
}
FORBIDDEN_MESSAGE = ("no such route, or the request is not signed or not allowed "
                     "(API Gateway answers all three alike)")


def body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def reshape(response: Any) -> Any:
    """A Chalice error response (``{"Code", "Message"}``) in the API's shape; others unchanged."""
    b = getattr(response, "body", None)
    if getattr(response, "status_code", 200) >= 400 and isinstance(b, dict) and set(b) == {"Code", "Message"}:
        response.body = body(_CHALICE_CODES.get(str(b["Code"]), str(b["Code"])), str(b["Message"]))
        response.headers = {**(response.headers or {}), "Content-Type": "application/json"}
    return response


def gateway_error(status: int, raw: bytes) -> bytes:
    """The body of an error the local gateway answers itself (it has only ``{"message"}``)."""
    try:
        message = str(json.loads(raw).get("message") or "")
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace")
    if status == 403:
        return json.dumps(body("Forbidden", f"{FORBIDDEN_MESSAGE}: {message}")).encode()
    return json.dumps(body("GatewayError", message)).encode()


def gateway_responses(rest_api: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation GatewayResponses of the REST API ``rest_api`` (a ``Ref``): API Gateway's own
    errors in the API's shape, with its message."""
    def response(kind: str, code: str, message: str, status: str | None = None) -> dict[str, Any]:
        template = f'{{"error":{{"code":"{code}","message":{message}}}}}'
        props: dict[str, Any] = {
            "RestApiId": rest_api,
            "ResponseType": kind,
            "ResponseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
            "ResponseTemplates": {"application/json": template},
        }
        if status:
            props["StatusCode"] = status
        return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": props}

    api_message = "$context.error.messageString"  # API Gateway's message, already a JSON string
    return {
        "ErrorShapeDefault4xx": response("DEFAULT_4XX", "$context.error.responseType", api_message),
        "ErrorShapeDefault5xx": response("DEFAULT_5XX", "InternalError", api_message),
        "ErrorShapeMissingToken": response("MISSING_AUTHENTICATION_TOKEN", "Forbidden",
                                           json.dumps(FORBIDDEN_MESSAGE), "403"),
        "ErrorShapeUnsupportedMediaType": response("UNSUPPORTED_MEDIA_TYPE", "UnsupportedMediaType",
                                                   api_message, "415"),
    }

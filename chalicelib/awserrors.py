"""One vocabulary for AWS errors: codes and what they mean, without importing boto3.

Works on botocore's ``ClientError`` (and anything else carrying a ``response`` dict) by duck
typing, so the shipper, which must not load boto3, uses it as the Lambdas do.
"""

from __future__ import annotations

# The ways S3 says an object, version or key is not there (HEAD answers carry only the status).
NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound"})
PRECONDITION_FAILED = frozenset({"412", "PreconditionFailed"})
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"


def error_code(exc: BaseException) -> str:
    """The AWS error code (``NoSuchKey``, ``AccessDenied``…), or ``""`` when there is none.

    Some botocore exceptions carry ``response = None`` (read timeouts), hence no plain getattr.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
    return ""


def error_label(exc: BaseException) -> str:
    """The error code, else the exception's class name: the cause in a one-line message."""
    return error_code(exc) or type(exc).__name__


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND


def is_precondition_failed(exc: BaseException) -> bool:
    return error_code(exc) in PRECONDITION_FAILED


def is_conditional_check_failed(exc: BaseException) -> bool:
    return error_code(exc) == CONDITIONAL_CHECK_FAILED


def is_transaction_canceled(exc: BaseException) -> bool:
    return error_code(exc) == TRANSACTION_CANCELED

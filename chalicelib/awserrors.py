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


# What to do about the failures that are the caller's setup, not the object's: the class names
# of botocore's client-side errors (they carry no code) and the codes of refused credentials.
_HINTS = {
    "NoCredentialsError": "no AWS credentials found: give --profile, or set AWS_PROFILE or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "PartialCredentialsError": "incomplete AWS credentials: check the profile or AWS_SECRET_ACCESS_KEY",
    "ProfileNotFound": "no such AWS profile in ~/.aws/config: check --profile or AWS_PROFILE",
    "NoRegionError": "no AWS region: give --region or set AWS_DEFAULT_REGION",
    "EndpointConnectionError": "cannot reach the endpoint: check --endpoint-url (AWS_ENDPOINT_URL), "
    "--region and the network",
    "ConnectTimeoutError": "cannot reach the endpoint (timed out): check --endpoint-url "
    "(AWS_ENDPOINT_URL), --region and the network",
    "InvalidAccessKeyId": "the access key is not known to AWS: check --profile or AWS_ACCESS_KEY_ID",
    "InvalidClientTokenId": "the access key is not known to AWS: check --profile or AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "the secret key does not match the access key: check --profile or "
    "AWS_SECRET_ACCESS_KEY",
    "ExpiredToken": "the session's credentials expired: renew them (aws sso login, or a new session)",
}


def error_hint(exc: BaseException) -> str:
    """What the operator should do about ``exc``, or ``""`` when it is about the object itself."""
    return _HINTS.get(error_code(exc) or type(exc).__name__, "")


def error_label(exc: BaseException) -> str:
    """The error code, else the exception's class name: the cause in a one-line message (with
    what to do, when the cause is the caller's credentials, profile, region or endpoint)."""
    label = error_code(exc) or type(exc).__name__
    hint = _HINTS.get(label)
    return f"{label}: {hint}" if hint else label


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND


def is_precondition_failed(exc: BaseException) -> bool:
    return error_code(exc) in PRECONDITION_FAILED


def is_conditional_check_failed(exc: BaseException) -> bool:
    return error_code(exc) == CONDITIONAL_CHECK_FAILED


def is_transaction_canceled(exc: BaseException) -> bool:
    return error_code(exc) == TRANSACTION_CANCELED

"""Logging of the command-line programs (``logarchive``, ``logarchive-ship``): never a secret.

``-v`` is *our* debug logging. botocore's DEBUG output is the wire — request parameters and
bodies, response bodies and headers: KMS's plaintext data keys (``GenerateDataKey``,
``Decrypt``), Secrets Manager's secret strings (the master keys ``local up --key-file``
stores), SSM SecureString values, STS session credentials, the ``Authorization`` and
security-token headers. So the SDK's loggers stay at INFO under ``-v`` ("Found credentials in
environment variables."), and only ``--debug-aws`` turns them to DEBUG. Every record that
reaches the programs' handler goes through ``Redactor`` first, which blanks the values of those
fields wherever they appear (JSON, XML, Python reprs, canonical headers, presigned URLs).
Imports only the standard library (``logarchive-ship`` loads it).
"""

from __future__ import annotations

import logging
import re
import sys

# Loggers of the SDKs (and Powertools, whose parameter utility fetches the keys in Lambda).
SDK_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "aws_lambda_powertools")
REDACTED = "<redacted>"
# Fields whose value is a secret: data keys and plaintext (KMS), secrets (Secrets Manager),
# parameter values (SSM), credentials (STS, SSO), SSE-C keys.
_FIELDS = ("Plaintext", "SecretString", "SecretBinary", "Value", "SecretAccessKey", "SessionToken",
           "Password", "PrivateKey", "KeyMaterial", "AccessToken", "RefreshToken", "ClientSecret",
           "Authorization", "X-Amz-Security-Token", "x-amz-server-side-encryption-customer-key",
           "x-amz-copy-source-server-side-encryption-customer-key")
_NAMES = "|".join(re.escape(f) for f in _FIELDS)


def _quoted(head: str, quote: str) -> str:
    return f"{head}{quote}{REDACTED}{quote}"


_PATTERNS = (
    # JSON: "Plaintext": "…" (escaped quotes inside the string included)
    (re.compile(rf'("(?:{_NAMES})"\s*:\s*)"(?:[^"\\]|\\.)*"', re.I), rf'\1"{REDACTED}"'),
    # Python reprs of dicts and headers: 'Plaintext': b'…' / "…" (the value's quotes kept)
    (re.compile(rf"""(['"](?:{_NAMES})['"]\s*:\s*)b?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.I),
     lambda m: _quoted(m.group(1), m.group(0)[len(m.group(1)):].lstrip("b")[0])),
    # XML: <SecretAccessKey>…</SecretAccessKey>
    (re.compile(rf"<({_NAMES})>[^<]*</\1>", re.I), rf"<\1>{REDACTED}</\1>"),
    # canonical requests and raw headers: "authorization:…" / "x-amz-security-token: …" lines
    (re.compile(rf"(?m)^((?:{_NAMES})\s*:).*$", re.I), rf"\1{REDACTED}"),
    # presigned URLs: X-Amz-Security-Token=…, X-Amz-Signature=…
    (re.compile(r"(X-Amz-(?:Security-Token|Signature)=)[^&\s'\"]+", re.I), rf"\1{REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` with the value of every secret field blanked."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class Redactor(logging.Filter):
    """A handler filter: the record's message (and traceback) with secret values blanked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: let the handler report it
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def protect(*handlers: logging.Handler) -> None:
    """Whatever level the environment asks for (a Lambda's ``AWS_LAMBDA_LOG_LEVEL=DEBUG``), the
    SDKs' loggers stay at INFO at most, and ``handlers`` and the root's redact."""
    for name in SDK_LOGGERS:
        sdk = logging.getLogger(name)
        if sdk.getEffectiveLevel() < logging.INFO:
            sdk.setLevel(logging.INFO)
    for handler in (*handlers, *logging.getLogger().handlers):
        if not any(isinstance(f, Redactor) for f in handler.filters):
            handler.addFilter(Redactor())


def configure(*, verbose: bool = False, debug_aws: bool = False) -> None:
    """stderr logging at INFO (DEBUG with ``verbose``); the SDKs' loggers at WARNING, INFO with
    ``verbose``, DEBUG only with ``debug_aws``; every root handler redacts."""
    logging.basicConfig(level=logging.DEBUG if verbose or debug_aws else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    sdk = logging.DEBUG if debug_aws else logging.INFO if verbose else logging.WARNING
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(sdk)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redactor) for f in handler.filters):
            handler.addFilter(Redactor())

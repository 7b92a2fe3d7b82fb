"""Open one archive object: GET it, read its S3 Encryption Client v2 envelope, hand back both.

The one reader shared by the CLI's download library (``download/retrieval.py``) and the
retrieval worker (``jobs/scan_step.py``); both then unseal the body with ``codec.unseal``. The
envelope comes from the object's metadata, or from ``<key>.instruction`` when the metadata
says so (``x-amz-crypto-instr-file``) or carries none.

Errors of the GET itself propagate unchanged (botocore's ``ClientError``): the CLI reports
them, the worker retries them unless the object is gone (``awserrors.is_not_found``). A
missing or malformed envelope is an ``EnvelopeError``; any other failure to read the
instruction file a one-line ``LogarchiveError``. Either way the body is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import envelope
from .awserrors import error_label, is_not_found
from .envelope import Envelope
from .errors import EnvelopeError, LogarchiveError

MAX_INSTRUCTION_FILE = 1 << 16


@dataclass(frozen=True)
class ArchiveObject:
    body: Any  # botocore StreamingBody: ``iter_chunks``, ``close``
    envelope: Envelope
    metadata: dict[str, str]


def open_archive(
    s3: Any, bucket: str, key: str, *, version_id: str | None = None, name: str | None = None
) -> ArchiveObject:
    """``name`` (default: the key) is how error messages call the object."""
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    resp = s3.get_object(**kwargs)
    metadata = resp.get("Metadata") or {}
    try:
        env = read_envelope(s3, bucket, key, metadata, name=name or key)
    except BaseException:
        resp["Body"].close()
        raise
    return ArchiveObject(resp["Body"], env, metadata)


def read_envelope(
    s3: Any, bucket: str, key: str, metadata: dict[str, str], *, name: str | None = None
) -> Envelope:
    """The object's envelope: from its metadata, or from ``<key>.instruction``."""
    name = name or key
    return Envelope.from_fields(envelope_fields(s3, bucket, key, metadata, name=name), name=name)


def envelope_fields(
    s3: Any, bucket: str, key: str, metadata: dict[str, str], *, name: str | None = None
) -> dict[str, str]:
    """The envelope fields a reader of the object uses, as stored (not validated): its metadata's,
    or those of ``<key>.instruction`` (``envelope.reader_fields``). What a digest's
    ``envelope_sha256`` is computed over."""
    name = name or key
    if envelope.in_metadata(metadata):
        return envelope.reader_fields(metadata, name=name)
    instr_key = key + envelope.INSTRUCTION_SUFFIX
    try:
        resp = s3.get_object(Bucket=bucket, Key=instr_key)
        try:
            text = resp["Body"].read(MAX_INSTRUCTION_FILE + 1)
        finally:
            resp["Body"].close()
    except Exception as exc:  # botocore ClientError (NoSuchKey) and connection errors
        if is_not_found(exc):
            raise EnvelopeError(
                f"{name}: no encryption envelope (no x-amz-key-v2 in its metadata and no {instr_key})"
            ) from None
        raise LogarchiveError(f"{name}: reading its instruction file: S3 error {error_label(exc)}") from None
    if len(text) > MAX_INSTRUCTION_FILE:
        raise EnvelopeError(f"{name}: instruction file is too large to be an envelope")
    return envelope.reader_fields(metadata, text, name=name)

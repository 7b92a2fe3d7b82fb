"""The audit's reads of the bucket: one listing of the stack, its digests, one HEAD per archive.

Bodies of archives are read only for ``--deep``; nothing is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from .. import digest as digestfmt
from ..awserrors import error_label, is_not_found
from ..errors import LogarchiveError
from ..layout import k8s_root


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class Head:
    """What a HEAD (with ``ChecksumMode``) of an archive says; ``None`` fields: not there."""

    key: str
    found: bool
    size: int = 0
    checksum_sha256: str | None = None
    last_modified: datetime | None = None
    lock_mode: str | None = None
    retain_until: datetime | None = None
    metadata: dict[str, str] | None = None
    error: str = ""  # a read error other than "not found"


@dataclass(frozen=True)
class LoadedDigest:
    key: str
    signed: digestfmt.SignedDigest | None  # None: unreadable (the error says why)
    error: str = ""
    lock_mode: str | None = None
    retain_until: datetime | None = None
    last_modified: datetime | None = None


def _list(s3: Any, bucket: str, prefix: str) -> list[Listed]:
    out: list[Listed] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out.append(Listed(o["Key"], int(o["Size"]), o["LastModified"].astimezone(UTC)))
    return out


def list_archives(s3: Any, bucket: str, stack: str) -> list[Listed]:
    """One listing of ``<stack>/shareable/`` (with the slash: ``<stack>x`` is another stack) and
    one of the stack's Kubernetes archives, ``_k8s/<stack>/`` (layout.py)."""
    out: list[Listed] = []
    for prefix in (f"{stack}/shareable/", k8s_root(stack)):
        try:
            out += _list(s3, bucket, prefix)
        except ClientError as exc:
            raise LogarchiveError(f"s3://{bucket}/{prefix}: cannot list ({error_label(exc)})") from None
    return out


def digest_prefixes(stack: str, start: date | None, today: date) -> list[str]:
    """The whole stack's digests, or one prefix a day from ``start`` to ``today``: an archive
    whose lines start on ``start`` cannot be sealed before that day."""
    if start is None:
        return [digestfmt.stack_digests_prefix(stack)]
    days = (today - start).days
    return [digestfmt.day_prefix(stack, datetime.combine(start + timedelta(days=i), datetime.min.time(), UTC))
            for i in range(max(0, days) + 1)]


def list_digests(s3: Any, bucket: str, prefixes: list[str]) -> list[Listed]:
    out: list[Listed] = []
    for prefix in prefixes:
        try:
            out += _list(s3, bucket, prefix)
        except ClientError as exc:
            raise LogarchiveError(f"s3://{bucket}/{prefix}: cannot list ({error_label(exc)})") from None
    return out


def load_digest(s3: Any, bucket: str, key: str) -> LoadedDigest:
    name = f"s3://{bucket}/{key}"
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
    except ClientError as exc:
        return LoadedDigest(key, None, f"cannot read ({error_label(exc)})")
    lock = (got.get("ObjectLockMode"), got.get("ObjectLockRetainUntilDate"), got.get("LastModified"))
    try:
        signed = digestfmt.from_object(body, got.get("Metadata", {}), name=name)
    except digestfmt.DigestError as exc:
        return LoadedDigest(key, None, str(exc).removeprefix(f"{name}: "), *lock)
    return LoadedDigest(key, signed, "", *lock)


def head_archive(s3: Any, bucket: str, key: str) -> Head:
    try:
        h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if is_not_found(exc):
            return Head(key, False)
        return Head(key, False, error=f"cannot HEAD ({error_label(exc)})")
    return Head(
        key, True, size=int(h.get("ContentLength", 0)), checksum_sha256=h.get("ChecksumSHA256"),
        last_modified=h.get("LastModified"), lock_mode=h.get("ObjectLockMode"),
        retain_until=h.get("ObjectLockRetainUntilDate"), metadata=h.get("Metadata", {}),
    )


def body_sha256(s3: Any, bucket: str, key: str) -> str:
    """``--deep``: the SHA-256 of the stored bytes, streamed."""
    h = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()

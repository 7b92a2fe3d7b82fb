"""The audit's reads of the bucket: one listing of the stack, its digests, one HEAD per archive.

Bodies of archives are read only for ``--deep``; nothing is written.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import ClientError

from .. import digest as digestfmt
from ..archive_object import envelope_fields
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
    envelope_sha256: str = ""  # of the envelope a reader would use ("" unread; "unreadable (…)")
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
    """The whole stack's digests, or one prefix a month from ``start``'s to ``today``'s (the
    listing keeps the days from ``start`` on): an archive whose lines start on ``start`` cannot
    be sealed before that day."""
    if start is None:
        return [digestfmt.stack_digests_prefix(stack)]
    out, month = [], date(start.year, start.month, 1)
    while month <= today:
        out.append(f"{digestfmt.stack_digests_prefix(stack)}{month:%Y/%m}/")
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out


def list_digests(s3: Any, bucket: str, prefixes: list[str], *, since: date | None = None,
                 pool: Executor | None = None) -> list[Listed]:
    """The digests under ``prefixes`` (listed concurrently in ``pool``), those of days before
    ``since`` left out, in key order."""
    def one(prefix: str) -> list[Listed]:
        try:
            return _list(s3, bucket, prefix)
        except ClientError as exc:
            raise LogarchiveError(f"s3://{bucket}/{prefix}: cannot list ({error_label(exc)})") from None

    parts = pool.map(one, prefixes) if pool is not None else map(one, prefixes)
    out = [item for part in parts for item in part]
    if since is not None:
        out = [item for item in out if (named := digestfmt.parse_digest_key(item.key)) is None
               or named[2].date() >= since]
    return sorted(out, key=lambda item: item.key)


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


def head_archive(s3: Any, bucket: str, key: str, *, envelope: bool = False) -> Head:
    """``envelope``: also the SHA-256 of its envelope (a digest of version 2 holds one)."""
    try:
        h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if is_not_found(exc):
            return Head(key, False)
        return Head(key, False, error=f"cannot HEAD ({error_label(exc)})")
    metadata = h.get("Metadata", {})
    return Head(
        key, True, size=int(h.get("ContentLength", 0)), checksum_sha256=h.get("ChecksumSHA256"),
        last_modified=h.get("LastModified"), lock_mode=h.get("ObjectLockMode"),
        retain_until=h.get("ObjectLockRetainUntilDate"), metadata=metadata,
        envelope_sha256=_envelope_sha256(s3, bucket, key, metadata) if envelope else "",
    )


def _envelope_sha256(s3: Any, bucket: str, key: str, metadata: dict[str, str]) -> str:
    """From the HEAD's metadata, or ``<key>.instruction`` for an envelope kept there."""
    try:
        return digestfmt.envelope_sha256(envelope_fields(s3, bucket, key, metadata, name=f"s3://{bucket}/{key}"))
    except LogarchiveError as exc:
        return f"unreadable ({str(exc).rsplit(': ', 1)[-1][:120]})"


def body_sha256(s3: Any, bucket: str, key: str) -> str:
    """``--deep``: the SHA-256 of the stored bytes, streamed."""
    h = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()

"""S3 operations the archiver needs, each safe to repeat.

* ``create_once``: conditional create (``If-None-Match: *``) from a local file, as one PUT or a
  multipart upload whose *completion* is conditional. Any failure aborts the multipart upload;
  a crash that skips the abort leaves an upload that the next attempt at the same key (or the
  scheduler's sweep) aborts.
* ``verify_archive``: HEAD checks that need no body (size, envelope, our checksum).
* ``delete_exact``: deletes the very version (or ETag) that was archived, never a newer one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from ..awserrors import is_not_found, is_precondition_failed
from ..envelope import TAG_BYTES, Envelope
from ..errors import LogarchiveError
from ..staged import archived_marker, archived_marker_metadata

log = logging.getLogger(__name__)
MIN_PART = 5 * 1024 * 1024
UPLOAD_THREADS = 4


class VerifyError(LogarchiveError):
    """An archive object does not match what was sealed."""


def head_or_none(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def abort_uploads(
    s3: Any, bucket: str, key: str | None = None, *, older_than: timedelta | None = None
) -> int:
    """Abort unfinished multipart uploads for ``key`` (or the whole bucket, by age)."""
    aborted = 0
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if key is not None:
        kwargs["Prefix"] = key
    cutoff = datetime.now(UTC) - older_than if older_than is not None else None
    while True:
        page = s3.list_multipart_uploads(**kwargs)
        for up in page.get("Uploads", []):
            if key is not None and up["Key"] != key:
                continue
            if cutoff is not None and up["Initiated"] > cutoff:
                continue
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
            aborted += 1
        if not page.get("IsTruncated"):
            return aborted
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


@dataclass(frozen=True)
class Checksums:
    """What an object's bytes hash to, and the checksum S3 computes for them when uploaded in
    ``part_size`` parts: the base64 SHA-256 of the bytes for a single PUT, else the base64
    SHA-256 of the parts' SHA-256 digests with ``-<parts>`` (S3's composite checksum)."""

    sha256: str  # hex, of the whole object
    s3_sha256: str  # S3's ChecksumSHA256
    part_size: int | None  # None: a single PUT
    parts: tuple[str, ...] = ()  # base64 SHA-256 of each part (multipart only)


def checksums(blocks: Any, size: int, part_size: int) -> Checksums:
    """``Checksums`` of ``size`` bytes read from ``blocks`` (an iterable of bytes), as
    ``create_once`` would upload them."""
    part_size = max(part_size, MIN_PART)
    whole = hashlib.sha256()
    if size <= part_size:
        for block in blocks:
            whole.update(block)
        return Checksums(whole.hexdigest(), base64.b64encode(whole.digest()).decode(), None)
    parts: list[bytes] = []
    part, in_part = hashlib.sha256(), 0
    for block in blocks:
        whole.update(block)
        view = memoryview(block)
        while view:
            take = min(len(view), part_size - in_part)
            part.update(view[:take])
            in_part += take
            view = view[take:]
            if in_part == part_size:
                parts.append(part.digest())
                part, in_part = hashlib.sha256(), 0
    if in_part:
        parts.append(part.digest())
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return Checksums(whole.hexdigest(), f"{composite}-{len(parts)}", part_size,
                     tuple(base64.b64encode(p).decode() for p in parts))


def file_checksums(fh: BinaryIO, size: int, part_size: int) -> Checksums:
    def blocks() -> Any:
        fh.seek(0)
        while block := fh.read(1 << 20):
            yield block

    return checksums(blocks(), size, part_size)


def _upload_parts(
    s3: Any, bucket: str, key: str, upload_id: str, fd: int, size: int, part_size: int,
    part_sums: tuple[str, ...] = (),
) -> list[dict]:
    """Parts in parallel (network-bound), at most ``UPLOAD_THREADS`` part buffers in memory."""

    def one(number: int) -> dict:
        block = os.pread(fd, part_size, (number - 1) * part_size)
        sums = {"ChecksumAlgorithm": "SHA256"}
        if part_sums:
            sums["ChecksumSHA256"] = part_sums[number - 1]
        resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=block,
                              **sums)
        checksum = resp.get("ChecksumSHA256") or sums.get("ChecksumSHA256")
        return {"ETag": resp["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}

    numbers = range(1, (size + part_size - 1) // part_size + 1)
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload-part") as pool:
        futures = [pool.submit(one, n) for n in numbers]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def create_once(
    s3: Any,
    bucket: str,
    key: str,
    fh: BinaryIO,
    *,
    size: int,
    metadata: Mapping[str, str],
    part_size: int,
    sums: Checksums | None = None,
) -> bool:
    """Upload ``fh`` to ``bucket/key`` unless the key exists. True: created; False: existed.

    With a SHA-256 checksum S3 verifies on receipt and keeps (``sums``: precomputed, else
    botocore computes it), which an audit later reads with a HEAD."""
    part_size = max(part_size, MIN_PART)
    fh.seek(0)
    extra = {"Metadata": dict(metadata), "ContentType": "application/octet-stream"}
    if size <= part_size:
        checksum = {"ChecksumAlgorithm": "SHA256", **({"ChecksumSHA256": sums.s3_sha256} if sums else {})}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=fh.read(), IfNoneMatch="*", **checksum, **extra)
        except ClientError as exc:
            if is_precondition_failed(exc):
                return False
            raise
        return True
    # A previous attempt that crashed mid-upload left its parts behind: they are ours.
    abort_uploads(s3, bucket, key)
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **extra)["UploadId"]
    try:
        parts = _upload_parts(s3, bucket, key, upload_id, fh.fileno(), size, part_size,
                              sums.parts if sums and sums.part_size == part_size else ())
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    except ClientError as exc:
        _abort_quietly(s3, bucket, key, upload_id)
        if is_precondition_failed(exc):
            return False
        raise
    except Exception:
        _abort_quietly(s3, bucket, key, upload_id)
        raise
    return True


def _abort_quietly(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # the retry's abort_uploads() or the sweep gets it later
        log.warning("s3://%s/%s: could not abort multipart upload (%s)", bucket, key, type(exc).__name__)


def verify_archive(head: Mapping[str, Any], *, name: str, sha256: str, raw_bytes: int) -> None:
    """Checks on a HEAD response: envelope present and well formed, size consistent, checksum ours."""
    meta = head.get("Metadata", {})
    env = Envelope.from_fields(meta, name=name)  # raises EnvelopeError
    if env.unencrypted_length is None:
        raise VerifyError(f"{name}: envelope lacks the unencrypted content length")
    if head.get("ContentLength") != env.unencrypted_length + TAG_BYTES:
        raise VerifyError(
            f"{name}: size {head.get('ContentLength')} != gzip length {env.unencrypted_length} + tag"
        )
    if meta.get("logarchive-sha256") != sha256:
        raise VerifyError(f"{name}: logarchive-sha256 is not the checksum of the sealed bytes")
    if meta.get("logarchive-bytes") != str(raw_bytes):
        raise VerifyError(f"{name}: logarchive-bytes {meta.get('logarchive-bytes')} != {raw_bytes}")


def find_version(s3: Any, bucket: str, key: str, etag: str) -> str | None:
    """The version id of ``key`` whose ETag is ``etag`` (versioned buckets), if any."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for v in page.get("Versions", []):
            if v["Key"] == key and v["ETag"] == etag and v.get("VersionId") not in (None, "null"):
                return v["VersionId"]
    return None


def mark_archived(s3: Any, bucket: str, staged_key: str, *, archive_key: str, sha256: str | None,
                  byte_start: int | None = None, byte_end: int | None = None, source_head: str = "") -> None:
    """Leave ``archived/<staged key>`` (empty, the archive key in its metadata) before the staged
    version goes. A plain PUT: a repeat writes the same bytes and metadata (idempotent)."""
    s3.put_object(Bucket=bucket, Key=archived_marker(staged_key), Body=b"",
                  Metadata=archived_marker_metadata(archive_key, sha256, byte_start=byte_start,
                                                    byte_end=byte_end, source_head=source_head))


def delete_exact(s3: Any, bucket: str, key: str, *, version_id: str | None, etag: str) -> None:
    """Delete the archived version only (by version id; by ETag where unversioned)."""
    if version_id and version_id != "null":
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        return
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        if is_not_found(exc) or is_precondition_failed(exc):
            return  # already gone, or replaced by a newer object that a later run archives
        raise


def stored_checksums(s3: Any, bucket: str, key: str, part_size: int, *, etag: str | None = None) -> Checksums:
    """``Checksums`` of the object S3 holds at ``key``, read back (its body, streamed)."""
    get: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        get["IfMatch"] = etag
    resp = s3.get_object(**get)
    size = resp["ContentLength"]
    got = [0]

    def blocks() -> Any:
        for chunk in resp["Body"].iter_chunks(1 << 20):
            got[0] += len(chunk)
            yield chunk

    sums = checksums(blocks(), size, part_size)
    if got[0] != size:
        raise LogarchiveError(f"s3://{bucket}/{key}: read {got[0]} of {size} bytes")
    return sums


def file_size(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size

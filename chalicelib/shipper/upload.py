"""Stage one segment in S3: conditional create, SHA-256 checksums, multipart when large.

``IfNoneMatch='*'`` (on PutObject and on CompleteMultipartUpload) means a retry can never
overwrite: if the object is already there, its ``logarchive-sha256`` metadata decides
whether that is our earlier upload (success) or a conflict. Part buffers are bounded:
at most ``concurrency`` parts of ``part_size`` bytes are in memory at once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from isal import isal_zlib

from ..awserrors import error_code, error_hint, error_label, is_not_found, is_precondition_failed
from ..errors import LogarchiveError
from ..staged import SHA256_META, archived_as, archived_marker, event_key, metadata_value, staged_key
from .segment import Measured, SegmentChanged, Staged

MAX_PARTS = 10000
MIN_PART = 5 * 1024 * 1024


class UploadError(LogarchiveError):
    """S3 refused or could not be reached (after botocore's retries with backoff)."""


class Conflict(LogarchiveError):
    """The deterministic key already holds an object with other content."""


class Interrupted(Exception):
    """Shutdown was requested between two parts; the multipart upload was aborted."""


@dataclass(frozen=True)
class Staging:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Staging:
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise LogarchiveError(f"staging target {url!r} is not an s3://bucket[/prefix] URL")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, stack: str, host: str, container_id: str, segment: int, sha256: str, encoding: str) -> str:
        return staged_key(self.prefix, stack, host, container_id, segment, sha256, encoding)

    def event_key(self, stack: str, host: str, container_id: str, segment: int, event: str) -> str:
        """Where the explanation of segment ``segment`` is staged: ``…/<segment:08d>-<event>.event``."""
        return event_key(self.prefix, stack, host, container_id, segment, event)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}/{self.prefix}"


def make_client(endpoint_url: str | None, region: str | None, max_attempts: int) -> Any:
    """An S3 client with botocore's standard retries (backoff on throttling, 5xx, network).

    botocore's session directly, as boto3.client does, without importing boto3 (~3 MiB RSS).
    It reads the same credential chain, ``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``.
    """
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5, read_timeout=60, max_pool_connections=8,
    )
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Uploader:
    def __init__(self, client: Any, bucket: str, *, part_size: int = 8 << 20, concurrency: int = 1,
                 stop: threading.Event | None = None) -> None:
        self.s3 = client
        self.bucket = bucket
        self.part_size = max(MIN_PART, part_size)
        self.concurrency = max(1, concurrency)
        self.stop = stop or threading.Event()

    def _head_metadata(self, key: str) -> dict[str, str] | None:
        """The user metadata of the object at ``key``; None when there is none."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise UploadError(f"s3://{self.bucket}/{key}: HEAD failed ({error_label(exc)})") from None
        except BotoCoreError as exc:
            raise UploadError(f"s3://{self.bucket}/{key}: {error_hint(exc) or exc}") from None
        return head.get("Metadata", {})

    def existing_sha(self, key: str) -> str | None:
        """``logarchive-sha256`` of the object at ``key``; None when there is none."""
        meta = self._head_metadata(key)
        return None if meta is None else meta.get(SHA256_META, "")

    def archived_as(self, key: str, sha256: str) -> str | None:
        """The archive key the archiver recorded in ``archived/<key>`` for these bytes, or None.

        The archiver writes that marker after verifying the archive and before deleting the
        staged object (chalicelib/staged.py), so a segment staged by a run killed
        before its state commit is known to be archived, not lost."""
        meta = self._head_metadata(archived_marker(key))
        return None if meta is None else archived_as(meta, sha256)

    def part_size_for(self, size: int) -> int:
        """The part size for an object of ``size`` bytes (grown to stay within 10,000 parts)."""
        return max(self.part_size, -(-size // MAX_PARTS))

    def upload(self, key: str, staged: Staged, m: Measured, metadata: dict[str, str]) -> str:
        """Create ``key`` with the bytes of ``staged``, which must be exactly those measured.

        Returns ``created`` or ``existed`` (an earlier attempt of ours already created it).
        Raises SegmentChanged (nothing created), Conflict, UploadError or Interrupted.
        """
        meta = {k: metadata_value(v) for k, v in metadata.items()}
        try:
            if m.size <= self.part_size:
                return self._put(key, staged.blocks(), m.size, m.sha256, meta)
            if staged.contiguous and m.part_size == self.part_size_for(m.size) and m.parts:
                parts = self._streamed_parts(staged, m)
            else:
                parts = self._buffered_parts(staged, m)
            return self._multipart(key, parts, meta)
        except ClientError as exc:
            if is_precondition_failed(exc):
                return self._settle_existing(key, m.sha256)
            raise UploadError(f"s3://{self.bucket}/{key}: {error_code(exc) or exc}") from None
        except BotoCoreError as exc:
            raise UploadError(f"s3://{self.bucket}/{key}: {error_hint(exc) or exc}") from None

    def _settle_existing(self, key: str, sha256: str) -> str:
        found = self.existing_sha(key)
        if found == sha256:
            return "existed"
        raise Conflict(f"s3://{self.bucket}/{key} exists with other content (sha256 {found!r})")

    def _put(self, key: str, blocks: Iterable[bytes], size: int, sha256: str, meta: dict[str, str]) -> str:
        body = b"".join(blocks)
        digest = hashlib.sha256(body).digest()
        if len(body) != size or digest.hex() != sha256:
            raise SegmentChanged(f"read {len(body)} bytes with another SHA-256 than measured")
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata=meta,
            ChecksumSHA256=_b64(digest), ContentType="application/octet-stream",
        )
        return "created"

    def stage_event(self, key: str, metadata: dict[str, str]) -> None:
        """An empty object whose metadata explains a gap (created once; a repeat finds it there)."""
        meta = {k: metadata_value(v) for k, v in metadata.items()}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"", IfNoneMatch="*", Metadata=meta,
                               ContentType="application/octet-stream")
        except ClientError as exc:
            if not is_precondition_failed(exc):
                raise UploadError(f"s3://{self.bucket}/{key}: {error_label(exc)}") from None
        except BotoCoreError as exc:
            raise UploadError(f"s3://{self.bucket}/{key}: {error_hint(exc) or exc}") from None

    def abort_stale(self, key: str) -> None:
        """Abort multipart uploads a killed earlier attempt left behind for ``key``."""
        resp = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for up in resp.get("Uploads", []):
            if up.get("Key") == key:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up["UploadId"])

    def _multipart(self, key: str, parts: Iterator[_Part], meta: dict[str, str]) -> str:
        self.abort_stale(key)
        upload_id = self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata=meta, ChecksumAlgorithm="SHA256",
            ContentType="application/octet-stream",
        )["UploadId"]
        try:
            done = self._send_parts(key, upload_id, parts)
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                MultipartUpload={"Parts": done},
            )
            return "created"
        except BaseException:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass  # the lifecycle rule or the next attempt's abort_stale cleans it up
            raise

    def _send_parts(self, key: str, upload_id: str, parts: Iterator[_Part]) -> list[dict[str, Any]]:
        """At most ``concurrency`` parts in flight; every part must hash as measured."""
        done: list[dict[str, Any]] = []
        if self.concurrency == 1:  # no worker thread: its malloc arena alone costs ~3 MiB of RSS
            for part in parts:
                if self.stop.is_set():
                    raise Interrupted()
                done.append(self._part(key, upload_id, part))
            return done
        inflight: list[Future] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            try:
                for part in parts:
                    if self.stop.is_set():
                        raise Interrupted()
                    inflight.append(pool.submit(self._part, key, upload_id, part))
                    while len(inflight) >= self.concurrency:
                        done.append(inflight.pop(0).result())
                for fut in inflight:
                    done.append(fut.result())
            finally:
                for fut in inflight:
                    fut.cancel()
        return done

    def _part(self, key: str, upload_id: str, part: _Part) -> dict[str, Any]:
        body = part.body()
        resp = self.s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=part.number, Body=body,
            ContentLength=part.length, ChecksumSHA256=_b64(part.sha256),
        )
        if isinstance(body, _RangeReader) and not body.matches(part.crc32):
            raise SegmentChanged(f"part {part.number} changed on disk after it was measured")
        return {"PartNumber": part.number, "ETag": resp["ETag"], "ChecksumSHA256": _b64(part.sha256)}

    def _streamed_parts(self, staged: Staged, m: Measured) -> Iterator[_Part]:
        """Parts read straight from the file by the sending thread: no part buffers at all."""
        fd = staged.fh.fileno()
        for i, (digest, crc) in enumerate(m.parts):
            offset = i * m.part_size
            length = min(m.part_size, m.size - offset)
            yield _Part(i + 1, length, digest, crc, fd=fd, offset=staged.file_offset + offset)

    def _buffered_parts(self, staged: Staged, m: Measured) -> Iterator[_Part]:
        """Parts in memory (a .gz decompressed for a tail segment): bounded by ``concurrency``."""
        whole = hashlib.sha256()
        total = 0
        for i, chunk in enumerate(_rechunk(staged.blocks(), self.part_size_for(m.size))):
            whole.update(chunk)
            total += len(chunk)
            if total > m.size or (total == m.size and whole.hexdigest() != m.sha256):
                raise SegmentChanged("the bytes read for upload differ from those measured")
            yield _Part(i + 1, len(chunk), hashlib.sha256(chunk).digest(), 0, data=chunk)
        if total != m.size:
            raise SegmentChanged(f"read {total} bytes for upload, measured {m.size}")


@dataclass
class _Part:
    number: int
    length: int
    sha256: bytes
    crc32: int  # what the bytes read while sending must match (streamed parts)
    data: bytes | None = None
    fd: int = -1
    offset: int = 0

    def body(self) -> bytes | _RangeReader:
        if self.data is not None:
            return self.data
        return _RangeReader(self.fd, self.offset, self.length)


class _RangeReader(io.RawIOBase):
    """A file-like view of ``length`` bytes at ``offset`` (``os.pread``: thread-safe, no shared
    file position), with a CRC-32 of what botocore reads; a retry seeks to 0 and starts over."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd, self.offset, self.length = fd, offset, length
        self.pos = 0
        self.crc = 0
        self.hashed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.length + pos}[whence]
        if self.pos == 0:
            self.crc, self.hashed = 0, 0
        return self.pos

    def read(self, n: int = -1) -> bytes:
        left = self.length - self.pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = os.pread(self.fd, min(n, 1 << 20), self.offset + self.pos)
        if not data:
            raise SegmentChanged("the file is shorter than when it was measured")
        if self.pos == self.hashed:
            self.crc = isal_zlib.crc32(data, self.crc)
            self.hashed += len(data)
        self.pos += len(data)
        return data

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def matches(self, crc32: int) -> bool:
        return self.hashed == self.length and self.crc == crc32


def _rechunk(blocks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Blocks regrouped into ``size``-byte parts (the last one shorter)."""
    buf = bytearray()
    for block in blocks:
        buf += block
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)

"""What S3 holds of a host's past shipping: the start check and ``--rebuild-state``.

A host's segments leave traces its role can read (docs/SHIPPER.md, "Host policy"):

- in the staging bucket, under ``<prefix>/<stack>/<host>/<container>/``: segments not archived
  yet and explanations (``…-abandoned.event``); under ``archived/`` the same key: the
  archiver's markers (30 days), which carry the segment's byte range and source identity;
  under ``quarantine/`` the same key: segments the archiver refused;
- in the archive bucket (when ``--archive-bucket`` names it): every archive object of the
  container, whose metadata carries ``logarchive-segment``, ``logarchive-byte-start``/``-end``
  and ``logarchive-source-head`` (archives written before those existed: the segment and the
  last line's time only).

``ahead`` is the start check: does S3 hold a segment number the state has not reached (a lost,
emptied, replaced or restored state)? ``rebuild`` reconstructs, per container on disk, the next
segment number and, per file on disk, how many of its bytes were staged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from .. import layout
from ..awserrors import error_hint, error_label, is_not_found
from ..dockerlog import line_time, parse_docker_time
from ..errors import LogarchiveError
from ..staged import ARCHIVED_PREFIX, QUARANTINE_PREFIX, SOURCE_HEAD_META, parse_source_head
from .identity import GzipIncomplete, iter_range, read_head
from .scan import Container, LogFile

log = logging.getLogger("logarchive.ship")

_ROOTS = ("", QUARANTINE_PREFIX, ARCHIVED_PREFIX)  # staged, refused, archived (markers)


class Unavailable(LogarchiveError):
    """S3 could not be asked (network, throttling, 5xx after retries): check again later."""


@dataclass(frozen=True)
class Record:
    """One segment number of a container found in S3."""

    segment: int
    start: int | None  # the source file's byte range, when recorded
    end: int | None
    head: tuple[int, str] | None  # the source file's identity, when recorded
    last_time: datetime | None
    where: str  # s3:// URL it was read from


@dataclass
class Rebuilt:
    """A container's rebuilt state: next segment number, and per file on disk the bytes staged."""

    container_id: str
    next_segment: int
    files: list[tuple[LogFile, bytes, int]]  # (file, its head, bytes of it staged)
    records: int
    legacy: int  # records without byte range or source identity (archived before they existed)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def _time(text: str | None) -> datetime | None:
    try:
        return parse_docker_time(text) if text else None
    except ValueError:
        return None


class History:
    def __init__(self, client: Any, staging_bucket: str, host_prefix: str, *, stack: str,
                 archive_bucket: str = "", classify: Callable[[Container], tuple[str, str, str]]) -> None:
        self.s3 = client
        self.bucket = staging_bucket
        self.host_prefix = host_prefix.rstrip("/") + "/"  # <prefix>/<stack>/<host>/
        self.stack = stack
        self.archive_bucket = archive_bucket
        self.classify = classify
        self._key_ids: list[str] | None = None

    # -- S3 reads ------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(**kw)
        except ClientError as exc:
            if error_label(exc) in ("AccessDenied", "403", "NoSuchBucket"):
                raise LogarchiveError(f"{what}: {error_label(exc)} (the host role needs the read access "
                                      "docs/SHIPPER.md lists under 'Host policy')") from None
            raise Unavailable(f"{what}: {error_label(exc)}") from None
        except BotoCoreError as exc:
            raise Unavailable(f"{what}: {error_hint(exc) or exc}") from None

    def _list(self, bucket: str, prefix: str, **kw: Any) -> Iterator[str]:
        token: dict[str, str] = {}
        while True:
            resp = self._call(f"listing s3://{bucket}/{prefix}", self.s3.list_objects_v2,
                              Bucket=bucket, Prefix=prefix, **kw, **token)
            for obj in resp.get("Contents", []):
                yield obj["Key"]
            if not resp.get("IsTruncated") or "MaxKeys" in kw:
                return
            token = {"ContinuationToken": resp["NextContinuationToken"]}

    def _head(self, bucket: str, key: str) -> dict[str, str] | None:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
        except ClientError as exc:
            if is_not_found(exc):
                return None  # archived and unstaged since the listing: its marker says the same
            raise Unavailable(f"s3://{bucket}/{key}: HEAD failed ({error_label(exc)})") from None
        except BotoCoreError as exc:
            raise Unavailable(f"s3://{bucket}/{key}: {error_hint(exc) or exc}") from None

    def ahead(self, container_id: str, next_segment: int) -> str | None:
        """The URL of a staged, refused or archived segment of this container numbered
        ``next_segment`` or more (three one-key listings), or None."""
        for root in _ROOTS:
            prefix = f"{root}{self.host_prefix}{container_id}/"
            for key in self._list(self.bucket, prefix, StartAfter=f"{prefix}{next_segment:08d}", MaxKeys=1):
                return f"s3://{self.bucket}/{key}"
        return None

    def _archive_keys(self, c: Container) -> Iterator[str]:
        """The container's archive objects (one listing per key id the stack was archived with)."""
        if not self.archive_bucket or getattr(c, "k8s", None) is not None:
            return  # a Kubernetes container's archives lie under _k8s/ (not read here yet)
        if self._key_ids is None:
            resp = self._call(f"listing s3://{self.archive_bucket}/{self.stack}/shareable/v3/",
                              self.s3.list_objects_v2, Bucket=self.archive_bucket,
                              Prefix=f"{self.stack}/shareable/v3/", Delimiter="/")
            found = resp.get("CommonPrefixes", [])
            self._key_ids = [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in found]
        kind, rid, sid = self.classify(c)
        for key_id in self._key_ids:
            prefix = layout.resource_prefix(self.stack, "v3", key_id, kind, rid or None)
            if kind == "apps":
                prefix += f"service-{sid}/"
            yield from self._list(self.archive_bucket, f"{prefix}{c.id}-json.log")

    def archived_any(self, c: Container) -> str | None:
        for key in self._archive_keys(c):
            return f"s3://{self.archive_bucket}/{key}"
        return None

    def records(self, c: Container) -> list[Record]:
        """Every segment number of ``c`` that S3 remembers, with what it says of its bytes."""
        out = []
        for root in _ROOTS:
            for key in self._list(self.bucket, f"{root}{self.host_prefix}{c.id}/"):
                name = key.rsplit("/", 1)[-1]
                number = _int(name.split("-", 1)[0])
                if number is None:
                    continue
                meta = self._head(self.bucket, key)
                if meta is None:
                    continue
                out.append(self._record(number, meta, f"s3://{self.bucket}/{key}"))
        for key in self._archive_keys(c):
            meta = self._head(self.archive_bucket, key)
            if meta is None:
                continue
            number = _int(meta.get("logarchive-segment"))
            if number is None:
                try:
                    number = layout.parse(key).rotation
                except LogarchiveError:
                    number = None
            if number is not None:
                out.append(self._record(number, meta, f"s3://{self.archive_bucket}/{key}"))
        return out

    @staticmethod
    def _record(number: int, meta: dict[str, str], where: str) -> Record:
        return Record(number, _int(meta.get("logarchive-byte-start")), _int(meta.get("logarchive-byte-end")),
                      parse_source_head(meta.get(SOURCE_HEAD_META, "")),
                      _time(meta.get("logarchive-last-time")), where)

    # -- the rebuild ---------------------------------------------------------------------
    def rebuild(self, c: Container, open_file: Callable[[LogFile], BinaryIO | None]) -> Rebuilt:
        """``c``'s next segment number and, per file on disk, the bytes of it S3 holds."""
        records = self.records(c)
        top = max((r.segment for r in records), default=0)
        legacy = [r for r in records if r.head is None or r.end is None]
        legacy_last = max((r.last_time for r in legacy if r.last_time is not None), default=None)
        files = []
        for f in c.ordered_files():
            fh = open_file(f)
            if fh is None:
                continue
            with fh:
                try:
                    head = read_head(fh, f.gz)
                except (GzipIncomplete, OSError):
                    continue  # the pass meets it and deals with it (given up in the end)
                if not head:
                    continue
                staged = [r.end for r in records if r.end is not None and _same_source(r.head, head)]
                if staged:
                    files.append((f, head, max(e for e in staged if e is not None)))
                elif legacy_last is not None:
                    # Archived before byte ranges were recorded: what its lines' times say.
                    try:
                        files.append((f, head, _lines_up_to(fh, f.gz, legacy_last)))
                    except (GzipIncomplete, OSError):
                        continue
        return Rebuilt(c.id, top + 1, files, len(records), len(legacy))


def _same_source(identity: tuple[int, str] | None, head: bytes) -> bool:
    """Is a file whose head is ``head`` the source a record names (as ``state.Source.matches``)?"""
    return identity is not None and 0 < identity[0] <= len(head) and \
        hashlib.sha256(head[: identity[0]]).hexdigest() == identity[1]


def _lines_up_to(fh: BinaryIO, gz: bool, t: datetime) -> int:
    """The offset after the last complete line before the first line timed later than ``t``."""
    base = end = 0  # file offset of ``buf[0]``; after the last line taken
    buf = b""
    for block in iter_range(fh, gz, 0, None):
        buf += block
        start = 0
        while (i := buf.find(b"\n", start)) >= 0:
            lt = line_time(buf[start:i])
            if lt is not None and lt > t:
                return end
            end = base + i + 1
            start = i + 1
        base += start
        buf = buf[start:]
        if len(buf) > (64 << 20):  # a line this long has no time we could read: stop there
            return end
    return end

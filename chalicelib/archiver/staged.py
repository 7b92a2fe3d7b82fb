"""The staged-object contract (docs/ARCHITECTURE.md) as the archiver reads it.

``StagedMeta.parse`` turns the S3 user metadata of one staged segment into typed fields and
says why an object cannot be archived (``problem``); softer inconsistencies (lines or times
that disagree with the bytes) are left to the worker, which prefers what the bytes say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..dockerlog import parse_docker_time
from ..layout import CONTAINER_RE, ID_RE, KINDS, UNLABELED

PREFIX = "logarchive-"
QUARANTINE_PREFIX = "quarantine/"  # bad staged objects, moved aside with a reason
PENDING_PREFIX = "replication-pending/"  # s3-replication: archive keys still to confirm
# ``archived/<staged key>``: written after the archive is verified, before the staged version is
# deleted, so a shipper killed between its PUT and its state commit can tell "archived" from "lost".
ARCHIVED_PREFIX = "archived/"
ARCHIVED_META = "logarchive-archive-key"  # the marker's metadata: the archive object's key
RESERVED_PREFIXES = (QUARANTINE_PREFIX, PENDING_PREFIX, ARCHIVED_PREFIX)
ENCODINGS = ("identity", "gzip")
_SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")


def is_reserved(key: str) -> bool:
    """Keys of the staging bucket the archiver itself writes (never staged segments)."""
    return key.startswith(RESERVED_PREFIXES)


def archived_marker(key: str) -> str:
    """The marker key that says the staged object ``key`` was archived."""
    return ARCHIVED_PREFIX + key


def _time(value: str) -> datetime | None:
    try:
        return parse_docker_time(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StagedMeta:
    stack: str
    host: str
    container_id: str
    container_name: str
    kind: str
    resource_id: str | None
    service_id: str | None
    segment: int | None
    first_time: datetime | None
    last_time: datetime | None
    lines: int | None
    sha256: str | None
    encoding: str
    cut_from: int | None  # the source was cut back after staging up to this offset (optional)
    problem: str | None  # why this object must be quarantined, or None

    @classmethod
    def parse(cls, metadata: Mapping[str, str]) -> StagedMeta:
        m = {k.lower().removeprefix("x-amz-meta-"): v.strip() for k, v in metadata.items()}
        problems: list[str] = []

        def get(name: str) -> str:
            return m.get(PREFIX + name, "")

        cid = get("container-id")
        if not CONTAINER_RE.match(cid):
            problems.append(f"container-id {cid[:70]!r} is not hex" if cid else "no container-id")
        kind = get("kind") or UNLABELED
        if kind not in (*KINDS, UNLABELED):
            problems.append(f"unknown kind {kind[:20]!r}")
        rid = get("resource-id") or None
        sid = get("service-id") or None
        if kind in KINDS and not (rid and ID_RE.match(rid)):
            problems.append(f"{kind} without a valid resource-id")
        if kind == "apps" and not (sid and ID_RE.match(sid)):
            problems.append("apps without a valid service-id")
        seg_text = get("segment")
        segment = int(seg_text) if seg_text.isascii() and seg_text.isdigit() else None
        if segment is None:
            problems.append(f"segment {seg_text[:20]!r} is not a number" if seg_text else "no segment")
        encoding = get("encoding") or "identity"
        if encoding not in ENCODINGS:
            problems.append(f"unknown encoding {encoding[:20]!r}")
        sha = get("sha256").lower() or None
        if sha is not None and not _SHA_RE.match(sha):
            problems.append("sha256 is not 64 hex digits")
        lines_text = get("lines")
        cut_text = get("cut-from")
        return cls(
            stack=get("stack"),
            host=get("host"),
            container_id=cid,
            container_name=get("container-name"),
            kind=kind,
            resource_id=rid if kind != UNLABELED else None,
            service_id=sid if kind == "apps" else None,
            segment=segment,
            first_time=_time(get("first-time")),
            last_time=_time(get("last-time")),
            lines=int(lines_text) if lines_text.isascii() and lines_text.isdigit() else None,
            sha256=sha,
            encoding=encoding,
            cut_from=int(cut_text) if cut_text.isascii() and cut_text.isdigit() else None,
            problem="; ".join(problems) or None,
        )

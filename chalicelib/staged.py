"""The staged-object contract (docs/ARCHITECTURE.md, "Staged object"): the one definition.

The shipper writes it, the archiver reads it. ``staged_key`` and ``staged_metadata`` build a
segment's key and S3 user metadata; ``StagedMeta.parse`` turns that metadata back into typed
fields and says why an object cannot be archived (``problem``); softer inconsistencies (lines
or times that disagree with the bytes) are left to the worker, which prefers what the bytes say.
The reserved prefixes are the archiver's own keys in the staging bucket; ``archived/<key>`` is
also read by the shipper, which imports this module: it needs only ``dockerlog``, ``layout`` and
the standard library.

The staged key's *path* is the trust boundary (each host may write only under its own
``<prefix>/<stack>/<host>/``, docs/SHIPPER.md): ``parse_staged_key`` reads host, container and
segment from it, and ``path_disagreement`` says where a staged object's metadata contradicts its
path (the archiver quarantines such an object).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from .dockerlog import format_utc, parse_docker_time
from .layout import (
    CONTAINER_RE,
    CRI_CONTAINER_RE,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    ID_RE,
    K8S,
    KINDS,
    STACK_RE,
    UNLABELED,
    cri_container_id,
    split_cri_container_id,
)

PREFIX = "logarchive-"
QUARANTINE_PREFIX = "quarantine/"  # bad staged objects, moved aside with a reason
PENDING_PREFIX = "replication-pending/"  # s3-replication: archive keys still to confirm
# ``archived/<staged key>``: written after the archive is verified, before the staged version is
# deleted, so a shipper killed between its PUT and its state commit can tell "archived" from "lost".
ARCHIVED_PREFIX = "archived/"
ARCHIVED_META = "logarchive-archive-key"  # the marker's metadata: the archive object's key
SHA256_META = "logarchive-sha256"  # the staged bytes' checksum (segment and marker alike)
# ``retire/<stack>/<host>.json``: an operator's request to retire a host (``logarchive hosts
# retire``), sealed by the archive run into the next signed digest and then deleted. Hosts cannot
# write here (their policy is their own ``<prefix>/<stack>/<host>/``), and only the signed digest
# is evidence: the audit never reads a request.
RETIRE_PREFIX = "retire/"
RESERVED_PREFIXES = (QUARANTINE_PREFIX, PENDING_PREFIX, ARCHIVED_PREFIX, RETIRE_PREFIX)
# ``<prefix>/<stack>/<host>/_heartbeat.json``: the host's latest pass (docs/SHIPPER.md), replaced
# every pass. Inside the host's own prefix, beside its containers' folders; never a segment
# (a container folder cannot start with "_": layout.CONTAINER_RE).
HEARTBEAT_NAME = "_heartbeat.json"
IDENTITY = "identity"  # the bytes as Docker wrote them
GZIP = "gzip"  # a rotated file Docker compressed, staged as is
ENCODINGS = (IDENTITY, GZIP)
# An empty staged object that explains a gap instead of carrying bytes: the shipper's
# ``<segment:08d>-abandoned.event`` (docs/AUDIT.md). Its reason is in EVENT_REASON_META.
EVENT_META = "logarchive-event"
EVENT_REASON_META = "logarchive-event-reason"
# On a segment after the shipper found its source cut back: the offset it had shipped up to.
CUT_FROM_META = "logarchive-cut-from"
# On the explanation of a damaged .gz the shipper gave up: its size on disk (the decompressed
# end of what was lost is unknown, so ``logarchive-byte-end`` is empty there).
COMPRESSED_SIZE_META = "logarchive-compressed-size"
# The source file's content identity: ``<n>:<hex SHA-256 of its first n logical bytes>`` (the
# shipper's ``Source`` head, n <= 4096). Carried into the archive object's metadata, so that
# ``logarchive ship --rebuild-state`` can tell which file on disk a segment came from.
SOURCE_HEAD_META = "logarchive-source-head"
_SOURCE_HEAD_RE = re.compile(r"^[1-9][0-9]{0,5}:[0-9a-f]{64}\Z")
_SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")
# The format of the source file: Docker's json-file (the default, no field) or CRI (kubelet's
# /var/log/pods). A CRI segment's ``<container>`` path component is
# ``<pod_uid>_<container_name>_<restart_count>`` (layout.CRI_CONTAINER_RE), its kind ``k8s``, its
# resource id the namespace, and ``logarchive-k8s-*`` name the pod and container.
FORMAT_META = "logarchive-format"
DOCKER, CRI = "docker", "cri"
K8S_FIELDS = ("namespace", "pod-name", "pod-uid", "container-name", "restart-count", "container-id")
_RUNTIME_ID_RE = re.compile(r"^[0-9a-f]{12,64}\Z", re.ASCII)


def is_container_component(text: str) -> bool:
    """Is ``text`` a valid ``<container>`` of a staged key: a Docker id or a CRI identity?"""
    return bool(CONTAINER_RE.match(text) or CRI_CONTAINER_RE.match(text))


@dataclass(frozen=True)
class K8sIdentity:
    """A Kubernetes container run: one ``<restart_count>.log`` series of one pod's container."""

    namespace: str
    pod_name: str
    pod_uid: str
    container_name: str
    restart_count: int
    container_id: str = ""  # the runtime's id (64 hex) when /var/log/containers names it

    @property
    def staged_id(self) -> str:
        """The ``<container>`` component of its staged and archive keys."""
        return cri_container_id(self.pod_uid, self.container_name, self.restart_count)

    def to_dict(self) -> dict[str, object]:
        """The digest's ``k8s`` object (docs/AUDIT.md)."""
        return {"namespace": self.namespace, "pod_name": self.pod_name, "pod_uid": self.pod_uid,
                "container_name": self.container_name, "restart_count": self.restart_count,
                "container_id": self.container_id}

    def metadata(self) -> dict[str, str]:
        return {PREFIX + "k8s-namespace": self.namespace, PREFIX + "k8s-pod-name": self.pod_name,
                PREFIX + "k8s-pod-uid": self.pod_uid, PREFIX + "k8s-container-name": self.container_name,
                PREFIX + "k8s-restart-count": str(self.restart_count),
                PREFIX + "k8s-container-id": self.container_id}
# The ``<container>`` component of a staged key: Docker's 64-hex container id, or for a
# Kubernetes container ``<pod_uid>_<container_name>_<restart_count>`` (layout.CRI_CONTAINER_RE).
DOCKER_CONTAINER_RE = re.compile(r"^[0-9a-f]{64}\Z", re.ASCII)
# ``<segment:08d>-<sha256[:16]>.log[.gz]`` or ``<segment:08d>-<event>.event``
_SEGMENT_NAME_RE = re.compile(
    r"^(?P<segment>[0-9]{8,12})-(?:(?P<sha>[0-9a-f]{16})\.log(?P<gz>\.gz)?|(?P<event>[a-z][a-z-]{0,30})\.event)\Z",
    re.ASCII,
)


def is_reserved(key: str) -> bool:
    """Keys of the staging bucket that are never staged segments: the archiver's own, an
    operator's retirement requests, and the hosts' heartbeats."""
    return key.startswith(RESERVED_PREFIXES) or is_heartbeat(key)


def heartbeat_key(prefix: str, stack: str, host: str) -> str:
    """``<prefix>/<stack>/<host>/_heartbeat.json``."""
    return "/".join(p for p in (prefix, stack, host, HEARTBEAT_NAME) if p)


def is_heartbeat(key: str) -> bool:
    return key.rsplit("/", 1)[-1] == HEARTBEAT_NAME


def retirement_key(stack: str, host: str) -> str:
    """``retire/<stack>/<host>.json``: a request to retire ``host`` (not yet signed)."""
    return f"{RETIRE_PREFIX}{stack}/{host}.json"


def retirement_request(host: str, at: datetime, reason: str) -> bytes:
    """The request's body, ``{"host", "at" (RFC 3339 UTC micros), "reason"}``; the sealer takes
    the host from the key (archiver/heartbeats.py)."""
    return json.dumps({"host": host, "at": fmt_time(at), "reason": reason}, sort_keys=True).encode()


def archived_marker(key: str) -> str:
    """The marker key that says the staged object ``key`` was archived."""
    return ARCHIVED_PREFIX + key


def staged_key(prefix: str, stack: str, host: str, container_id: str, segment: int, sha256: str,
               encoding: str) -> str:
    """``<prefix>/<stack>/<host>/<container_id>/<segment:08d>-<sha256[:16]>.log[.gz]``."""
    name = f"{segment:08d}-{sha256[:16]}.log" + (".gz" if encoding == GZIP else "")
    return "/".join(p for p in (prefix, stack, host, container_id, name) if p)


def event_key(prefix: str, stack: str, host: str, container_id: str, segment: int, event: str) -> str:
    """``<prefix>/<stack>/<host>/<container_id>/<segment:08d>-<event>.event``: an explanation."""
    return "/".join(p for p in (prefix, stack, host, container_id, f"{segment:08d}-{event}.event") if p)


@dataclass(frozen=True)
class StagedPath:
    """What a staged key's path says: the identity the archiver trusts (the IAM boundary)."""

    prefix: str  # the staging prefix, without a trailing "/" ("" for none)
    stack: str
    host: str
    container: str  # Docker's 64-hex id or ``<pod_uid>_<container_name>_<restart_count>``
    segment: int
    sha16: str | None  # the staged bytes' sha256[:16] (None for an event)
    encoding: str  # IDENTITY or GZIP (IDENTITY for an event)
    event: str | None = None  # "abandoned" for ``…-abandoned.event``

    @property
    def source_format(self) -> str:
        """``docker`` or ``cri`` (a Kubernetes container), from the container component's form."""
        return "docker" if DOCKER_CONTAINER_RE.match(self.container) else "cri"

    @property
    def k8s(self) -> tuple[str, str, int] | None:
        """(pod uid, container name, restart count) of a Kubernetes container, else None."""
        return split_cri_container_id(self.container)


def _host_ok(host: str) -> bool:
    return bool(host) and host not in (".", "..") and host.isprintable()


def parse_staged_key(key: str, prefix: str | None = None) -> StagedPath | None:
    """``<prefix>/<stack>/<host>/<container>/<segment:08d>-…`` → its parts; None when ``key`` is
    not a staged segment or explanation (a heartbeat, a reserved key, anything else).

    ``prefix`` is the staging prefix the key must lie under ("" for the bucket's root; with or
    without a trailing "/"): the archiver passes its own, so exactly four components follow it and
    a host cannot nest another host's path under its own. ``None`` reads the last four components
    whatever precedes them, for records whose staging prefix is unknown (not a trust decision).
    """
    if is_reserved(key):
        return None
    parts = key.split("/")
    if prefix is None:
        if len(parts) < 4:
            return None
        head, rest = parts[:-4], parts[-4:]
    else:
        head = [p for p in prefix.strip("/").split("/") if p] if prefix.strip("/") else []
        if parts[: len(head)] != head or len(parts) != len(head) + 4:
            return None
        rest = parts[len(head):]
    stack, host, container, name = rest
    if not STACK_RE.match(stack) or not _host_ok(host):
        return None
    if not (DOCKER_CONTAINER_RE.match(container) or CRI_CONTAINER_RE.match(container)):
        return None
    m = _SEGMENT_NAME_RE.match(name)
    if m is None:
        return None
    return StagedPath(
        prefix="/".join(head), stack=stack, host=host, container=container, segment=int(m["segment"]),
        sha16=m["sha"], encoding=GZIP if m["gz"] else IDENTITY, event=m["event"],
    )


def metadata_value(value: str) -> str:
    """S3 user metadata travels in HTTP headers: printable ASCII as is, else percent-encoded
    UTF-8 (RFC 3986), as the shipper writes every value."""
    if all(" " <= ch <= "~" for ch in value):
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%"))


def path_disagreement(path: StagedPath, meta: StagedMeta) -> str | None:
    """Where a staged object's metadata contradicts its key's path, or None.

    The path wins (a host may write only under its own path); a contradiction means a shipper
    wrote what it must not, so the object is quarantined with this reason. An empty host in the
    metadata is accepted (the path names one); stack, container and segment must agree.
    """
    out = []
    if meta.stack and meta.stack != path.stack:
        out.append(f"metadata stack {meta.stack[:70]!r} but path stack {path.stack!r}")
    if meta.host and meta.host != metadata_value(path.host):
        out.append(f"metadata host {meta.host[:70]!r} but path host {metadata_value(path.host)[:70]!r}")
    if meta.container_id != path.container:
        out.append(f"metadata container-id {meta.container_id[:70]!r} but path container {path.container!r}")
    if meta.segment != path.segment:
        out.append(f"metadata segment {meta.segment} but path segment {path.segment}")
    if path.event is None and meta.encoding != path.encoding:
        out.append(f"metadata encoding {meta.encoding!r} but the key's name says {path.encoding!r}")
    # (The name's sha256[:16] is a label: the worker checks the metadata's sha256 on the bytes.)
    return "; ".join(out) or None


def fmt_time(t: datetime | None) -> str:
    """RFC 3339 UTC with microseconds (string order is time order), or "" for no time."""
    return "" if t is None else format_utc(t)


def staged_metadata(
    *,
    stack: str,
    host: str,
    container_id: str,
    container_name: str,
    kind: str,
    resource_id: str,
    service_id: str,
    segment: int,
    rotation: int,
    byte_start: int,
    byte_end: int,
    first: datetime | None,
    last: datetime | None,
    lines: int,
    sha256: str,
    encoding: str,
    k8s: K8sIdentity | None = None,
    source_head: str = "",
) -> dict[str, str]:
    """The ``logarchive-*`` user metadata of one staged segment (``StagedMeta.parse`` reads it).

    ``byte_start``/``byte_end`` are the logical (decompressed) range of the source file,
    ``rotation`` the file's rotation number; ``sha256`` is the staged bytes' checksum;
    ``source_head`` the source file's identity (``source_head()``), when known. With
    ``k8s`` (a CRI source) the container id, kind and resource id come from it and the
    ``logarchive-k8s-*`` fields and ``logarchive-format: cri`` are added.
    """
    if k8s is not None:
        container_id, container_name = k8s.staged_id, k8s.container_name
        kind, resource_id, service_id = K8S, k8s.namespace, ""
    meta = {
        PREFIX + "stack": stack,
        PREFIX + "host": host,
        PREFIX + "container-id": container_id,
        PREFIX + "container-name": container_name,
        PREFIX + "kind": kind,
        PREFIX + "resource-id": resource_id,
        PREFIX + "service-id": service_id,
        PREFIX + "segment": str(segment),
        PREFIX + "rotation": str(rotation),
        PREFIX + "byte-start": str(byte_start),
        PREFIX + "byte-end": str(byte_end),
        PREFIX + "first-time": fmt_time(first),
        PREFIX + "last-time": fmt_time(last),
        PREFIX + "lines": str(lines),
        SHA256_META: sha256,
        PREFIX + "encoding": encoding,
    }
    if source_head:
        meta[SOURCE_HEAD_META] = source_head
    if k8s is not None:
        meta[FORMAT_META] = CRI
        meta.update(k8s.metadata())
    return meta


def source_head(head_len: int, head_sha: str) -> str:
    """A source file's identity as ``logarchive-source-head`` carries it."""
    return f"{head_len}:{head_sha}"


def parse_source_head(value: str) -> tuple[int, str] | None:
    """(n, sha256 hex) of a ``logarchive-source-head`` value; None when absent or malformed."""
    if not _SOURCE_HEAD_RE.match(value or ""):
        return None
    n, _, sha = value.partition(":")
    return int(n), sha


def archived_marker_metadata(archive_key: str, sha256: str | None, *, byte_start: int | None = None,
                             byte_end: int | None = None, source_head: str = "") -> dict[str, str]:
    """The marker's metadata: the archive object's key and the staged segment's checksum, and
    (when the staged object had them) its byte range and source identity, which
    ``logarchive ship --rebuild-state`` reads."""
    meta = {ARCHIVED_META: archive_key}
    if sha256:
        meta[SHA256_META] = sha256
    if byte_start is not None and byte_end is not None:
        meta[PREFIX + "byte-start"] = str(byte_start)
        meta[PREFIX + "byte-end"] = str(byte_end)
    if source_head:
        meta[SOURCE_HEAD_META] = source_head
    return meta


def archived_as(marker_metadata: Mapping[str, str], sha256: str) -> str | None:
    """The archive key a marker records for bytes of checksum ``sha256``; None when the marker
    is of other bytes under the same key ("?" when it names no key)."""
    if marker_metadata.get(SHA256_META, sha256) != sha256:
        return None
    return marker_metadata.get(ARCHIVED_META) or "?"


def _number(text: str) -> int | None:
    """A whole number in ASCII digits (``str.isdigit`` also takes ``１２``, which int() reads)."""
    return int(text) if text.isascii() and text.isdigit() else None


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
    problem: str | None  # why this object must be quarantined, or None
    byte_start: int | None = None  # [start, end) in the source file (optional: for the digest only)
    byte_end: int | None = None
    cut_from: int | None = None  # the source was cut back after staging up to this offset (optional)
    source_head: str = ""  # the source file's identity, ``<n>:<sha256>`` (optional; "" if absent)
    source_format: str = DOCKER  # docker | cri
    k8s: K8sIdentity | None = None  # a CRI segment's names

    @classmethod
    def parse(cls, metadata: Mapping[str, str]) -> StagedMeta:
        m = {k.lower().removeprefix("x-amz-meta-"): v.strip() for k, v in metadata.items()}
        problems: list[str] = []

        def get(name: str) -> str:
            return m.get(PREFIX + name, "")

        cid = get("container-id")
        fmt = m.get(FORMAT_META, "") or DOCKER
        k8s = None
        if fmt == CRI:
            k8s = _k8s_identity(cid, get, problems)
        elif fmt != DOCKER:
            problems.append(f"unknown format {fmt[:20]!r}")
        elif not CONTAINER_RE.match(cid):
            problems.append(f"container-id {cid[:70]!r} is not hex" if cid else "no container-id")
        kind = get("kind") or (K8S if fmt == CRI else UNLABELED)
        if kind not in (*KINDS, UNLABELED, K8S) or (kind == K8S) != (fmt == CRI):
            problems.append(f"unknown kind {kind[:20]!r}" + (f" for format {fmt}" if kind == K8S else ""))
        rid = get("resource-id") or None
        sid = get("service-id") or None
        if kind == K8S:
            rid, sid = (k8s.namespace if k8s else rid), None
        elif kind in KINDS and not (rid and ID_RE.match(rid)):
            problems.append(f"{kind} without a valid resource-id")
        if kind == "apps" and not (sid and ID_RE.match(sid)):
            problems.append("apps without a valid service-id")
        seg_text = get("segment")
        segment = _number(seg_text)
        if segment is None:
            problems.append(f"segment {seg_text[:20]!r} is not a number" if seg_text else "no segment")
        encoding = get("encoding") or IDENTITY
        if encoding not in ENCODINGS:
            problems.append(f"unknown encoding {encoding[:20]!r}")
        sha = get("sha256").lower() or None
        if sha is not None and not _SHA_RE.match(sha):
            problems.append("sha256 is not 64 hex digits")
        lines_text = get("lines")
        start_text, end_text = get("byte-start"), get("byte-end")
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
            lines=_number(lines_text),
            sha256=sha,
            encoding=encoding,
            problem="; ".join(problems) or None,
            byte_start=_number(start_text),
            byte_end=_number(end_text),
            cut_from=_number(m.get(CUT_FROM_META, "")),
            source_head=m.get(SOURCE_HEAD_META, "") if parse_source_head(m.get(SOURCE_HEAD_META, "")) else "",
            source_format=fmt if fmt in (DOCKER, CRI) else DOCKER,
            k8s=k8s,
        )


def _k8s_identity(cid: str, get, problems: list[str]) -> K8sIdentity | None:
    """A CRI segment's names, checked against its ``<pod_uid>_<container_name>_<restart>`` id."""
    parts = split_cri_container_id(cid)
    if parts is None:
        problems.append(f"container-id {cid[:140]!r} is not <pod_uid>_<container_name>_<restart_count>"
                        if cid else "no container-id")
        return None
    uid, name, restart = parts
    namespace, pod = get("k8s-namespace"), get("k8s-pod-name")
    runtime_id = get("k8s-container-id").lower()
    if not DNS_LABEL_RE.match(namespace):
        problems.append(f"k8s-namespace {namespace[:70]!r} is not a DNS label")
    if not DNS_SUBDOMAIN_RE.match(pod):
        problems.append(f"k8s-pod-name {pod[:70]!r} is not a DNS subdomain")
    for field_name, want in (("k8s-pod-uid", uid), ("k8s-container-name", name),
                             ("k8s-restart-count", str(restart))):
        if get(field_name) not in ("", want):
            problems.append(f"{field_name} {get(field_name)[:70]!r} is not the container-id's {want!r}")
    if runtime_id and not _RUNTIME_ID_RE.match(runtime_id):
        problems.append(f"k8s-container-id {runtime_id[:70]!r} is not hex")
        runtime_id = ""
    return K8sIdentity(namespace, pod, uid, name, restart, runtime_id)

"""Object key naming and parsing: the reference platform's v3 layout (and its older v2).

v3: ``<stack>/shareable/v3/<key_sha256>/<kind>-<id>/[service-<sid>/]
    <cid>-json.log[.N].<start>.<end>.archived.gz``
v2: ``<stack>/shareable/v2/<key_sha256>/<kind>-<id>/<cid>-json[.N].log.<uploaded_at>.bck.gz``

``kind`` is ``apps`` (with a ``service-<sid>`` folder), ``databases`` or ``proxy``
(endpoints). Containers that carry none of those labels go under ``unlabeled/`` (no id), a
folder the reference CLI skips and ours lists with ``--container-id``.

Kubernetes (CRI) archives, kind ``k8s``, live under a root no stack name can begin (stack names
start with a letter or digit), so a listing of ``<stack>`` (the reference CLI's) never meets one:
``_k8s/<stack>/v3/<key_sha256>/<namespace>/<pod_name>/<pod_uid>/<container_name>/
    <restart_count>.log[.N].<start>.<end>.archived.gz``
Their ``resource_id`` is the namespace, ``container_id`` the staged identity
``<pod_uid>_<container_name>_<restart_count>`` and ``pod_name`` the pod's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .dockerlog import format_utc
from .errors import LayoutError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
KINDS = ("apps", "databases", "proxy")
UNLABELED = "unlabeled"
KIND_BY_OPTION = {"app": "apps", "database": "databases", "endpoint": "proxy"}
# ``\Z`` and ASCII: ``$`` also matches before a final newline, and ``\d`` matches any
# Unicode digit. Callers use ``.match``; these patterns anchor on their own.
ID_RE = re.compile(r"^[A-Za-z0-9_]{1,64}\Z", re.ASCII)
STACK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z", re.ASCII)
CONTAINER_RE = re.compile(r"^[0-9a-f]{12,64}\Z", re.ASCII)
K8S = "k8s"  # the kind of a Kubernetes (CRI) archive
K8S_ROOT = "_k8s"  # "_": no stack name begins so (STACK_RE), nor does the reference CLI list it
# Namespaces and container names are DNS labels (63), pod names DNS subdomains (253); a pod uid
# is a UUID (a static pod's is 32 hex). None of them can hold "_", which joins them.
DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z", re.ASCII)
DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}\Z)[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\Z", re.ASCII)
_POD_UID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}"
POD_UID_RE = re.compile(rf"^(?:{_POD_UID})\Z", re.ASCII)
_RESTART = r"0|[1-9][0-9]{0,9}"  # kubelet's restart count: an int32
# The staged (and archived) identity of one Kubernetes container run: one <restart>.log series.
CRI_CONTAINER_RE = re.compile(
    rf"^(?P<uid>{_POD_UID})_(?P<name>[a-z0-9](?:[-a-z0-9]{{0,61}}[a-z0-9])?)_(?P<restart>{_RESTART})\Z",
    re.ASCII)
_K8S_FILE = re.compile(
    rf"^(?P<restart>{_RESTART})\.log(?:\.(?P<rot>\d+))?"
    r"\.(?P<start>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})"
    r"\.(?P<end>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.archived\.gz\Z",
    re.ASCII,
)


def cri_container_id(pod_uid: str, container_name: str, restart_count: int) -> str:
    """``<pod_uid>_<container_name>_<restart_count>``: a Kubernetes container's identity."""
    return f"{pod_uid}_{container_name}_{restart_count}"


def split_cri_container_id(container_id: str) -> tuple[str, str, int] | None:
    """(pod uid, container name, restart count), or None when it is no CRI identity."""
    m = CRI_CONTAINER_RE.match(container_id)
    return (m["uid"], m["name"], int(m["restart"])) if m else None
KEY_ID_RE = re.compile(r"^[0-9a-f]{64}\Z", re.ASCII)
_V3_FILE = re.compile(
    r"^(?P<cid>[0-9a-f]{12,64})-json\.log(?:\.(?P<rot>\d+))?"
    r"\.(?P<start>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})"
    r"\.(?P<end>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.archived\.gz\Z",
    re.ASCII,
)
_V2_FILE = re.compile(
    r"^(?P<cid>[0-9a-f]{12,64})-json(?:\.(?P<rot>\d+))?\.log"
    r"\.(?P<uploaded>\d{4}-\d{2}-\d{2}T\d{2}[:-]?\d{2}[:-]?\d{2}(?:\.\d+)?Z?)\.bck\.gz\Z",
    re.ASCII,
)


def format_time(t: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` UTC, four-digit year."""
    return format_utc(t)[:19]


def parse_key_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def _parse_uploaded(text: str) -> datetime | None:
    digits = re.sub(r"[^0-9]", "", text, flags=re.ASCII)[:14]
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class ArchiveKey:
    """The parts of an archive object key."""

    stack: str
    key_id: str
    kind: str  # apps | databases | proxy | unlabeled
    resource_id: str | None
    container_id: str
    service_id: str | None = None
    rotation: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    uploaded_at: datetime | None = None
    schema: str = "v3"
    pod_name: str | None = None  # k8s only

    def __post_init__(self) -> None:
        if not STACK_RE.match(self.stack):
            raise LayoutError(f"stack name {self.stack!r} is not valid in an object key")
        if self.kind == K8S:
            if not (self.resource_id and DNS_LABEL_RE.match(self.resource_id)):
                raise LayoutError(f"namespace {self.resource_id!r} is not valid")
            if not (self.pod_name and DNS_SUBDOMAIN_RE.match(self.pod_name)):
                raise LayoutError(f"pod name {str(self.pod_name)[:80]!r} is not valid")
            if not CRI_CONTAINER_RE.match(self.container_id):
                raise LayoutError(f"Kubernetes container {self.container_id[:140]!r} is not "
                                  "<pod_uid>_<container_name>_<restart_count>")
            return
        if self.kind not in (*KINDS, UNLABELED):
            raise LayoutError(f"unknown resource kind {self.kind!r}")
        if self.kind != UNLABELED and not (self.resource_id and ID_RE.match(self.resource_id)):
            raise LayoutError(f"{self.kind} id {self.resource_id!r} is not valid")
        if self.kind == "apps" and self.schema == "v3":
            if not (self.service_id and ID_RE.match(self.service_id)):
                raise LayoutError(f"service id {self.service_id!r} is not valid")
        if not CONTAINER_RE.match(self.container_id):
            raise LayoutError(f"container id {self.container_id!r} is not valid")

    @property
    def namespace(self) -> str | None:
        return self.resource_id if self.kind == K8S else None

    @property
    def cri(self) -> tuple[str, str, int] | None:
        """(pod uid, container name, restart count) of a Kubernetes archive, else None."""
        return split_cri_container_id(self.container_id) if self.kind == K8S else None

    @property
    def resource_folder(self) -> str:
        return UNLABELED if self.kind == UNLABELED else f"{self.kind}-{self.resource_id}"

    def key(self) -> str:
        """The v3 key; raises LayoutError for fields that would not parse back from it."""
        if self.schema != "v3" or self.start is None or self.end is None:
            raise LayoutError("only v3 keys with start and end times are written")
        if self.rotation is not None and self.rotation < 1:
            raise LayoutError(f"segment {self.rotation} cannot be written: segments start at 1")
        rot = f".{self.rotation}" if self.rotation else ""
        if self.kind == K8S:
            uid, name, restart = self.cri or ("", "", 0)
            parts = [K8S_ROOT, self.stack, "v3", self.key_id, self.resource_id or "", self.pod_name or "",
                     uid, name, f"{restart}.log{rot}.{format_time(self.start)}.{format_time(self.end)}"
                     ".archived.gz"]
            return self._checked("/".join(parts))
        parts = [self.stack, "shareable", "v3", self.key_id, self.resource_folder]
        if self.kind == "apps":
            parts.append(f"service-{self.service_id}")
        parts.append(
            f"{self.container_id}-json.log{rot}.{format_time(self.start)}"
            f".{format_time(self.end)}.archived.gz"
        )
        return self._checked("/".join(parts))

    def _checked(self, key: str) -> str:
        assert self.start is not None and self.end is not None
        # Readers (the indexer, logs-from-archive) know an archive only by parsing its key.
        start, end = self.start.replace(microsecond=0), self.end.replace(microsecond=0)
        if parse(key) != replace(self, start=start, end=end):
            raise LayoutError(f"{key}: does not parse back to the fields it was built from")
        return key

    def with_key_id(self, key_id: str) -> ArchiveKey:
        return replace(self, key_id=key_id)

    def download_path(self, key: str) -> str:
        """Where ``logs_from_archive`` puts it: the key less its first four components."""
        return "/".join(key.split("/")[4:])


def _parse_k8s(key: str, parts: list[str]) -> ArchiveKey:
    if len(parts) != 9 or parts[2] != "v3":
        raise LayoutError(f"{key}: not a Kubernetes archive key ({K8S_ROOT}/<stack>/v3/<key id>/<namespace>/"
                          "<pod>/<pod uid>/<container>/<restart>.log…)")
    _, stack, schema, key_id, namespace, pod, uid, name, file = parts
    if not KEY_ID_RE.match(key_id):
        raise LayoutError(f"{key}: {key_id!r} is not a key id (64 hex digits)")
    m = _K8S_FILE.match(file)
    if not m:
        raise LayoutError(f"{key}: file name does not match <restart>.log[.N].<start>.<end>.archived.gz")
    try:
        return ArchiveKey(
            stack=stack, key_id=key_id, kind=K8S, resource_id=namespace, pod_name=pod,
            container_id=f"{uid}_{name}_{m['restart']}", rotation=int(m["rot"]) if m["rot"] else None,
            start=parse_key_time(m["start"]), end=parse_key_time(m["end"]), schema=schema,
        )
    except ValueError as exc:
        raise LayoutError(f"{key}: {exc}") from None


def parse(key: str) -> ArchiveKey:
    """Parse a v3 or v2 archive key, or a Kubernetes one; raises LayoutError naming the key otherwise."""
    parts = key.split("/")
    if parts[0] == K8S_ROOT:
        return _parse_k8s(key, parts)
    if len(parts) < 6 or parts[1] != "shareable" or parts[2] not in ("v2", "v3"):
        raise LayoutError(f"{key}: not an archive key (<stack>/shareable/v2|v3/…)")
    stack, _, schema, key_id, folder = parts[:5]
    rest = parts[5:]
    if not KEY_ID_RE.match(key_id):
        raise LayoutError(f"{key}: {key_id!r} is not a key id (64 hex digits)")
    if folder == UNLABELED:
        kind, rid = UNLABELED, None
    else:
        kind, _, rid = folder.partition("-")
        if kind not in KINDS or not ID_RE.match(rid):
            raise LayoutError(f"{key}: unknown resource folder {folder!r}")
    service_id = None
    if schema == "v3" and kind == "apps":
        if len(rest) != 2 or not rest[0].startswith("service-"):
            raise LayoutError(f"{key}: app archives need a service-<id> folder")
        service_id = rest[0][len("service-"):]
        rest = rest[1:]
    if len(rest) != 1:
        raise LayoutError(f"{key}: unexpected folders in the key")
    name = rest[0]
    try:
        if schema == "v3":
            m = _V3_FILE.match(name)
            if not m:
                raise LayoutError(f"{key}: file name does not match the v3 pattern")
            return ArchiveKey(
                stack=stack, key_id=key_id, kind=kind, resource_id=rid,
                container_id=m["cid"], service_id=service_id,
                rotation=int(m["rot"]) if m["rot"] else None,
                start=parse_key_time(m["start"]), end=parse_key_time(m["end"]), schema="v3",
            )
        m = _V2_FILE.match(name)
        if not m:
            raise LayoutError(f"{key}: file name does not match the v2 pattern")
        return ArchiveKey(
            stack=stack, key_id=key_id, kind=kind, resource_id=rid, container_id=m["cid"],
            rotation=int(m["rot"]) if m["rot"] else None,
            uploaded_at=_parse_uploaded(m["uploaded"]), schema="v2",
        )
    except ValueError as exc:
        raise LayoutError(f"{key}: {exc}") from None


def k8s_root(stack: str) -> str:
    """``_k8s/<stack>/``: every Kubernetes archive of the stack (IAM, lifecycle, replication)."""
    return f"{K8S_ROOT}/{stack}/"


def k8s_prefix(stack: str, key_id: str | None = None, namespace: str | None = None,
               pod_name: str | None = None) -> str:
    """The listing prefix of a stack's Kubernetes archives (of one key id, namespace, pod)."""
    parts = [K8S_ROOT, stack, "v3"]
    for part in (key_id, namespace, pod_name):
        if part is None:
            break
        parts.append(part)
    return "/".join(parts) + "/"


def resource_prefix(stack: str, schema: str, key_id: str, kind: str, resource_id: str | None) -> str:
    """The listing prefix that holds one resource's archives under one key id."""
    folder = UNLABELED if kind == UNLABELED else f"{kind}-{resource_id}"
    return f"{stack}/shareable/{schema}/{key_id}/{folder}/"

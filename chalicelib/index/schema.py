"""DynamoDB key schema of the archive index (one table, ``pk`` HASH + ``sk`` RANGE, both strings).

Question the index answers: *stack + one selector (app / database / endpoint / container; other
selectors such as a Kubernetes namespace or pod fit the same shape) + time range*, at a cost set
by what matches: at most ``1 + pages + years of the range`` requests, however wide the range.

Items (every item carries the complete entry, so a query never needs a second read); schema 2:

=====================  ==========================================  ====================================
item                   pk                                          sk
=====================  ==========================================  ====================================
head (one an archive)  ``<stack>#archive#<archive_id>``            ``head``
start item             ``<stack>#<kind>#<ident>#<YYYY>``           ``S#<first>#<archive_id>``
                       (year of ``first``)
continuation item      ``<stack>#<kind>#<ident>#<YYYY>``           ``C#<hour>#<last>#<archive_id>``
                       (year of ``<hour>``)                        (every later hour it spans)
years of a selector    ``<stack>#<kind>#<ident>#years``            ``years`` (number set ``years``)
=====================  ==========================================  ====================================

- A *selector* is ``(kind, ident)`` (:meth:`Entry.selectors`); each selector of an archive gets
  the same items:

  ==================  ===========================================  =============================
  kind                ident                                        archives
  ==================  ===========================================  =============================
  ``apps`` …          resource id (``apps``/``databases``/         Docker, labeled (unlabeled
                      ``proxy``)                                   archives have none)
  ``container``       first 12 characters of the container id      every archive
  ``k8s``             namespace                                    Kubernetes (CRI)
  ``pod``             ``<namespace>/<pod name>``                   Kubernetes, from selectors 2
  ``k8s_container``   ``<namespace>/<container name>``             Kubernetes, from selectors 2
  ==================  ===========================================  =============================

  "namespace + pod + container name" reads the pod's items and keeps those of that container
  (``store.Selector.container_name``, checked on the items read): a pod holds a few containers,
  so that costs a few items, not requests. "namespace + container name" (every pod of a
  Deployment: its pods' names change, its container names do not) has its own selector, so it
  costs what it matches rather than the namespace's items.
- Selector sets: ``sx`` on every item is the set of selectors the entry's items were written for
  (1: the first three rows, no attribute; 2: all rows). ``index backfill`` (and any rewrite)
  adds the missing items of an older entry; the years counts of the selectors it adds then
  count that archive (the head goes last: a crash in between counts it again on the retry, which
  keeps each count an upper bound).
- ``<first>``/``<last>`` are fixed-width UTC times with microseconds
  (``2022-01-01T12:00:00.000000Z``) so string order is time order; ``<hour>`` is ``YYYY-MM-DDTHH``.
- The years item says which year partitions hold anything (years are added, never removed): a
  query reads it once (its page tokens carry the years) and skips the empty years.
- Query ``[start, end)`` (``store.IndexStore.query``), in result order:
  1. the continuation items of ``hour(start)`` with ``last >= start``: archives begun in an
     earlier hour that still run at ``start`` (one key range, exact);
  2. for each year from ``hour(start)``'s to ``end``'s that holds items: the start items with ``first`` in
     ``[max(hour(start), year start), end)`` (one key range a year). Read beyond the matches
     are only archives that began in ``start``'s hour and ended before ``start``, and deleted
     entries.
  A page stops at ``limit`` entries and never comes back empty while more results exist.
  Requests: the years item, the continuation range, one a year with items, and one more a
  page (the range a page stopped in is read on) -- at most ``1 + pages + years``.
- ``archive_id`` is the first 32 hex digits of SHA-256 of the object key: opaque, fixed
  format, and only ever resolved through the head item (never turned into a key).
- Container ids are at least 12 hex digits: the container pk uses the first 12, a longer
  prefix is checked on the items read.
- Versions and deletions: ``state`` is ``live`` (current version), ``deleted`` (a delete marker
  is current; the data version is kept and named by ``version_id``) or ``removed`` (no version
  left: a tombstone with ``expires_at``, an epoch-seconds TTL attribute). Every write is
  conditional on the S3 event ``sequencer`` (``seq``, zero-padded hex): an older or replayed
  event never overwrites a newer state, and the same event twice writes the same item.
- TTL attribute (optional, recommended): ``expires_at``.
- Schema 1 (until 2026-12) had one partition per selector and *hour* (``...#<YYYY-MM-DDTHH>``),
  so a query cost one request per hour of its range. Heads written then carry no ``ix``; the
  indexer deletes their hour items when it rewrites such an archive (``legacy_bucket_keys``),
  and ``logarchive index backfill`` rewrites every archive (docs/OPERATIONS.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..dockerlog import format_utc
from ..layout import split_cri_container_id

HOUR = timedelta(hours=1)
TIME_WIDTH = 27  # len("2022-01-01T12:00:00.000000Z")
SEQ_WIDTH = 32
ARCHIVE_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
CONTAINER_PK_LEN = 12
STATES = ("live", "deleted", "removed")
START, CONT = "S", "C"
INDEX_SCHEMA = 2  # the ``ix`` attribute of every item this code writes
SELECTOR_SET = 2  # the ``sx`` attribute: which selectors an entry's items were written for
K8S = "k8s"  # layout.K8S: a Kubernetes (CRI) archive's kind, its namespace selector
POD, K8S_CONTAINER = "pod", "k8s_container"  # the Kubernetes selectors of selector set 2


def archive_id_of(key: str) -> str:
    """The opaque id of the archive stored under ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def fmt_time(t: datetime) -> str:
    return format_utc(t)


def parse_rfc3339_micros(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def hour_of(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_label(h: datetime) -> str:
    return format_utc(h)[:13]


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    """Every UTC hour from the hour of ``first`` to the hour of ``last``, inclusive."""
    h, end = hour_of(first), hour_of(last)
    out = []
    while h <= end:
        out.append(h)
        h += HOUR
    return out


def norm_seq(sequencer: str | None) -> str:
    """S3 sequencers compare as hex strings once left-padded; backfill uses the lowest."""
    s = (sequencer or "").strip().upper()
    if not re.fullmatch(r"[0-9A-F]{0,32}", s):
        s = ""
    return s.rjust(SEQ_WIDTH, "0")


def head_pk(stack: str, archive_id: str) -> str:
    return f"{stack}#archive#{archive_id}"


def year_of(t: datetime) -> int:
    return t.astimezone(UTC).year


def year_start(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=UTC)


def part_pk(stack: str, kind: str, ident: str, year: int) -> str:
    """The partition of one selector's items in one year."""
    if kind == "container":
        ident = ident[:CONTAINER_PK_LEN]
    return f"{stack}#{kind}#{ident}#{year:04d}"


def pod_ident(namespace: str, name: str) -> str:
    """The ident of a ``pod`` or ``k8s_container`` selector: ``<namespace>/<name>``."""
    return f"{namespace}/{name}"


def years_pk(stack: str, kind: str, ident: str) -> str:
    """The item listing the years one selector has items in (``years``: a number set)."""
    if kind == "container":
        ident = ident[:CONTAINER_PK_LEN]
    return f"{stack}#{kind}#{ident}#years"


def start_sk(first: datetime, archive_id: str) -> str:
    return f"{START}#{fmt_time(first)}#{archive_id}"


def cont_prefix(hour: datetime) -> str:
    return f"{CONT}#{hour_label(hour)}#"


def cont_sk(hour: datetime, last: datetime, archive_id: str) -> str:
    return f"{cont_prefix(hour)}{fmt_time(last)}#{archive_id}"


# -- schema 1 (hour partitions): only to delete what it wrote ------------------------------
def legacy_bucket_keys(e: Entry) -> list[tuple[str, str]]:
    """(pk, sk) of every item schema 1 wrote for ``e`` (see the module doc)."""
    keys = []
    for i, h in enumerate(e.hours()):
        sk = f"{START if i == 0 else CONT}#{fmt_time(e.last)}#{e.archive_id}"
        for kind, ident in e.selectors():
            keys.append((f"{e.stack}#{kind}#{ident}#{hour_label(h)}", sk))
    return keys


@dataclass
class Entry:
    """One archive as the index knows it (built from the key and the HEAD metadata only)."""

    archive_id: str
    stack: str
    kind: str  # apps | databases | proxy | unlabeled | k8s
    resource_id: str  # "" when unlabeled; a k8s archive's namespace
    service_id: str
    container_id: str
    first: datetime
    last: datetime
    key_id: str
    bucket: str
    key: str
    version_id: str = ""
    etag: str = ""
    size: int = 0  # stored (encrypted) bytes
    raw_bytes: int = 0  # raw log bytes (metadata), 0 if unknown
    lines: int = 0
    sha256: str = ""
    host: str = ""
    container_name: str = ""
    rotation: int = 0
    schema: str = "v3"
    state: str = "live"
    storage_class: str = "STANDARD"  # S3's class of the indexed version (GLACIER, DEEP_ARCHIVE…)
    seq: str = field(default_factory=lambda: norm_seq(None))
    indexed_at: str = ""
    expires_at: int = 0  # epoch seconds; set on tombstones only
    ix: int = INDEX_SCHEMA  # the key schema the entry's items were written in (1: no attribute)
    pod_name: str = ""  # k8s: the pod (container_id is <pod uid>_<container name>_<restart>)
    source_format: str = "docker"  # docker | cri (logarchive-format)
    sx: int = SELECTOR_SET  # the selectors the entry's items were written for (1: no attribute)

    def hours(self) -> list[datetime]:
        return hours_between(self.first, self.last)

    @property
    def cri(self) -> tuple[str, str, int] | None:
        """(pod uid, container name, restart count) of a Kubernetes entry, else None."""
        return split_cri_container_id(self.container_id) if self.kind == K8S else None

    def selectors(self, sx: int | None = None) -> list[tuple[str, str]]:
        """Every (kind, ident) this archive is found by (the place to add another selector), in
        the selector set ``sx`` (default: the entry's own, ``self.sx``)."""
        out = []
        if self.kind != "unlabeled" and self.resource_id:
            out.append((self.kind, self.resource_id))
        out.append(("container", self.container_id[:CONTAINER_PK_LEN]))
        cri = self.cri
        if (self.sx if sx is None else sx) >= 2 and cri is not None and self.pod_name:
            out.append((POD, pod_ident(self.resource_id, self.pod_name)))
            out.append((K8S_CONTAINER, pod_ident(self.resource_id, cri[1])))
        return out

    def years(self) -> list[int]:
        """The years this entry has start or continuation items in."""
        return list(range(year_of(self.first), year_of(self.last) + 1))

    def bucket_keys(self) -> list[tuple[str, str]]:
        """(pk, sk) of every start and continuation item of this entry."""
        keys = []
        later_hours = self.hours()[1:]
        for kind, ident in self.selectors():
            first_pk = part_pk(self.stack, kind, ident, year_of(self.first))
            keys.append((first_pk, start_sk(self.first, self.archive_id)))
            for h in later_hours:
                keys.append((part_pk(self.stack, kind, ident, h.year),
                             cont_sk(h, self.last, self.archive_id)))
        return keys

    def to_attrs(self) -> dict[str, Any]:
        d = asdict(self)
        d["first"], d["last"] = fmt_time(self.first), fmt_time(self.last)
        if not self.expires_at:
            d.pop("expires_at")
        return d

    @classmethod
    def from_attrs(cls, d: dict[str, Any]) -> Entry:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k, v in known.items():
            if isinstance(v, Decimal):
                known[k] = int(v)
        known.setdefault("ix", 1)  # written before the attribute existed
        known.setdefault("sx", 1)
        known["first"] = parse_rfc3339_micros(known["first"])
        known["last"] = parse_rfc3339_micros(known["last"])
        return cls(**known)

    def public(self) -> dict[str, Any]:
        """The entry as the API shows it (no internal bookkeeping)."""
        d = self.to_attrs()
        for k in ("seq", "expires_at", "bucket", "ix", "sx"):
            d.pop(k, None)
        d["id"] = d.pop("archive_id")
        d["s3_key"] = d.pop("key")
        d["size"] = self.size
        cri = self.cri
        if cri is not None:  # the Kubernetes names (the key's; docs/API.md)
            d["k8s"] = {"namespace": self.resource_id, "pod_name": self.pod_name, "pod_uid": cri[0],
                        "container_name": cri[1], "restart_count": cri[2]}
        return d

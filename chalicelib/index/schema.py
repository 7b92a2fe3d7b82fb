"""DynamoDB key schema of the archive index (one table, ``pk`` HASH + ``sk`` RANGE, both strings).

Question the index answers: *stack + one of app / database / endpoint / container + time range*,
reading only entries of that resource in the hours the range touches, however large the index.

Items (every item carries the complete entry, so a query never needs a second read):

======================  ===========================================  ==================================
item                    pk                                           sk
======================  ===========================================  ==================================
head (one an archive)   ``<stack>#archive#<archive_id>``             ``head``
resource bucket item    ``<stack>#<kind>#<resource_id>#<hour>``      ``S#<last>#<archive_id>`` or
                                                                     ``C#<last>#<archive_id>``
container bucket item   ``<stack>#container#<cid[:12]>#<hour>``      same as above
======================  ===========================================  ==================================

- ``kind`` is the layout's folder kind: ``apps``, ``databases`` or ``proxy`` (endpoints);
  unlabeled archives get container items only.
- ``<hour>`` is a UTC hour ``YYYY-MM-DDTHH``. An archive whose lines run from ``first`` to
  ``last`` has one bucket item in *every* hour it spans: ``S#`` (start item) in the hour of
  ``first``, ``C#`` (continuation) in each later hour. So an archive spanning several days is
  found from a query on any of them.
- ``<last>`` / ``<first>`` are fixed-width UTC times with microseconds
  (``2022-01-01T12:00:00.000000Z``), so string order is time order.
- ``archive_id`` is the first 32 hex digits of SHA-256 of the object key: opaque, fixed
  format, and only ever resolved through the head item (never turned into a key).
- Query ``[start, end)``: in the first hour read ``C#`` items with ``last >= start`` and ``S#``
  items with ``last >= start``; in every later hour only ``S#`` items (continuations there were
  already found in the first hour). Items read beyond the matches are only the start items of
  the last hour that begin at or after ``end`` (and deleted entries).
- Container ids are at least 12 hex digits: the container pk uses the first 12, a longer
  prefix is checked on the items read.
- Versions and deletions: ``state`` is ``live`` (current version), ``deleted`` (a delete marker
  is current; the data version is kept and named by ``version_id``) or ``removed`` (no version
  left: a tombstone with ``expires_at``, an epoch-seconds TTL attribute). Every write is
  conditional on the S3 event ``sequencer`` (``seq``, zero-padded hex): an older or replayed
  event never overwrites a newer state, and the same event twice writes the same item.
- TTL attribute (optional, recommended): ``expires_at``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..dockerlog import format_utc

HOUR = timedelta(hours=1)
TIME_WIDTH = 27  # len("2022-01-01T12:00:00.000000Z")
SEQ_WIDTH = 32
ARCHIVE_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
CONTAINER_PK_LEN = 12
STATES = ("live", "deleted", "removed")
START, CONT = "S", "C"


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


def resource_pk(stack: str, kind: str, resource_id: str, hour: datetime) -> str:
    return f"{stack}#{kind}#{resource_id}#{hour_label(hour)}"


def container_pk(stack: str, container_id: str, hour: datetime) -> str:
    return f"{stack}#container#{container_id[:CONTAINER_PK_LEN]}#{hour_label(hour)}"


def bucket_sk(segment: str, last: datetime, archive_id: str) -> str:
    return f"{segment}#{fmt_time(last)}#{archive_id}"


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
    pod_name: str = ""  # k8s: the pod (container_id is <pod uid>_<container name>_<restart>)
    source_format: str = "docker"  # docker | cri (logarchive-format)

    def hours(self) -> list[datetime]:
        return hours_between(self.first, self.last)

    def bucket_keys(self) -> list[tuple[str, str]]:
        """(pk, sk) of every bucket item of this entry."""
        keys = []
        for i, h in enumerate(self.hours()):
            sk = bucket_sk(START if i == 0 else CONT, self.last, self.archive_id)
            if self.kind != "unlabeled" and self.resource_id:
                keys.append((resource_pk(self.stack, self.kind, self.resource_id, h), sk))
            keys.append((container_pk(self.stack, self.container_id, h), sk))
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
        known["first"] = parse_rfc3339_micros(known["first"])
        known["last"] = parse_rfc3339_micros(known["last"])
        return cls(**known)

    def public(self) -> dict[str, Any]:
        """The entry as the API shows it (no internal bookkeeping)."""
        d = self.to_attrs()
        for k in ("seq", "expires_at", "bucket"):
            d.pop(k, None)
        d["id"] = d.pop("archive_id")
        d["s3_key"] = d.pop("key")
        d["size"] = self.size
        return d

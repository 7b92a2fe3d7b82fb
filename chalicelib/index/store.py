"""Reads and writes of the archive index table (schema: ``chalicelib/index/schema.py``)."""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .. import aws
from ..awserrors import is_conditional_check_failed
from . import schema
from .schema import CONT, HOUR, START, Entry

log = logging.getLogger(__name__)
_ser, _de = TypeSerializer(), TypeDeserializer()
MAX_HOURS_PER_PAGE = 24 * 31  # bounds one API call's work; the token continues from there
PARALLEL_HOURS = 8  # hour buckets read at once (boto3 clients are thread-safe)
_GUARD = "attribute_not_exists(pk) OR seq <= :seq"


def to_item(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in attrs.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


@dataclass(frozen=True)
class Selector:
    """What a query is about: one resource (``kind`` + id) or a container id prefix."""

    stack: str
    kind: str  # apps | databases | proxy | container
    ident: str

    def pk(self, hour: datetime) -> str:
        if self.kind == "container":
            return schema.container_pk(self.stack, self.ident, hour)
        return schema.resource_pk(self.stack, self.kind, self.ident, hour)

    def accepts(self, e: Entry) -> bool:
        if e.stack != self.stack:
            return False
        if self.kind == "container":
            return e.container_id.startswith(self.ident)
        return e.kind == self.kind and e.resource_id == self.ident


@dataclass(frozen=True)
class Position:
    """Where a page stopped: the hour, the segment (``C``/``S``) and the last sort key read."""

    hour: datetime
    segment: str
    sk: str | None = None

    def to_token(self) -> dict[str, Any]:
        """The position as a small JSON object (signed into API page tokens, carried in plan messages)."""
        return {"h": schema.hour_label(self.hour), "s": self.segment, "k": self.sk}

    @classmethod
    def from_token(cls, d: dict[str, Any] | None) -> Position | None:
        """The inverse of ``to_token``; an empty token means "from the start" (``None``).
        Raises ``ValueError``/``KeyError``/``TypeError`` on a malformed one."""
        if not d:
            return None
        hour = datetime.strptime(str(d["h"]), "%Y-%m-%dT%H").replace(tzinfo=UTC)
        seg, sk = d.get("s"), d.get("k")
        if seg not in (START, CONT) or not (sk is None or (isinstance(sk, str) and sk.startswith(seg + "#"))):
            raise ValueError("bad position")
        return cls(hour, seg, sk)


@dataclass
class Page:
    entries: list[Entry]
    next: Position | None
    items_read: int = 0
    queries: int = 0
    hours: int = 0
    stats: dict[str, int] = field(default_factory=dict)


class IndexStore:
    def __init__(self, table: str, *, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def ddb(self) -> Any:
        return self._client or aws.client("dynamodb")

    # -- writes ---------------------------------------------------------------
    def _guarded_put(self, attrs: dict[str, Any]) -> bool:
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=to_item(attrs),
                ConditionExpression=_GUARD,
                ExpressionAttributeValues={":seq": {"S": attrs["seq"]}},
            )
            return True
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return False
            raise

    def get(self, stack: str, archive_id: str) -> Entry | None:
        resp = self.ddb.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": schema.head_pk(stack, archive_id)}, "sk": {"S": "head"}},
        )
        item = resp.get("Item")
        return Entry.from_attrs(from_item(item)) if item else None

    def apply(self, entry: Entry) -> str:
        """Write ``entry`` (any state) unless a newer event already did; returns what happened.

        Bucket items go first and the head item last, so a crash in between is repaired by the
        retry (same ``seq`` passes the guard again). Hours the previous version covered but this
        one does not are tombstoned.
        """
        old = self.get(entry.stack, entry.archive_id)
        if old is not None and old.seq > entry.seq:
            return "stale"
        attrs = entry.to_attrs()
        # A removed archive keeps only tombstones where it was listed (and its head, for the guard).
        new_keys = [] if entry.state == "removed" else entry.bucket_keys()
        for pk, sk in new_keys:
            self._guarded_put({**attrs, "pk": pk, "sk": sk})
        if old is not None:
            gone = set(old.bucket_keys()) - set(new_keys)
            tomb = {
                **old.to_attrs(),
                "state": "removed",
                "seq": entry.seq,
                "expires_at": entry.expires_at or _tombstone_expiry(),
            }
            for pk, sk in sorted(gone):
                self._guarded_put({**tomb, "pk": pk, "sk": sk})
        head = {**attrs, "pk": schema.head_pk(entry.stack, entry.archive_id), "sk": "head"}
        if not self._guarded_put(head):
            return "stale"
        return entry.state

    # -- queries --------------------------------------------------------------
    def query(
        self,
        sel: Selector,
        start: datetime,
        end: datetime,
        *,
        limit: int = 100,
        after: Position | None = None,
        include_deleted: bool = False,
        max_hours: int = MAX_HOURS_PER_PAGE,
        parallel: int = PARALLEL_HOURS,
    ) -> Page:
        """Archives of ``sel`` with lines in ``[start, end)``, in (hour, segment, last) order.

        Hour buckets are read ``parallel`` at a time (each with all its pages); the page stops
        at ``limit`` entries or after ``max_hours`` hours, and ``next`` says where to go on.
        """
        first_hour = schema.hour_of(start)
        last_hour = schema.hour_of(end - timedelta(microseconds=1))
        pos = after or Position(first_hour, CONT)
        if not first_hour <= pos.hour <= last_hour:
            raise ValueError("position outside the query's hours")
        if pos.segment not in ((CONT, START) if pos.hour == first_hour else (START,)):
            raise ValueError("position names a segment this hour does not have")
        if pos.sk is not None and not pos.sk.startswith(pos.segment + "#"):
            raise ValueError("position names a key outside its segment")
        lo = schema.fmt_time(start)
        # (hour, segment, floor, exclusive start) of every range to read, in result order
        ranges: list[tuple[datetime, str, str, str | None]] = []
        hour, n_hours = pos.hour, 0
        while hour <= last_hour and n_hours < max_hours:
            for seg in (CONT, START) if hour == first_hour else (START,):
                if hour == pos.hour and seg == CONT and pos.segment == START:
                    continue
                floor = f"{seg}#{lo}" if hour == first_hour else f"{seg}#"
                resume = pos.sk if (hour == pos.hour and seg == pos.segment) else None
                ranges.append((hour, seg, floor, resume))
            hour += HOUR
            n_hours += 1
        page = Page([], None, hours=n_hours)
        pool = ThreadPoolExecutor(max_workers=parallel) if parallel > 1 and len(ranges) > 1 else None
        try:
            for w in range(0, len(ranges), max(1, parallel)):
                window = ranges[w : w + max(1, parallel)]
                page.stats["rounds"] = page.stats.get("rounds", 0) + 1  # sequential request waves
                fetch = [(sel.pk(h), seg, floor, resume) for h, seg, floor, resume in window]
                # Each read in a copy of this thread's context: the caller's credentials
                # (aws.credentials: one role per function in one process) hold in the pool too.
                results = (
                    list(pool.map(lambda ctx, a: ctx.run(self._read_all, *a),
                                  [contextvars.copy_context() for _ in fetch], fetch))
                    if pool
                    else [self._read_all(*a) for a in fetch]
                )
                for (h, seg, _, _), (rows, read, queries) in zip(window, results, strict=True):
                    page.items_read += read
                    page.queries += queries
                    for item_sk, entry in rows:
                        if entry.first >= end or entry.last < start or not sel.accepts(entry):
                            continue
                        if entry.state != "live" and not (include_deleted and entry.state == "deleted"):
                            continue
                        page.entries.append(entry)
                        if len(page.entries) >= limit:
                            page.next = Position(h, seg, item_sk)
                            return page
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        if hour <= last_hour:
            page.next = Position(hour, START, None)
        return page

    def _read_all(
        self, pk: str, seg: str, floor: str, after_sk: str | None
    ) -> tuple[list[tuple[str, Entry]], int, int]:
        """Every item of one key range (all pages): (rows, items read, requests)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": pk},
                ":lo": {"S": floor},
                ":hi": {"S": f"{seg}#\uffff"},
            },
        }
        if after_sk is not None:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": pk}, "sk": {"S": after_sk}}
        rows: list[tuple[str, Entry]] = []
        read = queries = 0
        while True:
            resp = self.ddb.query(**kwargs)
            queries += 1
            read += resp.get("ScannedCount", len(resp.get("Items", [])))
            for item in resp.get("Items", []):
                attrs = from_item(item)
                rows.append((attrs["sk"], Entry.from_attrs(attrs)))
            if "LastEvaluatedKey" not in resp:
                return rows, read, queries
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _tombstone_expiry(days: int = 30) -> int:
    import time

    return int(time.time()) + days * 86400

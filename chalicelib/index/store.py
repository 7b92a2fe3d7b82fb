"""Reads and writes of the archive index table (schema: ``chalicelib/index/schema.py``)."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .. import aws
from ..awserrors import is_conditional_check_failed
from . import schema
from .schema import CONT, START, Entry

log = logging.getLogger(__name__)
_ser, _de = TypeSerializer(), TypeDeserializer()
MAX_ITEMS_PER_REQUEST = 1000
MARKER_PREFIX = "_backfill#"  # no stack name starts with "_"
LIMIT_SLACK = 32  # items a request reads beyond what the page still needs
PARALLEL_RANGES = 8  # key ranges of one query read at once (boto3 clients are thread-safe)
_GUARD = "attribute_not_exists(pk) OR seq <= :seq"


def to_item(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in attrs.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


@dataclass(frozen=True)
class Selector:
    """What a query is about: one resource (``kind`` + id), a container id prefix, or a
    Kubernetes namespace, pod or container name (:meth:`k8s`)."""

    stack: str
    kind: str  # apps | databases | proxy | container | k8s | pod | k8s_container (schema.Entry.selectors)
    ident: str
    container_name: str | None = None  # kind pod: only this container of the pod (checked on the items)

    @classmethod
    def k8s(cls, stack: str, namespace: str, pod_name: str | None = None,
            container_name: str | None = None) -> Selector:
        """A namespace, with a pod and/or a container name (schema module doc: which selector)."""
        if pod_name is not None:
            return cls(stack, schema.POD, schema.pod_ident(namespace, pod_name), container_name)
        if container_name is not None:
            return cls(stack, schema.K8S_CONTAINER, schema.pod_ident(namespace, container_name))
        return cls(stack, schema.K8S, namespace)

    @property
    def k8s_names(self) -> dict[str, str] | None:
        """namespace, pod and container_name of a Kubernetes selector (the API's parameters)."""
        if self.kind == schema.K8S:
            return {"namespace": self.ident}
        namespace, _, name = self.ident.partition("/")
        if self.kind == schema.K8S_CONTAINER:
            return {"namespace": namespace, "container_name": name}
        if self.kind == schema.POD:
            names = {"namespace": namespace, "pod": name}
            if self.container_name is not None:
                names["container_name"] = self.container_name
            return names
        return None

    def pk(self, year: int) -> str:
        return schema.part_pk(self.stack, self.kind, self.ident, year)

    def years_pk(self) -> str:
        return schema.years_pk(self.stack, self.kind, self.ident)

    def accepts(self, e: Entry) -> bool:
        if e.stack != self.stack:
            return False
        if self.kind == "container":
            return e.container_id.startswith(self.ident)
        if self.container_name is not None and (e.cri is None or e.cri[1] != self.container_name):
            return False
        return (self.kind, self.ident) in e.selectors()


class OldPosition(ValueError):
    """A position (page token, plan message) of the schema-1 index, which no longer answers."""

    def __str__(self) -> str:
        return "was issued by an earlier version of the index; repeat the query without it"


@dataclass(frozen=True)
class Position:
    """Where a page stopped: the part of the query (``C``: continuations of the first hour, or
    a year's start items) and the last sort key returned in it."""

    part: str  # "C" | "YYYY"
    sk: str
    years: tuple[int, ...] | None = None  # the selector's years, as the query's first page read them

    def to_token(self) -> dict[str, Any]:
        """The position as a small JSON object (signed into API page tokens, carried in plan messages)."""
        token: dict[str, Any] = {"v": schema.INDEX_SCHEMA, "p": self.part, "k": self.sk}
        if self.years is not None:
            token["y"] = list(self.years)
        return token

    @classmethod
    def from_token(cls, d: dict[str, Any] | None) -> Position | None:
        """The inverse of ``to_token``; an empty token means "from the start" (``None``).
        Raises :class:`OldPosition` for a schema-1 position, ``ValueError`` for a malformed one."""
        if not d:
            return None
        if not isinstance(d, dict):
            raise ValueError("bad position")
        if d.get("v") != schema.INDEX_SCHEMA:
            if "h" in d:
                raise OldPosition()
            raise ValueError("bad position")
        part, sk = d.get("p"), d.get("k")
        year = isinstance(part, str) and len(part) == 4 and part.isascii() and part.isdigit()
        if not (part == CONT or year):
            raise ValueError("bad position")
        if not isinstance(sk, str) or not sk.startswith((CONT if part == CONT else START) + "#"):
            raise ValueError("bad position")
        years = d.get("y")
        if years is not None and not (isinstance(years, list) and len(years) <= 10000 and all(
                isinstance(y, int) and not isinstance(y, bool) and 0 < y < 10000 for y in years)):
            raise ValueError("bad position")
        return cls(part, sk, None if years is None else tuple(years))


@dataclass
class Page:
    entries: list[Entry]
    next: Position | None
    items_read: int = 0
    queries: int = 0
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Range:
    part: str
    pk: str
    lo: str
    hi: str


def plan_ranges(
    sel: Selector, start: datetime, end: datetime, years: Iterable[int] | None = None
) -> list[_Range]:
    """The key ranges of a query, in result order (schema: ``chalicelib/index/schema.py``);
    ``years``: only those year partitions (the selector's years item)."""
    first_hour = schema.hour_of(start)
    last = end - timedelta(microseconds=1)
    held = set(range(first_hour.year, schema.year_of(last) + 1))
    if years is not None:
        held &= set(years)
    ranges = []
    if first_hour.year in held:
        ranges.append(_Range(CONT, sel.pk(first_hour.year),
                             schema.cont_prefix(first_hour) + schema.fmt_time(start),
                             schema.cont_prefix(first_hour) + "\uffff"))
    for year in sorted(held):
        floor = max(first_hour, schema.year_start(year))
        ranges.append(_Range(f"{year:04d}", sel.pk(year), f"{START}#{schema.fmt_time(floor)}",
                             f"{START}#{schema.fmt_time(last)}#\uffff"))
    return ranges


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
        if new_keys:
            # Before the items: a query never skips a year that has some, nor undercounts it.
            moved = old is None or old.ix < schema.INDEX_SCHEMA or old.first.year != entry.first.year
            added = set() if old is None else set(entry.selectors()) - set(old.selectors())
            self._add_years(entry, count=moved, added=added)
        for pk, sk in new_keys:
            self._guarded_put({**attrs, "pk": pk, "sk": sk})
        if old is not None and old.ix < schema.INDEX_SCHEMA:
            # Schema 1's hour items: nothing reads them any more. Deleted before the head moves
            # on, so a crash in between leaves the head at schema 1 and the retry deletes again.
            self._delete(schema.legacy_bucket_keys(old))
        elif old is not None:
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

    def _delete(self, keys: list[tuple[str, str]]) -> None:
        for i in range(0, len(keys), 25):
            req = {self.table: [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                                for pk, sk in keys[i : i + 25]]}
            while req:
                req = self.ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}

    def years(self, sel: Selector) -> dict[int, int | None]:
        """The years ``sel`` has items in, each with an upper bound of its start items (``None``:
        unknown): the selector's years item; empty when it has none."""
        item = self.ddb.get_item(
            TableName=self.table, Key={"pk": {"S": sel.years_pk()}, "sk": {"S": "years"}}
        ).get("Item") or {}
        counts = {int(k[1:]): int(v["N"]) for k, v in item.items() if k.startswith("c") and "N" in v}
        return {int(y): counts.get(int(y)) for y in item.get("years", {}).get("NS", [])}

    def _add_years(self, entry: Entry, *, count: bool, added: set[tuple[str, str]] = frozenset()) -> None:
        """Record the entry's years (and, ``count``: one more start item in its first year) in
        the years item of each of its selectors; ``added``: selectors the entry had no items
        under before (a newer selector set), counted too. Counts only grow: an upper bound."""
        for kind, ident in entry.selectors():
            values: dict[str, Any] = {":y": {"NS": [str(y) for y in entry.years()]}}
            names = {"#y": "years"}
            update = "ADD #y :y"
            if count or (kind, ident) in added:
                names["#c"] = f"c{schema.year_of(entry.first):04d}"
                values[":one"] = {"N": "1"}
                update += ", #c :one"
            self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": schema.years_pk(entry.stack, kind, ident)}, "sk": {"S": "years"}},
                UpdateExpression=update, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )

    # -- backfill -------------------------------------------------------------
    def _marker_key(self, name: str) -> dict[str, Any]:
        return {"pk": {"S": f"{MARKER_PREFIX}{name}"}, "sk": {"S": "progress"}}

    def get_marker(self, name: str) -> dict[str, Any] | None:
        """Where a backfill of ``name`` stopped (``None``: not started, or finished)."""
        key = self._marker_key(name)
        item = self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return from_item(item).get("position") if item else None

    def put_marker(self, name: str, position: dict[str, Any]) -> None:
        item = {**self._marker_key(name), **to_item({"position": position})}
        self.ddb.put_item(TableName=self.table, Item=item)

    def clear_marker(self, name: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key=self._marker_key(name))

    def old_heads(self, bucket: str, prefix: str, *, after: Any = None) -> Iterator[tuple[list[str], Any]]:
        """Object keys of schema-1 heads (no ``ix``) of ``bucket`` under ``prefix``, a page at a
        time with the position after it (one Scan of the table: a migration reads it once)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :head AND attribute_not_exists(ix) AND #b = :b AND begins_with(#k, :p)",
            "ExpressionAttributeNames": {"#b": "bucket", "#k": "key"},
            "ExpressionAttributeValues": {":head": {"S": "head"}, ":b": {"S": bucket}, ":p": {"S": prefix}},
        }
        if after:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in after.items()}
        while True:
            resp = self.ddb.scan(**kwargs)
            last = resp.get("LastEvaluatedKey")
            keys = [from_item(i)["key"] for i in resp.get("Items", [])]
            yield keys, ({k: v["S"] for k, v in last.items()} if last else None)
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

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
    ) -> Page:
        """Archives of ``sel`` with lines in ``[start, end)``: first those that began before
        ``start``'s hour (by ``last``), then the rest by ``first``.

        The page stops at ``limit`` entries (``next`` says where to go on) or at the end; it is
        never empty while more results exist. Requests: one per key range (the first hour's
        continuations, then one a year) plus one per further DynamoDB page.
        """
        first_page = after is None or after.years is None
        c_range = plan_ranges(sel, start, end, None)[0]  # the first hour's continuations
        c_read: Future[dict[str, Any]] | None = None
        if first_page:  # the years item and the continuations at once (neither needs the other)
            c_read = self._submit(self._kwargs(c_range, None, limit))
            years = self.years(sel)
        else:
            years = dict.fromkeys(after.years or ())
        page = Page([], None, queries=1 if first_page else 0)
        ranges = plan_ranges(sel, start, end, years)
        if c_read is not None and (not ranges or ranges[0].part != CONT):
            c_read.result()  # asked for a year that holds nothing: counted, not read
            page.queries += 1
            c_read = None
        if after is not None:
            parts = [r.part for r in ranges]
            if after.part not in parts:
                raise ValueError("position outside the query's range")
            ranges = ranges[parts.index(after.part):]
            r0 = ranges[0]
            if not r0.lo <= after.sk <= r0.hi:
                raise ValueError("position outside the query's range")
        token_years = tuple(sorted(years))
        ahead: dict[int, Future[dict[str, Any]]] = {}  # first requests sent before their turn
        if c_read is not None:
            ahead[0] = c_read
        for i, r in enumerate(ranges):
            resume = after.sk if after is not None and r.part == after.part else None
            if i not in ahead:
                # Send this range's first request with those of the next ranges that are surely
                # needed too: the ranges before them cannot fill the page (their years' counts).
                need = limit - len(page.entries)
                bound, j = 0, i
                while j < len(ranges) and j - i < PARALLEL_RANGES and (j == i or bound < need):
                    kwargs = self._kwargs(ranges[j], resume if j == i else None, need)
                    ahead[j] = self._submit(kwargs)
                    n = years.get(int(ranges[j].part)) if ranges[j].part != CONT else None
                    bound += n if n is not None else need
                    j += 1
            resp = ahead.pop(i).result()
            while True:
                page.queries += 1
                page.items_read += resp.get("ScannedCount", len(resp.get("Items", [])))
                for item in resp.get("Items", []):
                    attrs = from_item(item)
                    entry = Entry.from_attrs(attrs)
                    if entry.first >= end or entry.last < start or not sel.accepts(entry):
                        continue
                    if entry.state != "live" and not (include_deleted and entry.state == "deleted"):
                        continue
                    page.entries.append(entry)
                    if len(page.entries) >= limit:
                        page.next = Position(r.part, attrs["sk"], token_years)
                        for f in ahead.values():  # none is left by the counts; never unread
                            f.result()
                            page.queries += 1
                        return page
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs = self._kwargs(r, None, limit - len(page.entries))
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
                resp = self._request(kwargs)
        return page

    def _kwargs(self, r: _Range, resume: str | None, need: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": {"S": r.pk}, ":lo": {"S": r.lo}, ":hi": {"S": r.hi}},
            # Items refused on reading are few (the first hour's early enders, deleted ones): a
            # little slack keeps them from costing a request of their own.
            "Limit": min(MAX_ITEMS_PER_REQUEST, max(1, need) + LIMIT_SLACK),
        }
        if resume is not None:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": r.pk}, "sk": {"S": resume}}
        return kwargs

    def _request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self.ddb.query(**kwargs)

    def _submit(self, kwargs: dict[str, Any]) -> Future[dict[str, Any]]:
        # In a copy of this thread's context: the caller's credentials (aws.credentials: one
        # role per function in one process) hold in the pool's threads too.
        return _query_pool().submit(contextvars.copy_context().run, self._request, kwargs)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _query_pool() -> ThreadPoolExecutor:
    """One pool for the process's queries (a warm Lambda serves many requests)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(PARALLEL_RANGES, thread_name_prefix="index-query")
        return _POOL


def _tombstone_expiry(days: int = 30) -> int:
    import time

    return int(time.time()) + days * 86400

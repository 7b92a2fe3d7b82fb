"""Reads and writes of the archive index table (schema: ``chalicelib/index/schema.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .. import aws
from . import schema
from .schema import CONT, HOUR, START, Entry

log = logging.getLogger(__name__)
_ser, _de = TypeSerializer(), TypeDeserializer()
MAX_HOURS_PER_PAGE = 24 * 31  # bounds one API call's work; the token continues from there
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
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
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
        new_keys = entry.bucket_keys()
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
    ) -> Page:
        """Archives of ``sel`` with lines in ``[start, end)``, in (hour, segment, last) order."""
        first_hour = schema.hour_of(start)
        last_hour = schema.hour_of(end - timedelta(microseconds=1))
        page = Page([], None)
        pos = after or Position(first_hour, CONT)
        if pos.hour < first_hour or pos.hour > last_hour:
            raise ValueError("position outside the query's hours")
        lo = schema.fmt_time(start)
        hour, segment, sk = pos.hour, pos.segment, pos.sk
        while hour <= last_hour:
            if page.hours >= max_hours:
                page.next = Position(hour, segment, None if sk is None else sk)
                return page
            page.hours += 1
            segments = [CONT, START] if hour == first_hour else [START]
            if segment not in segments:
                raise ValueError("position names a segment this hour does not have")
            for seg in segments[segments.index(segment) :]:
                floor = f"{seg}#{lo}" if hour == first_hour else f"{seg}#"
                for item_sk, entry in self._read(sel.pk(hour), seg, floor, sk, page):
                    if entry.first >= end or entry.last < start or not sel.accepts(entry):
                        continue
                    if entry.state != "live" and not (include_deleted and entry.state == "deleted"):
                        continue
                    page.entries.append(entry)
                    if len(page.entries) >= limit:
                        page.next = Position(hour, seg, item_sk)
                        return page
                sk = None
            hour += HOUR
            segment = START
        return page

    def _read(
        self, pk: str, seg: str, floor: str, after_sk: str | None, page: Page
    ) -> Iterator[tuple[str, Entry]]:
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
        while True:
            resp = self.ddb.query(**kwargs)
            page.queries += 1
            page.items_read += resp.get("ScannedCount", len(resp.get("Items", [])))
            for item in resp.get("Items", []):
                attrs = from_item(item)
                yield attrs["sk"], Entry.from_attrs(attrs)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _tombstone_expiry(days: int = 30) -> int:
    import time

    return int(time.time()) + days * 86400

"""The index as it was until schema 2 (kept only as the benchmark's baseline).

Schema 1: one partition per selector and UTC *hour* (``<stack>#<kind>#<ident>#<YYYY-MM-DDTHH>``),
an archive has a start item in its first hour and a continuation item in each later one; a
query reads every hour of its range (8 in parallel), at most 744 hours a page. The keys are
``chalicelib.index.schema.legacy_bucket_keys``; this is the query code that read them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from chalicelib.index import schema
from chalicelib.index.schema import CONT, HOUR, START, Entry
from chalicelib.index.store import Selector, from_item

MAX_HOURS_PER_PAGE = 24 * 31
PARALLEL_HOURS = 8


def items(e: Entry) -> list[dict[str, Any]]:
    """Every item schema 1 wrote for ``e`` (head without ``ix``, hour items)."""
    attrs = e.to_attrs()
    attrs.pop("ix", None)
    keys = [(schema.head_pk(e.stack, e.archive_id), "head"), *schema.legacy_bucket_keys(e)]
    return [{**attrs, "pk": pk, "sk": sk} for pk, sk in keys]


def query_all(ddb: Any, table: str, sel: Selector, start: datetime, end: datetime,
              *, count_only: bool = False) -> tuple[int, int, int]:
    """Follow every page of one question: (matches, requests, pages). ``count_only``: the
    requests the old code would send, without sending them (each hour range is one request when
    it holds less than 1 MB, as every range of the benchmark's data does)."""
    first_hour = schema.hour_of(start)
    last_hour = schema.hour_of(end - timedelta(microseconds=1))
    lo = schema.fmt_time(start)
    ident = sel.ident[: schema.CONTAINER_PK_LEN] if sel.kind == "container" else sel.ident
    matches = requests = pages = 0
    hour = first_hour
    pool = ThreadPoolExecutor(PARALLEL_HOURS)
    try:
        while hour <= last_hour:
            ranges = []
            for _ in range(MAX_HOURS_PER_PAGE):
                if hour > last_hour:
                    break
                for seg in (CONT, START) if hour == first_hour else (START,):
                    floor = f"{seg}#{lo}" if hour == first_hour else f"{seg}#"
                    ranges.append((f"{sel.stack}#{sel.kind}#{ident}#{schema.hour_label(hour)}", seg, floor))
                hour += HOUR
            pages += 1
            requests += len(ranges)
            if count_only:
                continue
            for rows in pool.map(lambda r: _read(ddb, table, *r), ranges):
                matches += sum(1 for e in rows if e.first < end and e.last >= start and sel.accepts(e)
                               and e.state == "live")
    finally:
        pool.shutdown()
    return matches, requests, pages


def _read(ddb: Any, table: str, pk: str, seg: str, floor: str) -> list[Entry]:
    resp = ddb.query(TableName=table, KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                     ExpressionAttributeValues={":pk": {"S": pk}, ":lo": {"S": floor}, ":hi": {"S": f"{seg}#\uffff"}})
    return [Entry.from_attrs(from_item(i)) for i in resp.get("Items", [])]

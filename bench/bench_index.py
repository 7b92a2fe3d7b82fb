"""Index and retrieval benchmark.

Part 1, the index, old design (schema 1: a partition per hour, ``bench/index_v1.py``) against
the new (schema 2: a partition per year, ``chalicelib/index``) side by side, both measured on
the local AWS (moto's server over HTTP): requests and wall time per question, following every
page (100 archives a page), for ranges of 1 hour, 1 day, 1 year and 30 years. The data: one
container with 10 archives spread over 30 years (one across a new year, one a month long) and
a busy app (4 containers, an archive every 10-60 minutes) over two days. Old-design questions
longer than a day are not sent (``--old-year`` sends the 1-year ones: 8,761 requests, about ten
minutes on a loaded 2-core machine): their requests are counted exactly by the same code and
their time is extrapolated per request from the longest old-design question sent (``~``).

Part 2, retrieval scan throughput of one worker: decrypt + gunzip + filter (MB/s of plaintext)
for several filters, against decrypt + gunzip alone in the same process.

Run: ``.venv/bin/python bench/bench_index.py`` (``--quick``: 8 MB scanned).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import index_v1  # noqa: E402

from chalicelib import layout  # noqa: E402
from chalicelib.devkit import local_aws  # noqa: E402
from chalicelib.index import schema  # noqa: E402
from chalicelib.index.schema import Entry  # noqa: E402
from chalicelib.index.store import IndexStore, Selector, to_item  # noqa: E402

STACK = "bench"
KEY_ID = "b" * 64
QUIET = "c0ffee" + "0" * 58
BUSY_APP = "42"
T = lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
# the quiet container: 10 archives over 30 years
QUIET_SPANS = [("1997-03-01T10:00", "1997-03-01T10:40"), ("1999-12-31T23:30", "2000-01-01T00:30"),
               ("2003-06-01T00:00", "2003-07-01T00:00"), ("2008-01-01T00:00", "2008-01-01T00:10"),
               ("2011-05-05T05:05", "2011-05-05T06:05"), ("2015-02-28T12:00", "2015-02-28T12:59"),
               ("2018-08-08T08:00", "2018-08-08T08:30"), ("2021-01-01T00:00", "2021-01-01T01:00"),
               ("2024-10-10T10:10", "2024-10-10T10:20"), ("2025-06-01T11:00", "2025-06-01T11:50")]
BUSY_FROM = T("2025-06-01T00:00")


def entry(kind: str, rid: str | None, cid: str, first: datetime, last: datetime, n: int) -> Entry:
    key = layout.ArchiveKey(stack=STACK, key_id=KEY_ID, kind=kind, resource_id=rid,
                            service_id="1" if kind == "apps" else None, container_id=cid, rotation=n,
                            start=first, end=last).key()
    return Entry(archive_id=schema.archive_id_of(key), stack=STACK, kind=kind if rid else "unlabeled",
                 resource_id=rid or "", service_id="1" if kind == "apps" else "", container_id=cid,
                 first=first, last=last, key_id=KEY_ID, bucket="bench-archive", key=key, version_id="v" * 32,
                 etag="e" * 32, size=5_000_000, raw_bytes=40_000_000, lines=200_000, sha256="0" * 64,
                 host="host-1", container_name=f"c{n}", rotation=n, indexed_at="2025-01-01T00:00:00Z")


def dataset() -> list[Entry]:
    out = [entry("apps", "7", QUIET, T(a), T(b), i + 1) for i, (a, b) in enumerate(QUIET_SPANS)]
    rnd = random.Random(1)
    for c in range(4):
        cid = f"{c + 1:02x}" * 32
        t = BUSY_FROM + timedelta(minutes=rnd.uniform(0, 10))
        n = 0
        while t < BUSY_FROM + timedelta(days=2):
            last = t + timedelta(minutes=rnd.uniform(10, 60))
            n += 1
            out.append(entry("apps", BUSY_APP, cid, t, last, n))
            t = last + timedelta(seconds=1)
    return out


@dataclass(frozen=True)
class Question:
    label: str
    sel: Selector
    start: datetime
    end: datetime


def questions() -> list[Question]:
    quiet, busy = Selector(STACK, "container", QUIET[:12]), Selector(STACK, "apps", BUSY_APP)
    return [
        Question("quiet container, 1 hour", quiet, T("2011-05-05T05:30"), T("2011-05-05T06:30")),
        Question("quiet container, 1 day", quiet, T("2011-05-05T00:00"), T("2011-05-06T00:00")),
        Question("quiet container, 1 year", quiet, T("2011-01-01T00:00"), T("2012-01-01T00:00")),
        Question("quiet container, 30 years", quiet, T("1996-01-01T00:00"), T("2026-01-01T00:00")),
        Question("busy app, 1 hour", busy, T("2025-06-01T12:30"), T("2025-06-01T13:30")),
        Question("busy app, 1 day", busy, T("2025-06-01T06:00"), T("2025-06-02T06:00")),
        Question("busy app, 1 year", busy, T("2025-01-01T00:00"), T("2026-01-01T00:00")),
        Question("busy app, 30 years", busy, T("1996-01-01T00:00"), T("2026-01-01T00:00")),
    ]


def years_items(data: list[Entry]) -> list[dict[str, Any]]:
    """The years item of each selector, as IndexStore.apply writes them: years, and per year
    the start items written there (``c<YYYY>``)."""
    items: dict[str, dict[str, Any]] = {}
    for e in data:
        for kind, ident in e.selectors():
            it = items.setdefault(schema.years_pk(e.stack, kind, ident), {"years": set()})
            it["years"].update(e.years())
            c = f"c{e.first.year:04d}"
            it[c] = it.get(c, 0) + 1
    return [{"pk": pk, "sk": "years", **it} for pk, it in items.items()]


def new_query(store: IndexStore, q: Question) -> tuple[int, int, int, float]:
    """Matches, requests, pages, seconds (following every page of 100)."""
    t0 = time.perf_counter()
    matches = requests = pages = 0
    after = None
    while True:
        page = store.query(q.sel, q.start, q.end, limit=100, after=after)
        matches, requests, pages = matches + len(page.entries), requests + page.queries, pages + 1
        if page.next is None:
            return matches, requests, pages, time.perf_counter() - t0
        after = page.next


def _create(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])


def _load(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        req = {table: [{"PutRequest": {"Item": to_item(it)}} for it in items[i : i + 25]]}
        while req:
            req = ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}


# -- part 1 -------------------------------------------------------------------------------
def bench_index(*, old_year: bool = True) -> None:
    data = dataset()
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        import boto3

        ddb = boto3.client("dynamodb")
        for name in ("old-index", "new-index"):
            _create(ddb, name)
        old_items = [it for e in data for it in index_v1.items(e)]
        new_items = [{**e.to_attrs(), "pk": pk, "sk": sk} for e in data
                     for pk, sk in [(schema.head_pk(e.stack, e.archive_id), "head"), *e.bucket_keys()]]
        new_items += years_items(data)
        _load(ddb, "old-index", old_items)
        _load(ddb, "new-index", new_items)
        print(f"# index: {len(data)} archives (a quiet container: 10 over 30 years; a busy app: "
              f"{len(data) - 10} over 2 days); items: old design {len(old_items)}, new {len(new_items)}")
        store = IndexStore("new-index", client=ddb)
        print(f"{'question':28} {'matches':>7} | {'old: requests':>13} {'pages':>5} {'ms':>9} | "
              f"{'new: requests':>13} {'pages':>5} {'ms':>7} | {'bound 1+pages+years':>19}")
        per_request = None
        for q in questions():
            years = q.end.year - q.start.year + (q.end != datetime(q.end.year, 1, 1, tzinfo=UTC))
            m_new, r_new, p_new, s_new = new_query(store, q)
            long = q.end - q.start > (timedelta(days=366) if old_year else timedelta(days=2))
            if long:
                m_old, r_old, p_old = index_v1.query_all(ddb, "old-index", q.sel, q.start, q.end, count_only=True)
                ms_old = f"~{r_old * per_request * 1000:.0f}" if per_request else "-"
                m_old = m_new  # not sent
            else:
                t0 = time.perf_counter()
                m_old, r_old, p_old = index_v1.query_all(ddb, "old-index", q.sel, q.start, q.end)
                s_old = time.perf_counter() - t0
                if r_old > 10:
                    per_request = s_old / r_old  # the longest question sent so far
                ms_old = f"{s_old * 1000:.0f}"
                if m_old != m_new:
                    raise SystemExit(f"{q.label}: old design found {m_old}, new {m_new}")
            bound = 1 + p_new + years
            if r_new > bound:
                raise SystemExit(f"{q.label}: {r_new} requests, more than 1 + pages + years = {bound}")
            print(f"{q.label:28} {m_new:7d} | {r_old:13,d} {p_old:5d} {ms_old:>9} | "
                  f"{r_new:13d} {p_new:5d} {s_new * 1000:7.0f} | {bound:19d}")
        print("(~: not sent; requests counted exactly by the same code, time extrapolated per request from the "
              "longest old-design question sent)")
        # the case alone: a table holding only the quiet container's 10 archives (moto's
        # Query walks the whole table, so the shared table above slows every request)
        _create(ddb, "solo-index")
        quiet = [e for e in data if e.container_id == QUIET]
        _load(ddb, "solo-index", [{**e.to_attrs(), "pk": pk, "sk": sk} for e in quiet
                                  for pk, sk in [(schema.head_pk(e.stack, e.archive_id), "head"), *e.bucket_keys()]]
              + years_items(quiet))
        q = questions()[3]
        times = sorted(new_query(IndexStore("solo-index", client=ddb), q)[3] for _ in range(5))
        print(f"{q.label}, a table of only its 10 archives: median of 5 {times[2] * 1000:.0f} ms "
              f"(min {times[0] * 1000:.0f}, max {times[-1] * 1000:.0f})")


# -- part 2 -------------------------------------------------------------------------------
def bench_scan(mb: int) -> None:
    from chalicelib.codec import seal, unseal
    from chalicelib.jobs.scanner import make_filter, scan_archive
    from chalicelib.keyring import Keyring, MasterKey

    rnd = random.Random(1)
    words = ("GET POST /api/v1/users /health 200 404 500 took ms user session cache miss hit db query "
             "request served upstream connected closing worker").split()
    parts, size, i = [], 0, 0
    while size < mb * 1_000_000:
        s = i // 40
        t = f"2022-01-01T{12 + s // 3600 % 12:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{rnd.randrange(10**9):09d}Z"
        msg = " ".join(rnd.choice(words) for _ in range(rnd.randrange(6, 20)))
        if rnd.random() < 0.002:
            msg += " timeout"
        line = json.dumps({"log": msg + "\n", "stream": "stderr" if rnd.random() < 0.3 else "stdout", "time": t},
                          separators=(",", ":")).encode() + b"\n"
        parts.append(line)
        size += len(line)
        i += 1
    data = b"".join(parts)
    ring = Keyring([MasterKey.generate()])
    sealed = io.BytesIO()
    env = seal(io.BytesIO(data), sealed, ring).envelope
    ct = sealed.getvalue()

    class Null:
        def write(self, b: bytes) -> int:
            return len(b)

    def best(fn: Any, runs: int = 3) -> float:
        return min(_timed(fn) for _ in range(runs))

    base = best(lambda: unseal(io.BytesIO(ct), Null(), env, ring, name="x", decompress=True))
    print(f"\n# retrieval scan, one worker, one core: {len(data) / 1e6:.0f} MB plaintext "
          f"({i:,} lines, {len(ct) / 1e6:.1f} MB sealed)")
    print(f"{'step':58} {'MB/s':>6} {'x baseline':>10}")
    print(f"{'baseline: decrypt + gunzip (codec.unseal)':58} {len(data) / 1e6 / base:6.0f} {1.0:10.2f}")
    w0, w1 = datetime(2022, 1, 1, 12, tzinfo=UTC), datetime(2022, 1, 1, 12, 5, tzinfo=UTC)
    for label, flt in [
        ("filter: 5-min window + stderr + grep 'timeout'", make_filter(w0, w1, "stderr", "timeout")),
        ("filter: grep 'timeout' only", make_filter(grep="timeout")),
        ("filter: stderr only (30 % of lines kept)", make_filter(stream="stderr")),
        ("filter: 5-min window only", make_filter(w0, w1)),
        ("no filter (every line re-compressed into the result)", make_filter()),
    ]:
        out = io.BytesIO()
        secs = best(lambda flt=flt: scan_archive(io.BytesIO(ct), env, ring, flt, io.BytesIO(), name="x"))
        st = scan_archive(io.BytesIO(ct), env, ring, flt, out, name="x")
        print(f"{label:58} {len(data) / 1e6 / secs:6.0f} {base / secs:10.2f}   ({st.lines_matched:,} lines matched)")


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 MB scanned")
    ap.add_argument("--old-year", action="store_true", help="also send the old design's 1-year questions")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.scan_mb = 8
    t0 = time.perf_counter()
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    if not args.skip_index:
        bench_index(old_year=args.old_year)
    if not args.skip_scan:
        bench_scan(args.scan_mb)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; python {sys.version.split()[0]}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

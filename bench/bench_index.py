"""Index and retrieval benchmark.

Part 1, the index: a deterministic year of archives for one stack (busy, normal and quiet
apps, databases and endpoints), 1,000,000 archives by default. For a set of questions (one
resource or container, windows of 5 min, 1 h, 1 day, 7 days) it reports the DynamoDB items
read (``ScannedCount``, what DynamoDB bills and what its latency follows), the requests
issued, the matches, and the S3 list calls the listing approach needs on the same keys
(1000 keys a page): the reference CLI lists the whole stack; a per-resource listing lists one
resource's prefix; a container has no prefix of its own.

How each figure is obtained (printed again in the output):
- ``moto``: measured. The first days of the data set are loaded into the moto server over
  HTTP with BatchWriteItem (all items: head, resource and container items), then queried
  with ``IndexStore.query``. Latencies are moto's and scale with the *table* size, because
  moto's Query walks every item of the table (moto/dynamodb/models/table.py ``Table.query``);
  DynamoDB reads only the key range.
- ``model``: exact counts for the full data set. The same ``IndexStore.query`` runs against an
  in-memory key-range model of exactly the partitions a question touches (sorted sort keys
  per partition key; 1 MB pages), built from the same generator. Before any 1M figure is
  printed, the model is checked to return the same items read and matches as moto on the
  loaded subset.

Part 2, retrieval scan throughput of one worker: decrypt + gunzip + filter (MB/s of plaintext)
for several filters, against decrypt + gunzip alone in the same process.

Run: ``.venv/bin/python bench/bench_index.py`` (defaults: 1,000,000 archives modelled,
2 days loaded into moto, 64 MB scanned). ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import math
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib import layout  # noqa: E402
from chalicelib.devkit import local_aws  # noqa: E402
from chalicelib.index import schema  # noqa: E402
from chalicelib.index.schema import Entry  # noqa: E402
from chalicelib.index.store import IndexStore, Selector, to_item  # noqa: E402

STACK = "bench"
KEY_ID = "b" * 64
YEAR0 = datetime(2022, 1, 1, tzinfo=UTC)
DAYS = 365
# resource classes: (containers, min minutes, max minutes) of each container's archives
CLASSES = {"busy": (4, 10, 60), "normal": (2, 60, 480), "quiet": (1, 1440, 7200)}


@dataclass(frozen=True)
class Resource:
    kind: str
    rid: str
    cls: str

    def containers(self) -> list[str]:
        n = CLASSES[self.cls][0]
        return [f"{abs(hash((self.kind, self.rid, i))) % 16**16:016x}" + f"{i:048x}" for i in range(n)]


def resources_for(target: int) -> list[Resource]:
    """A stack whose year of archives is about ``target`` (10 % busy, 60 % normal, 30 % quiet)."""
    per_year = {c: CLASSES[c][0] * DAYS * 1440 / ((CLASSES[c][1] + CLASSES[c][2]) / 2) for c in CLASSES}
    unit = 0.1 * per_year["busy"] + 0.6 * per_year["normal"] + 0.3 * per_year["quiet"]
    n = max(10, round(target / unit))
    out = []
    for i in range(n):
        cls = "busy" if i % 10 == 0 else ("quiet" if i % 10 >= 7 else "normal")
        kind = "apps" if i % 5 < 3 else ("databases" if i % 5 == 3 else "proxy")
        out.append(Resource(kind, str(100 + i), cls))
    return out


def archives(res: Resource, until: datetime) -> Iterator[Entry]:
    """Sequential archives of each container of ``res`` from YEAR0 until ``until``."""
    _, lo, hi = CLASSES[res.cls]
    for ci, cid in enumerate(res.containers()):
        rnd = random.Random(f"{res.kind}{res.rid}{ci}")
        t = YEAR0 + timedelta(minutes=rnd.uniform(0, lo))
        n = 0
        while t < until:
            span = timedelta(minutes=rnd.uniform(lo, hi))
            first, last = t, min(t + span - timedelta(seconds=1), until - timedelta(seconds=1))
            n += 1
            key = layout.ArchiveKey(
                stack=STACK, key_id=KEY_ID, kind=res.kind, resource_id=res.rid,
                service_id="1" if res.kind == "apps" else None, container_id=cid, rotation=n,
                start=first, end=last).key()
            yield Entry(
                archive_id=schema.archive_id_of(key), stack=STACK, kind=res.kind, resource_id=res.rid,
                service_id="1" if res.kind == "apps" else "", container_id=cid, first=first, last=last,
                key_id=KEY_ID, bucket="bench-archive", key=key, version_id="v" * 32, etag="e" * 32,
                size=5_000_000, raw_bytes=40_000_000, lines=200_000, sha256="0" * 64, host="host-1",
                container_name=f"{res.rid}.{ci}", rotation=n, indexed_at="2022-01-01T00:00:00Z")
            t = last + timedelta(seconds=1)


def items_of(e: Entry) -> list[dict[str, Any]]:
    attrs = e.to_attrs()
    keys = [(schema.head_pk(e.stack, e.archive_id), "head"), *e.bucket_keys()]
    return [{**attrs, "pk": pk, "sk": sk} for pk, sk in keys]


# -- the key-range model ------------------------------------------------------------------
class KeyRangeModel:
    """Answers exactly the Query form IndexStore issues, over sorted keys; counts like DynamoDB."""

    PAGE_BYTES = 1 << 20

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = defaultdict(list)
        self.items: dict[tuple[str, str], Entry] = {}
        self.size = 0

    def add(self, e: Entry) -> None:
        for pk, sk in e.bucket_keys():
            self.parts[pk].append(sk)
            self.items[(pk, sk)] = e
        self.size = self.size or len(json.dumps(to_item({**e.to_attrs(), "pk": "x" * 40, "sk": "x" * 70})))

    def freeze(self) -> None:
        for v in self.parts.values():
            v.sort()

    def query(self, **kw: Any) -> dict[str, Any]:
        vals = kw["ExpressionAttributeValues"]
        pk, lo, hi = vals[":pk"]["S"], vals[":lo"]["S"], vals[":hi"]["S"]
        sks = self.parts.get(pk, [])
        i = bisect.bisect_left(sks, lo)
        if "ExclusiveStartKey" in kw:
            i = max(i, bisect.bisect_right(sks, kw["ExclusiveStartKey"]["sk"]["S"]))
        j = bisect.bisect_right(sks, hi)
        per_page = max(1, self.PAGE_BYTES // self.size)
        chunk = sks[i:min(j, i + per_page)]
        out = {"Items": [to_item({**self.items[(pk, sk)].to_attrs(), "pk": pk, "sk": sk}) for sk in chunk],
               "ScannedCount": len(chunk)}
        if i + per_page < j:
            out["LastEvaluatedKey"] = {"pk": {"S": pk}, "sk": {"S": chunk[-1]}}
        return out


# -- questions ----------------------------------------------------------------------------
WINDOWS = {"5 min": timedelta(minutes=5), "1 hour": timedelta(hours=1), "1 day": timedelta(days=1),
           "7 days": timedelta(days=7)}


@dataclass(frozen=True)
class Question:
    label: str
    sel: Selector
    res: Resource
    start: datetime
    end: datetime


def questions(resources: list[Resource], horizon_days: float, *, seed: int = 7) -> list[Question]:
    rnd = random.Random(seed)
    picks = {c: next(r for r in resources if r.cls == c) for c in CLASSES}
    out = []
    for cls, res in picks.items():
        for wlabel, w in WINDOWS.items():
            if w > timedelta(days=horizon_days) - timedelta(hours=2):
                continue
            span = timedelta(days=horizon_days) - w - timedelta(hours=1)
            start = YEAR0 + timedelta(hours=1) + timedelta(seconds=rnd.randrange(int(span.total_seconds())))
            start = start.replace(microsecond=0)
            out.append(Question(f"{cls} {res.kind[:-1] if res.kind != 'proxy' else 'endpoint'}, {wlabel}",
                                Selector(STACK, res.kind, res.rid), res, start, start + w))
        cid = res.containers()[0]
        start = (YEAR0 + timedelta(days=horizon_days / 2)).replace(minute=13)
        out.append(Question(f"{cls} container (12-hex prefix), 1 hour", Selector(STACK, "container", cid[:12]),
                            res, start, start + timedelta(hours=1)))
    return out


def run_query(store: IndexStore, q: Question) -> tuple[int, int, int, float, int]:
    """Matches, items read, requests, seconds, sequential rounds (following every page)."""
    t0 = time.perf_counter()
    matches = read = reqs = rounds = 0
    after = None
    while True:
        page = store.query(q.sel, q.start, q.end, limit=1000, after=after)
        matches += len(page.entries)
        read += page.items_read
        reqs += page.queries
        rounds += page.stats.get("rounds", 0)
        if page.next is None:
            return matches, read, reqs, time.perf_counter() - t0, rounds
        after = page.next


def model_for(resources_needed: list[Resource], until: datetime) -> tuple[KeyRangeModel, dict[Resource, int]]:
    m = KeyRangeModel()
    counts = {}
    for res in resources_needed:
        n = 0
        for e in archives(res, until):
            m.add(e)
            n += 1
        counts[res] = n
    m.freeze()
    return m, counts


def count_all(resources: list[Resource], until: datetime) -> tuple[dict[Resource, int], int]:
    """Archives per resource, and the index items they make (head + 2 per hour spanned)."""
    counts, items = {}, 0
    for r in resources:
        n = 0
        for e in archives(r, until):
            n += 1
            items += 1 + 2 * len(e.hours())
        counts[r] = n
    return counts, items


# -- part 1 -------------------------------------------------------------------------------
def bench_index(target: int, load_days: float) -> None:
    resources = resources_for(target)
    year_end = YEAR0 + timedelta(days=DAYS)
    load_end = YEAR0 + timedelta(days=load_days)
    print(f"# index: stack of {len(resources)} resources "
          f"({sum(r.cls == 'busy' for r in resources)} busy, {sum(r.cls == 'normal' for r in resources)} normal, "
          f"{sum(r.cls == 'quiet' for r in resources)} quiet)")

    # measured: the first days in moto
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        import boto3

        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="bench-index", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        t0 = time.perf_counter()
        n_arch = n_items = 0
        batch: list[dict[str, Any]] = []
        for res in resources:
            for e in archives(res, load_end):
                n_arch += 1
                for it in items_of(e):
                    batch.append({"PutRequest": {"Item": to_item(it)}})
                    if len(batch) == 25:
                        _write(ddb, batch)
                        n_items += 25
                        batch = []
        if batch:
            _write(ddb, batch)
            n_items += len(batch)
        load_s = time.perf_counter() - t0
        print(f"loaded into moto (BatchWriteItem over HTTP): {n_arch} archives = {n_items} items "
              f"({load_days:g} days) in {load_s:.1f} s: {n_items / load_s:.0f} items/s")
        store = IndexStore("bench-index", client=ddb)
        qs = questions(resources, load_days)
        needed = sorted({q.res for q in qs}, key=lambda r: r.rid)
        model_small, _ = model_for(needed, load_end)
        model_store_small = IndexStore("model", client=model_small)
        print("\n## measured in moto vs the model on the same data")
        print(f"{'question':44} {'matches':>7} {'read':>6} {'reqs':>5} {'moto ms':>8} {'model read':>10}")
        for q in qs:
            m, r, n, s, _ = run_query(store, q)
            mm, mr, _, _, _ = run_query(model_store_small, q)
            print(f"{q.label:44} {m:7d} {r:6d} {n:5d} {s * 1000:8.0f} {mr:10d}")
            if (m, r) != (mm, mr):
                raise SystemExit(f"model disagrees with moto on {q.label}: {(mm, mr)} vs {(m, r)}")
        print("model == moto on every question (matches and items read)")

    # modelled: the whole year
    t0 = time.perf_counter()
    counts, total_items = count_all(resources, year_end)
    total = sum(counts.values())
    qs_year = questions(resources, DAYS)
    needed = sorted({q.res for q in qs_year}, key=lambda r: r.rid)
    model, _ = model_for(needed, year_end)
    store = IndexStore("model", client=model)
    print(f"\n## index of {total:,} archives (one year; modelled exactly, {time.perf_counter() - t0:.0f} s to build)")
    print(f"index items: {total_items:,} ({total_items / total:.1f} an archive: head + resource and container "
          f"item per hour spanned)")
    print(f"{'question':44} {'matches':>7} {'read':>6} {'reqs':>5} {'rounds':>6} {'read/match':>10} "
          f"{'list calls: stack':>17} {'resource prefix':>15}")
    stack_calls = math.ceil(total / 1000)
    for q in qs_year:
        m, r, n, _, rounds = run_query(store, q)
        prefix_calls = stack_calls if q.sel.kind == "container" else math.ceil(counts[q.res] / 1000)
        ratio = f"{r / m:.2f}" if m else "-"
        print(f"{q.label:44} {m:7d} {r:6d} {n:5d} {rounds:6d} {ratio:>10} {stack_calls:17d} {prefix_calls:15d}")
    print(f"(list calls: ListObjectsV2 pages of 1000 keys; the stack prefix holds {total:,} keys, "
          f"keys listed = up to 1000 x calls; a container has no prefix, so its listing is the stack's;\n"
          f" rounds: waves of up to 8 parallel DynamoDB requests, i.e. sequential round trips)")


def _write(ddb: Any, batch: list[dict[str, Any]]) -> None:
    req = {"bench-index": batch}
    while req:
        resp = ddb.batch_write_item(RequestItems=req)
        req = resp.get("UnprocessedItems") or {}


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
    ap.add_argument("--archives", type=int, default=1_000_000, help="size of the modelled index")
    ap.add_argument("--load-days", type=float, default=2.0, help="days of the data set loaded into moto")
    ap.add_argument("--scan-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k archives, 1 day, 8 MB")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.archives, args.load_days, args.scan_mb = 20_000, 1.5, 8
    t0 = time.perf_counter()
    if not args.skip_index:
        bench_index(args.archives, args.load_days)
    if not args.skip_scan:
        bench_scan(args.scan_mb)
    print(f"\n(total {time.perf_counter() - t0:.0f} s; python {sys.version.split()[0]}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

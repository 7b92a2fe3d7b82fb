"""What ``--max-age 1h`` costs against ``24h``: more, smaller segments for a host of 50 containers.

    .venv/bin/python bench/bench_max_age.py [--containers 50] [--interval 60] [--sample 20]

Three parts, each printed with how it was obtained:

1. **Segments a day** (simulated): the shipper's own decision code (``shipper/eligibility.live``)
   is asked every ``--interval`` seconds of a simulated day, for each running container of a
   fixed mix of log rates, when its live log may ship (no Docker rotation: Docker's default).
   Each "yes" is one segment; its byte count follows from the rate. The file it is asked about
   holds the first and the last unshipped line (all the decision reads), so a day takes seconds.
2. **Requests per segment** (measured): ``--sample`` containers each with one closed log go
   through the real ``logarchive ship --once`` and ``logarchive archive --once`` (digests on,
   one direct customer copy) against the local moto server; every AWS API call is counted by
   operation and divided by the segments archived. The indexer Lambda is not run by ``archive
   --once``: its calls per archive (an invocation, a HEAD, a GetItem and a PutItem) are from
   its code (docs/ARCHITECTURE.md), not measured.
3. **Stored bytes per segment** (measured): one segment of each size class is sealed with the
   default preset (``codec.seal``, 4 MiB gzip members, AES-256-GCM) from generated json-file
   lines (``bench/loggen.py``); segments of 8 MiB or more are scaled from an 8 MiB seal (members
   are independent, so the ratio no longer changes). Per-object metadata is the archive's S3 user
   metadata measured in part 2.

Prices are us-east-1 list prices as of late 2026 (bench/cost_table.py's): check before quoting.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chalicelib.shipper import eligibility  # noqa: E402
from chalicelib.shipper.scan import Container  # noqa: E402

DAY = 86400
# (count, lines per second): a fixed mix of 50 containers, quiet to busy.
MIX = ((10, 0.002), (25, 0.5), (10, 5.0), (5, 50.0))
PRICE = {  # $ (us-east-1 list, late 2026)
    "s3_put_per_1000": 0.005, "s3_get_per_1000": 0.0004, "sqs_per_million": 0.40,
    "ddb_write_per_million": 1.25, "ddb_read_per_million": 0.25, "lambda_per_million": 0.20,
    "standard_gb_month": 0.023, "deep_archive_gb_month": 0.00099,
}
DEEP_ARCHIVE_OBJECT_BYTES = (8 * 1024, 32 * 1024)  # billed at Standard, at Deep Archive


def _line(t: float) -> bytes:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    return b'{"log":"x\\n","stream":"stdout","time":"' + stamp.encode() + b'"}\n'


def segments_a_day(rate: float, max_age: float, interval: float, start: float) -> list[float]:
    """Lines per segment the shipper cuts in a day of a container writing ``rate`` lines/s."""
    running = Container(id="0" * 64, path="", name="c", running=True)
    period = 1.0 / rate
    next_line, oldest, newest, waiting = start, None, None, 0
    cut: list[float] = []
    t = start
    while t < start + DAY:
        t += interval
        while next_line <= t:  # the lines written since the last pass
            oldest = next_line if oldest is None else oldest
            newest = next_line
            waiting += 1
            next_line += period
        if not waiting:
            continue
        body = _line(oldest) + (_line(newest) if waiting > 1 else b"")
        d = eligibility.live(io.BytesIO(body), running, len(body), t, 0, now=t, max_age=max_age, settle=30)
        if d.end is not None:
            cut.append(waiting)
            oldest, newest, waiting = None, None, 0
    return cut


@dataclass
class Policy:
    name: str
    max_age: float
    segments: int = 0
    sizes: list[tuple[int, float]] = None  # (count, bytes per segment)


def part1(interval: float, line_bytes: float) -> dict[str, Policy]:
    start = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    out = {}
    for name, max_age in (("1h", 3600.0), ("24h", 86400.0)):
        p = Policy(name, max_age, 0, [])
        for count, rate in MIX:
            cuts = segments_a_day(rate, max_age, interval, start)
            p.segments += count * len(cuts)
            if cuts:
                p.sizes.append((count * len(cuts), sum(cuts) / len(cuts) * line_bytes))
        out[name] = p
    return out


def _counting():
    import botocore.client

    calls: Counter = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counted(self, operation, params):  # noqa: ANN001 - botocore's signature
        calls[(self.meta.service_model.service_name, operation)] += 1
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = counted
    return calls


def part2(sample: int, tmp: Path) -> tuple[dict, int]:
    """(calls per archived segment by (service, operation), S3 user-metadata bytes of an archive)."""
    import boto3

    from chalicelib import cli
    from chalicelib.devkit import local_aws
    from chalicelib.devkit.fakedocker import FakeDockerRoot
    from chalicelib.devkit.local_stack import create_table
    from chalicelib.keyring import MasterKey

    calls = _counting()
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        b = local_aws.StackBuckets.for_stack("bench")
        local_aws.create_buckets(endpoint, b.all())
        table = "bench-idempotency"  # digests need it: the chain's state and the records
        create_table(table, ("id",))
        fake = FakeDockerRoot(tmp / "docker")
        for i in range(sample):
            c = fake.add(f"c{i}")
            c.log(f"line of container {i}")
            c.stop()
        key = tmp / "master.key"
        key.write_text(MasterKey.generate().to_base64())
        signing = ROOT / "tests" / "vectors" / "digest" / "ed25519-private.pem"
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        calls.clear()
        assert cli.main(["ship", "--docker-root", str(tmp / "docker"), "--staging", f"s3://{b.staging}/staged",
                         "--stack", "bench", "--host", "h", "--state", str(tmp / "ship.db"), "--once",
                         "--settle", "0"]) == 0
        shipper = dict(calls)
        calls.clear()
        assert cli.main(["archive", "--once", "--staging", f"s3://{b.staging}/staged/", "--archive-bucket",
                         b.archive, "--replicate-to", b.customer, "--key-file", str(key), "--stack", "bench",
                         "--signing-key-file", str(signing), "--table", table]) == 0
        archiver = dict(calls)
        s3 = boto3.client("s3")
        one = next(o["Key"] for o in s3.list_objects_v2(Bucket=b.archive, Prefix="bench/")["Contents"])
        meta = s3.head_object(Bucket=b.archive, Key=one)["Metadata"]
        meta_bytes = sum(len(k) + len(v) for k, v in meta.items())
    per = {f"ship {s}:{op}": n / sample for (s, op), n in shipper.items()}
    per.update({f"archive {s}:{op}": n / sample for (s, op), n in archiver.items()})
    return per, meta_bytes


CAP = 8 << 20


def sample_log() -> bytes:
    import loggen

    return b"".join(loggen.generate(CAP))


def part3(sizes: set[int], data: bytes) -> dict[int, float]:
    """Stored bytes of a sealed segment of each raw size (whole lines of ``data``)."""
    from chalicelib.codec import seal
    from chalicelib.keyring import Keyring, MasterKey

    ring = Keyring([MasterKey.generate()])
    out = {}
    for size in sorted(sizes):
        raw = data[:min(size, CAP)]
        raw = raw[:raw.rfind(b"\n") + 1] or raw
        res = seal(io.BytesIO(raw), io.BytesIO(), ring)
        out[size] = res.ciphertext_bytes * (size / len(raw))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=60.0, help="the daemon's pass interval (default 60 s)")
    ap.add_argument("--sample", type=int, default=20, help="segments pushed through ship + archive (default 20)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    data = sample_log()
    line = len(data) / data.count(b"\n")
    t0 = time.monotonic()
    policies = part1(args.interval, line)
    t1 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        per_segment, meta_bytes = part2(args.sample, Path(tmp))
    t2 = time.monotonic()
    sizes = {round(s) for p in policies.values() for _, s in p.sizes}
    stored = part3(sizes, data)
    t3 = time.monotonic()

    print(f"machine: {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load {os.getloadavg()[0]:.1f}")
    print(f"host: {sum(c for c, _ in MIX)} containers, (count, lines/s) {MIX}, {line:.0f} B a line "
          f"(bench/loggen.py), daemon pass every {args.interval:g} s")
    print(f"\n1. segments a day (simulated with eligibility.live, {t1 - t0:.1f} s)")
    for p in policies.values():
        print(f"  --max-age {p.name}: {p.segments} segments; by size: "
              + ", ".join(f"{n} × {s / 1024:.1f} KiB" for n, s in p.sizes))
    print(f"\n2. AWS calls per archived segment (measured, {args.sample} segments, {t2 - t1:.1f} s)")
    for k, v in sorted(per_segment.items()):
        print(f"  {k}: {v:.2f}")
    print(f"  archive object S3 user metadata: {meta_bytes} B")
    print(f"\n3. stored bytes per sealed segment (measured, {t3 - t2:.1f} s)")
    for size, s in sorted(stored.items()):
        print(f"  {size / 1024:10.1f} KiB raw -> {s / 1024:10.1f} KiB stored ({s / size:.3f})")

    def per_day(p: Policy) -> dict[str, float]:
        n = p.segments
        puts = sum(v for k, v in per_segment.items() if k.startswith("archive s3:") and (
            ":Put" in k or ":Copy" in k or ":Create" in k or ":Complete" in k or ":UploadPart" in k
            or ":List" in k)) * n
        gets = sum(v for k, v in per_segment.items() if k.startswith("archive s3:") and (":Get" in k or ":Head" in k))
        # DynamoDB as measured (archive --once with --table: the lease PutItem, the digest record's
        # PutItem, the seal's chain item; each sealed record is one item of a BatchWriteItem of up
        # to 25). The Lambda path adds (docs/ARCHITECTURE.md, from the code): one SQS message per
        # segment (SendMessageBatch of 10, the event source's receive and delete: ~0.3 requests);
        # one worker invocation per batch of 10; the indexer: one invocation, one HEAD, one
        # GetItem and one PutItem per archive.
        ddb_writes = sum(v for k, v in per_segment.items() if k.startswith("archive dynamodb:")
                         and (":Put" in k or ":Delete" in k)) + 1.0  # + the records marked sealed
        ddb_reads = sum(v for k, v in per_segment.items() if k.startswith("archive dynamodb:")
                        and (":Get" in k or ":Scan" in k))
        raw = sum(c * s for c, s in p.sizes)
        kept = sum(c * (stored[round(s)] + meta_bytes) for c, s in p.sizes)
        row = {
            "segments": n,
            "S3 PUT/LIST-class (archiver)": puts,
            "S3 PUT (shipper's segments)": n,
            "S3 GET/HEAD-class": gets * n + n,
            "DynamoDB writes": ddb_writes * n + n,
            "DynamoDB reads": ddb_reads * n + n,
            "SQS requests": 0.3 * n,
            "Lambda invocations": n / 10 + n,
            "raw GiB": raw / 2**30,
            "stored GiB (one copy)": kept / 2**30,
            "stored / raw": kept / raw,
        }
        row["requests $/day"] = (
            (row["S3 PUT/LIST-class (archiver)"] + row["S3 PUT (shipper's segments)"]) / 1000 * PRICE["s3_put_per_1000"]
            + row["S3 GET/HEAD-class"] / 1000 * PRICE["s3_get_per_1000"]
            + row["SQS requests"] / 1e6 * PRICE["sqs_per_million"]
            + row["DynamoDB writes"] / 1e6 * PRICE["ddb_write_per_million"]
            + row["DynamoDB reads"] / 1e6 * PRICE["ddb_read_per_million"]
            + row["Lambda invocations"] / 1e6 * PRICE["lambda_per_million"])
        # Deep Archive bills 8 KB (Standard) + 32 KB (Deep Archive) per object: a year's objects, 2 copies.
        per_object = (DEEP_ARCHIVE_OBJECT_BYTES[0] * PRICE["standard_gb_month"]
                      + DEEP_ARCHIVE_OBJECT_BYTES[1] * PRICE["deep_archive_gb_month"]) / 2**30
        row["Deep Archive object overhead $/month after a year"] = 2 * 365 * n * per_object
        row["Deep Archive data $/month after a year"] = 2 * 365 * kept / 2**30 * PRICE["deep_archive_gb_month"]
        return row

    rows = {name: per_day(p) for name, p in policies.items()}
    heartbeats = DAY / args.interval
    print(f"\nper day, this host (S3 requests of both copies; storage per copy). Heartbeats add "
          f"{heartbeats:.0f} PUTs a day (${heartbeats / 1000 * PRICE['s3_put_per_1000']:.4f}) under either policy.")
    print("  | --max-age " + " | --max-age ".join(rows) + " |")
    for k in rows["1h"]:
        print(f"  {k} | " + " | ".join(f"{rows[n][k]:,.4g}" for n in rows) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"policies": rows, "per_segment": per_segment,
                                               "meta_bytes": meta_bytes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One archiver worker on a large staged object against the local moto server, versus
``codec.seal`` of the same file on local disk in the same run: the cost of S3 I/O.

    .venv/bin/python bench/bench_archive.py [--mb 500] [--replicate] [--fanout 1000] [--small 200]

Each measurement runs in a child process so its peak RSS (ru_maxrss) is its own. The worker
child does exactly what the Lambda does for one SQS record (GET → gunzip? → seal into a temp
file → conditional multipart upload → HEAD verify → [copy to the customer bucket] → delete).
The moto server is a third process on the same 2 cores, so absolute numbers are a floor.

``--small N`` measures the per-object overhead ``o`` (docs/SCALING.md): N staged objects of
``--small-kb`` KB each through ``logarchive archive --once`` (the CLI, in process hand-over),
minus the same command over an empty staging prefix (start-up and listing); the baseline in the
same run is N single 10 KB PUTs to the same server, one S3 round trip each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

WORDS = ("invoice account payment refund shipment customer widget report export import token session "
         "cache queue worker retry timeout upstream database replica primary index migration").split()
PATHS = ["/api/v1/users/{}", "/api/v1/orders/{}/items", "/health", "/login", "/static/app.{}.js",
         "/api/v1/search?q={}&page=2"]


def generate(path: str, size: int, seed: int = 7) -> int:
    """Docker json-file lines (access logs, app logs with ids, some stderr) up to ``size`` bytes."""
    rnd = random.Random(seed)
    t = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)
    written = 0
    with open(path, "wb") as fh:
        while written < size:
            lines = []
            for _ in range(2000):
                t += timedelta(microseconds=rnd.randrange(200, 20000))
                stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rnd.randrange(1000):03d}Z"
                r = rnd.random()
                if r < 0.55:
                    msg = (f'10.0.{rnd.randrange(256)}.{rnd.randrange(256)} - - "GET '
                           f'{rnd.choice(PATHS).format(rnd.randrange(10**6))} HTTP/1.1\\" '
                           f'{rnd.choice((200, 200, 200, 304, 404, 500))} {rnd.randrange(100000)} '
                           f'{rnd.random():.4f}')
                    stream = "stdout"
                elif r < 0.95:
                    msg = (f"{rnd.choice(('INFO', 'INFO', 'DEBUG', 'WARN'))} [req-{rnd.getrandbits(64):016x}] "
                           f"{rnd.choice(WORDS)} {rnd.randrange(10**7)} for tenant {rnd.randrange(500)} "
                           f"took {rnd.randrange(2000)}ms")
                    stream = "stdout"
                else:
                    msg = f"ERROR {rnd.choice(WORDS)}Error: {rnd.choice(WORDS)} {rnd.randrange(10**7)} not found"
                    stream = "stderr"
                lines.append(f'{{"log":"{msg}\\n","stream":"{stream}","time":"{stamp}"}}\n')
            block = "".join(lines).encode()
            fh.write(block)
            written += len(block)
    return written


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_seal(path: str) -> dict:
    from chalicelib.codec import seal
    from chalicelib.keyring import Keyring, MasterKey

    class Sink:
        n = 0

        def write(self, data: bytes) -> int:
            self.n += len(data)
            return len(data)

    ring = Keyring([MasterKey.generate()])
    with open(path, "rb") as fh:
        t0 = time.perf_counter()
        sink = Sink()
        seal(fh, sink, ring)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes_out": sink.n, "rss_mb": peak_rss_mb()}


def child_worker(endpoint: str, staging: str, key: str, archive: str, replicate: str) -> dict:
    from chalicelib import aws
    from chalicelib.archiver.messages import Job
    from chalicelib.archiver.worker import Worker
    from chalicelib.devkit import local_aws
    from chalicelib.keyring import Keyring, MasterKey
    from chalicelib.settings import Settings

    local_aws.use_endpoint(endpoint)
    s3 = aws.client("s3")
    head = s3.head_object(Bucket=staging, Key=key)
    settings = Settings(stack="bench", staging_bucket=staging, archive_bucket=archive,
                        replicate_to=(replicate,) if replicate else ())
    worker = Worker(settings, Keyring([MasterKey.generate()]))
    t0 = time.perf_counter()
    outcome = worker.archive(Job(staging, key, head["ETag"], head["ContentLength"]))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "status": outcome.status.value, "bytes_in": outcome.bytes_in,
            "bytes_out": outcome.bytes_out, "rss_mb": peak_rss_mb(), "phases": outcome.seconds}


def bench_fanout(s3, buckets, n: int) -> None:
    """The scheduler Lambda's work: list, lease (DynamoDB), send (SQS batches of 10)."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from chalicelib import aws
    from chalicelib.archiver import scheduler
    from chalicelib.archiver.lease import Leases
    from chalicelib.settings import Settings

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=buckets.staging, Key=f"fan/{i:06d}", Body=b"x"), range(n)))
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    ddb.create_table(TableName="bench-idem", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    url = sqs.create_queue(QueueName="bench-work")["QueueUrl"]
    settings = Settings(stack="bench", staging_bucket=buckets.staging, staging_prefix="fan/",
                        archive_bucket=buckets.archive)
    t0 = time.perf_counter()
    report = scheduler.run(settings, scheduler.SqsSender(aws.client("sqs"), url), s3=aws.client("s3"),
                           leases=Leases(aws.client("dynamodb"), "bench-idem", 3600))
    seconds = time.perf_counter() - t0
    assert report.scheduled == n, report
    print(f"scheduler: {n} staged objects listed, leased and sent in {seconds:.1f}s "
          f"({n / seconds:.0f} objects/s; 10,000 would take {10_000 / (n / seconds):.0f}s)", flush=True)


def bench_small(s3, endpoint: str, buckets, n: int, kb: int, tmp: str) -> None:
    """Seconds per object of ``logarchive archive --once`` for ``n`` small staged objects."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.keyring import MasterKey

    key_file = os.path.join(tmp, "key.b64")
    with open(key_file, "w") as fh:
        fh.write(MasterKey.generate().to_base64() + "\n")

    source = os.path.join(tmp, "small-source.log")
    generate(source, 1_000_000)
    with open(source, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    os.unlink(source)

    def stage(i: int) -> None:
        data, j = b"", (i * 37) % (len(lines) // 2)  # whole lines, about kb KB, a different slice each
        while len(data) < kb * 1000:
            data += lines[j]
            j += 1
        cid = hashlib.sha256(b"small-%d" % i).hexdigest()
        meta = {"logarchive-stack": "bench", "logarchive-container-id": cid, "logarchive-kind": "apps",
                "logarchive-resource-id": "1", "logarchive-service-id": "2", "logarchive-segment": "1",
                "logarchive-encoding": "identity", "logarchive-sha256": hashlib.sha256(data).hexdigest(),
                "logarchive-host": "bench", "logarchive-container-name": f"web.{i}"}
        s3.put_object(Bucket=buckets.staging, Key=f"small/{cid}/00000001.log", Body=data, Metadata=meta)

    def archive_once() -> tuple[float, str]:
        cmd = [os.path.join(os.path.dirname(sys.executable), "logarchive"), "archive", "--once",
               "--staging", f"s3://{buckets.staging}/small/", "--archive-bucket", buckets.archive,
               "--stack", "bench", "--key-file", key_file, "--endpoint-url", endpoint,
               "--region", "us-east-1"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return time.perf_counter() - t0, out.stdout.strip().splitlines()[-1]

    empty, _ = archive_once()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stage, range(n)))
    body = os.urandom(kb * 1000)
    t0 = time.perf_counter()
    for i in range(n):
        s3.put_object(Bucket=buckets.customer, Key=f"put/{i}", Body=body)
    put = (time.perf_counter() - t0) / n
    full, summary = archive_once()
    assert summary.startswith(f"{n} archived"), summary
    o = (full - empty) / n
    print(f"small objects: {n} x {kb} KB staged -> logarchive archive --once in {full:.1f}s, "
          f"empty run {empty:.1f}s: o = {o * 1000:.0f} ms per object "
          f"(= {o / put:.1f} x one {kb} KB PUT, {put * 1000:.1f} ms, to the same server); {summary}",
          flush=True)


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=500, help="staged object size in MB (default 500)")
    p.add_argument("--replicate", action="store_true", help="also time direct replication to one bucket")
    p.add_argument("--fanout", type=int, default=1000,
                   help="also time the scheduler over this many staged objects (0: skip)")
    p.add_argument("--small", type=int, default=200,
                   help="also time this many small staged objects through `logarchive archive --once` (0: skip)")
    p.add_argument("--small-kb", type=int, default=10, help="size of each small object in KB (default 10)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        result = child_seal(*rest) if kind == "seal" else child_worker(*rest)
        print(json.dumps(result))
        return 0

    from chalicelib.devkit import local_aws

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "staged.log")
        t0 = time.perf_counter()
        size = generate(path, args.mb * 1_000_000)
        print(f"generated {size / 1e6:.0f} MB of Docker JSON lines in {time.perf_counter() - t0:.1f}s",
              flush=True)
        seal_r = run_child("seal", path)
        print(f"codec.seal, local file -> counting sink: {size / 1e6 / seal_r['seconds']:.1f} MB/s, "
              f"ratio {size / seal_r['bytes_out']:.1f}x, peak RSS {seal_r['rss_mb']:.0f} MB", flush=True)
        runs = [("worker, archive bucket only", "")] + ([("worker + direct copy to customer", "x")]
                                                       if args.replicate else [])
        with local_aws.moto_server() as endpoint:
            local_aws.use_endpoint(endpoint)
            buckets = local_aws.StackBuckets.for_stack("bench")
            local_aws.create_buckets(endpoint, buckets.all())
            import boto3

            s3 = boto3.client("s3", endpoint_url=endpoint, region_name=local_aws.LOCAL_REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            meta = {"logarchive-stack": "bench", "logarchive-container-id": "ab" * 32,
                    "logarchive-kind": "apps", "logarchive-resource-id": "1", "logarchive-service-id": "2",
                    "logarchive-segment": "1", "logarchive-encoding": "identity",
                    "logarchive-sha256": sha.hexdigest(), "logarchive-host": "bench",
                    "logarchive-container-name": "web.1"}
            for label, rep in runs:
                key = f"staged/bench-{len(label)}"
                t0 = time.perf_counter()
                s3.upload_file(path, buckets.staging, key, ExtraArgs={"Metadata": meta})
                print(f"(staged {key} in {time.perf_counter() - t0:.1f}s)", flush=True)
                r = run_child("worker", endpoint, buckets.staging, key, buckets.archive,
                              buckets.customer if rep else "")
                assert r["status"] == "archived" and r["bytes_in"] == size, r
                print(f"{label}: {size / 1e6 / r['seconds']:.1f} MB/s "
                      f"({r['seconds']:.1f}s; {seal_r['seconds'] / r['seconds']:.2f} of seal's speed), "
                      f"peak RSS {r['rss_mb']:.0f} MB", flush=True)
                print("    phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items()), flush=True)
                # the next run archives the same bytes again: clear the key it would collide with
                for v in s3.list_object_versions(Bucket=buckets.archive).get("Versions", []):
                    s3.delete_object(Bucket=buckets.archive, Key=v["Key"], VersionId=v["VersionId"])
            if args.fanout:
                bench_fanout(s3, buckets, args.fanout)
            if args.small:
                bench_small(s3, endpoint, buckets, args.small, args.small_kb, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

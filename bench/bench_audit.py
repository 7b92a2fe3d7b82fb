"""``logarchive audit`` benchmark: archives audited per second, in parallel against one at a time.

A synthetic stack in the local AWS (moto over HTTP): ``--archives`` objects of 1 KiB under v3
keys (20 segments a container, uploaded with a SHA-256 checksum as the archiver does) and a chain
of 10 signed digests listing them. The audit runs in this process with ``--jobs 1`` (the
baseline), ``--jobs 16`` (the default) and ``--jobs 16 --deep`` (every body read), first as
moto answers (local, sub-millisecond, one server process: CPU-bound), then with S3's round trip
modelled by a client-side wait of ``--latency-ms`` (default 20) before every request, which is
what parallel requests hide. The ratios are what to compare; moto's absolute times are not S3's.

Run: ``.venv/bin/python bench/bench_audit.py`` (2,000 archives); ``--quick`` for 200.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from chalicelib import digest, layout  # noqa: E402
from chalicelib.audit import checks  # noqa: E402
from chalicelib.devkit import local_aws  # noqa: E402

STACK = "bench"
BUCKET = "bench-audit-logs"
KEY_ID = "b" * 64
SEGMENTS = 20
DIGESTS = 10


def populate(s3, n: int, signer: digest.Ed25519Signer) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    entries = []
    for i in range(n):
        cid = hashlib.sha256(f"c{i // SEGMENTS}".encode()).hexdigest()
        seg = i % SEGMENTS + 1
        start = t0 + timedelta(minutes=i)
        key = layout.ArchiveKey(stack=STACK, key_id=KEY_ID, kind="databases", resource_id=str(i // 200),
                                container_id=cid, rotation=seg, start=start, end=start).key()
        body = os.urandom(1024)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ChecksumAlgorithm="SHA256")
        sha = hashlib.sha256(body)
        entries.append(digest.ArchiveEntry(
            key=key, stored_sha256=sha.hexdigest(), stored_size=len(body),
            s3_checksum_sha256=base64.b64encode(sha.digest()).decode(), s3_part_size=None,
            raw_sha256="0" * 64, raw_bytes=1000, lines=10, key_id=KEY_ID, container_id=cid, host="h",
            source=f"staged/{cid}/{seg}", segment=seg, byte_start=(seg - 1) * 1000, byte_end=seg * 1000,
            first_time=digest.fmt_time(start), last_time=digest.fmt_time(start)))
    previous = None
    per = -(-n // DIGESTS)
    now = datetime.now(UTC) - timedelta(hours=DIGESTS + 3)
    for d in range(DIGESTS):
        doc = digest.build(stack=STACK, end=now + timedelta(hours=d), signing_key_id=signer.key_id,
                           signature_algorithm=signer.algorithm, archives=entries[d * per:(d + 1) * per],
                           previous=previous, start=now - timedelta(hours=1))
        previous = digest.sign(doc, signer)
        s3.put_object(Bucket=BUCKET, Key=previous.key, Body=previous.body, Metadata=previous.metadata())


def with_latency(s3, ms: float):
    """A client whose every request first waits ``ms``: S3's round trip, not moto's."""
    client = boto3.client("s3")
    client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(ms / 1000))
    return client


def timed(s3, public, *, jobs: int, deep: bool = False) -> tuple[float, checks.AuditResult]:
    opts = checks.Options(bucket=BUCKET, stack=STACK, public_keys=[public], workers=jobs, deep=deep)
    t = time.perf_counter()
    result = checks.run(opts, s3)
    return time.perf_counter() - t, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archives", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 200 if args.quick else args.archives
    key = ed25519.Ed25519PrivateKey.generate()
    signer = digest.Ed25519Signer(key)
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, (BUCKET,))
        s3 = boto3.client("s3")
        populate(s3, n, signer)
        runs = [("--jobs 1 (baseline)", 1, False), ("--jobs 16", 16, False), ("--jobs 16 --deep", 16, True)]
        print(f"audit of {n} archives, {DIGESTS} digests (moto over HTTP, {os.cpu_count()} cores)")
        for label, client in (("moto as is", s3), (f"+{args.latency_ms:g} ms a request",
                                                   with_latency(s3, args.latency_ms))):
            base = None
            print(f"\n{label}\n{'run':22s} {'seconds':>8s} {'archives/s':>11s} {'vs baseline':>12s}  result")
            for name, jobs, deep in runs:
                secs, result = timed(client, key.public_key(), jobs=jobs, deep=deep)
                base = base or secs
                print(f"{name:22s} {secs:8.2f} {n / secs:11.0f} {base / secs:11.2f}x  {result.summary()}")
                if not result.ok:
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

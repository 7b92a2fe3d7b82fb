"""Retrieval throughput against the embedded local AWS (moto over HTTP on 127.0.0.1).

Seals N generated Docker json-file logs, uploads them under the v3 layout, then times
``retrieval.download_all`` for several output modes and job counts, in the same run. The
baseline is one job writing the archived gzip (what the reference CLI does). Prints MB/s of
log bytes (uncompressed) and the ratio to that baseline.

    .venv/bin/python bench/bench_retrieval.py [--objects 16] [--mb 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402

from chalicelib import codec, layout  # noqa: E402
from chalicelib.devkit import local_aws
from chalicelib.dockerlog import LineFilter  # noqa: E402
from chalicelib.download import retrieval  # noqa: E402
from chalicelib.keyring import Keyring, MasterKey  # noqa: E402


def make_log(mb: float, seed: int) -> bytes:
    lines, size, i = [], 0, 0
    while size < mb * 1e6:
        line = json.dumps({"log": f"{seed} GET /api/v1/items/{i * 7919 % 100000} 200 {i % 997}ms "
                                  f"user={i % 313} trace={i * 2654435761 % 2**32:08x}\n",
                           "stream": "stdout" if i % 5 else "stderr",
                           "time": f"2022-08-24T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 10**9:09d}Z"},
                          separators=(",", ":")) + "\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=16)
    ap.add_argument("--mb", type=float, default=4.0)
    args = ap.parse_args()
    key = MasterKey.generate()
    ring = Keyring([key])
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, ("bench-logs",))
        s3 = boto3.client("s3")
        raw_total = gz_total = 0
        for n in range(args.objects):
            data = make_log(args.mb, n)
            out = io.BytesIO()
            res = codec.seal(io.BytesIO(data), out, ring)
            k = layout.ArchiveKey(stack="bench", key_id=key.key_id, kind="apps", resource_id="1", service_id="1",
                                  container_id=f"{n:02x}" * 32, start=layout.parse_key_time("2022-08-24T00:00:00"),
                                  end=layout.parse_key_time("2022-08-24T23:59:59")).key()
            s3.put_object(Bucket="bench-logs", Key=k, Body=out.getvalue(), Metadata=res.envelope.to_fields())
            raw_total += len(data)
            gz_total += res.gzip_bytes
        matches = retrieval.find_archives(s3, "bench-logs", retrieval.Selection("bench", kind="apps", resource_id="1"))
        print(f"{len(matches)} archives, {raw_total / 1e6:.1f} MB of log lines, {gz_total / 1e6:.1f} MB gzip; "
              f"cpus={os.cpu_count()}")
        import re

        modes = [
            ("gzip (as archived)", retrieval.OutputOptions()),
            ("--decompress", retrieval.OutputOptions(decompress=True)),
            ("--grep + --stream", retrieval.OutputOptions(fmt="jsonl", line_filter=LineFilter(
                stream="stderr", grep=re.compile(r"items/1\d\d ")))),
            ("--verify-only", None),
        ]
        baseline = None
        for label, opts in modes:
            for jobs in (1, 4):
                dest = tempfile.mkdtemp(prefix="bench-")
                r = retrieval.Retriever(s3, "bench-logs", ring, opts or retrieval.OutputOptions())
                t0 = time.perf_counter()
                if opts is None:
                    outcomes = retrieval.verify_all(r, matches, jobs=jobs)
                else:
                    outcomes = retrieval.download_all(r, matches, dest, jobs=jobs)
                dt = time.perf_counter() - t0
                shutil.rmtree(dest)
                assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
                rate = raw_total / 1e6 / dt
                if baseline is None:
                    baseline = rate
                print(f"{label:22s} jobs={jobs}: {dt:6.2f} s  {rate:7.1f} MB/s of log  x{rate / baseline:.2f}")


if __name__ == "__main__":
    main()

"""Re-running ``logs-from-archive`` after an interruption: skipping what is written and verified.

Seals N generated Docker json-file logs as the archiver does (v3 key, envelope and the
``logarchive-sha256``/``-bytes`` metadata) on the embedded local AWS, then, in the same run,
times a first download (the baseline) and a second run over the same directory, which HEADs
each archive and re-hashes the file already there instead of fetching it again. Prints the
seconds of each and their ratio.

    .venv/bin/python bench/bench_cold.py [--objects 16] [--mb 4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402
from bench_retrieval import make_log  # noqa: E402

from chalicelib import cli, codec, layout  # noqa: E402
from chalicelib.archiver.metadata import archive_metadata  # noqa: E402
from chalicelib.devkit import local_aws  # noqa: E402
from chalicelib.keyring import Keyring, MasterKey  # noqa: E402

STACK, BUCKET = "bench", "bench-cold-logs"


def timed_run(argv: list[str]) -> tuple[float, int]:
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = cli.main(argv)
    return time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=16)
    ap.add_argument("--mb", type=float, default=4.0)
    args = ap.parse_args()
    master = MasterKey.generate()
    ring = Keyring([master])
    workdir = tempfile.mkdtemp(prefix="bench-cold-")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    try:
        with local_aws.moto_server() as endpoint:
            local_aws.use_endpoint(endpoint)
            local_aws.create_buckets(endpoint, (BUCKET,))
            s3 = boto3.client("s3")
            raw = 0
            t = datetime(2022, 8, 24, tzinfo=UTC)
            for n in range(args.objects):
                data = make_log(args.mb, n)
                raw += len(data)
                out = io.BytesIO()
                sealed = codec.seal(io.BytesIO(data), out, ring)
                first, last = t + timedelta(hours=n), t + timedelta(hours=n, minutes=59)
                key = layout.ArchiveKey(stack=STACK, key_id=master.key_id, kind="apps", resource_id="42",
                                        service_id="7", container_id=f"{n:02d}" * 32, rotation=None,
                                        start=first, end=last).key()
                meta = archive_metadata(sealed, key_id=master.key_id, first=first, last=last, lines=1)
                s3.put_object(Bucket=BUCKET, Key=key, Body=out.getvalue(), Metadata=meta)
            key_file = os.path.join(workdir, "keys.txt")
            with open(key_file, "w") as fh:
                fh.write(master.to_base64() + "\n")
            argv = ["logs-from-archive", "--bucket", BUCKET, "--stack", STACK, "--app-id", "42",
                    "--decryption-keys-file", key_file, "--download-location", os.path.join(workdir, "out")]
            first_s, rc1 = timed_run(argv)
            again_s, rc2 = timed_run(argv)
            assert rc1 == rc2 == 0
            print(f"{args.objects} archives, {raw / 1e6:.0f} MB of logs")
            print(f"first download           {first_s:7.2f} s")
            print(f"re-run, all verified     {again_s:7.2f} s   ({first_s / again_s:.1f}x faster)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

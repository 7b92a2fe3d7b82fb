"""Real crashes: ``logarchive archive --once`` killed with SIGKILL at several moments (reading,
sealing, mid-multipart, between upload and delete), then run again: it converges."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import boto3
from archiver_support import STAGING_PREFIX, assert_converged, docker_lines, stage
from test_archiver_faults import big_log

from chalicelib.keyring import Keyring, MasterKey


def test_sigkill_at_any_moment_then_rerun_converges(buckets, aws_endpoint, tmp_path):
    s3 = boto3.client("s3")
    staged = [stage(s3, buckets.staging, "big", big_log(), segment=1),
              stage(s3, buckets.staging, "small", docker_lines(50, seed=1), segment=2),
              stage(s3, buckets.staging, "gz", docker_lines(500, seed=2), segment=3, encoding="gzip")]
    key = MasterKey.generate()
    key_file = tmp_path / "k"
    key_file.write_text(key.to_base64())
    argv = [sys.executable, "-m", "chalicelib.cli", "archive", "--once",
            "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}", "--archive-bucket", buckets.archive,
            "--replicate-to", buckets.customer, "--key-file", str(key_file), "--stack", "teststack"]
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "LOGARCHIVE_PART_SIZE_MB": "5"}
    env.pop("LOGARCHIVE_KEYS", None)
    killed = 0
    states = []
    for delay in (0.6, 0.9, 1.2, 1.5, 1.8):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.wait()
        states.append((delay, len(s3.list_objects_v2(Bucket=buckets.staging, Prefix=STAGING_PREFIX).get("Contents", [])),
                       len(s3.list_objects_v2(Bucket=buckets.archive).get("Contents", [])),
                       len(s3.list_multipart_uploads(Bucket=buckets.archive).get("Uploads", []))))
    print("delay, staged left, archived, open uploads:", states)
    assert killed, "no run was interrupted: the delays are too long for this machine"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_converged(buckets, Keyring([key]), staged, destinations=(buckets.customer,))

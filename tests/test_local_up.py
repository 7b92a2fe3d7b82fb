"""`logarchive local up`: moto's server on 127.0.0.1 with the stack's versioned buckets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import boto3

from chalicelib.devkit import local_aws


def test_local_up_serves_versioned_stack_buckets_until_ctrl_c() -> None:
    port = local_aws.free_port()
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "local", "up", "--port", str(port), "--stack", "acme"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.strip() == f"local AWS up at http://127.0.0.1:{port}", first + proc.stderr.read()
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert names == set(local_aws.StackBuckets.for_stack("acme").all())
        for name in names:
            assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0
    assert "stopping" in out

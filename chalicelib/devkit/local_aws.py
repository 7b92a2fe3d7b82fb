"""The embedded local AWS: moto's server on 127.0.0.1, reached over real HTTP.

Local runs are production code paths: the same boto3 calls go to this endpoint through
``AWS_ENDPOINT_URL`` instead of AWS. Used by ``logarchive local up``, the demo and tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3

LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
}


@dataclass(frozen=True)
class StackBuckets:
    staging: str
    archive: str
    customer: str

    @classmethod
    def for_stack(cls, stack: str) -> StackBuckets:
        return cls(f"{stack}-logarchive-staging", f"{stack}-logarchive-archive", f"{stack}-customer-logs")

    def all(self) -> tuple[str, ...]:
        return (self.staging, self.archive, self.customer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(endpoint: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"local AWS at {endpoint} did not start") from None
            time.sleep(0.1)


@contextmanager
def moto_server(port: int | None = None) -> Iterator[str]:
    """Run ``moto.server`` as a child process on 127.0.0.1; yields its endpoint URL."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, **LOCAL_CREDENTIALS}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_ready(endpoint)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def use_endpoint(endpoint: str) -> None:
    """Point this process's boto3 at ``endpoint`` with throwaway credentials."""
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from .. import aws

    aws.reset_clients()


def reset(endpoint: str) -> None:
    """Wipe all state of a running moto server (between tests)."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def slow_restores(endpoint: str, reads: int | None) -> None:
    """Make the local S3's restores take ``reads`` HEAD/GET reads of the object to complete
    (its state manager; ``None``: complete at once again, the default). S3 then announces
    "Object Restore Completed" when a read sees one finish."""
    if reads is None:
        path, body = "unset-transition", {"model_name": "s3::keyrestore"}
    else:
        path = "set-transition"
        body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": reads}}
    req = urllib.request.Request(f"{endpoint}/moto-api/state-manager/{path}", data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def create_buckets(endpoint: str, names: tuple[str, ...]) -> None:
    # The local server's own throwaway credentials: `local up` runs where none are configured.
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    for name in names:
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

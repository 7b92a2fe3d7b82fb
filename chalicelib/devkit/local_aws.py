"""The embedded local AWS: moto's server on 127.0.0.1, reached over real HTTP.

Local runs are production code paths: the same boto3 calls go to this endpoint through
``AWS_ENDPOINT_URL`` instead of AWS. Used by ``logarchive local up``, the demo and tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
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


class PortTaken(RuntimeError):
    """The port asked for is already in use on 127.0.0.1."""


def check_port_free(port: int, what: str = "port") -> None:
    """Refuse a port another server holds, instead of talking to that server by mistake."""
    with socket.socket() as s:
        # SO_REUSEADDR as servers set it: a port in TIME_WAIT is free, a listening one is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortTaken(f"{what} {port} on 127.0.0.1 is taken ({exc.strerror})") from None


_RUNNING_ON = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


def _bound_port(proc: subprocess.Popen) -> int:
    """The port the server says it bound (its start-up line on stderr); the rest of its stderr
    (a line per request) is drained in the background so the pipe never fills."""
    assert proc.stderr is not None
    for line in proc.stderr:
        found = _RUNNING_ON.search(line)
        if found:
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return int(found.group(1))
    raise RuntimeError(f"local AWS exited with status {proc.wait()} while starting")


def _drain(stream) -> None:
    for _ in stream:
        pass


def wait_ready(endpoint: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"local AWS at {endpoint} exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"local AWS at {endpoint} did not start") from None
            time.sleep(0.1)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the kernel sends the child SIGTERM when its parent dies, even by SIGKILL.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def moto_server(port: int | None = None, *, die_with_parent: bool = False) -> Iterator[str]:
    """Run ``moto.server`` as a child process on 127.0.0.1; yields its endpoint URL.

    A given ``port`` that another server holds is refused (:class:`PortTaken`), never shared.
    The child is stopped when the block exits, however it exits; with ``die_with_parent`` (Linux,
    a single-threaded caller: the signal follows the thread that started it) it also dies when
    this process is killed outright.
    """
    if port:
        check_port_free(port)
    env = {**os.environ, **LOCAL_CREDENTIALS}
    proc = subprocess.Popen(
        # Port 0 when none is asked for: the server binds a free port itself and says which, so
        # two suites on one machine never race for a port picked here and released.
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port or 0)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
    )
    try:
        port = _bound_port(proc)
        endpoint = f"http://127.0.0.1:{port}"
        wait_ready(endpoint, proc=proc)
        if proc.poll() is not None:  # lost a race for the port: what answered is someone else's
            raise PortTaken(f"port {port} on 127.0.0.1 is taken")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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

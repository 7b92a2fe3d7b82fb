"""Fault injection at every S3, SQS and DynamoDB call of the scheduler and the worker, through
botocore's event system on the real clients, and proof that re-running converges:
every staged byte archived exactly once (decrypted and compared) in the archive bucket and the
customer bucket, nothing deleted before it was archived, no multipart upload left, one version
per archive key, the bad object quarantined.

A fault raised in ``before-parameter-build`` reaches our code as if botocore's retries were
exhausted; ``Crash`` is a BaseException, so no ``except Exception`` clean-up runs (a killed
process). The first pass runs with the fault; SQS then redelivers what failed, as Lambda's
event source would, and a later scheduler run (its in-flight leases expired: lease 0 s here)
sends whatever an interrupted scheduler never sent.
"""

from __future__ import annotations

import functools

import boto3
import pytest
from archiver_support import (
    Crash,
    DeleteWatch,
    Fault,
    archiver_env,
    assert_converged,
    deliver,
    docker_lines,
    lambda_client,
    run_scheduler,
    stage,
)
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib import aws

WORKER_S3 = ["GetObject", "PutObject", "HeadObject", "CreateMultipartUpload", "UploadPart",
             "CompleteMultipartUpload", "DeleteObject", "CopyObject", "ListMultipartUploads"]
SCHEDULER = [("s3", "ListObjectsV2"), ("sqs", "SendMessageBatch"), ("dynamodb", "PutItem")]
CASES = (
    [("s3", op, kind, 1) for op in WORKER_S3 for kind in ("throttle", "crash")]
    + [("s3", op, kind, 1) for op in ("GetObject", "UploadPart", "PutObject", "DeleteObject")
       for kind in ("5xx", "timeout")]
    + [("s3", "UploadPart", "crash", 2), ("s3", "PutObject", "crash", 3), ("s3", "HeadObject", "throttle", 2)]
    + [(svc, op, kind, 1) for svc, op in SCHEDULER for kind in ("throttle", "crash")]
)


@functools.cache
def big_log() -> bytes:
    # incompressible enough for a ~6 MB archive object: a 2-part multipart upload at 5 MiB parts
    return docker_lines(9000, seed=42, noisy=True)


MULTIPART_OPS = {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "ListMultipartUploads",
                 "AbortMultipartUpload"}


def stage_all(s3, bucket, *, big: bool = True):
    good = [
        stage(s3, bucket, "small", docker_lines(40, seed=1), segment=1),
        stage(s3, bucket, "rotated.gz", docker_lines(400, seed=2), segment=2, encoding="gzip"),
    ]
    if big:  # only where multipart calls are under test: it is the slow part of a case
        good.append(stage(s3, bucket, "big", big_log(), segment=3))
    bad = stage(s3, bucket, "bad", docker_lines(5, seed=4), segment=4, **{"logarchive-kind": "weird"})
    return good + [bad], bad


@pytest.fixture
def setup(monkeypatch, buckets, tmp_path):
    env = archiver_env(monkeypatch, buckets)
    monkeypatch.setenv("LOGARCHIVE_SCHEDULE_LEASE_SECONDS", "0")
    return env, lambda_client(tmp_path)


def converge(client, env, buckets, staged, bad, watch):
    run_scheduler(client)
    deliver(client, env["queue_url"], rounds=3)
    assert not watch.violations, watch.violations
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,), quarantined=(bad.key,))


@pytest.mark.parametrize("service,op,kind,nth", CASES, ids=lambda v: str(v))
def test_fault_then_rerun_converges(setup, buckets, service, op, kind, nth):
    env, client = setup
    s3 = boto3.client("s3")
    staged, bad = stage_all(s3, buckets.staging, big=op in MULTIPART_OPS)
    watch = DeleteWatch(buckets.staging, buckets.archive, (buckets.customer,), env["keyring"]).install()
    fault = Fault(service, op, kind, nth=nth).install()
    try:
        try:
            run_scheduler(client)
        except (Crash, ClientError, ReadTimeoutError):
            pass  # the scheduler Lambda failed; EventBridge runs it again next hour
        deliver(client, env["queue_url"], rounds=1)
    finally:
        fault.remove()
    assert fault.fired == 1, f"{op} was not reached"
    assert not watch.violations, watch.violations
    converge(client, env, buckets, staged, bad, watch)


def test_crash_mid_multipart_then_failed_abort_leaves_nothing(setup, buckets):
    """An upload part fails and so does the abort: the retry at the same key clears the orphan."""
    env, client = setup
    s3 = boto3.client("s3")
    staged, bad = stage_all(s3, buckets.staging)
    watch = DeleteWatch(buckets.staging, buckets.archive, (buckets.customer,), env["keyring"]).install()
    run_scheduler(client)
    faults = [Fault("s3", "UploadPart", "throttle", nth=2).install(),
              Fault("s3", "AbortMultipartUpload", "5xx", times=5).install()]
    try:
        deliver(client, env["queue_url"], rounds=1)
        assert s3.list_multipart_uploads(Bucket=buckets.archive).get("Uploads"), "an orphan was expected"
    finally:
        for f in faults:
            f.remove()
    assert all(f.fired for f in faults)
    # redelivery only (no scheduler sweep): the worker's abort of stale uploads at its key
    deliver(client, env["queue_url"], rounds=2)
    assert not s3.list_multipart_uploads(Bucket=buckets.archive).get("Uploads")
    converge(client, env, buckets, staged, bad, watch)


def test_transient_errors_are_absorbed_by_botocore_retries(setup, buckets, caplog):
    """One 503 SlowDown at the first call of every operation: standard retries hide them all."""
    env, client = setup
    s3 = boto3.client("s3")
    staged, bad = stage_all(s3, buckets.staging)
    seen: set[str] = set()

    def flaky(request, operation_name=None, **_):
        if operation_name in seen:
            return None
        seen.add(operation_name)
        return AWSResponse(request.url, 503, {}, _Raw(b"<Error><Code>SlowDown</Code><Message>x</Message></Error>"))

    for svc in ("s3", "sqs", "dynamodb"):
        aws.client(svc).meta.events.register(f"before-send.{svc}", _named(flaky))
    report = run_scheduler(client)
    assert report["scheduled"] == 4
    # Retries back off (chalice.test gives 3 s per invocation): records may be deferred, never failed.
    deliver(client, env["queue_url"], rounds=3)
    assert not [r for r in caplog.records if "not archived this time" in r.getMessage()]
    assert {"GetObject", "PutObject", "UploadPart", "DeleteObject", "SendMessageBatch", "PutItem"} <= seen, seen
    watch = DeleteWatch(buckets.staging, buckets.archive, (buckets.customer,), env["keyring"])
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,), quarantined=(bad.key,))
    assert not watch.violations


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_a, **_k):
        body, self._body = self._body, b""
        return body


def _named(fn):
    """before-send handlers get the request; the operation name comes from the event name."""
    def handler(request, event_name, **kw):
        return fn(request, operation_name=event_name.split(".")[-1])
    return handler

"""Helpers for the archiver tests: staged objects by the contract, the Lambdas through
``chalice.test.Client``, SQS delivery like Lambda's event source, fault injection through
botocore's event system on the real clients, and the convergence checks."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib import aws
from chalicelib.codec import unseal
from chalicelib.dockerlog import format_utc
from chalicelib.envelope import Envelope
from chalicelib.keyring import Keyring, MasterKey
from chalicelib.sqs_pump import pump
from chalicelib.staged import staged_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # app.py lives at the project root
    sys.path.insert(0, ROOT)

STAGING_PREFIX = "staged/"
QUEUE = "logarchive-work"
TABLE = "logarchive-idempotency"
T0 = datetime(2022, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def docker_lines(n: int, *, start: datetime = T0, seed: int = 0, noisy: bool = False) -> bytes:
    """``n`` Docker json-file lines one second apart; ``noisy`` makes them incompressible."""
    rnd = random.Random(seed)
    out = io.BytesIO()
    for i in range(n):
        t = format_utc(start + timedelta(seconds=i))[:-1] + "123Z"
        msg = base64.b64encode(rnd.randbytes(600)).decode() if noisy else f"line {seed}-{i} hello world"
        stream = "stderr" if i % 7 == 0 else "stdout"
        out.write(json.dumps({"log": msg + "\n", "stream": stream, "time": t}, separators=(",", ":")).encode())
        out.write(b"\n")
    return out.getvalue()


def contract_metadata(data: bytes, *, cid: str, segment: int, encoding: str = "identity",
                      staged: bytes | None = None, **overrides: str) -> dict[str, str]:
    """Metadata as the shipper writes it (docs/ARCHITECTURE.md, staged object)."""
    from chalicelib.dockerlog import TimeSpan

    span = TimeSpan()
    span.feed(data)
    span.close()

    meta = staged_metadata(
        stack="teststack", host="host-1", container_id=cid, container_name="web.1", kind="apps",
        resource_id="42", service_id="7", segment=segment, rotation=1, byte_start=0, byte_end=len(data),
        first=span.first, last=span.last, lines=span.lines,
        sha256=hashlib.sha256(staged if staged is not None else data).hexdigest(), encoding=encoding,
    )
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


@dataclass
class Staged:
    key: str
    data: bytes  # the raw log bytes that must come out of the archive


def stage(s3: Any, bucket: str, name: str, data: bytes, *, segment: int = 1, cid: str | None = None,
          encoding: str = "identity", body: bytes | None = None, key: str | None = None,
          **overrides: str) -> Staged:
    """Stage like the shipper: its key layout (docs/ARCHITECTURE.md) unless ``key`` is given."""
    cid = cid or hashlib.sha256(name.encode()).hexdigest()
    if body is None:
        body = gzip.compress(data) if encoding == "gzip" else data
    meta = contract_metadata(data, cid=cid, segment=segment, encoding=encoding, staged=body, **overrides)
    if key is None:
        sha = hashlib.sha256(body).hexdigest()
        key = f"{STAGING_PREFIX}teststack/host-1/{cid}/{segment:08d}-{sha[:16]}.log"
        key += ".gz" if encoding == "gzip" else ""
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta)
    return Staged(key, data)


# -- the Lambdas ---------------------------------------------------------------------------
def lambda_client(tmp_path: Any) -> Any:
    from chalice.test import Client

    from app import app

    # An empty project dir: the stage's config.json environment must not override the test's.
    return Client(app, project_dir=str(tmp_path))


def create_idempotency_table(name: str = TABLE) -> str:
    """The idempotency table (Powertools' schema: partition key ``id``): leases, digest state.
    Created once per local AWS (a second call finds it there)."""
    ddb = boto3.client("dynamodb")
    if name not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    return name


def archiver_env(monkeypatch: Any, buckets: Any, *, mode: str = "direct") -> dict[str, Any]:
    """Environment of both Lambdas; creates the work queue and the idempotency table."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    create_idempotency_table()
    key = MasterKey.generate()
    env = {
        "LOGARCHIVE_STACK": "teststack",
        "LOGARCHIVE_STAGING_BUCKET": buckets.staging,
        "LOGARCHIVE_STAGING_PREFIX": STAGING_PREFIX,
        "LOGARCHIVE_ARCHIVE_BUCKET": buckets.archive,
        "LOGARCHIVE_REPLICATE_TO": buckets.customer,
        "LOGARCHIVE_REPLICATION_MODE": mode,
        "LOGARCHIVE_WORK_QUEUE_URL": url,
        "LOGARCHIVE_IDEMPOTENCY_TABLE": TABLE,
        "LOGARCHIVE_KEYS": key.to_base64(),
        "LOGARCHIVE_PART_SIZE_MB": "5",
        # chalice.test gives every invocation a 3 s budget that a loaded test machine can
        # exceed; deferral is tested on its own (test_remaining_time_*), elsewhere never defer.
        "LOGARCHIVE_WORKER_RESERVE_MS": "-1000000000",
        "LOGARCHIVE_WORKER_MIN_MB_PER_S": "1000",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"queue_url": url, "keyring": Keyring([key]), "key": key}


def run_scheduler(client: Any) -> dict:
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                            detail={}, resources=[])
    return client.lambda_.invoke("archive_scheduler", event).payload


def sqs_event(client: Any, bodies: list[str], ids: list[str] | None = None) -> dict:
    event = client.events.generate_sqs_event(message_bodies=bodies, queue_name=QUEUE)
    for i, rec in enumerate(event["Records"]):
        rec["messageId"] = ids[i] if ids else f"m{i}"
    return event


class Crash(BaseException):
    """A process death: no ``except Exception`` clean-up runs (finally blocks still do)."""


def deliver(client: Any, queue_url: str, *, rounds: int = 1) -> int:
    """Lambda's SQS event source (``sqs_pump``): batches of 10 to archive_worker, successes
    deleted, failures (and a crashed invocation's whole batch) visible again. Returns deliveries."""

    def invoke(records: list[dict]) -> list[str]:
        event = sqs_event(client, [r["body"] for r in records], [r["messageId"] for r in records])
        try:
            return [f["itemIdentifier"]
                    for f in client.lambda_.invoke("archive_worker", event).payload["batchItemFailures"]]
        except (Crash, ClientError, ReadTimeoutError):
            return [r["messageId"] for r in records]

    return pump(boto3.client("sqs"), queue_url, invoke, attempts=rounds).deliveries


# -- faults ------------------------------------------------------------------------------------
def make_fault(kind: str, op: str) -> BaseException:
    if kind == "throttle":
        code = "ThrottlingException" if op in ("PutItem", "DeleteItem", "SendMessageBatch") else "SlowDown"
        return ClientError({"Error": {"Code": code, "Message": "injected"},
                            "ResponseMetadata": {"HTTPStatusCode": 503}}, op)
    if kind == "5xx":
        return ClientError({"Error": {"Code": "InternalError", "Message": "injected"},
                            "ResponseMetadata": {"HTTPStatusCode": 500}}, op)
    if kind == "timeout":
        return ReadTimeoutError(endpoint_url="http://injected")
    if kind == "crash":
        return Crash(f"crash before {op}")
    raise ValueError(kind)


@dataclass
class Fault:
    """Raise ``kind`` at calls ``nth .. nth+times-1`` of ``service.op`` on the cached real client
    (after botocore's retries: the error reaches our code, as when retries are exhausted)."""

    service: str
    op: str
    kind: str
    nth: int = 1
    times: int = 1
    calls: int = 0
    fired: int = 0
    where: Callable[[dict], bool] | None = None

    def install(self) -> Fault:
        aws.client(self.service).meta.events.register(f"before-parameter-build.{self.service}.{self.op}", self._hook)
        return self

    def remove(self) -> None:
        aws.client(self.service).meta.events.unregister(f"before-parameter-build.{self.service}.{self.op}", self._hook)

    def _hook(self, params: dict, **_: Any) -> None:
        if self.where is not None and not self.where(params):
            return
        self.calls += 1
        if self.nth <= self.calls < self.nth + self.times:
            self.fired += 1
            raise make_fault(self.kind, self.op)


@dataclass
class DeleteWatch:
    """Asserts, at every delete of a staged object, that its bytes are already archived
    (archive bucket and every destination) or quarantined."""

    staging: str
    archive: str
    destinations: tuple[str, ...]
    keyring: Keyring
    violations: list[str] = field(default_factory=list)
    checked: int = 0

    def install(self) -> DeleteWatch:
        aws.client("s3").meta.events.register("before-parameter-build.s3.DeleteObject", self._hook)
        return self

    def _hook(self, params: dict, **_: Any) -> None:
        if params.get("Bucket") != self.staging or not params["Key"].startswith(STAGING_PREFIX):
            return
        self.checked += 1
        s3 = boto3.client("s3")  # a separate client: no hooks
        key = params["Key"]
        if head_or_none(s3, self.staging, "quarantine/" + key) is not None:
            return
        kwargs = {"Bucket": self.staging, "Key": key}
        if params.get("VersionId"):
            kwargs["VersionId"] = params["VersionId"]
        staged = s3.get_object(**kwargs)
        raw = staged["Body"].read()
        if staged["Metadata"].get("logarchive-encoding") == "gzip":
            raw = gzip.decompress(raw)
        sha = hashlib.sha256(raw).hexdigest()
        for bucket in (self.archive, *self.destinations):
            # metadata here (cheap); the end state of every test decrypts and compares bytes
            found = [k for k, meta in heads(s3, bucket).items() if meta.get("logarchive-sha256") == sha]
            if len(found) != 1:
                self.violations.append(f"delete of {key}: {len(found)} archives in {bucket}")


def head_or_none(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return None


def heads(s3: Any, bucket: str) -> dict[str, dict]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="teststack/"):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
    return out


def decrypt(s3: Any, bucket: str, key: str, keyring: Keyring) -> bytes:
    got = s3.get_object(Bucket=bucket, Key=key)
    env = Envelope.from_fields(got["Metadata"], name=key)
    out = io.BytesIO()
    unseal(got["Body"].iter_chunks(1 << 20), out, env, keyring, name=key, decompress=True)
    return out.getvalue()


def archived(s3: Any, bucket: str, keyring: Keyring, *, stack: str = "teststack") -> dict[str, bytes]:
    """Every object under the stack's archive prefix, decrypted."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{stack}/"):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = decrypt(s3, bucket, obj["Key"], keyring)
    return out


def assert_converged(buckets: Any, keyring: Keyring, staged: list[Staged], *,
                     destinations: tuple[str, ...] = (), quarantined: tuple[str, ...] = ()) -> None:
    """Every staged byte archived exactly once in every bucket, one version per key,
    no multipart upload left, the staging prefix empty except quarantine."""
    s3 = boto3.client("s3")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.staging).get("Contents", [])]
    assert sorted(k for k in left if not k.startswith(("replication-pending/", "archived/"))) == sorted(
        "quarantine/" + k for k in quarantined)
    # an "archived" marker for every archived staged key (and only those), naming its archive
    markers = sorted(k for k in left if k.startswith("archived/"))
    assert markers == sorted({"archived/" + s.key for s in staged if s.key not in quarantined})
    for m in markers:
        named = s3.head_object(Bucket=buckets.staging, Key=m)["Metadata"]["logarchive-archive-key"]
        assert head_or_none(s3, buckets.archive, named) is not None, f"{m} names a missing archive {named}"
    expected = sorted(s.data for s in staged if s.key not in quarantined)
    for bucket in (buckets.archive, *destinations):
        got = archived(s3, bucket, keyring)
        assert sorted(got.values()) == expected, f"{bucket}: archived bytes differ from staged bytes"
        versions = s3.list_object_versions(Bucket=bucket)
        assert not versions.get("DeleteMarkers")
        keys = [v["Key"] for v in versions.get("Versions", [])]
        assert len(keys) == len(set(keys)) == len(expected), f"{bucket}: more than one version per key"
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), f"{bucket}: orphaned uploads"

"""Shared helpers of the index/API tests: tables, queue, sealed archives, a queue pump."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import boto3

from chalicelib import layout
from chalicelib.archiver.metadata import archive_metadata
from chalicelib.codec import seal
from chalicelib.devkit import local_stack
from chalicelib.keyring import Keyring, MasterKey

STACK = "teststack"
INDEX_TABLE = "logarchive-index"
JOBS_TABLE = "logarchive-jobs"
QUEUE = "logarchive-retrieval"
TOKEN_SECRET = "logarchive-test-api-token"  # the Secrets Manager secret that signs page tokens


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


create_table = local_stack.create_table


def setup_stack(monkeypatch, buckets, master: MasterKey, project_dir) -> str:
    """Tables, queue and the Lambda environment of one stack; returns the queue URL.

    The environment goes into a ``test`` stage of a project dir for ``chalice.test.Client``
    (as a deployed stage would carry it) and into this process (for direct calls).
    """
    create_table(INDEX_TABLE)
    create_table(JOBS_TABLE)
    url = boto3.client("sqs").create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    local_stack.create_token_secret(TOKEN_SECRET)
    env = {
        "LOGARCHIVE_STACK": STACK, "LOGARCHIVE_ARCHIVE_BUCKET": buckets.archive,
        "LOGARCHIVE_INDEX_TABLE": INDEX_TABLE, "LOGARCHIVE_JOBS_TABLE": JOBS_TABLE,
        "LOGARCHIVE_RETRIEVAL_QUEUE_URL": url, "LOGARCHIVE_RESULTS_BUCKET": buckets.staging,
        "LOGARCHIVE_RESULTS_PREFIX": "retrievals/", "LOGARCHIVE_KEYS": master.to_base64(),
        "LOGARCHIVE_API_TOKEN_SECRET": TOKEN_SECRET,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    local_stack.write_stage(project_dir, env, stage="test")
    return url


def docker_line(when: str, stream: str, text: str) -> bytes:
    return json.dumps({"log": text + "\n", "stream": stream, "time": when}, separators=(",", ":")).encode()


def put_archive(bucket: str, lines: list[bytes], *, master: MasterKey, kind: str = "apps", rid: str | None = "42",
                sid: str | None = "7", cid: str = "ab" * 32, rotation: int | None = None,
                first: str | None = None, last: str | None = None, stack: str = STACK,
                metadata: bool = True) -> tuple[str, str]:
    """Seal ``lines`` and store them as the archiver does: v3 key + envelope + logarchive metadata."""
    from chalicelib.dockerlog import line_time

    times = [x for x in (line_time(raw) for raw in lines) if x]
    t0 = t(first) if first else min(times)
    t1 = t(last) if last else max(times)
    ring = Keyring([master])
    body = b"".join(x + b"\n" for x in lines)
    out = io.BytesIO()
    res = seal(io.BytesIO(body), out, ring)
    key = layout.ArchiveKey(stack=stack, key_id=master.key_id, kind=kind, resource_id=rid,
                            service_id=sid if kind == "apps" else None, container_id=cid, rotation=rotation,
                            start=t0, end=t1).key()
    meta = dict(res.envelope.to_fields())
    if metadata:
        meta = archive_metadata(res, key_id=master.key_id, first=t0, last=t1, lines=len(lines), host="host1",
                                container_name="web.1", source="staging/x")
    resp = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=out.getvalue(), Metadata=meta)
    return key, resp.get("VersionId", "")


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put", sequencer: str = "0A",
             version_id: str = "") -> dict:
    from urllib.parse import quote_plus

    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name, "awsRegion": "us-east-1",
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "versionId": version_id, "sequencer": sequencer}},
    }]}


def eventbridge_event(bucket: str, key: str, detail_type: str = "Object Created", sequencer: str = "0A") -> dict:
    return {
        "version": "0", "id": "x", "detail-type": detail_type, "source": "aws.s3", "account": "123456789012",
        "time": "2022-01-01T00:00:00Z", "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 1, "etag": "e", "sequencer": sequencer},
                   "reason": "PutObject"},
    }


def pump(client, queue_url: str, *, max_rounds: int = 50) -> list[dict]:
    """Act as Lambda's SQS event source (receive, invoke retrieval_worker, delete the successes)."""
    return local_stack.drain(client, queue_url, max_rounds=max_rounds)


def http_server(chalice_app, handler_cls=None):
    """The app on chalice's local HTTP server (``chalice local``) in a thread; yields its URL."""
    return local_stack.api_server(chalice_app, handler_cls=handler_cls)


def result_lines(body: dict) -> list[bytes]:
    """Every line of a retrieval job's results (``GET /retrievals/{id}``), through their URLs."""
    import gzip
    import urllib.request

    out = []
    for r in body["results"]:
        if "url" in r:
            with urllib.request.urlopen(r["url"], timeout=10) as resp:
                out += gzip.decompress(resp.read()).splitlines()
    return out


def cri_line(when: str, stream: str, text: str, tag: str = "F") -> bytes:
    """One CRI record (without its newline): ``<time> <stream> <P|F> <message>``."""
    return f"{when} {stream} {tag} {text}".encode()


def put_k8s_archive(bucket: str, lines: list[bytes], *, master: MasterKey, namespace: str = "shop",
                    pod: str = "web-1", uid: str = "0a1b2c3d-0000-4000-8000-000000000001", container: str = "web",
                    restart: int = 0, segment: int | None = None, stack: str = STACK, s3=None) -> str:
    """Seal CRI ``lines`` and store them as the archiver stores a Kubernetes segment: the
    ``_k8s/<stack>/…`` key, the envelope, ``logarchive-format: cri`` and the k8s names."""
    from chalicelib.crilog import line_time
    from chalicelib.staged import K8sIdentity

    times = [x for x in (line_time(raw) for raw in lines) if x]
    ring = Keyring([master])
    out = io.BytesIO()
    res = seal(io.BytesIO(b"".join(x + b"\n" for x in lines)), out, ring)
    ident = K8sIdentity(namespace, pod, uid, container, restart)
    key = layout.ArchiveKey(stack=stack, key_id=master.key_id, kind=layout.K8S, resource_id=namespace, pod_name=pod,
                            container_id=ident.staged_id, rotation=segment, start=min(times), end=max(times)).key()
    meta = archive_metadata(res, key_id=master.key_id, first=min(times), last=max(times), lines=len(lines),
                            host="node-1", container_name=container, segment=segment, source="staged/x", k8s=ident)
    (s3 or boto3.client("s3")).put_object(Bucket=bucket, Key=key, Body=out.getvalue(), Metadata=meta)
    return key

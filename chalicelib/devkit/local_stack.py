"""The retrieval API on the embedded local AWS: tables, queue, a queue pump, and a demo.

``python -m chalicelib.devkit.local_stack`` asks the API the issue's question end to end on a fresh
local AWS: sample archives are sealed into the archive bucket, indexed by the ``index_archive``
Lambda, a retrieval is posted to ``POST /retrievals``, the ``retrieval_worker`` Lambda drains
the queue (this module plays Lambda's SQS event source), and the lines come back from the
presigned result URLs. Handlers run through ``chalice.test.Client`` (a dev dependency), over
the same HTTP endpoints the tests use. ``make demo`` can call :func:`ask` the same way.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import boto3

from ..sqs_pump import pump

INDEX_TABLE = "logarchive-index"
JOBS_TABLE = "logarchive-jobs"
QUEUE = "logarchive-retrieval"


def create_table(name: str) -> None:
    """A table with the ``pk``/``sk`` string keys the index and the jobs tables both use."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    )


def create_queue(name: str = QUEUE) -> str:
    return boto3.client("sqs").create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]


def create_token_secret(name: str) -> str:
    """The secret that signs the API's page tokens, as a stage's template generates it."""
    import secrets

    boto3.client("secretsmanager").create_secret(Name=name, SecretString=secrets.token_urlsafe(48))
    return name


def write_stage(root: str | Path, env: dict[str, str], stage: str = "local") -> str:
    """Make ``root`` a project dir whose ``.chalice/config.json`` has one stage carrying ``env``."""
    root = Path(root)
    (root / ".chalice").mkdir(exist_ok=True)
    (root / ".chalice" / "config.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "app_name": "logarchive",
                "stages": {stage: {"api_gateway_stage": "api", "environment_variables": env}},
            }
        )
    )
    return str(root)


def drain(
    client: Any, queue_url: str, *, function: str = "retrieval_worker", max_rounds: int = 200
) -> list[dict]:
    """Play Lambda's SQS event source (``sqs_pump``) for ``function``; its response payloads."""
    payloads = []

    def invoke(records: list[dict]) -> list[str]:
        payload = client.lambda_.invoke(function, {"Records": records}).payload
        payloads.append(payload)
        return [f["itemIdentifier"] for f in payload.get("batchItemFailures", [])]

    if pump(boto3.client("sqs"), queue_url, invoke, attempts=max_rounds, visibility_timeout=60).failed:
        raise RuntimeError(f"queue {queue_url} did not drain in {max_rounds} rounds")
    return payloads


def ask(client: Any, queue_url: str, question: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """POST the question, run the workers, and return the final status and the matched lines."""
    r = client.http.post(
        "/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(question).encode()
    )
    if r.status_code != 202:
        raise RuntimeError(f"POST /retrievals answered {r.status_code}: {r.body.decode()}")
    job_id = json.loads(r.body)["id"]
    drain(client, queue_url)
    status = json.loads(client.http.get(f"/retrievals/{job_id}?limit=1000").body)
    lines: list[bytes] = []
    for res in status["results"]:
        if "url" in res:
            with urllib.request.urlopen(res["url"], timeout=30) as resp:
                lines += gzip.decompress(resp.read()).splitlines()
    return status, lines


def _sample_archives(bucket: str, stack: str, master: Any) -> list[str]:
    """A few archives as the archiver writes them (v3 key, envelope, logarchive metadata)."""
    from .. import layout
    from ..archiver.metadata import archive_metadata
    from ..codec import seal
    from ..keyring import Keyring

    def line(t: str, stream: str, text: str) -> bytes:
        return json.dumps({"log": text + "\n", "stream": stream, "time": t}, separators=(",", ":")).encode()

    samples = [
        (
            "42",
            "a1" * 32,
            [
                line("2022-01-01T11:58:00Z", "stderr", "timeout before the window"),
                line("2022-01-01T12:00:00Z", "stderr", "upstream timeout (GET /orders)"),
                line("2022-01-01T12:01:00Z", "stdout", "timeout on stdout"),
                line("2022-01-01T12:03:30.25Z", "stderr", "db timeout after 30s"),
                line("2022-01-01T12:05:00Z", "stderr", "timeout at the exclusive end"),
            ],
        ),
        (
            "42",
            "b2" * 32,
            [
                line("2022-01-01T12:02:00Z", "stderr", "second container: redis timeout"),
                line("2022-01-01T12:02:01Z", "stderr", "retrying"),
            ],
        ),
        ("43", "c3" * 32, [line("2022-01-01T12:01:00Z", "stderr", "timeout in another app")]),
    ]
    s3, keys = boto3.client("s3"), []
    for rid, cid, lines in samples:
        body = b"".join(x + b"\n" for x in lines)
        out = io.BytesIO()
        res = seal(io.BytesIO(body), out, Keyring([master]))
        from ..dockerlog import line_time

        times = [t for t in (line_time(x) for x in lines) if t]
        key = layout.ArchiveKey(
            stack=stack,
            key_id=master.key_id,
            kind="apps",
            resource_id=rid,
            service_id="1",
            container_id=cid,
            start=min(times),
            end=max(times),
        ).key()
        meta = archive_metadata(
            res, key_id=master.key_id, first=min(times), last=max(times), lines=len(lines),
            host="demo-host", container_name=f"app-{rid}.{cid[:4]}",
        )
        s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue(), Metadata=meta)
        keys.append(key)
    return keys


def main() -> int:
    from chalice.test import Client

    from ..keyring import MasterKey
    from . import local_aws

    stack = "demo"
    buckets = local_aws.StackBuckets.for_stack(stack)
    master = MasterKey.generate()
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, (*buckets.all(), f"{stack}-logarchive-results"))
        create_table(INDEX_TABLE)
        create_table(JOBS_TABLE)
        url = create_queue()
        env = {
            "LOGARCHIVE_STACK": stack,
            "LOGARCHIVE_ARCHIVE_BUCKET": buckets.archive,
            "LOGARCHIVE_INDEX_TABLE": INDEX_TABLE,
            "LOGARCHIVE_JOBS_TABLE": JOBS_TABLE,
            "LOGARCHIVE_RETRIEVAL_QUEUE_URL": url,
            "LOGARCHIVE_RESULTS_BUCKET": f"{stack}-logarchive-results",
            "LOGARCHIVE_KEYS": master.to_base64(),
            "LOGARCHIVE_API_TOKEN_SECRET": create_token_secret(f"logarchive-{stack}-api-token"),
        }
        keys = _sample_archives(buckets.archive, stack, master)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines in the output
        import app  # the Chalice app at the project root

        # chalice's local mode does not enforce IAM auth; API Gateway does (SigV4, execute-api).
        warnings.filterwarnings("ignore", "IAMAuthorizer is not a supported in local mode")
        with (
            tempfile.TemporaryDirectory() as tmp,
            Client(app.app, stage_name="local", project_dir=write_stage(tmp, env)) as client,
        ):
            for key in keys:  # what S3 would send on each upload
                client.lambda_.invoke(
                    "index_archive",
                    {
                        "Records": [
                            {
                                "s3": {
                                    "bucket": {"name": buckets.archive},
                                    "object": {"key": key, "sequencer": "01"},
                                }
                            }
                        ]
                    },
                )
            question = {
                "app_id": "42",
                "start": "2022-01-01T12:00:00Z",
                "end": "2022-01-01T12:05:00Z",
                "stream": "stderr",
                "grep": "timeout",
            }
            print(f"POST /retrievals {json.dumps(question)}")
            status, lines = ask(client, url, question)
            p = status["progress"]
            print(
                f"GET /retrievals/{status['id']}: {status['status']}, archives {p['archives_done']}/"
                f"{p['archives_total']}, {p['bytes_scanned']} bytes scanned, {p['lines_matched']} lines:"
            )
            for x in lines:
                print("  " + x.decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

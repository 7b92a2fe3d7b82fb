"""Retrieval jobs: a jobs table, a planner and a scanner fanned out over one SQS queue.

Jobs table (``pk`` HASH + ``sk`` RANGE, strings; TTL attribute ``expires_at``):

- job item ``pk = job#<job_id>``, ``sk = job``: the request (stack, selector, start, end,
  stream, grep), ``planned`` (bool), counters ``archives_total``, ``archives_done``,
  ``archives_failed``, ``bytes_scanned`` (stored bytes read), ``plaintext_bytes``,
  ``lines_matched``, ``created_at``, ``expires_at``.
- task item ``pk = job#<job_id>``, ``sk = task#<archive_id>``: ``status`` (``pending`` |
  ``done`` | ``failed``), ``result_key``, ``lines_matched``, ``error`` (one line).

Messages (JSON bodies): ``{"type": "plan", "job_id", "after"}`` pages through the index and
records one task per archive (each task created with its counter in one transaction, so a
replayed plan message counts nothing twice), then sends ``{"type": "scan", "job_id",
"archive_id"}`` per archive. A scan moves its task ``pending -> done|failed`` together with
the job's counters in one transaction: a replayed scan rewrites the same result object (a
deterministic key) and counts nothing. Results: ``<results_prefix><job_id>/<archive_id>.jsonl.gz``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from .. import aws, telemetry
from ..api.params import RetrievalRequest
from ..envelope import Envelope
from ..errors import LogarchiveError
from ..index import schema
from ..index.store import IndexStore, Position, from_item, to_item
from ..keyring import Keyring
from .scanner import make_filter, scan_archive

log = logging.getLogger(__name__)
_HEX32 = re.compile(r"^[0-9a-f]{32}\Z")
JOB_TTL_DAYS = 7
PLAN_PAGE = 200
TXN_CHUNK = 50


def position_to_dict(p: Position | None) -> dict[str, Any] | None:
    return None if p is None else {"h": schema.hour_label(p.hour), "s": p.segment, "k": p.sk}


def position_from_dict(d: dict[str, Any] | None) -> Position | None:
    if not d:
        return None
    hour = datetime.strptime(str(d["h"]), "%Y-%m-%dT%H").replace(tzinfo=UTC)
    seg, sk = d.get("s"), d.get("k")
    if seg not in (schema.START, schema.CONT) or not (
        sk is None or (isinstance(sk, str) and sk.startswith(seg + "#"))
    ):
        raise ValueError("bad position")
    return Position(hour, seg, sk)


class Jobs:
    def __init__(
        self, table: str, queue_url: str, *, results_bucket: str, results_prefix: str, index: IndexStore
    ) -> None:
        self.table, self.queue_url = table, queue_url
        self.results_bucket, self.results_prefix = results_bucket, results_prefix
        self.index = index

    @property
    def ddb(self) -> Any:
        return aws.client("dynamodb")

    def _job_key(self, job_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}}

    # -- API side -----------------------------------------------------------------
    def create(self, req: RetrievalRequest) -> str:
        job_id = uuid.uuid4().hex
        now = int(time.time())
        attrs = {
            "pk": f"job#{job_id}",
            "sk": "job",
            **req.to_attrs(),
            "planned": False,
            "archives_total": 0,
            "archives_done": 0,
            "archives_failed": 0,
            "bytes_scanned": 0,
            "plaintext_bytes": 0,
            "lines_matched": 0,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires_at": now + JOB_TTL_DAYS * 86400,
        }
        self.ddb.put_item(
            TableName=self.table, Item=to_item(attrs), ConditionExpression="attribute_not_exists(pk)"
        )
        self._send([{"type": "plan", "job_id": job_id, "after": None}])
        telemetry.count("RetrievalJobsCreated")
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(TableName=self.table, Key=self._job_key(job_id), ConsistentRead=True).get(
            "Item"
        )
        return from_item(item) if item else None

    def tasks(
        self, job_id: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Limit": limit,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :t)",
            "ExpressionAttributeValues": {":pk": {"S": f"job#{job_id}"}, ":t": {"S": "task#"}},
        }
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": f"job#{job_id}"}, "sk": {"S": f"task#{after}"}}
        resp = self.ddb.query(**kwargs)
        items = [from_item(i) for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return items, (last["sk"]["S"][len("task#") :] if last else None)

    @staticmethod
    def status_of(job: dict[str, Any]) -> str:
        total, done, failed = (
            int(job.get(k, 0)) for k in ("archives_total", "archives_done", "archives_failed")
        )
        if not job.get("planned"):
            return "planning"
        if done < total:
            return "running"
        return "completed_with_errors" if failed else "succeeded"

    def presign(self, key: str, *, expires: int = 900) -> str:
        return aws.client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": self.results_bucket, "Key": key}, ExpiresIn=expires
        )

    # -- worker side --------------------------------------------------------------
    def _send(self, bodies: list[dict[str, Any]]) -> None:
        sqs = aws.client("sqs")
        for i in range(0, len(bodies), 10):
            batch = bodies[i : i + 10]
            resp = sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "MessageBody": json.dumps(b, separators=(",", ":"))}
                    for n, b in enumerate(batch)
                ],
            )
            if resp.get("Failed"):
                raise LogarchiveError(f"queue {self.queue_url}: {len(resp['Failed'])} messages not sent")

    def handle(self, body: dict[str, Any], keyring_factory: Any) -> str:
        kind = body.get("type")
        ids = [body.get("job_id"), *([body.get("archive_id")] if kind == "scan" else [])]
        if not all(isinstance(x, str) and _HEX32.match(x) for x in ids):
            raise LogarchiveError("retrieval message with malformed ids")
        if kind == "plan":
            return self.plan(body["job_id"], position_from_dict(body.get("after")))
        if kind == "scan":
            return self.scan(body["job_id"], body["archive_id"], keyring_factory)
        raise LogarchiveError(f"retrieval message of unknown type {kind!r}")

    def plan(self, job_id: str, after: Position | None) -> str:
        job = self.get(job_id)
        if job is None:
            log.warning("plan: job %s not found (expired?)", job_id)
            telemetry.count("RetrievalJobsMissing")
            return "missing"
        req = RetrievalRequest.from_attrs(job)
        page = self.index.query(req.selector, req.start, req.end, limit=PLAN_PAGE, after=after)
        ids = sorted({e.archive_id for e in page.entries})
        # Counted as the job's archives_total is: once per task, however often a page is replayed.
        telemetry.count("RetrievalArchivesPlanned", self._add_tasks(job_id, ids))
        self._send([{"type": "scan", "job_id": job_id, "archive_id": a} for a in ids])
        if page.next is not None:
            self._send([{"type": "plan", "job_id": job_id, "after": position_to_dict(page.next)}])
        else:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._job_key(job_id),
                UpdateExpression="SET planned = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
        return f"planned {len(ids)}"

    def _task_put(self, job_id: str, archive_id: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "ConditionExpression": "attribute_not_exists(pk)",
                "Item": to_item({"pk": f"job#{job_id}", "sk": f"task#{archive_id}", "status": "pending"}),
            }
        }

    def _count(self, job_id: str, **adds: int) -> dict[str, Any]:
        names = sorted(adds)
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._job_key(job_id),
                "UpdateExpression": "ADD " + ", ".join(f"{n} :{n}" for n in names),
                "ExpressionAttributeValues": {f":{n}": {"N": str(adds[n])} for n in names},
            }
        }

    def _add_tasks(self, job_id: str, ids: list[str]) -> int:
        """Create missing tasks and count each exactly once (a chunk at a time, else one by one);
        returns how many were new."""
        created = 0
        for i in range(0, len(ids), TXN_CHUNK):
            chunk = ids[i : i + TXN_CHUNK]
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        *(self._task_put(job_id, a) for a in chunk),
                        self._count(job_id, archives_total=len(chunk)),
                    ]
                )
                created += len(chunk)
                continue
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
            for a in chunk:  # some exist already (a replayed plan message): count only the new ones
                try:
                    self.ddb.transact_write_items(
                        TransactItems=[self._task_put(job_id, a), self._count(job_id, archives_total=1)]
                    )
                    created += 1
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "TransactionCanceledException":
                        raise
        return created

    def _finish(
        self, job_id: str, archive_id: str, status: str, counts: dict[str, int], **fields: Any
    ) -> bool:
        sets = {"status": status, **{k: v for k, v in fields.items() if v is not None}}
        names = {f"#{k}": k for k in sets}
        values = {f":{k}": _ser_value(v) for k, v in sets.items()}
        values[":pending"] = {"S": "pending"}
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": f"job#{job_id}"}, "sk": {"S": f"task#{archive_id}"}},
                            "ConditionExpression": "#status = :pending",
                            "UpdateExpression": "SET " + ", ".join(f"#{k} = :{k}" for k in sets),
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                    self._count(job_id, **counts),
                ]
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False  # already finished by an earlier delivery
            raise

    def _task(self, job_id: str, archive_id: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": f"task#{archive_id}"}},
        ).get("Item")
        return from_item(item) if item else None

    def scan(self, job_id: str, archive_id: str, keyring_factory: Any) -> str:
        job, task = self.get(job_id), self._task(job_id, archive_id)
        if job is None or task is None:
            log.warning("scan: job %s / task %s not found", job_id, archive_id)
            telemetry.count("RetrievalJobsMissing")
            return "missing"
        if task.get("status") != "pending":
            telemetry.count("RetrievalScansRepeated")  # a duplicate delivery of a finished task
            return "already " + str(task.get("status"))
        req = RetrievalRequest.from_attrs(job)
        entry = self.index.get(req.selector.stack, archive_id)
        if entry is None or entry.state == "removed":
            self._failed(job_id, archive_id, f"archive {archive_id} is no longer in the archive bucket")
            return "failed"
        name = f"s3://{entry.bucket}/{entry.key}"
        s3 = aws.client("s3")
        try:
            kwargs = {"Bucket": entry.bucket, "Key": entry.key}
            if entry.version_id:
                kwargs["VersionId"] = entry.version_id
            try:
                obj = s3.get_object(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "NoSuchVersion", "404"):
                    raise LogarchiveError(f"{name}: the indexed version is gone ({code})") from None
                raise  # throttling, access, network: the message comes back and is retried
            envelope = Envelope.from_fields(obj["Metadata"], name=name)
            keyring: Keyring = keyring_factory()
            flt = make_filter(req.start, req.end, req.stream, req.grep)
            with tempfile.TemporaryFile() as tmp:
                stats = scan_archive(
                    obj["Body"].iter_chunks(1 << 20),
                    envelope,
                    keyring,
                    flt,
                    tmp,
                    name=name,
                    key_hint=entry.key_id,
                )
                result_key = None
                if stats.lines_matched:
                    # Only now, with the GCM tag verified, does any plaintext leave this function.
                    result_key = f"{self.results_prefix}{job_id}/{archive_id}.jsonl.gz"
                    tmp.seek(0)
                    s3.put_object(
                        Bucket=self.results_bucket, Key=result_key, Body=tmp, ContentType="application/gzip"
                    )
        except LogarchiveError as exc:
            log.error("%s", exc)
            self._failed(job_id, archive_id, str(exc))
            return "failed"
        finished = self._finish(
            job_id,
            archive_id,
            "done",
            {
                "archives_done": 1,
                "bytes_scanned": stats.ciphertext_bytes,
                "plaintext_bytes": stats.plaintext_bytes,
                "lines_matched": stats.lines_matched,
            },
            result_key=result_key,
            lines_matched=stats.lines_matched,
        )
        if finished:  # counted with the job's counters: a replayed scan adds nothing
            telemetry.count("RetrievalArchivesScanned")
            telemetry.add_bytes("RetrievalBytesScanned", stats.ciphertext_bytes)
            telemetry.add_bytes("RetrievalPlaintextBytes", stats.plaintext_bytes)
            telemetry.count("RetrievalLinesMatched", stats.lines_matched)
        else:
            telemetry.count("RetrievalScansRepeated")
        return "done"

    def _failed(self, job_id: str, archive_id: str, error: str) -> None:
        counts = {"archives_done": 1, "archives_failed": 1}
        if self._finish(job_id, archive_id, "failed", counts, error=error):
            telemetry.count("RetrievalArchivesFailed")
        else:
            telemetry.count("RetrievalScansRepeated")


def _ser_value(v: Any) -> dict[str, Any]:
    return to_item({"v": v})["v"]

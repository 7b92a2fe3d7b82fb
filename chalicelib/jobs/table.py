"""The jobs table: job and task items, their counters, and the transactions that keep them exact.

Jobs table (``pk`` HASH + ``sk`` RANGE, strings; TTL attribute ``expires_at``):

- job item ``pk = job#<job_id>``, ``sk = job``: the request (stack, selector, start, end,
  stream, grep), ``planned`` (bool), counters ``archives_total``, ``archives_done``,
  ``archives_failed``, ``bytes_scanned`` (stored bytes read), ``plaintext_bytes``,
  ``lines_matched``, ``created_at``, ``expires_at``.
  ``caller`` (the API caller's IAM ARN, ``""`` without one), ``ordered`` (has order items),
  ``cancelled`` (bool, set by ``DELETE /retrievals/{id}``).
- task item ``pk = job#<job_id>``, ``sk = task#<archive_id>``: ``status`` (``pending`` |
  ``restoring`` | ``done`` | ``failed``), ``result_key``, ``lines_matched``, ``error`` (one line).
- order item ``pk = job#<job_id>``, ``sk = order#<first>#<archive_id>``: written with its task,
  so the results are read in the time order of the archives' first lines.
- listing items ``pk = jobs#<stack>`` (every job of the stack) and ``pk = jobs#<stack>#<caller>``
  (a caller's), ``sk = <created_at>#<job_id>``: ``GET /retrievals`` reads one of them, newest
  first. ``expires_at`` as their job.
- restore wait item ``pk = restore#<archive_id>``, ``sk = job#<job_id>``: a job whose task
  waits for S3 to restore that archive from cold storage; ``expires_at`` as its job. When S3
  announces the restore completed, the jobs are found by the archive alone (one query).

A task parked for a restore (``pending -> restoring``, the job's ``archives_restoring`` + 1,
the wait item) and resumed (``restoring -> pending``, - 1) are each one transaction too.

Each task is created together with its count in one transaction, and finished (``pending ->
done|failed``) together with the job's counters in another: a replayed message counts nothing
twice. DynamoDB's refusals come back as outcomes (``CREATED``/``EXISTS``,
``FINISHED``/``ALREADY_FINISHED``); no caller sees ``TransactionCanceledException``. The
``task#`` key layout is known only here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from .. import aws
from ..awserrors import is_conditional_check_failed, is_transaction_canceled
from ..index.store import from_item, to_item
from .request import RetrievalRequest

# Outlasts a Deep Archive Bulk restore (48 h) with days to spare for reading the results.
JOB_TTL_DAYS = 7
TXN_CHUNK = 49  # a task and its order item each, and the count: at most 100 a transaction
TASK_PREFIX = "task#"
ORDER_PREFIX = "order#"
LIST_PREFIX = "jobs#"
WAIT_PREFIX = "restore#"
CREATED, EXISTS = "created", "exists"
FINISHED, ALREADY_FINISHED = "finished", "already_finished"
PARKED, RESUMED, NOT_WAITING = "parked", "resumed", "not_waiting"
COUNTERS = (
    "archives_total",
    "archives_done",
    "archives_failed",
    "archives_restoring",
    "bytes_scanned",
    "plaintext_bytes",
    "lines_matched",
)


@dataclass(frozen=True)
class Task:
    """One archive of a job, as the table holds it."""

    archive_id: str
    status: str
    result_key: str | None = None
    lines_matched: int = 0
    error: str | None = None

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Task:
        return cls(
            archive_id=str(attrs["sk"])[len(TASK_PREFIX) :],
            status=str(attrs.get("status")),
            result_key=attrs.get("result_key"),
            lines_matched=int(attrs.get("lines_matched", 0)),
            error=attrs.get("error"),
        )


def _job_pk(job_id: str) -> str:
    return f"job#{job_id}"


def _job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(job_id)}, "sk": {"S": "job"}}


def _list_pk(stack: str, caller: str) -> str:
    return f"{LIST_PREFIX}{stack}" + (f"#{caller}" if caller else "")


def _task_key(job_id: str, archive_id: str) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(job_id)}, "sk": {"S": f"{TASK_PREFIX}{archive_id}"}}


def _wait_key(job_id: str, archive_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{WAIT_PREFIX}{archive_id}"}, "sk": {"S": _job_pk(job_id)}}


def _ser_value(v: Any) -> dict[str, Any]:
    return to_item({"v": v})["v"]


def job_expiry() -> int:
    return int(time.time()) + JOB_TTL_DAYS * 86400


class JobsTable:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def ddb(self) -> Any:
        return aws.client("dynamodb")

    # -- jobs -----------------------------------------------------------------------
    def create_job(self, job_id: str, req: RetrievalRequest, caller: str = "") -> str:
        """Write a new job item with zeroed counters and its listing items (one transaction):
        ``CREATED``, or ``EXISTS`` (the id is taken)."""
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        attrs = {
            "pk": _job_pk(job_id),
            "sk": "job",
            **req.to_attrs(),
            "planned": False,
            "ordered": True,
            "caller": caller,
            **dict.fromkeys(COUNTERS, 0),
            "created_at": created[:19] + "Z",
            "expires_at": job_expiry(),
        }
        listed = {"sk": f"{created}#{job_id}", "job_id": job_id, "expires_at": attrs["expires_at"]}
        items = [{"Put": {"TableName": self.name, "Item": to_item(attrs),
                          "ConditionExpression": "attribute_not_exists(pk)"}}]
        for pk in {_list_pk(req.selector.stack, ""), _list_pk(req.selector.stack, caller)}:
            items.append({"Put": {"TableName": self.name, "Item": to_item({"pk": pk, **listed})}})
        return CREATED if self._transact(items) else EXISTS

    def list_jobs(
        self, stack: str, caller: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs of ``caller`` (``""``: every job of the stack), newest first: the job items and
        the listing key to continue after (``None``: the end)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Limit": limit,
            "ScanIndexForward": False,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _list_pk(stack, caller)}},
        }
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": _list_pk(stack, caller)}, "sk": {"S": after}}
        resp = self.ddb.query(**kwargs)
        ids = [from_item(i)["job_id"] for i in resp.get("Items", [])]
        jobs = self._get_many([_job_key(j) for j in ids])
        by_id = {str(j["pk"])[len("job#"):]: j for j in jobs}
        last = resp.get("LastEvaluatedKey")
        return [by_id[j] for j in ids if j in by_id], (last["sk"]["S"] if last else None)

    def _get_many(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), 100):
            req: dict[str, Any] = {self.name: {"Keys": keys[i : i + 100], "ConsistentRead": True}}
            while req:
                resp = self.ddb.batch_get_item(RequestItems=req)
                out += [from_item(x) for x in resp.get("Responses", {}).get(self.name, [])]
                req = resp.get("UnprocessedKeys") or {}
        return out

    def cancel(self, job_id: str) -> bool:
        """Mark the job cancelled (no scan starts after this); False when there is no such job."""
        try:
            self.ddb.update_item(
                TableName=self.name, Key=_job_key(job_id), UpdateExpression="SET cancelled = :t",
                ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues={":t": {"BOOL": True}},
            )
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(TableName=self.name, Key=_job_key(job_id), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def set_planned(self, job_id: str) -> None:
        self.ddb.update_item(
            TableName=self.name,
            Key=_job_key(job_id),
            UpdateExpression="SET planned = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )

    # -- tasks ----------------------------------------------------------------------
    def get_task(self, job_id: str, archive_id: str) -> Task | None:
        item = self.ddb.get_item(
            TableName=self.name, ConsistentRead=True, Key=_task_key(job_id, archive_id)
        ).get("Item")
        return Task.from_attrs(from_item(item)) if item else None

    def task_page(
        self, job_id: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[Task], str | None]:
        """Up to ``limit`` tasks in archive-id order after the archive id ``after``; and the
        archive id to continue after, or ``None`` at the end."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Limit": limit,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :t)",
            "ExpressionAttributeValues": {":pk": {"S": _job_pk(job_id)}, ":t": {"S": TASK_PREFIX}},
        }
        if after:
            kwargs["ExclusiveStartKey"] = _task_key(job_id, after)
        resp = self.ddb.query(**kwargs)
        tasks = [Task.from_attrs(from_item(i)) for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return tasks, (last["sk"]["S"][len(TASK_PREFIX) :] if last else None)

    def ordered_task_page(
        self, job_id: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[Task], str | None]:
        """Up to ``limit`` tasks in the time order of their archives (order items), after the
        order key ``after``; and the order key to continue after, or ``None`` at the end."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Limit": limit,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :o)",
            "ExpressionAttributeValues": {":pk": {"S": _job_pk(job_id)}, ":o": {"S": ORDER_PREFIX}},
        }
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": _job_pk(job_id)}, "sk": {"S": after}}
        resp = self.ddb.query(**kwargs)
        ids = [str(from_item(i)["sk"]).rsplit("#", 1)[1] for i in resp.get("Items", [])]
        tasks = {t.archive_id: t for t in
                 (Task.from_attrs(a) for a in self._get_many([_task_key(job_id, x) for x in ids]))}
        last = resp.get("LastEvaluatedKey")
        return [tasks[x] for x in ids if x in tasks], (last["sk"]["S"] if last else None)

    def _order_put(self, job_id: str, archive_id: str, first: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.name,
                "Item": to_item({"pk": _job_pk(job_id), "sk": f"{ORDER_PREFIX}{first}#{archive_id}"}),
            }
        }

    def _task_put(self, job_id: str, archive_id: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.name,
                "ConditionExpression": "attribute_not_exists(pk)",
                "Item": to_item(
                    {"pk": _job_pk(job_id), "sk": f"{TASK_PREFIX}{archive_id}", "status": "pending"}
                ),
            }
        }

    def _count(self, job_id: str, **adds: int) -> dict[str, Any]:
        names = sorted(adds)
        return {
            "Update": {
                "TableName": self.name,
                "Key": _job_key(job_id),
                "UpdateExpression": "ADD " + ", ".join(f"{n} :{n}" for n in names),
                "ExpressionAttributeValues": {f":{n}": {"N": str(adds[n])} for n in names},
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """True when written; False when a condition refused it (the transaction was canceled)."""
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if is_transaction_canceled(exc):
                return False
            raise
        return True

    def add_task(self, job_id: str, archive_id: str, first: str) -> str:
        """Create one pending task (and its order item) and count it: ``CREATED``, or
        ``EXISTS`` (counted before)."""
        ok = self._transact([self._task_put(job_id, archive_id), self._order_put(job_id, archive_id, first),
                             self._count(job_id, archives_total=1)])
        return CREATED if ok else EXISTS

    def add_tasks(self, job_id: str, archives: list[tuple[str, str]]) -> int:
        """Create missing tasks of (archive id, first line's time) and count each exactly once
        (a chunk at a time, else one by one); returns how many were new."""
        created = 0
        for i in range(0, len(archives), TXN_CHUNK):
            chunk = archives[i : i + TXN_CHUNK]
            puts = [p for a, first in chunk
                    for p in (self._task_put(job_id, a), self._order_put(job_id, a, first))]
            if self._transact([*puts, self._count(job_id, archives_total=len(chunk))]):
                created += len(chunk)
                continue
            # Some exist already (a replayed plan message): count only the new ones.
            created += sum(self.add_task(job_id, a, first) == CREATED for a, first in chunk)
        return created

    def finish_task(
        self, job_id: str, archive_id: str, status: str, counts: dict[str, int], **fields: Any
    ) -> str:
        """Move a pending task to ``status`` and add ``counts`` to the job in one transaction:
        ``FINISHED``, or ``ALREADY_FINISHED`` (an earlier delivery did it; nothing counted)."""
        sets = {"status": status, **{k: v for k, v in fields.items() if v is not None}}
        names = {f"#{k}": k for k in sets}
        values = {f":{k}": _ser_value(v) for k, v in sets.items()}
        values[":pending"] = {"S": "pending"}
        update = {
            "Update": {
                "TableName": self.name,
                "Key": _task_key(job_id, archive_id),
                "ConditionExpression": "#status = :pending",
                "UpdateExpression": "SET " + ", ".join(f"#{k} = :{k}" for k in sets),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        return FINISHED if self._transact([update, self._count(job_id, **counts)]) else ALREADY_FINISHED

    # -- restores ---------------------------------------------------------------------
    def _move_task(self, job_id: str, archive_id: str, old: str, new: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.name,
                "Key": _task_key(job_id, archive_id),
                "ConditionExpression": "#status = :old",
                "UpdateExpression": "SET #status = :new",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":old": {"S": old}, ":new": {"S": new}},
            }
        }

    def park_task(self, job_id: str, archive_id: str, expires_at: int) -> str:
        """A pending task waits for its archive's restore: ``PARKED``, or ``NOT_WAITING`` (it
        is no longer pending: another delivery of its scan got there first)."""
        wait = {
            "Put": {
                "TableName": self.name,
                "Item": to_item({**{k: v["S"] for k, v in _wait_key(job_id, archive_id).items()},
                                 "job_id": job_id, "expires_at": expires_at}),
            }
        }
        items = [self._move_task(job_id, archive_id, "pending", "restoring"),
                 self._count(job_id, archives_restoring=1), wait]
        return PARKED if self._transact(items) else NOT_WAITING

    def resume_task(self, job_id: str, archive_id: str) -> str:
        """A restoring task is pending again: ``RESUMED``, or ``NOT_WAITING`` (resumed before)."""
        items = [self._move_task(job_id, archive_id, "restoring", "pending"),
                 self._count(job_id, archives_restoring=-1)]
        return RESUMED if self._transact(items) else NOT_WAITING

    def waiting_jobs(self, archive_id: str) -> list[str]:
        """The jobs waiting for this archive's restore."""
        paginator = self.ddb.get_paginator("query")
        jobs = []
        for page in paginator.paginate(
            TableName=self.name, ConsistentRead=True,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{WAIT_PREFIX}{archive_id}"}},
        ):
            jobs += [from_item(i)["job_id"] for i in page.get("Items", [])]
        return jobs

    def waiting_archives(self) -> list[str]:
        """Every archive some job waits for (a Scan of the whole table: for the local stage,
        whose S3 announces no restore; in AWS the "Object Restore Completed" event does)."""
        found: set[str] = set()
        for page in self.ddb.get_paginator("scan").paginate(
            TableName=self.name, ProjectionExpression="pk",
            FilterExpression="begins_with(pk, :w)", ExpressionAttributeValues={":w": {"S": WAIT_PREFIX}},
        ):
            found.update(str(i["pk"]["S"])[len(WAIT_PREFIX):] for i in page.get("Items", []))
        return sorted(found)

    def forget_wait(self, job_id: str, archive_id: str) -> None:
        self.ddb.delete_item(TableName=self.name, Key=_wait_key(job_id, archive_id))

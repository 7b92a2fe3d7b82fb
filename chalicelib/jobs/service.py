"""Retrieval jobs as the API and the worker see them: create, read, and run one message.

The logic lives in ``planner`` and ``scan_step``, the persistence in ``table``, the wire
format in ``messages``; this class puts them together for one stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from .. import presign, telemetry
from ..errors import LogarchiveError
from ..index.schema import archive_id_of
from ..index.store import IndexStore
from ..keyring import Keyring
from . import messages
from .messages import Plan, Scan
from .planner import Planner
from .request import RetrievalRequest
from .scan_step import ScanStep
from .table import EXISTS, RESUMED, JobsTable, Task


class Jobs:
    def __init__(
        self, table: str, queue_url: str, *, results_bucket: str, results_prefix: str, index: IndexStore
    ) -> None:
        self.table = JobsTable(table)
        self.queue_url = queue_url
        self.results_bucket, self.results_prefix = results_bucket, results_prefix
        self.planner = Planner(self.table, index, queue_url)
        self.scan_step = ScanStep(
            self.table, index, results_bucket=results_bucket, results_prefix=results_prefix
        )

    # -- API side -----------------------------------------------------------------
    def create(self, req: RetrievalRequest, caller: str = "") -> str:
        """A new job of ``caller`` (the IAM ARN of the API's caller, ``""`` without one)."""
        job_id = uuid.uuid4().hex
        if self.table.create_job(job_id, req, caller) == EXISTS:
            raise LogarchiveError(f"retrieval {job_id}: the new job id is taken")
        messages.send(self.queue_url, [Plan(job_id)])
        telemetry.count("RetrievalJobsCreated")
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.table.get_job(job_id)

    def tasks(
        self, job: dict[str, Any], *, after: str | None = None, limit: int = 100
    ) -> tuple[list[Task], str | None]:
        """A page of the job's tasks in the time order of their archives (jobs created before
        order items existed: archive-id order), and where to continue (``None``: the end)."""
        job_id = str(job["pk"])[len("job#"):]
        if job.get("ordered"):
            return self.table.ordered_task_page(job_id, after=after, limit=limit)
        return self.table.task_page(job_id, after=after, limit=limit)

    def list(self, stack: str, caller: str, *, after: str | None = None, limit: int = 100
             ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs of ``caller`` (``""``: every job of ``stack``), newest first."""
        return self.table.list_jobs(stack, caller, after=after, limit=limit)

    def cancel(self, job_id: str) -> bool:
        """No scan of the job starts after this; finished results stay readable."""
        if not self.table.cancel(job_id):
            return False
        telemetry.count("RetrievalJobsCancelled")
        return True

    @staticmethod
    def status_of(job: dict[str, Any]) -> str:
        total, done, failed = (
            int(job.get(k, 0)) for k in ("archives_total", "archives_done", "archives_failed")
        )
        restoring = int(job.get("archives_restoring", 0))
        if job.get("cancelled"):
            return "cancelled"
        if not job.get("planned"):
            return "planning"
        if done < total:
            # Every unfinished archive waits for S3 to restore it from cold storage.
            return "restoring" if restoring and done + restoring >= total else "running"
        return "completed_with_errors" if failed else "succeeded"

    def presign(self, key: str, *, region: str, seconds: int = 900) -> presign.Presigned:
        """A result's presigned GET (SigV4, regional, no longer-lived than its signer: presign.py)."""
        return presign.get_url(self.results_bucket, key, region=region, seconds=seconds)

    # -- worker side --------------------------------------------------------------
    def restore_completed(self, key: str) -> int:
        """S3 restored the archive under ``key``: resume every job waiting for it (its task
        pending again, its scan sent). Safe to repeat: a scan of a task no longer pending
        does nothing, and the wait item goes last. Returns how many tasks were resumed."""
        archive_id = archive_id_of(key)
        resumed = 0
        for job_id in self.table.waiting_jobs(archive_id):
            job = self.table.get_job(job_id)
            if job is not None and not job.get("cancelled"):
                resumed += self.table.resume_task(job_id, archive_id) == RESUMED
                messages.send(self.queue_url, [Scan(job_id, archive_id)])
            self.table.forget_wait(job_id, archive_id)
        return resumed

    def handle(self, body: str, keyring_factory: Callable[[], Keyring]) -> str:
        """Run one queue message (its JSON body); raises for a message to retry."""
        msg = messages.from_body(body)
        if isinstance(msg, Scan):
            return self.scan_step.scan(msg, keyring_factory)
        return self.planner.plan(msg)

"""The plan step: page through the index for a job's request, record a task per archive and
send a ``Scan`` for each, then a ``Plan`` for the next page (or mark the job planned)."""

from __future__ import annotations

import logging

from .. import telemetry
from ..index.schema import fmt_time
from ..index.store import IndexStore
from .messages import Plan, Scan, send
from .request import RetrievalRequest
from .table import JobsTable

log = logging.getLogger(__name__)
PLAN_PAGE = 200


class Planner:
    def __init__(self, table: JobsTable, index: IndexStore, queue_url: str) -> None:
        self.table, self.index, self.queue_url = table, index, queue_url

    def plan(self, msg: Plan) -> str:
        job = self.table.get_job(msg.job_id)
        if job is None:
            log.warning("plan: job %s not found (expired?)", msg.job_id)
            telemetry.count("RetrievalJobsMissing")
            return "missing"
        if job.get("cancelled"):
            self.table.set_planned(msg.job_id)
            return "cancelled"
        req = RetrievalRequest.from_attrs(job)
        page = self.index.query(req.selector, req.start, req.end, limit=PLAN_PAGE, after=msg.after)
        firsts = {e.archive_id: fmt_time(e.first) for e in page.entries}
        ids = sorted(firsts)
        # Counted as the job's archives_total is: once per task, however often a page is replayed.
        telemetry.count("RetrievalArchivesPlanned", self.table.add_tasks(msg.job_id, sorted(firsts.items())))
        send(self.queue_url, [Scan(msg.job_id, a) for a in ids])
        if page.next is not None:
            send(self.queue_url, [Plan(msg.job_id, page.next)])
        else:
            self.table.set_planned(msg.job_id)
        return f"planned {len(ids)}"

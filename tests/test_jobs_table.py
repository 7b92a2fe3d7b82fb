"""The jobs table layer on the local DynamoDB: DynamoDB's refusals come back as outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.devkit import local_stack
from chalicelib.index.store import Selector
from chalicelib.jobs.request import RetrievalRequest
from chalicelib.jobs.table import ALREADY_FINISHED, CREATED, EXISTS, FINISHED, TXN_CHUNK, JobsTable

J = "ab" * 16
REQ = RetrievalRequest(Selector("teststack", "apps", "42"), datetime(2022, 1, 1, 12, tzinfo=UTC),
                       datetime(2022, 1, 1, 12, 5, tzinfo=UTC), "stderr", "timeout")


@pytest.fixture
def table(aws_endpoint) -> JobsTable:
    local_stack.create_table("jobs-table-test")
    return JobsTable("jobs-table-test")


def ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:032x}" for i in range(start, start + n)]


def test_a_job_is_created_once_and_reads_back_its_request(table) -> None:
    assert table.create_job(J, REQ) == CREATED
    assert table.create_job(J, REQ) == EXISTS
    job = table.get_job(J)
    assert RetrievalRequest.from_attrs(job) == REQ
    assert job["planned"] is False and job["archives_total"] == 0
    table.set_planned(J)
    assert table.get_job(J)["planned"] is True
    assert table.get_job("cd" * 16) is None


def test_tasks_are_counted_once_however_often_a_plan_page_is_replayed(table) -> None:
    table.create_job(J, REQ)
    first = ids(TXN_CHUNK + 3)
    assert table.add_tasks(J, first) == len(first)
    # a replay overlapping the first page by a few tasks: only the new ones count
    assert table.add_tasks(J, first[-5:] + ids(2, start=1000)) == 2
    assert table.add_task(J, first[0]) == EXISTS
    assert table.get_job(J)["archives_total"] == len(first) + 2
    assert table.get_task(J, first[0]).status == "pending"


def test_a_task_finishes_once_with_its_counters(table) -> None:
    table.create_job(J, REQ)
    a = ids(1)[0]
    table.add_tasks(J, [a])
    counts = {"archives_done": 1, "lines_matched": 4}
    assert table.finish_task(J, a, "done", counts, result_key="r/x.jsonl.gz", lines_matched=4) == FINISHED
    assert table.finish_task(J, a, "failed", {"archives_done": 1, "archives_failed": 1}, error="x") == ALREADY_FINISHED
    job, task = table.get_job(J), table.get_task(J, a)
    assert (job["archives_done"], job["archives_failed"], job["lines_matched"]) == (1, 0, 4)
    assert (task.status, task.result_key, task.lines_matched, task.error) == ("done", "r/x.jsonl.gz", 4, None)


def test_task_pages_give_archive_ids_and_continue_after_the_last(table) -> None:
    table.create_job(J, REQ)
    want = ids(7)
    table.add_tasks(J, want)
    got, after, pages = [], None, 0
    while True:
        tasks, after = table.task_page(J, after=after, limit=3)
        got += [t.archive_id for t in tasks]
        pages += 1
        if after is None:
            break
        assert after == got[-1]
    assert got == want and pages >= 3

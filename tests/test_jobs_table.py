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


def planned(archive_ids: list[str]) -> list[tuple[str, str]]:
    """(archive id, first line's time) as the planner passes them: later ids, earlier times."""
    return [(a, f"2022-01-01T12:{59 - int(a, 16) % 60:02d}:00.000000Z") for a in archive_ids]


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
    assert table.add_tasks(J, planned(first)) == len(first)
    # a replay overlapping the first page by a few tasks: only the new ones count
    assert table.add_tasks(J, planned(first[-5:] + ids(2, start=1000))) == 2
    assert table.add_task(J, *planned(first)[0]) == EXISTS
    assert table.get_job(J)["archives_total"] == len(first) + 2
    assert table.get_task(J, first[0]).status == "pending"


def test_a_task_finishes_once_with_its_counters(table) -> None:
    table.create_job(J, REQ)
    a = ids(1)[0]
    table.add_tasks(J, planned([a]))
    counts = {"archives_done": 1, "lines_matched": 4}
    assert table.finish_task(J, a, "done", counts, result_key="r/x.jsonl.gz", lines_matched=4) == FINISHED
    assert table.finish_task(J, a, "failed", {"archives_done": 1, "archives_failed": 1}, error="x") == ALREADY_FINISHED
    job, task = table.get_job(J), table.get_task(J, a)
    assert (job["archives_done"], job["archives_failed"], job["lines_matched"]) == (1, 0, 4)
    assert (task.status, task.result_key, task.lines_matched, task.error) == ("done", "r/x.jsonl.gz", 4, None)


def test_task_pages_give_archive_ids_and_continue_after_the_last(table) -> None:
    table.create_job(J, REQ)
    want = ids(7)
    table.add_tasks(J, planned(want))
    got, after, pages = [], None, 0
    while True:
        tasks, after = table.task_page(J, after=after, limit=3)
        got += [t.archive_id for t in tasks]
        pages += 1
        if after is None:
            break
        assert after == got[-1]
    assert got == want and pages >= 3


def test_ordered_task_pages_follow_the_archives_first_lines(table) -> None:
    table.create_job(J, REQ)
    archives = planned(ids(7))
    table.add_tasks(J, archives)
    table.add_tasks(J, archives[:2])  # a replayed page adds no second order item
    got, after = [], None
    while True:
        tasks, after = table.ordered_task_page(J, after=after, limit=3)
        got += [t.archive_id for t in tasks]
        if after is None:
            break
    assert got == [a for a, _ in sorted(archives, key=lambda x: x[1])] == ids(7)[::-1]


def test_jobs_are_listed_by_caller_newest_first_and_cancelled_once(table) -> None:
    alice, bob = "arn:aws:iam::123456789012:user/alice", "arn:aws:sts::123456789012:assumed-role/r/bob"
    made = {}
    for n, who in enumerate([alice, bob, alice, ""]):
        job_id = f"{n:032x}"
        assert table.create_job(job_id, REQ, who) == CREATED
        made[job_id] = who

    def listing(caller: str, limit: int) -> list[str]:
        got, after = [], None
        while True:
            jobs, after = table.list_jobs("teststack", caller, after=after, limit=limit)
            got += [str(j["pk"])[4:] for j in jobs]
            if after is None:
                return got
    assert listing(alice, 1) == [f"{2:032x}", f"{0:032x}"]
    assert listing(bob, 5) == [f"{1:032x}"]
    assert listing("", 3) == [f"{n:032x}" for n in (3, 2, 1, 0)]  # no identity: the stack's jobs
    assert table.list_jobs("otherstack", "", limit=5) == ([], None)
    assert table.cancel(f"{1:032x}") is True and table.get_job(f"{1:032x}")["cancelled"] is True
    assert table.cancel("ef" * 16) is False

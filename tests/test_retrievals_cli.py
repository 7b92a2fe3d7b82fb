"""``logarchive retrievals start|status|results|list|cancel``: jobs driven from the CLI against the
API on chalice's local HTTP server (SigV4-signed requests), the worker run from the queue."""

from __future__ import annotations

import json
import threading

import pytest
from chalice.test import Client
from helpers_index import STACK, docker_line, http_server, pump, put_archive, s3_event, setup_stack
from retrieval_helpers import run_cli

from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x07" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
L = docker_line
LATE = [L("2022-01-01T12:03:00Z", "stderr", "late timeout"), L("2022-01-01T12:04:00Z", "stdout", "ok")]
EARLY = [L("2022-01-01T12:00:30Z", "stderr", "early timeout"), L("2022-01-01T12:01:00Z", "stderr", "db ok")]
ASK = ["--app-id", "42", "--start", "2022-01-01T12:00:00Z", "--end", "2022-01-01T13:00:00Z"]


@pytest.fixture
def api(monkeypatch, buckets, tmp_path):
    url = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the CLI's stdout is asserted
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        # the later archive first: results come in the time order of the archives, not as stored
        for body, cid in ((LATE, "ab" * 32), (EARLY, "cd" * 32)):
            key, _ = put_archive(buckets.archive, body, master=MASTER, cid=cid)
            client.lambda_.invoke("index_archive", s3_event(buckets.archive, key))
        with http_server(app.app) as base:
            yield base, client, url


def cli(capsys, base: str, *argv: str) -> tuple[int, str, str]:
    return run_cli(["retrievals", argv[0], "--api-url", base, *argv[1:]], capsys)


def test_start_status_results_list_and_cancel(api, capsys) -> None:
    base, client, url = api
    rc, out, err = cli(capsys, base, "start", *ASK, "--grep", "timeout|db", "--stream", "stderr")
    assert rc == 0, err
    job = out.strip()
    assert len(job) == 32
    rc, out, _ = cli(capsys, base, "status", job)
    assert (rc, out) == (0, f"{job} planning: 0/0 archives scanned, 0 lines matched\n")
    pump(client, url)
    rc, out, _ = cli(capsys, base, "status", job)
    assert (rc, out) == (0, f"{job} succeeded: 2/2 archives scanned, 3 lines matched\n")
    rc, out, _ = cli(capsys, base, "results", job)
    assert rc == 0 and out.splitlines() == [x.decode() for x in (EARLY[0], EARLY[1], LATE[0])]
    rc, out, _ = cli(capsys, base, "results", job, "--format", "text")
    assert out == "early timeout\ndb ok\nlate timeout\n"
    rc, out, _ = cli(capsys, base, "start", *ASK)
    second = out.strip()
    rc, out, _ = cli(capsys, base, "cancel", second)
    assert (rc, out) == (0, f"{second} cancelled: 0/0 archives scanned, 0 lines matched\n")
    rc, out, _ = cli(capsys, base, "list")
    listed = [line.split() for line in out.splitlines()]
    assert rc == 0 and [(x[0], x[2]) for x in listed] == [(second, "cancelled"), (job, "succeeded")]
    assert listed[1][3:] == ["app_id=42", "2022-01-01T12:00:00Z..2022-01-01T13:00:00Z", "grep", "'timeout|db'"]
    rc, out, _ = cli(capsys, base, "status", job, "--format", "json")
    assert json.loads(out)["request"]["grep"] == "timeout|db"


def test_start_wait_shows_progress_then_writes_the_lines(api, capsys) -> None:
    base, client, url = api
    stop = threading.Event()

    def worker() -> None:  # Lambda's event source: runs whatever the queue holds
        while not stop.is_set():
            pump(client, url)
            stop.wait(0.05)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        rc, out, err = cli(capsys, base, "start", *ASK, "--grep", "timeout", "--wait", "--progress",
                           "--poll-interval", "0.05")
    finally:
        stop.set()
        t.join()
    assert rc == 0
    assert out.splitlines() == [EARLY[0].decode(), LATE[0].decode()]
    progress = err.splitlines()
    assert progress[0].startswith("retrieval ") and progress[0].endswith(" started")
    assert progress[-1].endswith(" succeeded: 2/2 archives scanned, 2 lines matched")


@pytest.mark.parametrize("argv, message", [
    (["start", "--start", "2022-01-01", "--end", "2022-01-02"], "give exactly one of --app-id"),
    (["start", "--app-id", "42", "--start", "2022-01-01"], "give --start or --start-date, and --end or"),
    (["start", *ASK, "--grep", "a(?=b)"],
     "--grep 'a(?=b)' is not an RE2 regular expression (invalid perl operator: (?=)"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message) -> None:
    rc, _, err = run_cli(["retrievals", argv[0], "--api-url", "http://127.0.0.1:9", *argv[1:]], capsys)
    assert rc == 2 and message in err and err.count("\n") == 1


def test_api_errors_are_one_line(api, capsys) -> None:
    base, _, _ = api
    rc, _, err = cli(capsys, base, "status", "0" * 32)
    assert rc == 1 and err == f"logarchive: error: API answered 404: retrieval {'0' * 32} not found\n"
    rc, _, err = cli(capsys, base, "cancel", "nothex")
    assert rc == 1 and err == "logarchive: error: API answered 400: retrieval id must be 32 lowercase hex digits\n"
    assert STACK == "teststack"

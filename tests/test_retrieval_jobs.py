"""Retrieval jobs end to end: POST /retrievals -> SQS fan-out -> retrieval_worker -> results."""

from __future__ import annotations

import json

import boto3
import pytest
from chalice.test import Client
from emf import totals
from helpers_index import JOBS_TABLE, docker_line, pump, put_archive, result_lines, s3_event, setup_stack

from chalicelib import aws
from chalicelib.keyring import MasterKey
from chalicelib.sqs_pump import records

MASTER = MasterKey(b"\x03" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
C1, C2, C3 = "a1" * 32, "b2" * 32, "c3" * 32


@pytest.fixture
def stack(monkeypatch, buckets, tmp_path):
    url = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        yield client, buckets, url


def archive(client, b, lines, **kw) -> str:
    key, _ = put_archive(b.archive, lines, master=MASTER, **kw)
    assert client.lambda_.invoke("index_archive", s3_event(b.archive, key)).payload["outcomes"] == ["live"]
    return key


def seed_app42(client, b) -> list[bytes]:
    """Archives around 12:00-12:05 on 2022-01-01; returns the lines the question must get back."""
    L = docker_line
    want = [
        L("2022-01-01T12:00:00Z", "stderr", "upstream timeout at the edge"),  # start is inclusive
        L("2022-01-01T12:04:59.999999Z", "stderr", "db timeout (last microsecond)"),
        L("2022-01-01T12:02:00.123456789Z", "stderr", "second container: timeout"),
        L("2022-01-01T12:03:00Z", "stderr", "spanning archive timeout"),
    ]
    # container 1: one archive 11:58-12:07 with every kind of near miss
    archive(client, b, [
        L("2022-01-01T11:58:00Z", "stderr", "timeout too early"),
        L("2022-01-01T11:59:59.999999Z", "stderr", "timeout a microsecond too early"),
        want[0],
        L("2022-01-01T12:01:00Z", "stdout", "timeout on stdout"),
        L("2022-01-01T12:01:30Z", "stderr", "no match here"),
        L("2022-01-01T12:02:00Z", "stderr", "TIMEOUT in capitals"),
        want[1],
        L("2022-01-01T12:05:00Z", "stderr", "timeout at the (exclusive) end"),
        L("2022-01-01T12:07:00Z", "stderr", "timeout too late"),
    ], cid=C1)
    # container 2 of app 42 (another service): overlaps the window
    archive(client, b, [L("2022-01-01T12:01:00Z", "stderr", "nothing"), want[2]], cid=C2, sid="8")
    # a rotated archive of container 1 spanning two days (from yesterday to tomorrow)
    archive(client, b, [L("2021-12-31T23:00:00Z", "stderr", "timeout yesterday"), want[3],
                        L("2022-01-02T01:00:00Z", "stderr", "timeout tomorrow")], cid=C1, rotation=1)
    # outside the window: never planned, never scanned
    archive(client, b, [L("2022-01-01T13:00:00Z", "stderr", "timeout later")], cid=C1, rotation=2)
    # another app with matching lines in the window: not app 42
    archive(client, b, [L("2022-01-01T12:01:00Z", "stderr", "timeout elsewhere")], rid="43", cid=C3)
    return want


ASK = {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T12:05:00Z",
       "stream": "stderr", "grep": "timeout"}


def test_all_stderr_lines_of_app_42_between_1200_and_1205_containing_timeout(stack, capsys) -> None:
    client, b, url = stack
    want = seed_app42(client, b)
    capsys.readouterr()
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    assert r.status_code == 202
    job_id = json.loads(r.body)["id"]
    status = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert status["status"] == "planning" and status["progress"]["archives_total"] == 0
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert body["status"] == "succeeded"
    p = body["progress"]
    assert (p["archives_done"], p["archives_total"], p["archives_failed"]) == (3, 3, 0)
    assert p["bytes_scanned"] > 0 and p["plaintext_bytes"] > p["bytes_scanned"] // 10
    got = result_lines(body)
    assert sorted(got) == sorted(want) and len(got) == len(set(got)) == p["lines_matched"] == 4
    # the worker's metrics agree with the job's counters; one plan and three scan messages
    m = totals(capsys.readouterr().out)
    assert (m["RetrievalJobsCreated"], m["RetrievalArchivesPlanned"], m["RetrievalArchivesScanned"]) == (1, 3, 3)
    assert (m["RetrievalMessages"], m["RetrievalMessageErrors"], m["RetrievalArchivesFailed"]) == (4, 0, 0)
    assert m["RetrievalLinesMatched"] == 4 and m["RetrievalScansRepeated"] == 0
    assert (m["RetrievalBytesScanned"], m["RetrievalPlaintextBytes"]) == (p["bytes_scanned"], p["plaintext_bytes"])


def test_replayed_messages_count_nothing_twice(stack, capsys) -> None:
    client, b, url = stack
    seed_app42(client, b)
    capsys.readouterr()
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    # deliver every message twice (SQS is at-least-once): receive, copy, then let the pump run
    sqs = boto3.client("sqs")
    for _ in range(10):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not msgs:
            break
        payload = client.lambda_.invoke("retrieval_worker", {"Records": records(sqs, url, msgs)}).payload
        assert payload == {"batchItemFailures": []}
    pump(client, url)  # the same messages again (never deleted above) plus the fan-out
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    p = body["progress"]
    assert body["status"] == "succeeded" and (p["archives_done"], p["archives_total"], p["lines_matched"]) == (3, 3, 4)
    assert len(result_lines(body)) == 4
    m = totals(capsys.readouterr().out)  # nor do the metrics: replays show as repeated scans
    assert (m["RetrievalArchivesPlanned"], m["RetrievalArchivesScanned"], m["RetrievalLinesMatched"]) == (3, 3, 4)
    assert m["RetrievalScansRepeated"] >= 1 and m["RetrievalMessages"] > 4


def test_partial_batch_failure_retries_only_the_failed_record(stack, capsys) -> None:
    """The 1st result upload fails (injected on the real S3 client): only that record comes back."""
    client, b, url = stack
    want = seed_app42(client, b)
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    s3 = aws.client("s3")
    calls = {"n": 0}

    def boom(params, **kwargs):
        if params.get("Key", "").startswith("retrievals/"):
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("injected: connection reset during upload")

    s3.meta.events.register("before-parameter-build.s3.PutObject", boom)
    try:
        payloads = pump(client, url)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", boom)
    failures = [f for p in payloads for f in p["batchItemFailures"]]
    assert len(failures) == 1  # one record of its batch; the others in that batch succeeded
    m = totals(capsys.readouterr().out)
    assert (m["RetrievalMessageErrors"], m["RetrievalArchivesScanned"]) == (1, 3)
    assert any(len(p.get("batchItemFailures", [])) == 0 for p in payloads)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert body["status"] == "succeeded" and sorted(result_lines(body)) == sorted(want)


def test_tampered_archive_fails_alone_and_releases_nothing(stack, capsys) -> None:
    client, b, url = stack
    want = seed_app42(client, b)
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=b.archive)["Contents"]
    victim = next(o["Key"] for o in listing if f"/{C2}-json.log." in o["Key"])
    obj = s3.get_object(Bucket=b.archive, Key=victim)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 1
    s3.put_object(Bucket=b.archive, Key=victim, Body=bytes(data), Metadata=obj["Metadata"])
    client.lambda_.invoke("index_archive", s3_event(b.archive, victim, sequencer="FF"))  # the new version
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert body["status"] == "completed_with_errors"
    assert (body["progress"]["archives_done"], body["progress"]["archives_failed"]) == (3, 1)
    m = totals(capsys.readouterr().out)
    assert (m["RetrievalArchivesFailed"], m["RetrievalArchivesScanned"], m["RetrievalMessageErrors"]) == (1, 2, 0)
    failed = [x for x in body["results"] if x["status"] == "failed"]
    assert len(failed) == 1 and "authentication failed" in failed[0]["error"] and "url" not in failed[0]
    assert "\n" not in failed[0]["error"]
    assert sorted(result_lines(body)) == sorted(w for w in want if b"second container" not in w)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b.staging, Prefix=f"retrievals/{job_id}/").get("Contents", [])]
    assert len(keys) == 2  # nothing at all from the tampered archive


def test_job_table_holds_one_task_per_archive(stack) -> None:
    client, b, url = stack
    seed_app42(client, b)
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    items = boto3.client("dynamodb").query(
        TableName=JOBS_TABLE, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"job#{job_id}"}})["Items"]
    assert sorted(i["sk"]["S"].split("#")[0] for i in items) == ["job"] + ["order"] * 3 + ["task"] * 3
    # results pages: limit 2 gives a signed token for the third
    body = json.loads(client.http.get(f"/retrievals/{job_id}?limit=2").body)
    assert len(body["results"]) == 2 and body["next_token"]
    more = json.loads(client.http.get(f"/retrievals/{job_id}?limit=2&next_token={body['next_token']}").body)
    assert len(more["results"]) == 1 and more["next_token"] is None
    r = client.http.get(f"/retrievals/{job_id}?limit=1&next_token={body['next_token']}")
    assert r.status_code == 400


def test_archive_gone_since_indexing_fails_its_task_only(stack) -> None:
    client, b, url = stack
    want = seed_app42(client, b)
    s3 = boto3.client("s3")
    victim = next(v for v in s3.list_object_versions(Bucket=b.archive)["Versions"] if f"/{C2}-json.log." in v["Key"])
    s3.delete_object(Bucket=b.archive, Key=victim["Key"], VersionId=victim["VersionId"])  # no event: index is stale
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert body["status"] == "completed_with_errors" and body["progress"]["archives_failed"] == 1
    assert [x["error"] for x in body["results"] if x["status"] == "failed"][0].endswith("the indexed version is gone (NoSuchVersion)")
    assert sorted(result_lines(body)) == sorted(w for w in want if b"second container" not in w)


def test_an_archive_whose_envelope_is_in_an_instruction_file_is_scanned(stack) -> None:
    """The scan step opens archives as the CLI does: envelope from metadata or ``<key>.instruction``."""
    from chalicelib.envelope import Envelope

    client, b, url = stack
    want = seed_app42(client, b)
    s3 = boto3.client("s3")
    victim = next(o["Key"] for o in s3.list_objects_v2(Bucket=b.archive)["Contents"] if f"/{C2}-json.log." in o["Key"])
    obj = s3.get_object(Bucket=b.archive, Key=victim)
    env = Envelope.from_fields(obj["Metadata"], name=victim)
    meta = {k: v for k, v in obj["Metadata"].items() if k not in env.to_fields()}
    s3.put_object(Bucket=b.archive, Key=victim + ".instruction", Body=env.to_instruction().encode())
    s3.put_object(Bucket=b.archive, Key=victim, Body=obj["Body"].read(),
                  Metadata={**meta, "x-amz-crypto-instr-file": ""})
    client.lambda_.invoke("index_archive", s3_event(b.archive, victim, sequencer="FF"))  # the new version
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert [x.get("error") for x in body["results"]] == [None, None, None]
    assert body["status"] == "succeeded" and sorted(result_lines(body)) == sorted(want)


def test_local_api_demo_answers_the_question() -> None:
    """``python -m chalicelib.devkit.local_stack``: its own local AWS, the question, exactly the lines."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "chalicelib.devkit.local_stack"], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    got = [json.loads(x)["log"] for x in out.stdout.splitlines() if x.startswith("  {")]
    assert sorted(got) == sorted(["upstream timeout (GET /orders)\n", "db timeout after 30s\n",
                                  "second container: redis timeout\n"])
    assert "succeeded, archives 2/2" in out.stdout


def deliver_one(client, url: str) -> str:
    """Receive one message, run it through retrieval_worker, delete it; its body."""
    sqs = boto3.client("sqs")
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"]
    assert client.lambda_.invoke("retrieval_worker", {"Records": records(sqs, url, msgs)}).payload == {
        "batchItemFailures": []}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"])
    return msgs[0]["Body"]


def test_grep_is_a_regular_expression_and_results_come_in_time_order(stack) -> None:
    client, b, url = stack
    seed_app42(client, b)
    ask = {**ASK, "app_id": 42, "grep": "upstream|db timeout|spanning"}  # a JSON number is an id too
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ask).encode())
    assert r.status_code == 202, r.body
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    # archives by their first line: the one begun yesterday, then container 1's, then container 2's
    got = [json.loads(x)["log"] for x in result_lines(body)]
    assert got == ["spanning archive timeout\n", "upstream timeout at the edge\n", "db timeout (last microsecond)\n"]
    # what RE2 refuses is refused before any job exists, in one line
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"},
                         body=json.dumps({**ASK, "grep": "time(?=out)"}).encode())
    assert r.status_code == 400
    assert json.loads(r.body)["error"]["message"] == (
        "grep 'time(?=out)' is not an RE2 regular expression (invalid perl operator: (?=)")


def test_jobs_are_listed_and_a_cancelled_job_starts_no_new_scan(stack) -> None:
    client, b, url = stack
    seed_app42(client, b)

    def post() -> str:
        r = client.http.post("/retrievals", headers={"Content-Type": "application/json"},
                             body=json.dumps(ASK).encode())
        return json.loads(r.body)["id"]

    first = post()
    assert json.loads(deliver_one(client, url))["type"] == "plan"
    assert json.loads(deliver_one(client, url))["type"] == "scan"  # one archive scanned, two waiting
    r = client.http.delete(f"/retrievals/{first}")
    assert r.status_code == 200 and json.loads(r.body)["status"] == "cancelled"
    second = post()
    pump(client, url)  # the waiting scans of the first job start nothing
    body = json.loads(client.http.get(f"/retrievals/{first}").body)
    p = body["progress"]
    assert body["status"] == "cancelled" and (p["archives_done"], p["archives_total"]) == (1, 3)
    assert [r["status"] for r in body["results"]].count("pending") == 2
    assert len(result_lines(body)) == p["lines_matched"]  # what was scanned stays readable
    # no identity here (IAM off): the stack's jobs, newest first, a page at a time
    listed = json.loads(client.http.get("/retrievals?limit=1").body)
    assert [j["id"] for j in listed["retrievals"]] == [second] and listed["next_token"]
    rest = json.loads(client.http.get("/retrievals?limit=1&next_token=" + listed["next_token"]).body)
    assert [(j["id"], j["status"]) for j in rest["retrievals"]] == [(first, "cancelled")]
    assert json.loads(client.http.get(f"/retrievals/{second}").body)["status"] == "succeeded"
    assert client.http.delete("/retrievals/" + "0" * 32).status_code == 404


def test_get_retrievals_lists_each_callers_own_jobs(stack) -> None:
    """API Gateway hands the IAM identity in ``requestContext.identity``: a job records its
    caller's ARN, and ``GET /retrievals`` lists only that caller's jobs."""
    from chalice.local import LambdaContext

    import app
    from chalicelib.devkit.packaged import api_event

    alice, bob = "arn:aws:iam::123456789012:user/alice", "arn:aws:sts::123456789012:assumed-role/ops/bob"

    def call(method: str, who: str, body: dict | None = None) -> tuple[int, dict]:
        event = api_event(method, "/retrievals", "/retrievals", body=body)
        event["requestContext"]["identity"]["userArn"] = who
        resp = app.app(event, LambdaContext("api_handler", memory_size=512))
        return resp["statusCode"], json.loads(resp["body"])

    ids = {}
    for n, who in enumerate((alice, bob, alice)):
        status, body = call("POST", who, ASK)
        assert status == 202, body
        ids[n] = body["id"]
    status, mine = call("GET", alice)
    assert status == 200 and [j["id"] for j in mine["retrievals"]] == [ids[2], ids[0]]
    assert [j["id"] for j in call("GET", bob)[1]["retrievals"]] == [ids[1]]
    assert all(j["request"]["selector"] == {"app_id": "42"} for j in mine["retrievals"])


def test_a_plan_message_of_the_old_index_schema_plans_the_job_again(stack) -> None:
    """A job planning while the index moves to schema 2: its next plan message carries a
    schema-1 position; the job is planned again from the start, each archive counted once."""
    client, b, url = stack
    want = seed_app42(client, b)
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ASK).encode())
    job_id = json.loads(r.body)["id"]
    pump(client, url)  # planned and scanned once
    old = {"type": "plan", "job_id": job_id, "after": {"h": "2022-01-01T12", "s": "S", "k": "S#x"}}
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(old))
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    p = body["progress"]
    assert body["status"] == "succeeded" and (p["archives_total"], p["archives_done"]) == (3, 3)
    assert sorted(result_lines(body)) == sorted(want)

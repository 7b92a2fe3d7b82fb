"""Retrieval jobs over archives in cold storage, and the index's storage classes.

Archives are moved to GLACIER / DEEP_ARCHIVE by a copy in place with a storage class (on the
local S3 that makes a new version; on AWS a lifecycle transition keeps the version). The local
AWS sends neither "Object Storage Class Changed" nor, through EventBridge, "Object Restore
Completed": both are delivered here as recorded events, to the index_archive function.
"""

from __future__ import annotations

import json

import boto3
import pytest
from chalice.test import Client
from helpers_index import docker_line, pump, put_archive, result_lines, s3_event, setup_stack

from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x09" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
ASK = {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T13:00:00Z", "grep": "wanted"}


def recorded(detail_type: str, bucket: str, key: str, version_id: str, **detail) -> dict:
    """An S3 event as EventBridge delivers it (AWS's documented shape; no sequencer)."""
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type,
        "source": "aws.s3", "account": "111122223333", "time": "2026-12-01T00:00:00Z",
        "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 1, "etag": "d41d8cd98f00b204e9800998ecf8427e",
                              "version-id": version_id},
                   "request-id": "57H08PA84AB1JZW0", "requester": "s3.amazonaws.com", **detail},
    }


@pytest.fixture
def stack(monkeypatch, buckets, tmp_path):
    url = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        yield client, buckets, url


class Archives:
    """Three archives of app 42 in the hour asked: STANDARD, GLACIER and DEEP_ARCHIVE."""

    def __init__(self, client, b) -> None:
        self.client, self.bucket, self.s3 = client, b.archive, boto3.client("s3")
        self.keys, self.versions, self.wanted = {}, {}, {}
        for i, cls in enumerate(("STANDARD", "GLACIER", "DEEP_ARCHIVE")):
            line = docker_line(f"2022-01-01T12:0{i}:00Z", "stderr", f"wanted line of the {cls} archive")
            key, version = put_archive(b.archive, [docker_line("2022-01-01T12:00:00Z", "stdout", "noise"), line],
                                       master=MASTER, cid=f"{i + 1:02d}" * 32)
            assert self.index(s3_event(b.archive, key)) == ["live"]
            if cls != "STANDARD":
                version = self.s3.copy_object(Bucket=b.archive, Key=key, CopySource={"Bucket": b.archive, "Key": key},
                                              StorageClass=cls, MetadataDirective="COPY")["VersionId"]
                changed = recorded("Object Storage Class Changed", b.archive, key, version,
                                   **{"destination-storage-class": cls})
                assert self.index(changed) == ["live"]
            self.keys[cls], self.versions[cls], self.wanted[cls] = key, version, line

    def index(self, event: dict) -> list[str]:
        return self.client.lambda_.invoke("index_archive", event).payload["outcomes"]

    def restore_completed(self, cls: str) -> dict:
        event = recorded("Object Restore Completed", self.bucket, self.keys[cls], self.versions[cls],
                         **{"restore-expiry-time": "2026-12-04T00:00:00Z", "source-storage-class": cls})
        return self.client.lambda_.invoke("index_archive", event).payload


def start(client, **extra) -> str:
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"},
                         body=json.dumps({**ASK, **extra}).encode())
    assert r.status_code == 202, r.body
    return json.loads(r.body)["id"]


def job(client, job_id: str) -> dict:
    return json.loads(client.http.get(f"/retrievals/{job_id}").body)


def test_the_index_records_storage_classes_and_the_api_shows_them(stack) -> None:
    client, b, _ = stack
    a = Archives(client, b)
    r = client.http.get("/archives?stack=teststack&app_id=42&start=2022-01-01T12:00:00Z&end=2022-01-01T13:00:00Z")
    shown = {e["s3_key"]: (e["storage_class"], e["version_id"]) for e in json.loads(r.body)["archives"]}
    assert shown == {a.keys[c]: (c, a.versions[c]) for c in ("STANDARD", "GLACIER", "DEEP_ARCHIVE")}


def test_a_job_restores_cold_archives_and_resumes_when_s3_announces_them(stack, capsys) -> None:
    client, b, url = stack
    a = Archives(client, b)
    job_id = start(client, restore_tier="Standard")
    pump(client, url)
    body = job(client, job_id)
    assert body["status"] == "restoring"
    p = body["progress"]
    assert (p["archives_total"], p["archives_done"], p["archives_restoring"], p["archives_failed"]) == (3, 1, 2, 0)
    assert sorted(r["status"] for r in body["results"]) == ["done", "restoring", "restoring"]
    assert body["request"]["restore_tier"] == "Standard"
    # S3 was asked to restore the indexed versions.
    for cls in ("GLACIER", "DEEP_ARCHIVE"):
        head = a.s3.head_object(Bucket=b.archive, Key=a.keys[cls], VersionId=a.versions[cls])
        assert head["StorageClass"] == cls and "ongoing-request" in head["Restore"]
    # Nothing else happens until S3 announces a completed restore: the queue is empty.
    assert pump(client, url) == [] and job(client, job_id)["status"] == "restoring"

    assert a.restore_completed("GLACIER") == {"resumed": 1}
    pump(client, url)
    p = job(client, job_id)["progress"]
    assert (p["archives_done"], p["archives_restoring"]) == (2, 1)
    assert a.restore_completed("DEEP_ARCHIVE") == {"resumed": 1}
    pump(client, url)
    body = job(client, job_id)
    assert body["status"] == "succeeded"
    p = body["progress"]
    assert (p["archives_total"], p["archives_done"], p["archives_restoring"], p["archives_failed"]) == (3, 3, 0, 0)
    assert sorted(result_lines(body)) == sorted(a.wanted.values())

    # A replayed announcement resumes nothing and counts nothing twice.
    assert a.restore_completed("GLACIER") == {"resumed": 0}
    pump(client, url)
    assert job(client, job_id)["progress"] == p


def test_a_restore_s3_refuses_fails_its_task_in_one_line(stack) -> None:
    client, b, url = stack
    a = Archives(client, b)
    job_id = start(client, restore_tier="Expedited")
    pump(client, url)
    body = job(client, job_id)
    p = body["progress"]
    assert (p["archives_done"], p["archives_failed"], p["archives_restoring"]) == (2, 1, 1)
    [failed] = [r for r in body["results"] if r["status"] == "failed"]
    assert failed["error"] == (f"s3://{b.archive}/{a.keys['DEEP_ARCHIVE']}: restore refused: DEEP_ARCHIVE has no "
                               "Expedited retrieval: use --restore-tier Standard or Bulk")
    assert a.restore_completed("GLACIER") == {"resumed": 1}
    pump(client, url)
    assert job(client, job_id)["status"] == "completed_with_errors"


def test_the_restore_tier_is_validated(stack) -> None:
    client, _, _ = stack
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"},
                         body=json.dumps({**ASK, "restore_tier": "Fast"}).encode())
    assert r.status_code == 400
    assert json.loads(r.body)["error"]["message"] == "restore_tier must be one of Bulk, Standard, Expedited"


def test_local_up_announces_the_restores_the_local_s3_completes(stack, moto_endpoint) -> None:
    """The local S3 sends no "Object Restore Completed" through EventBridge: `local up`'s pump
    HEADs the archives parked tasks wait for and sends it when a restore is done (here the
    local S3's manual transition: a restore completes after a few reads of the object)."""
    import app
    from chalicelib.devkit import local_aws, local_stack

    client, b, url = stack
    a = Archives(client, b)
    local_aws.slow_restores(moto_endpoint, 3)
    try:
        job_id = start(client)
        pump(client, url)
        assert job(client, job_id)["status"] == "restoring"
        lambdas = local_stack.LambdaPump(app.app, {url: "retrieval_worker"})
        announced = []
        while job(client, job_id)["progress"]["archives_restoring"] and len(announced) < 20:
            announced.append(lambdas.announce_restores())  # what `local up`'s pump runs every 2 s
            pump(client, url)
    finally:
        local_aws.slow_restores(moto_endpoint, None)
    assert announced[0] == 0 and sum(announced) == 2, announced  # under way first, then each once
    body = job(client, job_id)
    assert body["status"] == "succeeded" and body["progress"]["archives_done"] == 3
    assert sorted(result_lines(body)) == sorted(a.wanted.values())
    assert lambdas.announce_restores() == 0  # nothing waits any more

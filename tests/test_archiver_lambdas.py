"""The archiver Lambdas through chalice.test.Client against the moto server: the happy path,
duplicates, overlapping runs, remaining time, bad input, collisions, replication modes."""

from __future__ import annotations

import gzip
import hashlib
import json

import boto3
import pytest
from archiver_support import (
    STAGING_PREFIX,
    DeleteWatch,
    archived,
    archiver_env,
    assert_converged,
    decrypt,
    deliver,
    docker_lines,
    lambda_client,
    run_scheduler,
    sqs_event,
    stage,
)
from emf import totals

from chalicelib import layout
from chalicelib.sqs_pump import pump


@pytest.fixture
def env(monkeypatch, buckets):
    return archiver_env(monkeypatch, buckets)


@pytest.fixture
def client(tmp_path, env):
    return lambda_client(tmp_path)


def drain_bodies(queue_url):
    bodies = []
    pump(boto3.client("sqs"), queue_url, lambda records: bodies.extend(r["body"] for r in records) or [])
    return bodies


def test_schedule_and_archive_end_to_end(buckets, env, client, capsys):
    s3 = boto3.client("s3")
    staged = [
        stage(s3, buckets.staging, "a-json.log.1", docker_lines(200, seed=1), segment=1),
        stage(s3, buckets.staging, "b-json.log.2.gz", docker_lines(300, seed=2), segment=2, encoding="gzip"),
    ]
    watch = DeleteWatch(buckets.staging, buckets.archive, (buckets.customer,), env["keyring"]).install()
    report = run_scheduler(client)
    assert (report["listed"], report["scheduled"]) == (2, 2)
    assert deliver(client, env["queue_url"]) == 2
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,))
    assert watch.checked == 2 and not watch.violations
    # key layout, metadata for the indexer, identical copies in the customer bucket
    keys = sorted(archived(s3, buckets.archive, env["keyring"]))
    parsed = layout.parse(keys[0])
    assert parsed.rotation in (1, 2) and parsed.kind == "apps" and parsed.service_id == "7"
    head = s3.head_object(Bucket=buckets.archive, Key=keys[0])
    meta = head["Metadata"]
    for field in ("x-amz-key-v2", "x-amz-iv", "x-amz-cek-alg", "x-amz-wrap-alg", "x-amz-matdesc", "x-amz-tag-len",
                  "logarchive-key-id", "logarchive-first-time", "logarchive-last-time", "logarchive-lines",
                  "logarchive-bytes", "logarchive-sha256", "logarchive-host", "logarchive-container-name",
                  "logarchive-source"):
        assert meta.get(field), field
    assert meta["logarchive-key-id"] == env["key"].key_id
    assert meta["logarchive-first-time"] == "2022-01-01T12:00:00.123456Z"
    assert meta["logarchive-source"].startswith(STAGING_PREFIX)
    copy = s3.head_object(Bucket=buckets.customer, Key=keys[0])
    assert copy["ETag"] == head["ETag"] and copy["Metadata"] == meta
    # EMF metrics were emitted by the Powertools middleware
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ObjectsArchived", "BytesIn", "BytesOut", "ArchiveLag", "ObjectsScheduled"} <= names


def test_archived_marker_names_the_archive_and_is_never_work(buckets, env, client, monkeypatch):
    """``archived/<staged key>`` is left before the staged object goes; even a scheduler that
    lists the whole bucket (no staging prefix) never takes a marker for a staged segment."""
    monkeypatch.setenv("LOGARCHIVE_STAGING_PREFIX", "")
    s3 = boto3.client("s3")
    data = docker_lines(10, seed=3)  # staged at the root: the prefix the archiver was given ("")
    root_key = f"teststack/host-1/{hashlib.sha256(b'a').hexdigest()}/00000001-{hashlib.sha256(data).hexdigest()[:16]}.log"
    one = stage(s3, buckets.staging, "a", data, segment=1, key=root_key)
    assert run_scheduler(client)["scheduled"] == 1
    assert deliver(client, env["queue_url"]) == 1
    head = s3.head_object(Bucket=buckets.staging, Key="archived/" + one.key)
    assert head["ContentLength"] == 0
    assert head["Metadata"]["logarchive-archive-key"] == next(iter(archived(s3, buckets.archive, env["keyring"])))
    assert head["Metadata"]["logarchive-sha256"] == hashlib.sha256(one.data).hexdigest()  # the staged bytes'
    report = run_scheduler(client)
    assert (report["listed"], report["scheduled"]) == (0, 0)
    assert deliver(client, env["queue_url"]) == 0
    assert not s3.list_objects_v2(Bucket=buckets.staging, Prefix="quarantine/").get("Contents")


def test_overlapping_scheduler_runs_send_once(buckets, env, client):
    s3 = boto3.client("s3")
    stage(s3, buckets.staging, "a", docker_lines(10), segment=1)
    assert run_scheduler(client)["scheduled"] == 1
    second = run_scheduler(client)
    assert (second["scheduled"], second["in_flight"]) == (0, 1)
    assert len(drain_bodies(env["queue_url"])) == 1


def test_duplicate_and_concurrent_deliveries_make_one_version(buckets, env, client, capsys):
    s3 = boto3.client("s3")
    staged = [stage(s3, buckets.staging, "a", docker_lines(50), segment=1)]
    run_scheduler(client)
    body = drain_bodies(env["queue_url"])[0]
    capsys.readouterr()
    # the same message twice in one batch, then again in a later delivery
    event = sqs_event(client, [body, body])
    assert client.lambda_.invoke("archive_worker", event).payload == {"batchItemFailures": []}
    assert client.lambda_.invoke("archive_worker", sqs_event(client, [body])).payload == {"batchItemFailures": []}
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,))
    # the duplicates found nothing left to archive, and say so
    m = totals(capsys.readouterr().out)
    assert (m["ObjectsArchived"], m["ObjectsGone"], m["ArchiveFailures"]) == (1, 2, 0)


def test_race_between_two_workers(buckets, env, client):
    """Worker B runs the same item while worker A is about to delete: one object, one version."""
    from chalicelib import aws

    s3 = boto3.client("s3")
    staged = [stage(s3, buckets.staging, "a", docker_lines(50), segment=1)]
    run_scheduler(client)
    body = drain_bodies(env["queue_url"])[0]
    fired = []

    def second_worker(params, **_):
        if not fired:
            fired.append(1)
            assert client.lambda_.invoke("archive_worker", sqs_event(client, [body])).payload == {
                "batchItemFailures": []}

    aws.client("s3").meta.events.register("before-parameter-build.s3.DeleteObject", second_worker)
    assert client.lambda_.invoke("archive_worker", sqs_event(client, [body])).payload == {"batchItemFailures": []}
    assert fired
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,))


def test_collision_goes_to_deterministic_variant(buckets, env, client):
    """Two different segments claiming the same segment number and times."""
    s3 = boto3.client("s3")
    cid = "c" * 64
    first = stage(s3, buckets.staging, "one", docker_lines(20, seed=1), segment=3, cid=cid)
    run_scheduler(client)
    deliver(client, env["queue_url"])
    second = stage(s3, buckets.staging, "two", docker_lines(20, seed=2), segment=3, cid=cid)
    run_scheduler(client)
    deliver(client, env["queue_url"])
    got = archived(s3, buckets.archive, env["keyring"])
    assert sorted(got.values()) == sorted([first.data, second.data])
    rotations = sorted(layout.parse(k).rotation for k in got)
    assert rotations == [3, 3001]
    variant = next(k for k in got if layout.parse(k).rotation == 3001)
    assert s3.head_object(Bucket=buckets.archive, Key=variant)["Metadata"]["logarchive-collision-of"]
    assert_converged(buckets, env["keyring"], [first, second], destinations=(buckets.customer,))


def test_remaining_time_defers_rest_of_batch(buckets, env, client, monkeypatch):
    """With too little time left no record is started: all come back as batch item failures."""
    s3 = boto3.client("s3")
    stage(s3, buckets.staging, "a", docker_lines(5, seed=1), segment=1)
    stage(s3, buckets.staging, "b", docker_lines(5, seed=2), segment=2)
    run_scheduler(client)
    bodies = drain_bodies(env["queue_url"])
    assert len(bodies) == 2
    monkeypatch.setenv("LOGARCHIVE_WORKER_RESERVE_MS", "10000")  # > the 3 s chalice.test gives
    payload = client.lambda_.invoke("archive_worker", sqs_event(client, bodies)).payload
    assert payload == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    assert len(s3.list_objects_v2(Bucket=buckets.staging)["Contents"]) == 2


def test_remaining_time_stops_mid_batch(buckets, env, monkeypatch):
    """A clock that runs out after the first record: the first is archived, the rest deferred."""
    monkeypatch.setenv("LOGARCHIVE_WORKER_RESERVE_MS", "100")
    from chalice.local import LambdaContext

    from app import app

    s3 = boto3.client("s3")
    stage(s3, buckets.staging, "a", docker_lines(5, seed=1), segment=1)
    stage(s3, buckets.staging, "b", docker_lines(5, seed=2), segment=2)
    stage(s3, buckets.staging, "c", docker_lines(5, seed=3), segment=3)
    from chalicelib.archiver.messages import Job

    objs = s3.list_objects_v2(Bucket=buckets.staging)["Contents"]
    bodies = [Job(buckets.staging, o["Key"], o["ETag"], o["Size"]).to_body() for o in objs]

    class Clock:
        t = 0.0

        def time(self):
            self.t += 0.45  # every look at the clock costs 450 ms of a 1 s budget
            return self.t

    ctx = LambdaContext("archive_worker", 1769, max_runtime_ms=1000, time_source=Clock())
    from chalice.test import Client

    event = sqs_event(Client(app), bodies)
    result = app.handler_map["archive_worker"](event, ctx)
    failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
    assert failed and "m0" not in failed and failed == [f"m{i}" for i in range(3 - len(failed), 3)]
    assert len(s3.list_objects_v2(Bucket=buckets.staging, Prefix=STAGING_PREFIX)["Contents"]) == len(failed)


@pytest.mark.parametrize("case", ["bad-metadata", "zero-bytes", "sha-mismatch", "bad-gzip", "no-times",
                                  "other-stack", "other-stack-path", "other-host", "other-container",
                                  "other-segment", "not-a-staged-path", "nested-path"])
def test_bad_staged_objects_are_quarantined_not_blocking(buckets, env, client, case, caplog):
    s3 = boto3.client("s3")
    good = stage(s3, buckets.staging, "good", docker_lines(30, seed=9), segment=1)
    data = docker_lines(10, seed=5)
    if case == "bad-metadata":
        bad = stage(s3, buckets.staging, "bad", data, segment=1, **{"logarchive-segment": "x"})
    elif case == "zero-bytes":
        bad = stage(s3, buckets.staging, "bad", b"", segment=1)
    elif case == "sha-mismatch":  # the key's name agrees with the metadata, the bytes do not
        cid = hashlib.sha256(b"bad").hexdigest()
        bad = stage(s3, buckets.staging, "bad", data, segment=1, **{"logarchive-sha256": "0" * 64},
                    key=f"{STAGING_PREFIX}teststack/host-1/{cid}/00000001-{'0' * 16}.log")
    elif case == "bad-gzip":
        bad = stage(s3, buckets.staging, "bad", data, segment=1, encoding="gzip", body=gzip.compress(data)[:-30])
    elif case == "no-times":
        bad = stage(s3, buckets.staging, "bad", b"not json at all\n", segment=1,
                    **{"logarchive-first-time": "", "logarchive-last-time": ""})
    elif case == "other-stack":
        bad = stage(s3, buckets.staging, "bad", data, segment=1, **{"logarchive-stack": "otherstack"})
    else:  # issue 18 finding 4: the key's path, which IAM confines to one host, wins over metadata
        cid = hashlib.sha256(b"bad").hexdigest()
        path = {
            "other-stack-path": f"otherstack/host-1/{cid}/00000001",  # metadata says teststack
            "other-host": f"teststack/host-2/{cid}/00000001",  # metadata says host-1
            "other-container": f"teststack/host-1/{'e' * 64}/00000001",
            "other-segment": f"teststack/host-1/{cid}/00000003",  # metadata says segment 1
            "not-a-staged-path": f"teststack/host-1/{cid}-00000001",
            "nested-path": f"teststack/host-2/teststack/host-1/{cid}/00000001",
        }[case]
        sha = hashlib.sha256(data).hexdigest()
        bad = stage(s3, buckets.staging, "bad", data, segment=1, cid=cid, key=f"{STAGING_PREFIX}{path}-{sha[:16]}.log")
    run_scheduler(client)
    deliver(client, env["queue_url"])
    assert_converged(buckets, env["keyring"], [good, bad], destinations=(buckets.customer,),
                     quarantined=(bad.key,))
    head = s3.head_object(Bucket=buckets.staging, Key="quarantine/" + bad.key)
    assert head["Metadata"]["logarchive-quarantine-reason"]
    assert head["ContentLength"] == s3.head_object(Bucket=buckets.staging, Key="quarantine/" + bad.key)[
        "ContentLength"]
    tags = s3.get_object_tagging(Bucket=buckets.staging, Key="quarantine/" + bad.key)["TagSet"]
    assert tags and tags[0]["Key"] == "logarchive-quarantine"
    assert any("quarantined" in r.getMessage() and bad.key in r.getMessage() for r in caplog.records)
    reason = head["Metadata"]["logarchive-quarantine-reason"]
    expected = {
        "other-stack-path": "metadata stack 'teststack' but path stack 'otherstack'",
        "other-host": "metadata host 'host-1' but path host 'host-2'",
        "other-container": f"metadata container-id '{hashlib.sha256(b'bad').hexdigest()}' but path container",
        "other-segment": "metadata segment 1 but path segment 3",
        "not-a-staged-path": "key is not <stack>/<host>/<container>/<segment:08d>-",
        "nested-path": "key is not <stack>/<host>/<container>/<segment:08d>-",
    }.get(case)
    if expected:
        assert expected in reason, reason


def test_non_json_lines_are_archived_byte_exact(buckets, env, client):
    s3 = boto3.client("s3")
    data = docker_lines(10, seed=1) + b"garbage \xff\xfe not json\n" + docker_lines(3, seed=2) + b"no newline"
    staged = [stage(s3, buckets.staging, "mixed", data, segment=4)]
    run_scheduler(client)
    deliver(client, env["queue_url"])
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,))


def test_missing_optional_metadata_still_archives(buckets, env, client):
    """No sha256, no times, no lines in the metadata: the bytes say everything needed."""
    s3 = boto3.client("s3")
    data = docker_lines(10, seed=1)
    staged = [stage(s3, buckets.staging, "m", data, segment=2, **{
        "logarchive-sha256": "", "logarchive-first-time": "", "logarchive-last-time": "",
        "logarchive-lines": "", "logarchive-host": ""})]
    run_scheduler(client)
    deliver(client, env["queue_url"])
    assert_converged(buckets, env["keyring"], staged, destinations=(buckets.customer,))
    key = next(iter(archived(s3, buckets.archive, env["keyring"])))
    assert decrypt(s3, buckets.customer, key, env["keyring"]) == data
    # an empty host in metadata is accepted because the path names one: the path's is recorded
    assert s3.head_object(Bucket=buckets.archive, Key=key)["Metadata"]["logarchive-host"] == "host-1"


def test_staged_key_overwritten_after_listing(buckets, env, client):
    """Versioned staging: the listed version is archived by version id, the new one next run."""
    s3 = boto3.client("s3")
    # no sha256 in the metadata: the key's name is not the bytes' (a shipper never does this)
    same = f"{STAGING_PREFIX}teststack/host-1/{'d' * 64}/00000001-{'0' * 16}.log"
    nosha = {"logarchive-sha256": ""}
    old = stage(s3, buckets.staging, "same", docker_lines(10, seed=1), segment=1, cid="d" * 64, key=same, **nosha)
    run_scheduler(client)
    new = stage(s3, buckets.staging, "same", docker_lines(12, seed=2), segment=1, cid="d" * 64, key=same, **nosha)
    assert old.key == new.key
    deliver(client, env["queue_url"])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.staging, Prefix=STAGING_PREFIX)["Contents"]] == [new.key]
    run_scheduler(client)
    deliver(client, env["queue_url"])
    assert_converged(buckets, env["keyring"], [old, new], destinations=(buckets.customer,))


def test_scheduler_sweeps_abandoned_uploads(buckets, env, client):
    """moto dates every upload 2010-11-10, so any upload counts as older than a day here."""
    s3 = boto3.client("s3")
    for bucket in (buckets.archive, buckets.customer):
        s3.create_multipart_upload(Bucket=bucket, Key="teststack/shareable/v3/orphan")
    assert run_scheduler(client)["aborted_uploads"] == 2
    assert not s3.list_multipart_uploads(Bucket=buckets.archive).get("Uploads")
    assert not s3.list_multipart_uploads(Bucket=buckets.customer).get("Uploads")


def test_kms_wrapped_archives(buckets, env, client, monkeypatch):
    from chalicelib.keyring import Keyring, key_id_of_kms

    kms_key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("LOGARCHIVE_KMS_KEY_ID", kms_key)
    monkeypatch.delenv("LOGARCHIVE_KEYS")
    s3 = boto3.client("s3")
    staged = [stage(s3, buckets.staging, "k", docker_lines(25, seed=3), segment=1)]
    run_scheduler(client)
    deliver(client, env["queue_url"])
    ring = Keyring(kms_key_id=kms_key)
    assert_converged(buckets, ring, staged, destinations=(buckets.customer,))
    key = next(iter(archived(s3, buckets.archive, ring)))
    assert layout.parse(key).key_id == key_id_of_kms(kms_key)
    assert s3.head_object(Bucket=buckets.archive, Key=key)["Metadata"]["x-amz-wrap-alg"] == "kms+context"

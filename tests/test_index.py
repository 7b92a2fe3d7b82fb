"""The archive index: S3 and EventBridge events through chalice.test.Client, queries, backfill."""

from __future__ import annotations

import json

import boto3
import pytest
from chalice.test import Client
from emf import totals
from helpers_index import (
    INDEX_TABLE,
    STACK,
    docker_line,
    eventbridge_event,
    put_archive,
    s3_event,
    setup_stack,
    t,
)

from chalicelib import aws
from chalicelib.cli import main
from chalicelib.index import IndexStore, Selector, archive_id_of
from chalicelib.keyring import MasterKey
from chalicelib.sqs_pump import pump

MASTER = MasterKey(b"\x01" * 32)


@pytest.fixture
def env(monkeypatch, buckets, tmp_path):
    setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        yield client, buckets


def store() -> IndexStore:
    return IndexStore(INDEX_TABLE)


def lines(*specs: tuple[str, str, str]) -> list[bytes]:
    return [docker_line(w, s, x) for w, s, x in specs]


def app42(q0: str, q1: str, **kw) -> list:
    return store().query(Selector(STACK, "apps", "42"), t(q0), t(q1), **kw).entries


def table_items() -> int:
    return boto3.client("dynamodb").scan(TableName=INDEX_TABLE, Select="COUNT")["Count"]


def test_s3_event_indexes_from_key_and_metadata(env) -> None:
    client, b = env
    key, version = put_archive(b.archive, lines(("2022-01-01T12:00:01.5Z", "stdout", "a"),
                                                ("2022-01-01T12:03:00Z", "stderr", "b")), master=MASTER)
    out = client.lambda_.invoke("index_archive", s3_event(b.archive, key, sequencer="0055AED6DCD90281E5"))
    assert out.payload == {"outcomes": ["live"]}
    e = store().get(STACK, archive_id_of(key))
    head = boto3.client("s3").head_object(Bucket=b.archive, Key=key)
    assert (e.stack, e.kind, e.resource_id, e.service_id, e.container_id) == (STACK, "apps", "42", "7", "ab" * 32)
    assert e.first == t("2022-01-01T12:00:01.5Z") and e.last == t("2022-01-01T12:03:00Z")
    assert (e.key_id, e.key, e.bucket, e.version_id) == (MASTER.key_id, key, b.archive, version)
    assert (e.size, e.lines, e.etag) == (head["ContentLength"], 2, head["ETag"].strip('"'))
    assert e.host == "host1" and e.state == "live"
    assert [x.archive_id for x in app42("2022-01-01T12:00:00Z", "2022-01-01T12:00:02Z")] == [e.archive_id]
    # the container item answers a container-id query by its first 12 hex digits or the whole id
    for prefix in ("ab" * 6, "ab" * 32):
        found = store().query(Selector(STACK, "container", prefix), t("2022-01-01T00:00:00Z"), t("2022-01-02T00:00:00Z"))
        assert [x.key for x in found.entries] == [key]
    other = store().query(Selector(STACK, "container", "ab" * 6 + "cd"), t("2022-01-01T00:00:00Z"), t("2022-01-02T00:00:00Z"))
    assert other.entries == [] and other.items_read >= 1  # same pk, filtered by the longer prefix


def test_eventbridge_event_and_idempotent_replay(env) -> None:
    client, b = env
    key, _ = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "a")), master=MASTER,
                         kind="databases", rid="9", sid=None)
    assert client.lambda_.invoke("index_archive", eventbridge_event(b.archive, key)).payload == {"outcomes": ["live"]}
    n = table_items()
    assert n == 3  # head + database item + container item
    for _ in range(2):  # replays of the same event, in either shape
        client.lambda_.invoke("index_archive", eventbridge_event(b.archive, key))
        client.lambda_.invoke("index_archive", s3_event(b.archive, key))
    assert table_items() == n
    found = store().query(Selector(STACK, "databases", "9"), t("2022-01-01T11:00:00Z"), t("2022-01-01T13:00:00Z"))
    assert [e.key for e in found.entries] == [key]


def test_archive_spanning_days_is_found_from_any_of_them(env) -> None:
    client, b = env
    key, _ = put_archive(b.archive, lines(("2022-01-01T22:10:00Z", "stdout", "a"), ("2022-01-03T02:20:00Z", "stdout", "z")),
                         master=MASTER)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key))
    for q0, q1 in [("2022-01-01T22:00:00Z", "2022-01-01T22:15:00Z"), ("2022-01-02T12:00:00Z", "2022-01-02T12:05:00Z"),
                   ("2022-01-03T02:19:00Z", "2022-01-03T02:21:00Z"), ("2021-12-31T00:00:00Z", "2022-01-10T00:00:00Z")]:
        page = store().query(Selector(STACK, "apps", "42"), t(q0), t(q1))
        assert [e.key for e in page.entries] == [key], (q0, q1)
        assert page.items_read == 1, (q0, q1)  # found once, never read again from later hours
    for q0, q1 in [("2022-01-01T21:00:00Z", "2022-01-01T22:10:00Z"), ("2022-01-03T02:20:01Z", "2022-01-03T04:00:00Z")]:
        assert app42(q0, q1) == [], (q0, q1)


def test_queries_read_only_matching_entries(env) -> None:
    client, b = env
    keys = {}
    for h in range(10):  # app 42: one archive an hour, 12:00-12:50 style; app 43: same hours
        for rid in ("42", "43"):
            k, _ = put_archive(b.archive, lines((f"2022-01-01T{h:02d}:00:00Z", "stdout", "x"),
                                                (f"2022-01-01T{h:02d}:50:00Z", "stdout", "y")),
                               master=MASTER, rid=rid, cid=("ab" if rid == "42" else "cd") * 32)
            client.lambda_.invoke("index_archive", s3_event(b.archive, k))
            keys[(rid, h)] = k
    page = store().query(Selector(STACK, "apps", "42"), t("2022-01-01T05:10:00Z"), t("2022-01-01T05:15:00Z"))
    assert [e.key for e in page.entries] == [keys[("42", 5)]]
    assert page.items_read == 1 and page.queries == 2  # continuation and start items of one hour
    page = store().query(Selector(STACK, "apps", "42"), t("2022-01-01T03:55:00Z"), t("2022-01-01T07:10:00Z"))
    assert sorted(e.key for e in page.entries) == sorted(keys[("42", h)] for h in (4, 5, 6, 7))
    assert page.items_read == 4
    # pagination: limit 1 walks the same set, each exactly once
    seen, after = [], None
    while True:
        p = store().query(Selector(STACK, "apps", "42"), t("2022-01-01T00:00:00Z"), t("2022-01-02T00:00:00Z"),
                          limit=1, after=after)
        seen += [e.key for e in p.entries]
        if p.next is None:
            break
        after = p.next
    assert seen == [keys[("42", h)] for h in range(10)]


def test_delete_marker_and_permanent_delete_with_out_of_order_events(env) -> None:
    client, b = env
    s3 = boto3.client("s3")
    key, version = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stderr", "x")), master=MASTER)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key, sequencer="10"))
    marker = s3.delete_object(Bucket=b.archive, Key=key)
    assert marker["DeleteMarker"]
    out = client.lambda_.invoke("index_archive", s3_event(b.archive, key, "ObjectRemoved:DeleteMarkerCreated", "20"))
    assert out.payload == {"outcomes": ["deleted"]}
    e = store().get(STACK, archive_id_of(key))
    assert e.state == "deleted" and e.version_id == version  # the data version is still there
    assert app42("2022-01-01T11:00:00Z", "2022-01-01T13:00:00Z") == []
    assert [x.key for x in app42("2022-01-01T11:00:00Z", "2022-01-01T13:00:00Z", include_deleted=True)] == [key]
    # a late, replayed creation event cannot resurrect it
    out = client.lambda_.invoke("index_archive", s3_event(b.archive, key, sequencer="10"))
    assert out.payload == {"outcomes": ["stale"]}
    assert store().get(STACK, archive_id_of(key)).state == "deleted"
    # removing the delete marker restores it; deleting the data version for good removes it
    s3.delete_object(Bucket=b.archive, Key=key, VersionId=marker["VersionId"])
    client.lambda_.invoke("index_archive", s3_event(b.archive, key, "ObjectRemoved:Delete", "30"))
    assert store().get(STACK, archive_id_of(key)).state == "live"
    s3.delete_object(Bucket=b.archive, Key=key, VersionId=version)
    out = client.lambda_.invoke("index_archive", s3_event(b.archive, key, "ObjectRemoved:Delete", "40"))
    assert out.payload == {"outcomes": ["removed"]}
    assert store().get(STACK, archive_id_of(key)).expires_at > 0
    items = boto3.client("dynamodb").scan(TableName=INDEX_TABLE)["Items"]
    assert len(items) == 3 and {i["state"]["S"] for i in items} == {"removed"}
    assert all(int(i["expires_at"]["N"]) > 0 for i in items)
    # a removal of a key never indexed leaves only the head tombstone (the guard of later events)
    key2, v2 = put_archive(b.archive, lines(("2022-01-05T12:00:00Z", "stderr", "x"), ("2022-01-09T12:00:00Z", "stderr", "y")),
                           master=MASTER)
    s3.delete_object(Bucket=b.archive, Key=key2, VersionId=v2)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key2, "ObjectRemoved:Delete", "50"))
    assert table_items() == 3 + 1
    assert app42("2022-01-01T11:00:00Z", "2022-01-01T13:00:00Z", include_deleted=True) == []


def test_other_objects_and_other_buckets_are_not_indexed(env) -> None:
    client, b = env
    s3 = boto3.client("s3")
    s3.put_object(Bucket=b.archive, Key="README.txt", Body=b"x")
    assert client.lambda_.invoke("index_archive", s3_event(b.archive, "README.txt")).payload == {"outcomes": ["skipped"]}
    key, _ = put_archive(b.customer, lines(("2022-01-01T12:00:00Z", "stdout", "x")), master=MASTER)
    assert client.lambda_.invoke("index_archive", s3_event(b.customer, key)).payload == {"outcomes": ["ignored"]}
    key, _ = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "x")), master=MASTER, stack="otherstack")
    assert client.lambda_.invoke("index_archive", s3_event(b.archive, key)).payload == {"outcomes": ["ignored"]}
    assert table_items() == 0


def test_indexer_metrics_count_each_outcome(env, capsys) -> None:
    client, b = env
    s3 = boto3.client("s3")
    s3.put_object(Bucket=b.archive, Key="README.txt", Body=b"x")
    key, _ = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "x")), master=MASTER)
    other, _ = put_archive(b.customer, lines(("2022-01-01T12:00:00Z", "stdout", "x")), master=MASTER)
    capsys.readouterr()
    outcomes = [client.lambda_.invoke("index_archive", ev).payload["outcomes"] for ev in (
        s3_event(b.archive, key, sequencer="20"),
        s3_event(b.archive, key, sequencer="10"),  # older than what the index holds
        s3_event(b.archive, "README.txt"),
        s3_event(b.customer, other),
        {"source": "aws.s3", "detail": {}},  # no object in it
    )]
    assert outcomes == [["live"], ["stale"], ["skipped"], ["ignored"], []]
    m = totals(capsys.readouterr().out)
    assert m["IndexRecords"] == 4
    assert (m["IndexEntriesLive"], m["IndexRecordsStale"], m["IndexRecordsSkipped"], m["IndexRecordsIgnored"]) \
        == (1, 1, 1, 1)
    assert m["IndexEntriesDeleted"] == m["IndexEntriesRemoved"] == m["UnhandledErrors"] == 0


def test_dynamodb_failure_mid_write_is_repaired_by_the_retry(env, capsys) -> None:
    """Fault injection on the real client: the 3rd PutItem fails; Lambda's retry completes the entry."""
    client, b = env
    key, _ = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "a"), ("2022-01-01T14:30:00Z", "stdout", "b")),
                         master=MASTER)
    ddb = aws.client("dynamodb")
    calls = {"n": 0}

    def boom(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("injected: connection reset")

    ddb.meta.events.register("before-call.dynamodb.PutItem", boom)
    try:
        capsys.readouterr()
        with pytest.raises(ConnectionError):
            client.lambda_.invoke("index_archive", s3_event(b.archive, key))
        assert store().get(STACK, archive_id_of(key)) is None  # the head is written last
        failed = totals(capsys.readouterr().out)  # the failed run still publishes
        assert failed["UnhandledErrors"] == 1 and failed["IndexEntriesLive"] == 0
        client.lambda_.invoke("index_archive", s3_event(b.archive, key))
    finally:
        ddb.meta.events.unregister("before-call.dynamodb.PutItem", boom)
    assert table_items() == 1 + 2 * 3  # head + (app, container) x 3 hours
    assert [e.key for e in app42("2022-01-01T13:00:00Z", "2022-01-01T13:01:00Z")] == [key]


def test_backfill_command(env, capsys) -> None:
    _, b = env
    k1, _ = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "a")), master=MASTER)
    k2, _ = put_archive(b.archive, lines(("2022-01-02T12:00:00Z", "stdout", "b")), master=MASTER, kind="proxy",
                        rid="5", sid=None, cid="cd" * 32)
    put_archive(b.archive, lines(("2022-01-02T12:00:00Z", "stdout", "b")), master=MASTER, stack="otherstack")
    boto3.client("s3").put_object(Bucket=b.archive, Key=f"{STACK}/shareable/v3/junk", Body=b"x")
    rc = main(["index", "backfill", "--bucket", b.archive, "--table", INDEX_TABLE, "--stack", STACK])
    assert rc == 0
    assert "2 live, 1 skipped" in capsys.readouterr().out
    assert store().get(STACK, archive_id_of(k1)).state == "live"
    found = store().query(Selector(STACK, "proxy", "5"), t("2022-01-02T00:00:00Z"), t("2022-01-03T00:00:00Z"))
    assert [e.key for e in found.entries] == [k2]
    assert store().get("otherstack", archive_id_of(k1)) is None
    rc = main(["index", "query", "--table", INDEX_TABLE, "--stack", STACK, "--endpoint-id", "5",
               "--start", "2022-01-02T11:00:00Z", "--end", "2022-01-02T13:00:00Z", "--format", "json"])
    out = capsys.readouterr()
    assert rc == 0 and [json.loads(x)["s3_key"] for x in out.out.splitlines()] == [k2]
    assert "1 archives (1 index items read)" in out.err
    assert main(["index", "query", "--table", INDEX_TABLE, "--stack", STACK, "--app-id", "4 2",
                 "--start", "2022-01-02T11:00:00Z", "--end", "2022-01-02T13:00:00Z"]) == 2  # a usage error
    # running it again changes nothing
    n = table_items()
    assert main(["index", "backfill", "--bucket", b.archive, "--table", INDEX_TABLE, "--stack", STACK]) == 0
    assert table_items() == n


def test_long_ranges_page_by_hour_budget(env) -> None:
    client, b = env
    key, _ = put_archive(b.archive, lines(("2022-01-01T03:10:00Z", "stdout", "a")), master=MASTER)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key))
    sel, q0, q1 = Selector(STACK, "apps", "42"), t("2022-01-01T00:00:00Z"), t("2022-01-01T05:00:00Z")
    pages, after = [], None
    while True:
        p = store().query(sel, q0, q1, max_hours=2, after=after, parallel=1)
        pages.append([e.key for e in p.entries])
        if p.next is None:
            break
        after = p.next
    assert pages == [[], [key], []]  # hours 0-1, 2-3, 4: an empty page still carries the way on
    with pytest.raises(ValueError):
        store().query(sel, q0, q1, after=type(after)(t("2022-01-02T00:00:00Z"), "S", None))


def test_real_s3_notifications_from_the_local_s3(env) -> None:
    """The events S3 itself sends (here via an SQS queue) drive the indexer unchanged."""
    client, b = env
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    url = sqs.create_queue(QueueName="archive-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=b.archive, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})

    def deliver() -> list[str]:
        outcomes = []

        def index(records: list[dict]) -> list[str]:
            for r in records:
                event = json.loads(r["body"])
                if "Records" in event:  # skip the s3:TestEvent
                    outcomes.extend(client.lambda_.invoke("index_archive", event).payload["outcomes"])
            return []

        pump(sqs, url, index)
        return outcomes

    deliver()
    key, version = put_archive(b.archive, lines(("2022-01-01T12:00:00Z", "stdout", "a")), master=MASTER)
    assert deliver() == ["live"]
    assert [e.key for e in app42("2022-01-01T12:00:00Z", "2022-01-01T12:00:01Z")] == [key]
    # (moto 5.2 sends no event for a delete marker; those are driven by hand in the test above)
    s3.delete_object(Bucket=b.archive, Key=key, VersionId=version)
    assert deliver() == ["removed"]
    assert app42("2022-01-01T12:00:00Z", "2022-01-01T12:00:01Z", include_deleted=True) == []

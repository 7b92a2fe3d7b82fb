"""Kubernetes archives through the index, the API and retrieval jobs (issue 20, "Getting them
back"): ``namespace`` [``pod``] [``container_name``] select them in ``GET /archives``, in jobs
(which judge CRI records) and in ``logs-from-archive --api-url``; ``index backfill`` adds the
pod and container-name items to entries written before them. Against the session's moto server."""

from __future__ import annotations

import json
import urllib.parse

import boto3
import pytest
from chalice.test import Client
from helpers_index import (
    INDEX_TABLE,
    STACK,
    cri_line,
    docker_line,
    http_server,
    pump,
    put_archive,
    put_k8s_archive,
    result_lines,
    s3_event,
    setup_stack,
    t,
)
from retrieval_helpers import cli_logging, run_cli

from chalicelib.cli import main
from chalicelib.index import IndexStore, Selector, archive_id_of
from chalicelib.index.indexer import current_entry
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x0b" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
U1, U2, U3, U4 = (f"0a1b2c3d-0000-4000-8000-00000000000{i}" for i in range(1, 5))
C = cri_line
# The archives: name -> (CRI lines, put_k8s_archive options)
SEED = {
    "a1": ([C("2022-01-01T12:00:59.999999999Z", "stderr", "timeout a nanosecond early"),
            C("2022-01-01T12:01:00Z", "stderr", "upstream timeout"),  # start is inclusive
            C("2022-01-01T12:01:30Z", "stdout", "timeout on stdout"),
            C("2022-01-01T12:02:00Z", "stderr", "a partial timeout ", "P"),  # matches alone (its own record)
            C("2022-01-01T12:02:00Z", "stderr", "continued"),  # no "time.ut" in this piece
            C("2022-01-01T13:03:00+01:00", "stderr", "offset timeout"),  # 12:03Z
            C("2022-01-01T12:04:00Z", "stderr", "no match here")],
           {"pod": "web-1", "uid": U1, "container": "web", "segment": 1}),
    "a2": ([C("2022-01-01T12:05:00Z", "stderr", "next segment timeout"),
            C("2022-01-01T12:06:00Z", "stderr", "timeout at the (exclusive) end")],
           {"pod": "web-1", "uid": U1, "container": "web", "segment": 2}),
    "a3": ([C("2022-01-01T12:02:30Z", "stderr", "sidecar timeout")],
           {"pod": "web-1", "uid": U1, "container": "proxy"}),
    "a4": ([C("2022-01-01T12:02:00Z", "stderr", "replica timeout")], {"pod": "web-2", "uid": U2, "container": "web"}),
    "a5": ([C("2022-01-01T12:03:00Z", "stderr", "worker timeout")],
           {"pod": "worker-0", "uid": U3, "container": "worker"}),
    "a6": ([C("2022-01-01T12:02:00Z", "stderr", "other namespace timeout")],
           {"namespace": "other", "pod": "web-1", "uid": U4, "container": "web"}),
    "a7": ([C("2023-06-01T08:00:00Z", "stdout", "next year")],
           {"pod": "web-1", "uid": U1, "container": "web", "restart": 1}),
}
WANT_JOB = [SEED["a1"][0][i] for i in (1, 3, 5)] + [SEED["a2"][0][0], SEED["a3"][0][0]]
JOB = {"namespace": "shop", "pod": "web-1", "start": "2022-01-01T12:01:00Z", "end": "2022-01-01T12:06:00Z",
       "stream": "stderr", "grep": "time.ut"}


@pytest.fixture
def stack(monkeypatch, buckets, tmp_path):
    """Every archive stored and indexed (a Docker one beside them); yields (client, queue, keys)."""
    url = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the CLI's stdout is asserted
    import app

    keys = {name: put_k8s_archive(buckets.archive, body, master=MASTER, **opts) for name, (body, opts) in SEED.items()}
    keys["docker"], _ = put_archive(buckets.archive, [docker_line("2022-01-01T12:01:00Z", "stderr", "timeout")],
                                    master=MASTER)
    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        for key in keys.values():
            assert client.lambda_.invoke("index_archive", s3_event(buckets.archive, key)).payload["outcomes"] == [
                "live"]
        cli_logging(monkeypatch)
        yield client, url, keys, buckets


def get(client, path: str, **params) -> tuple[int, dict]:
    r = client.http.get(path + "?" + urllib.parse.urlencode(params))
    return r.status_code, json.loads(r.body)


def listed(client, keys, **params) -> list[str]:
    status, body = get(client, "/archives", start="2022-01-01T12:00:00Z", end="2022-01-01T13:00:00Z", **params)
    assert status == 200, body
    names = {v: k for k, v in keys.items()}
    return sorted(names[a["s3_key"]] for a in body["archives"])


def test_list_by_namespace_pod_and_container_name(stack) -> None:
    client, _, keys, _ = stack
    assert listed(client, keys, namespace="shop") == ["a1", "a2", "a3", "a4", "a5"]
    assert listed(client, keys, namespace="shop", pod="web-1") == ["a1", "a2", "a3"]
    assert listed(client, keys, namespace="shop", pod="web-1", container_name="web") == ["a1", "a2"]
    assert listed(client, keys, namespace="shop", container_name="web") == ["a1", "a2", "a4"]  # every replica
    assert listed(client, keys, namespace="other", pod="web-1") == ["a6"]
    assert listed(client, keys, namespace="shop", pod="nope") == []
    # the Kubernetes names in the answer, and the archive itself served by id
    _, body = get(client, "/archives", namespace="shop", pod="web-1", container_name="proxy",
                  start="2022-01-01T12:00:00Z", end="2022-01-01T13:00:00Z")
    (a3,) = body["archives"]
    assert a3["k8s"] == {"namespace": "shop", "pod_name": "web-1", "pod_uid": U1, "container_name": "proxy",
                         "restart_count": 0}
    assert a3["source_format"] == "cri" and a3["kind"] == "k8s"
    status, got = get(client, f"/archives/{a3['id']}")
    assert status == 200 and got["archive"]["k8s"]["container_name"] == "proxy" and got["download_url"]


def test_a_pod_over_years_costs_what_the_schema_promises(stack) -> None:
    """1 + pages + years requests, whatever the range (index/schema.py), for the pod selector."""
    store = IndexStore(INDEX_TABLE)
    for sel, want in ((Selector.k8s(STACK, "shop", "web-1"), 4), (Selector.k8s(STACK, "shop", "web-1", "web"), 3),
                      (Selector.k8s(STACK, "shop", None, "web"), 4)):
        for limit in (100, 1):
            after, pages, requests, found = None, 0, 0, []
            while True:
                page = store.query(sel, t("2000-01-01T00:00:00Z"), t("2030-01-01T00:00:00Z"), limit=limit, after=after)
                pages, requests, found = pages + 1, requests + page.queries, found + page.entries
                if page.next is None:
                    break
                after = page.next
            assert len(found) == want, (sel, limit)
            assert requests <= 1 + pages + 2, (sel, limit, requests, pages)  # items in 2022 and 2023 only


BAD = [  # (parameters, what the one-line 400 says)
    ({"pod": "web-1"}, "pod and container_name select within a namespace: give namespace too"),
    ({"container_name": "web"}, "give namespace too"),
    ({"namespace": "Shop"}, "namespace must be a Kubernetes namespace (a DNS label"),
    ({"namespace": "a" * 64}, "namespace must be a Kubernetes namespace"),
    ({"namespace": "shop", "pod": "a" * 254}, "pod must be a pod name (a DNS subdomain"),
    ({"namespace": "shop", "pod": "web_1"}, "pod must be a pod name"),
    ({"namespace": "shop", "container_name": "a" * 64}, "container_name must be a container name (a DNS label"),
    ({"namespace": "shop", "app_id": "42"}, "give exactly one of app_id, database_id, endpoint_id, container_id, "
                                            "namespace"),
]


def test_bad_kubernetes_selectors_are_400_with_one_line(stack) -> None:
    client, *_ = stack
    for (params, needle), route in ((case, route) for case in BAD for route in ("list", "job")):
        if route == "list":
            status, body = get(client, "/archives", start="2022-01-01T12:00:00Z", end="2022-01-01T13:00:00Z",
                               **params)
        else:
            r = client.http.post("/retrievals", headers={"Content-Type": "application/json"},
                                 body=json.dumps({**params, "start": "2022-01-01T12:00:00Z",
                                                  "end": "2022-01-01T13:00:00Z"}).encode())
            status, body = r.status_code, json.loads(r.body)
        message = body["error"]["message"]
        assert status == 400 and needle in message and "\n" not in message, (route, body)
    # the longest valid names are accepted (63 and 253)
    ok = {"namespace": "n" * 63, "pod": "p" * 253, "container_name": "c" * 63}
    assert get(client, "/archives", start="2022-01-01T12:00:00Z", end="2022-01-01T13:00:00Z", **ok)[0] == 200


def test_a_job_over_a_pod_returns_exactly_the_cri_records_byte_for_byte(stack, capsys, tmp_path) -> None:
    client, url, keys, buckets = stack
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(JOB).encode())
    assert r.status_code == 202, r.body
    job_id = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job_id}").body)
    assert body["status"] == "succeeded", body
    assert body["request"]["selector"] == {"namespace": "shop", "pod": "web-1"}
    assert body["progress"]["archives_total"] == 3  # a1, a2, a3: not the other pods, namespaces or years
    got = result_lines(body)
    assert sorted(got) == sorted(WANT_JOB) and len(got) == body["progress"]["lines_matched"]
    # the same records the CLI keeps from the bucket with the same filters (one CRI judgement)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(MASTER.to_base64() + "\n")
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.archive, "--stack", STACK, "--key-file",
                            str(key_file), "--namespace", "shop", "--pod", "web-1", "--start", JOB["start"],
                            "--end", JOB["end"], "--stream", "stderr", "--grep", "time.ut",
                            "--download-location", "-", "--decompress"], capsys)
    assert rc == 0, err
    assert sorted(out.encode().splitlines()) == sorted(WANT_JOB)
    # a container name narrows the job to it
    ask = {**JOB, "container_name": "proxy"}
    r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(ask).encode())
    job2 = json.loads(r.body)["id"]
    pump(client, url)
    body = json.loads(client.http.get(f"/retrievals/{job2}").body)
    assert body["request"]["selector"] == {"namespace": "shop", "pod": "web-1", "container_name": "proxy"}
    assert result_lines(body) == [SEED["a3"][0][0]]
    listed = json.loads(client.http.get("/retrievals").body)["retrievals"]
    assert [j["request"]["selector"] for j in listed] == [
        {"namespace": "shop", "pod": "web-1", "container_name": "proxy"}, {"namespace": "shop", "pod": "web-1"}]


def test_retrievals_cli_and_logs_from_archive_through_the_api(stack, capsys, tmp_path) -> None:
    import app

    client, url, keys, buckets = stack
    key_file = tmp_path / "keys.txt"
    key_file.write_text(MASTER.to_base64() + "\n")
    with http_server(app.app) as base:
        rc, out, err = run_cli(["retrievals", "start", "--api-url", base, "--namespace", "shop", "--container-name",
                                "web", "--start", "2022-01-01T12:00:00Z", "--end", "2022-01-01T13:00:00Z",
                                "--grep", "replica|next segment"], capsys)
        assert rc == 0, err
        job = out.strip()
        pump(client, url)
        rc, out, _ = run_cli(["retrievals", "results", "--api-url", base, job], capsys)
        assert rc == 0 and sorted(out.encode().splitlines()) == sorted([SEED["a2"][0][0], SEED["a4"][0][0]])
        rc, out, _ = run_cli(["retrievals", "results", "--api-url", base, job, "--format", "text"], capsys)
        assert sorted(out.splitlines()) == ["next segment timeout", "replica timeout"]
        rc, out, _ = run_cli(["retrievals", "list", "--api-url", base], capsys)
        assert rc == 0 and "namespace=shop container_name=web 2022-01-01T12:00:00Z..2022-01-01T13:00:00Z" in out
        rc, _, err = run_cli(["retrievals", "start", "--api-url", base, "--pod", "web-1", "--start",
                              "2022-01-01T12:00:00Z", "--end", "2022-01-01T13:00:00Z"], capsys)
        assert rc == 2 and "within a --namespace" in err
        # logs-from-archive --api-url --namespace: what the bucket path gives, through the API only
        common = ["logs-from-archive", "--stack", STACK, "--key-file", str(key_file), "--namespace", "shop",
                  "--pod", "web-1", "--start-date", "2022-01-01", "--end-date", "2022-01-01"]
        for extra in ([], ["--download-location", "-", "--decompress", "--grep", "time.ut"],
                      ["--download-location", "-", "--format", "jsonl"]):
            bucket = run_cli([*common, *extra, "--bucket", buckets.archive], capsys)
            api = run_cli([*common, *extra, "--api-url", base, "--endpoint-url", "http://127.0.0.1:9"], capsys)
            assert bucket[0] == api[0] == 0 and bucket[1] == api[1] and api[1], (extra, api[2])
        # the jsonl run joined a1's partial record with its continuation (one line, the P's time)
        logs = [json.loads(x) for x in api[1].splitlines()]
        assert [x for x in logs if "partial" in x["log"]] == [
            {"log": "a partial timeout continued\n", "stream": "stderr", "time": "2022-01-01T12:02:00Z"}]
        assert len(logs) == 1 + 6 + 2  # a3, then a1 (7 records, two joined) and a2


def test_backfill_adds_the_pod_and_container_name_items_of_older_entries(stack, capsys) -> None:
    """Entries written before selector set 2 have no pod items: a pod query misses them until
    ``index backfill`` adds them (with their years counts); a second run changes nothing."""
    _, _, keys, buckets = stack
    store = IndexStore(INDEX_TABLE)
    ddb = boto3.client("dynamodb")
    pod = Selector.k8s(STACK, "shop", "web-1")
    q = (t("2022-01-01T00:00:00Z"), t("2024-01-01T00:00:00Z"))
    # Put the index back as the previous code wrote it: selector set 1, no pod/k8s_container items.
    for item in ddb.scan(TableName=INDEX_TABLE)["Items"]:
        ddb.delete_item(TableName=INDEX_TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
    s3 = boto3.client("s3")
    for key in keys.values():
        e = current_entry(s3, buckets.archive, key, seq="0" * 32)
        e.sx = 1
        assert store.apply(e) == "live"
    for item in ddb.scan(TableName=INDEX_TABLE)["Items"]:
        assert "#pod#" not in item["pk"]["S"] and "#k8s_container#" not in item["pk"]["S"]
        assert item.get("sx", {"N": "1"})["N"] == "1"
    assert store.query(pod, *q).entries == []
    assert store.query(Selector.k8s(STACK, "shop"), *q).entries  # the namespace still answers
    rc = main(["index", "backfill", "--bucket", buckets.archive, "--table", INDEX_TABLE, "--stack", STACK])
    assert rc == 0 and "8 live" in capsys.readouterr().out
    found = store.query(pod, *q).entries
    assert sorted(e.key for e in found) == sorted(keys[k] for k in ("a1", "a2", "a3", "a7"))
    assert store.get(STACK, archive_id_of(keys["a1"])).sx == 2
    # the new selectors' years items count their archives (an upper bound the query plans with)
    assert store.years(pod) == {2022: 3, 2023: 1}
    assert store.years(Selector.k8s(STACK, "shop", None, "web")) == {2022: 3, 2023: 1}
    n = ddb.scan(TableName=INDEX_TABLE, Select="COUNT")["Count"]
    assert main(["index", "backfill", "--bucket", buckets.archive, "--table", INDEX_TABLE, "--stack", STACK]) == 0
    assert ddb.scan(TableName=INDEX_TABLE, Select="COUNT")["Count"] == n
    assert store.years(pod) == {2022: 3, 2023: 1}  # unchanged: nothing was added this time
    assert [e.key for e in store.query(pod, *q).entries] == [e.key for e in found]


def test_selector_names_round_trip() -> None:
    for args in (("shop",), ("shop", "web-1"), ("shop", "web-1", "web"), ("shop", None, "web")):
        sel = Selector.k8s(STACK, *args)
        names = sel.k8s_names
        assert names is not None
        assert Selector.k8s(STACK, names["namespace"], names.get("pod"), names.get("container_name")) == sel


def test_index_query_command_by_pod(stack, capsys) -> None:
    _, _, keys, _ = stack
    base = ["index", "query", "--table", INDEX_TABLE, "--stack", STACK, "--start", "2022-01-01T12:00:00Z",
            "--end", "2022-01-01T13:00:00Z", "--format", "json"]
    capsys.readouterr()
    assert main([*base, "--namespace", "shop", "--pod", "web-1", "--container-name", "web"]) == 0
    assert sorted(json.loads(x)["s3_key"] for x in capsys.readouterr().out.splitlines()) == sorted(
        [keys["a1"], keys["a2"]])
    assert main([*base, "--app-id", "42", "--pod", "web-1"]) == 2  # a usage error, one line
    assert "give namespace too" in capsys.readouterr().err

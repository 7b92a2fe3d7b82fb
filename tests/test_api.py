"""The retrieval API through chalice.test.Client: authorizers, routes, validation, isolation."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import boto3
import pytest
from chalice import IAMAuthorizer
from chalice.test import Client
from emf import totals
from helpers_index import STACK, docker_line, put_archive, s3_event, setup_stack
from helpers_index import create_table as setup_stack_table

from chalicelib import aws
from chalicelib.index import archive_id_of
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x02" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")


@pytest.fixture
def api(monkeypatch, buckets, tmp_path):
    setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        yield client, buckets


def index(client, bucket: str, key: str) -> None:
    assert client.lambda_.invoke("index_archive", s3_event(bucket, key)).payload["outcomes"] == ["live"]


def get(client, path: str, **params) -> tuple[int, dict]:
    url = path + ("?" + urllib.parse.urlencode(params) if params else "")
    r = client.http.get(url)
    return r.status_code, json.loads(r.body)


def post(client, path: str, body) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.http.post(path, headers={"Content-Type": "application/json"}, body=raw)
    return r.status_code, json.loads(r.body)


def test_every_route_but_health_carries_the_iam_authorizer() -> None:
    import app

    routes = [(p, m, e) for p, methods in app.app.routes.items() for m, e in methods.items()]
    assert {(p, m) for p, m, _ in routes} >= {("/archives", "GET"), ("/archives/{archive_id}", "GET"),
                                              ("/retrievals", "POST"), ("/retrievals/{job_id}", "GET"),
                                              ("/health", "GET")}
    for path, method, entry in routes:
        if path == "/health":
            assert entry.authorizer is None
        else:
            assert isinstance(entry.authorizer, IAMAuthorizer), (path, method)


def test_health(api) -> None:
    client, _ = api
    from chalicelib.api import health

    health.clear_cache()
    assert get(client, "/health") == (200, {"status": "ok"})


def test_health_answers_503_when_a_dependency_does_not_and_says_which_only_in_the_log(api, caplog) -> None:
    import dataclasses

    from chalicelib.api import health
    from chalicelib.settings import Settings

    client, _ = api
    s = Settings.from_env()
    for field in ("index_table", "retrieval_queue_url", "archive_bucket"):
        bad = dataclasses.replace(s, **{field: getattr(s, field) + "-gone"})
        health.clear_cache()
        caplog.clear()
        assert health.healthy(bad) is False
        failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("health:")]
        assert len(failed) == 1 and getattr(bad, field).rsplit("/", 1)[-1] in failed[0], failed
    # the route: the index table gone -> 503, naming nothing
    calls = []
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.GetItem", lambda **kw: calls.append(1))
    boto3.client("dynamodb").delete_table(TableName=s.index_table)
    try:
        health.clear_cache()
        caplog.clear()
        assert get(client, "/health") == (503, {"status": "unavailable"})
        assert any(s.index_table in r.getMessage() for r in caplog.records)
    finally:
        setup_stack_table(s.index_table)
    # cached a minute: the next requests ask nothing and still answer 503
    n = len(calls)
    assert [get(client, "/health")[0] for _ in range(3)] == [503] * 3 and len(calls) == n
    health.clear_cache()
    assert get(client, "/health") == (200, {"status": "ok"}) and len(calls) == n + 1
    health.clear_cache()


def test_requests_are_counted_by_route_pattern_and_status(api, capsys) -> None:
    client, _ = api
    capsys.readouterr()
    assert get(client, "/health")[0] == 200
    assert get(client, "/health")[0] == 200
    assert get(client, "/archives/" + "0" * 32)[0] == 404
    assert get(client, "/archives", stack=STACK)[0] == 400  # no selector
    out = capsys.readouterr().out
    assert totals(out, route="GET /health", status="200")["ApiRequests"] == 2
    # the route pattern, never the raw path (one metric per route, whatever the ids)
    assert totals(out, route="GET /archives/{archive_id}", status="404")["ApiRequests"] == 1
    assert totals(out, route="GET /archives", status="400")["ApiRequests"] == 1
    assert totals(out)["ApiRequests"] == 4


def test_disabled_metrics_collect_and_print_nothing(api, capsys, monkeypatch, recwarn) -> None:
    """POWERTOOLS_METRICS_DISABLED (the local demos): no EMF, no warning, nothing held back."""
    client, _ = api
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    capsys.readouterr()
    for _ in range(3):
        assert get(client, "/health")[0] == 200
    assert totals(capsys.readouterr().out) == {}
    assert not [w for w in recwarn if "metrics" in str(w.message)]
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    assert get(client, "/health")[0] == 200
    assert totals(capsys.readouterr().out)["ApiRequests"] == 1


def seed(client, b, n: int = 3) -> list[str]:
    keys = []
    for h in range(n):
        k, _ = put_archive(b.archive, [docker_line(f"2022-01-01T{10 + h:02d}:00:00Z", "stdout", "x"),
                                       docker_line(f"2022-01-01T{10 + h:02d}:30:00Z", "stdout", "y")], master=MASTER)
        index(client, b.archive, k)
        keys.append(k)
    return keys


def test_list_archives_pages_with_signed_tokens(api) -> None:
    client, b = api
    keys = seed(client, b)
    q = {"stack": STACK, "app_id": "42", "start": "2022-01-01T00:00:00Z", "end": "2022-01-02T00:00:00Z"}
    status, body = get(client, "/archives", **q)
    assert status == 200 and [a["s3_key"] for a in body["archives"]] == keys and body["next_token"] is None
    a = body["archives"][0]
    assert a["id"] == archive_id_of(keys[0]) and a["resource_id"] == "42"
    assert {"stack", "kind", "service_id", "container_id", "first", "last", "key_id", "size", "lines",
            "version_id", "etag", "state"} <= set(a)
    seen, token = [], None
    while True:
        status, body = get(client, "/archives", **q, limit="1", **({"next_token": token} if token else {}))
        assert status == 200
        seen += [x["s3_key"] for x in body["archives"]]
        token = body["next_token"]
        if not token:
            break
        last_token = token
    assert seen == keys
    # the token of one query is refused by any other query, and a tampered token by all
    other = {**q, "app_id": "43"}
    status, body = get(client, "/archives", **other, limit="1", next_token=last_token)
    assert status == 400 and "does not belong" in body["error"]["message"]
    status, body = get(client, "/archives", **q, limit="2", next_token=last_token)
    assert status == 400
    payload, mac = last_token.split(".")
    forged = json.loads(_b64d(payload))
    forged["p"]["h"] = "2022-01-01T11"
    status, body = get(client, "/archives", **q, limit="1", next_token=_b64e(json.dumps(forged).encode()) + "." + mac)
    assert status == 400 and body["error"]["code"] == "BadRequest"


def _b64d(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


GOOD = {"stack": STACK, "app_id": "42", "start": "2022-01-01T00:00:00Z", "end": "2022-01-02T00:00:00Z"}


@pytest.mark.parametrize("params, needle", [
    ({**GOOD, "bucket": "x"}, "unknown parameter"),
    ({**GOOD, "prefix": "teststack/"}, "unknown parameter"),
    ({k: v for k, v in GOOD.items() if k != "app_id"}, "exactly one of"),
    ({**GOOD, "database_id": "9"}, "exactly one of"),
    ({**GOOD, "app_id": "../../etc"}, "app_id"),
    ({**GOOD, "app_id": "4 2"}, "app_id"),
    ({**{k: v for k, v in GOOD.items() if k != "app_id"}, "container_id": "abc"}, "container_id"),
    ({**{k: v for k, v in GOOD.items() if k != "app_id"}, "container_id": "AB" * 6}, "container_id"),
    ({**GOOD, "start": "yesterday"}, "start"),
    ({**GOOD, "start": "2022-01-01T00:00:00.5Z"}, "to the second"),
    ({**GOOD, "end": "2022-13-01T00:00:00Z"}, "end"),
    ({**GOOD, "end": "9999-12-31T23:59:59Z"}, "2200"),
    ({**GOOD, "start": "0001-01-01T00:00:00+01:00"}, "start"),
    ({**GOOD, "end": "2022-01-01T00:00:00Z"}, "after start"),
    ({k: v for k, v in GOOD.items() if k != "end"}, "required"),
    ({**GOOD, "limit": "0"}, "limit"),
    ({**GOOD, "limit": "5000"}, "limit"),
    ({**GOOD, "limit": "-1"}, "limit"),
    ({**GOOD, "stack": "otherstack"}, "not served"),
    ({**GOOD, "stack": "../x"}, "stack"),
    ({**GOOD, "next_token": "garbage"}, "next_token"),
    ({**GOOD, "include_deleted": "maybe"}, "include_deleted"),
])
def test_list_archives_validation(api, params, needle) -> None:
    client, _ = api
    status, body = get(client, "/archives", **params)
    assert status == 400, body
    assert needle in body["error"]["message"] and body["error"]["code"] == "BadRequest"


def test_repeated_parameter_is_refused(api) -> None:
    client, _ = api
    r = client.http.get("/archives?" + urllib.parse.urlencode(GOOD) + "&app_id=43")
    assert r.status_code == 400 and "more than once" in json.loads(r.body)["error"]["message"]


def test_get_archive_metadata_and_presigned_url(api) -> None:
    client, b = api
    key = seed(client, b, 1)[0]
    aid = archive_id_of(key)
    status, body = get(client, f"/archives/{aid}")
    assert status == 200 and body["archive"]["s3_key"] == key and body["expires_in"] <= 900
    url = body["download_url"]
    qs = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert int(qs.get("Expires", qs.get("X-Amz-Expires", ["0"]))[0]) > 0
    assert qs["versionId"] == [body["archive"]["version_id"]]
    with urllib.request.urlopen(url, timeout=10) as resp:
        data = resp.read()
    assert data == boto3.client("s3").get_object(Bucket=b.archive, Key=key)["Body"].read()


@pytest.mark.parametrize("aid, status", [
    ("0" * 32, 404), ("A" * 32, 400), ("0" * 31, 400), ("0" * 33, 400), ("..%2F..%2Fetc", 400),
    ("teststack%2Fshareable", 400),
])
def test_get_archive_ids_are_validated(api, aid, status) -> None:
    client, _ = api
    r = client.http.get(f"/archives/{aid}")
    if "%2F" in aid:  # an encoded slash never reaches an archive: refused or no such route
        assert r.status_code in (400, 404)
    else:
        assert r.status_code == status
    if r.status_code == 400:
        assert "archive id" in json.loads(r.body)["error"]["message"]


def test_get_archive_refuses_unknown_parameters_and_deleted_archives(api) -> None:
    client, b = api
    key = seed(client, b, 1)[0]
    aid = archive_id_of(key)
    status, body = get(client, f"/archives/{aid}", bucket="other")
    assert status == 400 and "unknown parameter" in body["error"]["message"]
    boto3.client("s3").delete_object(Bucket=b.archive, Key=key)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key, "ObjectRemoved:DeleteMarkerCreated", "FF"))
    status, body = get(client, f"/archives/{aid}")
    assert status == 200 and body["archive"]["state"] == "deleted"  # data version still readable


RGOOD = {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T12:05:00Z",
         "stream": "stderr", "grep": "timeout"}


@pytest.mark.parametrize("body, needle", [
    ({**RGOOD, "bucket": "x"}, "unknown parameter"),
    ({**RGOOD, "key": "teststack/x"}, "unknown parameter"),
    ({**RGOOD, "results_prefix": "x/"}, "unknown parameter"),
    ({**RGOOD, "stream": "stdin"}, "stream"),
    ({**RGOOD, "grep": "x" * 300}, "grep"),
    ({**RGOOD, "grep": 5}, "grep"),
    ({**RGOOD, "end": "2024-01-01T00:00:00Z"}, "366 days"),
    ({k: v for k, v in RGOOD.items() if k != "start"}, "required"),
    ({**RGOOD, "app_id": "", }, "app_id"),
    ({**RGOOD, "endpoint_id": "3"}, "exactly one"),
    ([1, 2], "JSON object"),
    (b"{not json", "not JSON"),
])
def test_create_retrieval_validation(api, body, needle) -> None:
    client, _ = api
    status, resp = post(client, "/retrievals", body)
    assert status == 400, resp
    assert needle in resp["error"]["message"]


def test_retrieval_status_validation(api) -> None:
    client, _ = api
    assert get(client, "/retrievals/" + "0" * 32)[0] == 404
    status, body = get(client, "/retrievals/" + "Z" * 32)
    assert status == 400 and "retrieval id" in body["error"]["message"]
    status, body = post(client, "/retrievals", RGOOD)
    assert status == 202
    status, body = get(client, f"/retrievals/{body['id']}", bucket="x")
    assert status == 400 and "unknown parameter" in body["error"]["message"]

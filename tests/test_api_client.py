"""The SigV4 API client against the app served over real HTTP (chalice's local server)."""

from __future__ import annotations

import json

import pytest
from chalice.local import ChaliceRequestHandler
from helpers_index import docker_line, http_server, pump, put_archive, s3_event, setup_stack

from chalicelib.download.api_client import ApiClient, ApiError
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x04" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")


@pytest.fixture
def served(monkeypatch, buckets, tmp_path):
    from chalice.test import Client

    url = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    seen: list[dict] = []

    class Recording(ChaliceRequestHandler):
        def parse_request(self):  # type: ignore[override]
            ok = super().parse_request()
            seen.append(dict(self.headers.items()))
            return ok

    with http_server(app.app, Recording) as base:
        with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
            yield base, client, buckets, url, seen


def test_signed_requests_list_and_retrieve(served) -> None:
    base, client, b, queue_url, seen = served
    key, _ = put_archive(b.archive, [docker_line("2022-01-01T12:01:00Z", "stderr", "a timeout"),
                                     docker_line("2022-01-01T12:02:00Z", "stdout", "ok")], master=MASTER)
    client.lambda_.invoke("index_archive", s3_event(b.archive, key))
    api = ApiClient(base, region="eu-west-1")
    found = list(api.archives(app_id="42", start="2022-01-01T00:00:00Z", end="2022-01-02T00:00:00Z", limit=1))
    assert [a["s3_key"] for a in found] == [key]
    auth = seen[-1]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/") and "/eu-west-1/execute-api/aws4_request" in auth
    assert "SignedHeaders=" in auth and "x-amz-date" in auth and seen[-1]["X-Amz-Date"]
    assert api.archive(found[0]["id"])["archive"]["s3_key"] == key
    job = api.start_retrieval(app_id="42", start="2022-01-01T12:00:00Z", end="2022-01-01T12:05:00Z",
                              stream="stderr", grep="timeout")
    assert "Authorization" in seen[-1] and seen[-1]["Content-Type"] == "application/json"
    pump(client, queue_url)  # the worker Lambdas
    status = api.wait(job, poll=0.1, timeout=10)
    assert status["status"] == "succeeded"
    assert [json.loads(x)["log"] for x in api.result_lines(status)] == ["a timeout\n"]


def test_errors_are_one_line(served) -> None:
    base, *_ = served
    api = ApiClient(base)
    with pytest.raises(ApiError) as err:
        list(api.archives(app_id="42", start="2022-01-01T00:00:00Z", end="2021-01-01T00:00:00Z"))
    assert err.value.status == 400 and "end must be after start" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ApiError) as err:
        api.archive("0" * 32)
    assert err.value.status == 404

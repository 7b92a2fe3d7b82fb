"""One error shape, ``{"error": {"code", "message"}}``, for every status the API answers: each
example of docs/API.md sent to the API on `local up`'s server, and the stage's GatewayResponses
(API Gateway's own errors in AWS) in the packaged template."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers_index import http_server, setup_stack

from chalicelib.keyring import MasterKey

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
EXAMPLE = re.compile(r"<!-- error: (\d{3}) -->\n`(GET|PUT|POST|DELETE) ([^`]+)`(.*?)\n```json\n(.*?)\n```", re.S)


def examples() -> list[tuple[int, str, str, str, dict]]:
    found = [(int(m[1]), m[2], m[3], m[4], json.loads(m[5]))
             for m in EXAMPLE.finditer((ROOT / "docs" / "API.md").read_text())]
    assert [x[0] for x in found] == [400, 403, 404, 405, 413, 415, 500]
    return found


@pytest.fixture
def api(monkeypatch, buckets, tmp_path):
    setup_stack(monkeypatch, buckets, MasterKey(b"\x09" * 32), tmp_path)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    import app

    with http_server(app.app) as base:
        yield base


@pytest.mark.parametrize("status, method, path, prose, want", examples(), ids=lambda x: str(x)[:20])
def test_every_documented_error_is_what_the_local_api_answers(api, status, method, path, prose, want) -> None:
    base = api
    headers, data = {}, None
    if method == "POST":
        headers["Content-Type"] = "text/plain" if "text/plain" in prose else "application/json"
        size = re.search(r"a body of (\d+) bytes", prose)
        data = b"{" + b" " * (int(size[1]) - 2) + b"}" if size else b"{}"
    with pytest.MonkeyPatch.context() as m:
        if "secret\ncannot be read" in prose or "secret cannot be read" in prose:
            m.setenv("LOGARCHIVE_API_TOKEN_SECRET", "logarchive-missing")
        req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
    assert err.value.code == status
    assert err.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(err.value.read()) == want


def test_the_packaged_template_gives_api_gateway_errors_the_same_shape() -> None:
    for stage in ("dev", "prod"):
        resources = json.loads((ROOT / ".chalice" / f"merge-template-{stage}.json").read_text())["Resources"]
        gw = {r["Properties"]["ResponseType"]: r["Properties"] for r in resources.values()
              if r.get("Type") == "AWS::ApiGateway::GatewayResponse"}
        assert set(gw) == {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "UNSUPPORTED_MEDIA_TYPE"}
        for kind, props in gw.items():
            assert props["RestApiId"] == {"Ref": "RestAPI"}, kind  # the API `chalice package` makes
            template = props["ResponseTemplates"]["application/json"]
            # API Gateway substitutes $context values; with a sample message it is our JSON shape
            sample = template.replace("$context.error.messageString", '"Missing Authentication Token"')
            sample = sample.replace("$context.error.responseType", "THROTTLED")
            body = json.loads(sample)
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, kind
            assert props["ResponseParameters"] == {"gatewayresponse.header.Content-Type": "'application/json'"}
        assert gw["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "403"
        assert gw["UNSUPPORTED_MEDIA_TYPE"]["StatusCode"] == "415"

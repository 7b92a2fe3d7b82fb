"""Pagination tokens are signed with a Secrets Manager secret the stage names: forged tokens
(from public names) are refused; without the secret, every request that issues or accepts a
token answers 500 with one logged reason and the rest of the API works; rotating the secret
invalidates outstanding tokens. The deployment generates the secret and grants reading it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path

import boto3
import pytest
from chalice.test import Client
from helpers_index import STACK, TOKEN_SECRET, docker_line, put_archive, s3_event, setup_stack

from chalicelib.api import tokens
from chalicelib.devkit import local_stack
from chalicelib.keyring import MasterKey
from chalicelib.setup import deployment, iam, templates

MASTER = MasterKey(b"\x03" * 32)
ROOT = Path(__file__).resolve().parent.parent
Q = {"stack": STACK, "app_id": "42", "start": "2022-01-01T00:00:00Z", "end": "2022-01-02T00:00:00Z"}
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")


@pytest.fixture
def api(monkeypatch, buckets, tmp_path):
    setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    tokens.clear_cache()
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        for h in range(3):
            key, _ = put_archive(buckets.archive, [docker_line(f"2022-01-01T{10 + h:02d}:00:00Z", "stdout", "x")],
                                 master=MASTER)
            assert client.lambda_.invoke("index_archive", s3_event(buckets.archive, key)).payload["outcomes"] == [
                "live"]
        yield client, monkeypatch, tmp_path


def get(client, **params) -> tuple[int, dict]:
    from urllib.parse import urlencode

    r = client.http.get("/archives?" + urlencode(params))
    return r.status_code, json.loads(r.body)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(scope_params: dict, hmac_key: bytes) -> str:
    payload = json.dumps({"p": {"h": "2022-01-01T11", "s": "x"}, "x": 2**40}, separators=(",", ":"),
                         sort_keys=True).encode()
    scope = tokens.scope_of(scope_params)
    return f"{_b64(payload)}.{_b64(hmac.new(hmac_key, scope.encode() + b'|' + payload, hashlib.sha256).digest())}"


def test_tokens_signed_with_public_names_are_refused(api):
    client, _, _ = api
    status, body = get(client, **Q, limit="1")
    assert status == 200 and body["next_token"]
    scope_params = {**Q, "limit": 1}
    public = [TOKEN_SECRET.encode(), hashlib.sha256(b"logarchive-token|logarchive-index|teststack").digest()]
    for key in public:
        status, body = get(client, **Q, limit="1", next_token=forged(scope_params, key))
        assert status == 400 and "does not belong" in body["error"]["message"], body


def test_without_the_secret_token_requests_fail_and_the_rest_works(api, caplog):
    client, monkeypatch, tmp_path = api
    status, body = get(client, **Q, limit="1")
    token = body["next_token"]
    config = json.loads((tmp_path / ".chalice" / "config.json").read_text())
    env = config["stages"]["test"]["environment_variables"]
    del env["LOGARCHIVE_API_TOKEN_SECRET"]
    monkeypatch.delenv("LOGARCHIVE_API_TOKEN_SECRET")
    tokens.clear_cache()
    (tmp_path / "bare").mkdir()
    import app

    with Client(app.app, stage_name="test", project_dir=local_stack.write_stage(tmp_path / "bare", env,
                                                                                 stage="test")) as client:
        _without_the_secret(client, token, caplog)


def _without_the_secret(client, token, caplog):
    caplog.set_level(logging.ERROR)
    for params in ({**Q, "limit": "1"}, {**Q, "limit": "1", "next_token": token}):  # issues / accepts one
        caplog.clear()
        status, body = get(client, **params)
        assert status == 500 and "LOGARCHIVE_API_TOKEN_SECRET" in body["error"]["message"], body
        reasons = [r.getMessage() for r in caplog.records if "LOGARCHIVE_API_TOKEN_SECRET" in r.getMessage()]
        assert len(reasons) == 1, caplog.records
    status, body = get(client, **Q)  # one page: no token issued
    assert status == 200 and body["count"] == 3 and body["next_token"] is None
    assert client.http.get("/health").status_code == 200


def test_rotating_the_secret_invalidates_outstanding_tokens(api):
    client, _, _ = api
    status, body = get(client, **Q, limit="1")
    token = body["next_token"]
    assert get(client, **Q, limit="1", next_token=token)[0] == 200
    boto3.client("secretsmanager").put_secret_value(SecretId=TOKEN_SECRET, SecretString="rotated " * 8)
    tokens.clear_cache()  # what the cache's max age does within minutes
    status, body = get(client, **Q, limit="1", next_token=token)
    assert status == 400 and "does not belong" in body["error"]["message"]


def test_each_stage_names_a_generated_secret_the_api_alone_may_read():
    config = deployment.load_config(ROOT)
    for stage in config["stages"]:
        env = deployment.stage_env(config, stage)
        name = env.get("LOGARCHIVE_API_TOKEN_SECRET")
        assert name == f"logarchive-{stage}-api-token", stage
        res = deployment.stage_resources(config, stage)
        for template in (templates.infra_template(res), templates.merge_template(res)):
            secret = template["Resources"]["ApiTokenSecret"]
            assert secret["Type"] == "AWS::SecretsManager::Secret"
            assert secret["Properties"]["Name"] == name and "GenerateSecretString" in secret["Properties"]
        arn = res.api_token_secret_arn
        for fn in ("archive_scheduler", "archive_worker", "index_archive", "retrieval_worker", "api_handler"):
            granted = {a for st in iam.function_policy(res, fn)["Statement"] if arn in st["Resource"]
                       for a in st["Action"]}
            assert granted == ({"secretsmanager:GetSecretValue"} if fn == "api_handler" else set()), fn
    missing = {**config, "stages": {"x": {**config["stages"]["dev"], "environment_variables": {
        k: v for k, v in deployment.stage_env(config, "dev").items() if k != "LOGARCHIVE_API_TOKEN_SECRET"}}}}
    assert any("LOGARCHIVE_API_TOKEN_SECRET" in p for p in deployment.config_problems(missing, "x"))

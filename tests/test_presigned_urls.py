"""Every URL the API hands out: SigV4 on the bucket's regional endpoint, never outliving the
credentials that signed it, and the response says when it expires (issue 19)."""

from __future__ import annotations

import json
import os
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from chalice.test import Client
from helpers_index import docker_line, put_archive, s3_event, setup_stack

from chalicelib import aws, presign
from chalicelib.devkit import local_stack
from chalicelib.index import archive_id_of
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x05" * 32)
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
# Non-S3 services stay on the local AWS; S3 presigning goes to AWS's own host names (a URL is
# only signed, never fetched, in the regional checks).
LOCAL_SERVICES = ("DYNAMODB", "SQS", "SECRETS_MANAGER")


@pytest.fixture
def api(monkeypatch, buckets, tmp_path):
    queue = setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    import app

    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        key, _ = put_archive(buckets.archive, [docker_line("2022-01-01T12:01:00Z", "stderr", "timeout"),
                                               docker_line("2022-01-01T12:02:00Z", "stdout", "ok")],
                             master=MASTER)
        assert client.lambda_.invoke("index_archive", s3_event(buckets.archive, key)).payload["outcomes"] == ["live"]
        r = client.http.post("/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(
            {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T12:05:00Z",
             "grep": "timeout"}).encode())
        job = json.loads(r.body)["id"]
        local_stack.drain(client, queue)
        yield client, buckets, archive_id_of(key), job


def _on_aws_s3(monkeypatch, region: str) -> None:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    for service in LOCAL_SERVICES:
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("LOGARCHIVE_REGION", region)
    aws.reset_clients()


def _urls(client, aid: str, job: str) -> list[tuple[str, dict]]:
    """(url, what the response says of its expiry) for each route that returns one."""
    r = client.http.get(f"/archives/{aid}")
    assert r.status_code == 200, r.body
    body = json.loads(r.body)
    out = [(body["download_url"], {"expires_in": body["expires_in"], "expires_at": body["expires_at"]})]
    r = client.http.get(f"/retrievals/{job}")
    status = json.loads(r.body)
    assert status["status"] == "succeeded", status
    results = [x for x in status["results"] if "url" in x]
    assert results
    out += [(x["url"], {"expires_in": status["expires_in"], "expires_at": x["expires_at"]}) for x in results]
    return out


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(url).query).items()}


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2"])
def test_sigv4_regional_and_no_longer_than_the_credentials(api, monkeypatch, region) -> None:
    client, b, aid, job = api
    _on_aws_s3(monkeypatch, region)
    remaining = 200  # the signing credentials' life left: less than the 900 s asked for
    creds = aws.Credentials("testing", "testing", "session-token",
                            expiration=datetime.now(UTC) + timedelta(seconds=remaining))
    before = datetime.now(UTC)
    with aws.credentials(creds):
        urls = _urls(client, aid, job)
    for url, said in urls:
        parts, q = urllib.parse.urlparse(url), _query(url)
        bucket = b.archive if "/archives" in url or parts.hostname.startswith(b.archive) else b.staging
        assert parts.scheme == "https"
        assert parts.hostname in (f"{b.archive}.s3.{region}.amazonaws.com", f"{b.staging}.s3.{region}.amazonaws.com")
        assert parts.hostname == f"{bucket}.s3.{region}.amazonaws.com"
        assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert f"/{region}/s3/aws4_request" in q["X-Amz-Credential"]
        assert "Signature" not in q and "AWSAccessKeyId" not in q  # no Signature Version 2
        expires = int(q["X-Amz-Expires"])
        assert 0 < expires <= remaining - presign.SKEW_SECONDS
        # The response says when: the URL's own lifetime, as seconds and as a time.
        assert said["expires_in"] == expires
        at = datetime.strptime(said["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        signed = datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs((at - (signed + timedelta(seconds=expires))).total_seconds()) <= 1
        assert at <= before + timedelta(seconds=remaining)


def test_long_term_keys_sign_for_the_full_fifteen_minutes(api, monkeypatch) -> None:
    client, _, aid, job = api
    _on_aws_s3(monkeypatch, "eu-west-1")
    for url, said in _urls(client, aid, job):
        assert int(_query(url)["X-Amz-Expires"]) == said["expires_in"] == 900


def test_temporary_credentials_of_unknown_expiry_are_capped(api, monkeypatch) -> None:
    client, _, aid, job = api
    _on_aws_s3(monkeypatch, "eu-west-1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "lambda-style-session-token")  # no expiry given
    aws.reset_clients()
    for url, said in _urls(client, aid, job):
        assert int(_query(url)["X-Amz-Expires"]) == said["expires_in"] == presign.UNKNOWN_EXPIRY_SECONDS


def test_the_urls_work_against_the_local_aws(api) -> None:
    """The same code on the embedded AWS: the URLs download what they name."""
    import urllib.request

    client, _, aid, job = api
    for url, _ in _urls(client, aid, job):
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and resp.read()


def test_credentials_expiring_now_sign_nothing() -> None:
    now = datetime.now(UTC)
    with pytest.raises(Exception, match="expire too soon"):
        presign.lifetime(900, now + timedelta(seconds=presign.SKEW_SECONDS), True, now)

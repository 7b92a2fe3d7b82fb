"""A SigV4-signing client of the retrieval API (for ``logarchive logs-from-archive --api-url``).

Requests are signed with botocore's ``SigV4Auth`` for the ``execute-api`` service with the
caller's usual credential chain, which is what API Gateway's IAM authorizer checks. Only the
standard library sends them. Errors are one line: the HTTP status and the API's own message.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from ..errors import LogarchiveError

_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class ApiError(LogarchiveError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"API answered {status}: {message}")
        self.status = status


class ApiUnreachable(LogarchiveError):
    """No HTTP answer at all (connection refused or reset, DNS, timeout)."""


RETRY_STATUS = {429, 502, 503, 504}
ATTEMPTS = 3
BACKOFF_SECONDS = 0.25


class ApiClient:
    def __init__(self, base_url: str, *, region: str | None = None, session: Any = None,
                 timeout: float = 30.0) -> None:
        if not re.match(r"^https?://", base_url):
            raise LogarchiveError(f"--api-url {base_url!r} must start with https:// (or http:// locally)")
        self.base_url = base_url.rstrip("/")
        self.session = session or boto3.session.Session()
        host = urllib.parse.urlparse(self.base_url).hostname or ""
        m = _REGION_IN_HOST.search(host)
        self.region = region or (m.group(1) if m else None) or self.session.region_name or "us-east-1"
        self.timeout = timeout

    # -- transport ----------------------------------------------------------------
    def signed(self, method: str, path: str, params: dict[str, Any] | None = None,
               body: Any = None) -> AWSRequest:
        """The request, signed (SigV4, service ``execute-api``) with the session's credentials."""
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = AWSRequest(method=method, url=url, data=data, headers=headers)
        creds = self.session.get_credentials()
        if creds is None:
            raise LogarchiveError("no AWS credentials found to sign API requests: give --profile, or set "
                                  "AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        SigV4Auth(creds.get_frozen_credentials(), "execute-api", self.region).add_auth(req)
        return req

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One API call; a GET is retried (re-signed, with backoff) on throttling, on API
        Gateway's transient 502/503/504 and when the API cannot be reached. POST is not
        retried: it creates a job."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._send(method, path, params, body)
            except (ApiError, ApiUnreachable) as exc:
                transient = isinstance(exc, ApiUnreachable) or exc.status in RETRY_STATUS
                if not transient or method != "GET" or attempt == ATTEMPTS:
                    raise
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any) -> Any:
        req = self.signed(method, path, params, body)
        prepared = req.prepare()
        http = urllib.request.Request(prepared.url, data=prepared.body, method=method,
                                      headers=dict(prepared.headers.items()))
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)
                msg = (err.get("error") or {}).get("message") or err.get("Message") or err.get("message")
            except (ValueError, AttributeError):  # not JSON, or JSON but not an object
                msg = None
            text = raw[:200].decode("utf-8", "replace").strip()
            raise ApiError(exc.code, msg or text or exc.reason) from None
        except urllib.error.URLError as exc:
            raise ApiUnreachable(f"API at {self.base_url} unreachable: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:  # while reading the answer
            raise ApiUnreachable(f"API at {self.base_url} unreachable: {type(exc).__name__}") from None

    # -- operations ---------------------------------------------------------------
    def archives(self, *, start: str, end: str, stack: str | None = None, limit: int = 100,
                 **selector: str) -> Iterator[dict[str, Any]]:
        """Every archive of one app/database/endpoint/container in ``[start, end)``, page by page."""
        params = {"stack": stack, "start": start, "end": end, "limit": str(limit), **selector}
        while True:
            page = self.request("GET", "/archives", params)
            yield from page["archives"]
            if not page.get("next_token"):
                return
            params["next_token"] = page["next_token"]

    def archive(self, archive_id: str) -> dict[str, Any]:
        return self.request("GET", f"/archives/{urllib.parse.quote(archive_id, safe='')}")

    def start_retrieval(self, *, start: str, end: str, stream: str | None = None, grep: str | None = None,
                        stack: str | None = None, restore_tier: str | None = None, **selector: str) -> str:
        body = {"start": start, "end": end, **selector}
        for k, v in (("stream", stream), ("grep", grep), ("stack", stack), ("restore_tier", restore_tier)):
            if v is not None:
                body[k] = v
        return self.request("POST", "/retrievals", body=body)["id"]

    def retrieval(self, job_id: str) -> dict[str, Any]:
        """The job's status with every result page merged."""
        path = f"/retrievals/{urllib.parse.quote(job_id, safe='')}"
        body = self.request("GET", path, {"limit": "1000"})
        token = body.get("next_token")
        while token:
            more = self.request("GET", path, {"limit": "1000", "next_token": token})
            body["results"] += more["results"]
            token = more.get("next_token")
        return body

    def wait(self, job_id: str, *, poll: float = 2.0, timeout: float = 900.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.retrieval(job_id)
            if body["status"] in ("succeeded", "completed_with_errors"):
                return body
            if time.monotonic() > deadline:
                raise LogarchiveError(f"retrieval {job_id} still {body['status']} after {timeout:.0f}s")
            time.sleep(poll)

    def result_lines(self, status: dict[str, Any]) -> Iterator[bytes]:
        """The matched lines of a finished job (each result object downloaded and gunzipped)."""
        for r in status.get("results", []):
            if "url" in r:
                with urllib.request.urlopen(r["url"], timeout=self.timeout) as resp:
                    with gzip.GzipFile(fileobj=resp) as gz:  # streamed: results can be large
                        for line in gz:
                            yield line.rstrip(b"\n")

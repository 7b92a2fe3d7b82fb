"""The retrieval API: a Chalice blueprint, every route behind the IAM authorizer.

Callers name archives by opaque ids and resources by validated ids; buckets and object keys
come only from this stack's settings and its index, never from a request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint, IAMAuthorizer, Response

from .. import layout, presign
from ..errors import LogarchiveError
from ..index.handlers import index_store
from ..index.store import OldPosition, Position
from ..jobs.handlers import jobs as job_store
from ..jobs.request import RetrievalRequest
from ..jobs.service import Jobs
from ..jobs.table import COUNTERS
from ..settings import Settings, require
from . import errors, tokens
from . import health as api_health
from . import params as P

log = logging.getLogger(__name__)
bp = Blueprint(__name__)
iam = IAMAuthorizer()
PRESIGN_SECONDS = 900  # 15 minutes at most
LIST_PARAMS = {"stack", *P.SELECTOR_PARAMS, "start", "end", "limit", "next_token", "include_deleted"}


MAX_BODY = 16 * 1024  # bytes of a POST /retrievals body (a request is a few hundred)


def _error(status: int, code: str, message: str) -> Response:
    return Response(body=errors.body(code, message), status_code=status,
                    headers={"Content-Type": "application/json"})


@bp.middleware("http")
def _one_error_shape(event: Any, get_response: Any) -> Any:
    """Chalice's own answers (405, 415, 500) in the API's error shape (``api/errors.py``)."""
    return errors.reshape(get_response(event))


def _guard(fn: Any) -> Any:
    """Turn parameter errors into 400 and missing configuration into 500, both as JSON."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (P.ParamError, tokens.TokenError) as exc:
            return _error(400, "BadRequest", str(exc))
        except LogarchiveError as exc:
            log.error("%s", exc)
            return _error(500, "ServiceError", str(exc))

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _query() -> dict[str, Any]:
    qp = bp.current_request.query_params
    if not qp:
        return {}
    params = {}
    for k in qp:
        values = qp.getlist(k)
        if len(values) != 1:  # the same parameter twice is ambiguous: refuse it
            raise P.ParamError(f"parameter {k} given more than once")
        params[k] = values[0]
    return params


@bp.route("/health", methods=["GET"])
def health() -> Response:
    """No authorizer: 503 when the index table, the retrieval queue or the archive bucket does
    not answer (``api/health.py``: cached a minute; the log says which, the caller is not told)."""
    ok = api_health.healthy()
    return Response(body={"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503,
                    headers={"Content-Type": "application/json"})


@bp.route("/archives", methods=["GET"], authorizer=iam)
@_guard
def list_archives() -> Any:
    params = _query()
    P.reject_unknown(params, LIST_PARAMS)
    s = Settings.from_env()
    stack = P.parse_stack(params.get("stack"), s.stack)
    sel = P.parse_selector(params, stack)
    start, end = P.parse_range(params)
    limit = P.parse_limit(params.get("limit"))
    include_deleted = P.parse_bool("include_deleted", params.get("include_deleted"))
    scope = tokens.scope_of({**params, "stack": stack, "limit": limit})
    after: Position | None = None
    if params.get("next_token"):
        try:
            after = Position.from_token(tokens.verify(scope, params["next_token"]))
        except OldPosition as exc:
            raise P.ParamError(f"next_token {exc}") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise P.ParamError(f"next_token: {exc}") from None
    store = index_store(s)
    try:
        page = store.query(sel, start, end, limit=limit, after=after, include_deleted=include_deleted)
    except ValueError as exc:
        raise P.ParamError(f"next_token: {exc}") from None
    body: dict[str, Any] = {
        "archives": [e.public() for e in page.entries],
        "count": len(page.entries),
        "next_token": tokens.issue(scope, page.next.to_token()) if page.next else None,
        "items_read": page.items_read,
    }
    return body


@bp.route("/archives/{archive_id}", methods=["GET"], authorizer=iam)
@_guard
def get_archive(archive_id: str) -> Any:
    P.reject_unknown(_query(), set())
    archive_id = P.parse_archive_id(archive_id)
    s = Settings.from_env()
    entry = index_store(s).get(require(s.stack, "LOGARCHIVE_STACK"), archive_id)
    roots = (f"{s.stack}/shareable/", layout.k8s_root(s.stack))  # Docker's and Kubernetes' archives
    in_scope = entry is not None and entry.key.startswith(roots) and (
        not s.archive_bucket or entry.bucket == s.archive_bucket
    )
    if entry is None or not in_scope or entry.state == "removed":
        return _error(404, "NotFound", f"archive {archive_id} not found")
    link = presign.get_url(entry.bucket, entry.key, version_id=entry.version_id or "", region=s.region,
                           seconds=PRESIGN_SECONDS)
    return {
        "archive": entry.public(),
        "download_url": link.url,
        # No longer than the signing credentials live (presign.py): the URL's own lifetime.
        "expires_in": link.expires_in,
        "expires_at": link.expires_at_text,
        "encrypted": True,
        "note": "S3 Encryption Client v2 object: the envelope is in the response headers",
    }


@bp.route("/retrievals", methods=["POST"], authorizer=iam, content_types=["application/json"])
@_guard
def create_retrieval() -> Any:
    P.reject_unknown(_query(), set())
    raw = bp.current_request.raw_body or b""
    if len(raw) > MAX_BODY:
        return _error(413, "PayloadTooLarge", f"the request body may hold at most {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise P.ParamError("the request body is not JSON") from None
    s = Settings.from_env()
    req = P.parse_retrieval(body, s.stack)
    job_id = job_store(s).create(req, _caller())
    return Response(
        body={"id": job_id, "status": "planning"},
        status_code=202,
        headers={"Content-Type": "application/json", "Location": f"/retrievals/{job_id}"},
    )


def _caller() -> str:
    """The IAM ARN of the caller (API Gateway's ``requestContext.identity``); ``""`` without one
    (locally, with IAM off)."""
    ctx = bp.current_request.context or {}
    arn = (ctx.get("identity") or {}).get("userArn")
    return arn if isinstance(arn, str) and arn.startswith("arn:") and len(arn) <= 2048 else ""


def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
    n = {k: int(job.get(k, 0)) for k in COUNTERS}
    return {
        "id": str(job["pk"])[len("job#"):],
        "status": Jobs.status_of(job),
        "created_at": job.get("created_at"),
        "request": {k: job.get(k) for k in ("stack", "start", "end", "stream", "grep", "restore_tier")}
        | {"selector": P.selector_params(RetrievalRequest.from_attrs(job).selector)},
        "progress": {k: n[k] for k in COUNTERS},
    }


@bp.route("/retrievals", methods=["GET"], authorizer=iam)
@_guard
def list_retrievals() -> Any:
    params = _query()
    P.reject_unknown(params, {"limit", "next_token"})
    limit = P.parse_limit(params.get("limit"))
    s = Settings.from_env()
    stack, caller = require(s.stack, "LOGARCHIVE_STACK"), _caller()
    scope = tokens.scope_of({"list": stack, "caller": caller, "limit": limit})
    after = None
    if params.get("next_token"):
        after = tokens.verify(scope, params["next_token"]).get("l")
        if not isinstance(after, str) or len(after) > 100:
            raise P.ParamError("next_token is malformed")
    jobs, last = job_store(s).list(stack, caller, after=after, limit=limit)
    return {
        "retrievals": [_job_summary(j) for j in jobs],
        "count": len(jobs),
        "next_token": tokens.issue(scope, {"l": last}) if last else None,
    }


@bp.route("/retrievals/{job_id}", methods=["DELETE"], authorizer=iam)
@_guard
def cancel_retrieval(job_id: str) -> Any:
    P.reject_unknown(_query(), set())
    job_id = P.parse_job_id(job_id)
    s = Settings.from_env()
    jobs = job_store(s)
    job = jobs.get(job_id)
    if job is None or (s.stack and job.get("stack") != s.stack) or not jobs.cancel(job_id):
        return _error(404, "NotFound", f"retrieval {job_id} not found")
    return _job_summary(jobs.get(job_id) or job)


@bp.route("/retrievals/{job_id}", methods=["GET"], authorizer=iam)
@_guard
def get_retrieval(job_id: str) -> Any:
    params = _query()
    P.reject_unknown(params, {"limit", "next_token"})
    job_id = P.parse_job_id(job_id)
    limit = P.parse_limit(params.get("limit"))
    s = Settings.from_env()
    jobs = job_store(s)
    job = jobs.get(job_id)
    if job is None or (s.stack and job.get("stack") != s.stack):
        return _error(404, "NotFound", f"retrieval {job_id} not found")
    scope = tokens.scope_of({"job": job_id, "limit": limit})
    after = None
    if params.get("next_token"):
        after = tokens.verify(scope, params["next_token"]).get("a")
        if not isinstance(after, str) or len(after) > 200:  # signed: only ever a key of this job
            raise P.ParamError("next_token is malformed")
    tasks, last = jobs.tasks(job, after=after, limit=limit)
    results = []
    expires_in = PRESIGN_SECONDS
    for t in tasks:
        r = {"archive_id": t.archive_id, "status": t.status, "lines_matched": t.lines_matched}
        if (t.result_key or "").startswith(f"{s.results_prefix}{job_id}/"):
            link = jobs.presign(t.result_key, region=s.region, seconds=PRESIGN_SECONDS)
            r["url"], r["expires_at"] = link.url, link.expires_at_text
            expires_in = min(expires_in, link.expires_in)
        if t.error:
            r["error"] = t.error
        results.append(r)
    return {
        **_job_summary(job),
        "results": results,
        "expires_in": expires_in,  # the shortest lifetime of this page's URLs (each has its expires_at)
        "next_token": tokens.issue(scope, {"a": last}) if last else None,
    }

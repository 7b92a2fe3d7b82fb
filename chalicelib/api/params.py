"""Validation of API parameters: every id, time and option checked; anything unknown refused.

Errors are :class:`ParamError` with a one-line message naming the parameter; the blueprint
turns them into ``400`` with a JSON body. Nothing here ever yields a bucket or an object key.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .. import layout, times
from ..grep import GrepError, compile_grep
from ..index.store import Selector
from ..jobs.request import RetrievalRequest
from ..restores import DEFAULT_TIER, TIERS

SELECTORS = {
    "app_id": "apps",
    "database_id": "databases",
    "endpoint_id": "proxy",
    "container_id": "container",
}
# A Kubernetes selector: ``namespace``, narrowed by ``pod`` and/or ``container_name``.
K8S_PARAMS = ("namespace", "pod", "container_name")
STREAMS = ("stdout", "stderr")
MAX_LIMIT = 1000
MAX_JOB_RANGE = timedelta(days=366)
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")


class ParamError(ValueError):
    """A request parameter is missing, unknown or invalid (-> 400)."""


def reject_unknown(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def parse_instant(name: str, value: Any) -> datetime:
    """The one time syntax of the CLI and the API (``chalicelib.times``)."""
    try:
        return times.parse_time(value)
    except times.TimeSyntaxError as exc:
        raise ParamError(f"{name} {exc}") from None


def parse_stack(value: Any, served: str) -> str:
    if value is None and served:
        return served
    if not isinstance(value, str) or not layout.STACK_RE.match(value):
        raise ParamError("stack is missing or not a valid stack name")
    if served and value != served:
        raise ParamError(f"stack {value!r} is not served by this API")
    return value


def parse_k8s_selector(params: dict[str, Any], stack: str) -> Selector | None:
    """``namespace`` (a DNS label), with ``pod`` (a DNS subdomain) and ``container_name`` (a DNS
    label) narrowing it, as the CLI's ``--namespace/--pod/--container-name``; None without them."""
    if params.get("namespace") is None:
        if params.get("pod") is not None or params.get("container_name") is not None:
            raise ParamError("pod and container_name select within a namespace: give namespace too")
        return None
    label = "a DNS label: a-z, 0-9, '-', at most 63"
    subdomain = "a DNS subdomain: a-z, 0-9, '-', '.', at most 253"
    checks = (("namespace", layout.DNS_LABEL_RE, f"a Kubernetes namespace ({label})"),
              ("pod", layout.DNS_SUBDOMAIN_RE, f"a pod name ({subdomain})"),
              ("container_name", layout.DNS_LABEL_RE, f"a container name ({label})"))
    for name, pattern, what in checks:
        value = params.get(name)
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            raise ParamError(f"{name} must be {what}")
    return Selector.k8s(stack, params["namespace"], params.get("pod"), params.get("container_name"))


def parse_selector(params: dict[str, Any], stack: str) -> Selector:
    given = [k for k in SELECTORS if params.get(k) is not None]
    k8s = parse_k8s_selector(params, stack)
    if len(given) + (k8s is not None) != 1:
        raise ParamError("give exactly one of app_id, database_id, endpoint_id, container_id, namespace")
    if k8s is not None:
        return k8s
    name = given[0]
    value = params[name]
    if name != "container_id" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)  # "app_id": 42 as "42" (JSON numbers and strings alike)
    if not isinstance(value, str):
        kinds = "a string" if name == "container_id" else "a string or a whole number"
        raise ParamError(f"{name} must be {kinds}")
    if name == "container_id":
        if not layout.CONTAINER_RE.match(value):
            raise ParamError("container_id must be 12 to 64 lowercase hex digits")
    elif not layout.ID_RE.match(value):
        raise ParamError(f"{name} must be 1 to 64 letters, digits or underscores")
    return Selector(stack, SELECTORS[name], value)


def parse_range(params: dict[str, Any], *, max_range: timedelta | None = None) -> tuple[datetime, datetime]:
    if params.get("start") is None or params.get("end") is None:
        raise ParamError("start and end are required")
    start, end = parse_instant("start", params["start"]), parse_instant("end", params["end"])
    if end <= start:
        raise ParamError("end must be after start")
    if max_range is not None and end - start > max_range:
        raise ParamError(f"the time range may span at most {max_range.days} days")
    return start, end


def parse_limit(value: Any, default: int = 100) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        n = int(value)
    else:
        raise ParamError("limit must be a whole number")
    if not 1 <= n <= MAX_LIMIT:
        raise ParamError(f"limit must be between 1 and {MAX_LIMIT}")
    return n


def parse_bool(name: str, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ParamError(f"{name} must be true or false")


def parse_stream(value: Any) -> str | None:
    if value is None or value == "all":
        return None
    if value not in STREAMS:
        raise ParamError("stream must be stdout, stderr or all")
    return value


def parse_grep(value: Any) -> str | None:
    """An RE2 regular expression, as the CLI's ``--grep`` (``chalicelib.grep``)."""
    if value is None or value == "":
        return None
    try:
        compile_grep(value)
    except GrepError as exc:
        raise ParamError(str(exc)) from None
    return str(value)


def parse_archive_id(value: Any) -> str:
    from ..index.schema import ARCHIVE_ID_RE

    if not isinstance(value, str) or not ARCHIVE_ID_RE.match(value):
        raise ParamError("archive id must be 32 lowercase hex digits")
    return value


def parse_job_id(value: Any) -> str:
    if not isinstance(value, str) or not JOB_ID_RE.match(value):
        raise ParamError("retrieval id must be 32 lowercase hex digits")
    return value


def selector_params(sel: Selector) -> dict[str, str]:
    """The parameters that name ``sel`` (what ``parse_selector`` reads), as responses show it."""
    names = sel.k8s_names
    if names is not None:
        return names
    return {_OPTION_OF[sel.kind]: sel.ident}


_OPTION_OF = {v: k for k, v in SELECTORS.items()}
SELECTOR_PARAMS = {*SELECTORS, *K8S_PARAMS}
RETRIEVAL_FIELDS = {"stack", *SELECTOR_PARAMS, "start", "end", "stream", "grep", "restore_tier"}


def parse_restore_tier(value: Any) -> str:
    if value is None:
        return DEFAULT_TIER
    if value not in TIERS:
        raise ParamError(f"restore_tier must be one of {', '.join(TIERS)}")
    return str(value)


def parse_retrieval(body: Any, served_stack: str) -> RetrievalRequest:
    if not isinstance(body, dict):
        raise ParamError("the request body must be a JSON object")
    reject_unknown(body, RETRIEVAL_FIELDS)
    stack = parse_stack(body.get("stack"), served_stack)
    sel = parse_selector(body, stack)
    start, end = parse_range(body, max_range=MAX_JOB_RANGE)
    return RetrievalRequest(sel, start, end, parse_stream(body.get("stream")), parse_grep(body.get("grep")),
                            parse_restore_tier(body.get("restore_tier")))

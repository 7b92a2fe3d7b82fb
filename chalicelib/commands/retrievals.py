"""``logarchive retrievals start|status|results|list|cancel``: the retrieval API's jobs from the CLI.

Every request is SigV4-signed (``download.api_client``) with the standard credential chain
(``--profile``, ``--region``), as API Gateway's IAM authorizer wants. ``start`` takes the
selection, time and grep options of ``logs-from-archive``; with ``--wait`` it shows the
archives scanned of the total on stderr and then writes the matched lines as
``logs-from-archive --download-location - --format jsonl|text`` would, in time order (a
Kubernetes archive's matches are its CRI records as archived: ``jsonl`` writes them so, ``text``
their messages).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ..download.api_client import ApiClient
from ..download.retrieval import parse_date, parse_instant
from ..errors import LogarchiveError, UsageError
from ..grep import GrepError, compile_grep
from ..restores import DEFAULT_TIER, TIERS
from ..times import SYNTAX
from ._common import add_format_option, add_progress_option, positive_int, progress_enabled

SELECTORS = (("app_id", "--app-id"), ("database_id", "--database-id"), ("endpoint_id", "--endpoint-id"),
             ("container_id", "--container-id"))
FINISHED = ("succeeded", "completed_with_errors", "cancelled")
OUTPUT_FORMATS = ("jsonl", "text")
POLL_SECONDS = 2.0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", required=True, metavar="URL",
                   help="the retrieval API (the stage's https://…/api, or local up's http://127.0.0.1:PORT)")
    # The AWS CLI's --profile and --region sign the requests; no --endpoint-url: the API URL is
    # the only endpoint (results come through presigned URLs).
    p.add_argument("--profile", help="AWS named profile, from ~/.aws/config (default: $AWS_PROFILE, "
                   "else the credential chain's)")
    p.add_argument("--region", help="the region requests are signed for (default: the API URL's, else "
                   "$AWS_DEFAULT_REGION or the profile's)")


def _job_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="the retrieval's id (32 hex digits, as start printed it)")


def _output(p: argparse.ArgumentParser) -> None:
    add_format_option(p, OUTPUT_FORMATS, "jsonl",
                      "jsonl: the matched lines as archived; text: only their log text")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrievals", help="retrieval jobs of the API: start, status, results, list, cancel",
                       description="Retrieval jobs run in the stack (they restore cold archives on their "
                       "own); these commands drive them through the API, SigV4-signed.")
    rsub = p.add_subparsers(dest="retrievals_command", required=True, metavar="ACTION")

    s = rsub.add_parser("start", help="start a job; prints its id (--wait: waits and writes the results)")
    _common(s)
    s.add_argument("--stack", help="the stack whose logs to search (default: the one the API serves)")
    ids = s.add_argument_group("resource (exactly one)")
    for dest, opt in SELECTORS:
        ids.add_argument(opt, dest=dest, metavar="ID",
                         help=("container id or a prefix of at least 12 characters" if dest == "container_id"
                               else f"the {opt[2:-3]}'s id") + " (default: none)")
    ids.add_argument("--namespace", metavar="NS",
                     help="Kubernetes archives of this namespace (default: none)")
    k8s = s.add_argument_group("within --namespace")
    k8s.add_argument("--pod", metavar="NAME", help="only this pod's archives (default: every pod)")
    k8s.add_argument("--container-name", dest="container_name", metavar="NAME",
                     help="only this container's archives, every restart (default: every container)")
    s.add_argument("--start", help=f"from this time: {SYNTAX} (this or --start-date is required)")
    s.add_argument("--end", help="until this time, excluded, same syntax (this or --end-date is required)")
    s.add_argument("--start-date", help="YYYY-MM-DD (UTC): from the start of this day (default: --start)")
    s.add_argument("--end-date", help="YYYY-MM-DD (UTC), included whole (default: --end)")
    s.add_argument("--grep", metavar="PATTERN",
                   help="keep lines whose log text matches this RE2 regular expression (default: all lines)")
    s.add_argument("--stream", choices=("stdout", "stderr"),
                   help="keep lines of this stream only (default: both)")
    s.add_argument("--restore-tier", choices=TIERS, default=DEFAULT_TIER,
                   help=f"tier of the restores of archives in cold storage (default {DEFAULT_TIER})")
    s.add_argument("--wait", action="store_true",
                   help="wait for the job, then write its matched lines to stdout (default: print the id)")
    s.add_argument("--poll-interval", type=float, metavar="SECONDS",
                   help=f"pause between the status requests of --wait (default {POLL_SECONDS:g})")
    _output(s)
    add_progress_option(s)
    s.set_defaults(func=run_start)

    st = rsub.add_parser("status", help="one line: status and archives scanned of the total")
    _common(st)
    _job_id(st)
    add_format_option(st, ("text", "json"), "text", "json: the API's answer; text: one line")
    st.set_defaults(func=run_status)

    r = rsub.add_parser("results", help="write the matched lines found so far to stdout, in time order")
    _common(r)
    _job_id(r)
    _output(r)
    r.set_defaults(func=run_results)

    ls = rsub.add_parser("list", help="your jobs, newest first (without an IAM identity: the stack's)")
    _common(ls)
    ls.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N jobs (default 20)")
    ls.set_defaults(func=run_list)

    c = rsub.add_parser("cancel", help="cancel a job: no scan starts after this; results so far stay")
    _common(c)
    _job_id(c)
    c.set_defaults(func=run_cancel)


def _client(args: argparse.Namespace) -> ApiClient:
    import boto3

    # --profile is applied around the whole command (cli.main); the region signs the requests.
    session = boto3.session.Session(region_name=args.region) if args.region else None
    return ApiClient(args.api_url, session=session)


def _question(args: argparse.Namespace) -> dict[str, Any]:
    given = [(dest, opt) for dest, opt in (*SELECTORS, ("namespace", "--namespace"))
             if getattr(args, dest) is not None]
    if args.namespace is None and (args.pod is not None or args.container_name is not None):
        raise UsageError("--pod and --container-name select within a --namespace: give it too")
    if len(given) != 1:
        raise UsageError("give exactly one of --app-id, --database-id, --endpoint-id, --container-id, "
                         "--namespace")
    if (args.start is None) == (args.start_date is None) or (args.end is None) == (args.end_date is None):
        raise UsageError("give --start or --start-date, and --end or --end-date")
    start = parse_instant(args.start, "--start") if args.start else _day(args.start_date, "--start-date")
    end = (parse_instant(args.end, "--end") if args.end
           else _day(args.end_date, "--end-date") + timedelta(days=1))
    if end <= start:
        raise UsageError("the end must be after the start")
    if args.grep is not None:
        try:
            compile_grep(args.grep)
        except GrepError as exc:
            raise UsageError(f"--{exc}") from None
    q: dict[str, Any] = {given[0][0]: getattr(args, given[0][0]),
                         "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "restore_tier": args.restore_tier}
    for k in ("stack", "grep", "stream", "pod", "container_name"):  # the API checks the names
        if getattr(args, k) is not None:
            q[k] = getattr(args, k)
    return q


def _day(text: str, option: str) -> datetime:
    d = parse_date(text, option)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _summary(body: dict[str, Any]) -> str:
    p = body.get("progress") or {}
    line = (f"{body['id']} {body['status']}: {p.get('archives_done', 0)}/{p.get('archives_total', 0)} "
            f"archives scanned, {p.get('lines_matched', 0)} lines matched")
    extra = [f"{p[k]} {k.split('_')[1]}" for k in ("archives_failed", "archives_restoring") if p.get(k)]
    return line + (f" ({', '.join(extra)})" if extra else "")


def _write(api: ApiClient, body: dict[str, Any], fmt: str) -> int:
    """The matched lines, as ``logs-from-archive --download-location - --format fmt`` writes them."""
    from ..crilog import Record
    from ..dockerlog import LogLine

    out = sys.stdout.buffer
    n = 0
    for raw in api.result_lines(body):
        n += 1
        if fmt == "text":
            line = LogLine.parse(raw)
            if line.log is not None:
                out.write(line.log.encode("utf-8", "surrogatepass"))
                continue
            rec = Record.parse(raw)  # a Kubernetes archive's CRI record: its message
            out.write(raw + b"\n" if rec.stream is None else rec.message + (b"" if rec.partial else b"\n"))
        else:
            out.write(raw + b"\n")
    out.flush()
    return n


def _failures(body: dict[str, Any]) -> int:
    for r in body.get("results", []):
        if r.get("error"):
            print(f"logarchive: error: archive {r['archive_id']}: {r['error']}", file=sys.stderr)
    return 1 if body["status"] == "completed_with_errors" else 0


def run_start(args: argparse.Namespace) -> int:
    if args.poll_interval is not None and not args.wait:
        raise UsageError("--poll-interval needs --wait")
    if args.poll_interval is not None and args.poll_interval <= 0:
        raise UsageError("--poll-interval must be more than 0 seconds")
    question = _question(args)
    api = _client(args)
    job_id = api.start_retrieval(**question)
    if not args.wait:
        print(job_id)
        return 0
    show = progress_enabled(args)
    print(f"retrieval {job_id} started", file=sys.stderr, flush=True)
    shown = None
    while True:
        body = api.status(job_id)
        if show:
            line = _summary(body)
            if line != shown:
                print(line, file=sys.stderr, flush=True)
                shown = line
        if body["status"] in FINISHED:
            break
        time.sleep(args.poll_interval or POLL_SECONDS)
    body = api.retrieval(job_id)
    _write(api, body, args.fmt)
    return _failures(body)


def run_status(args: argparse.Namespace) -> int:
    body = _client(args).status(args.id)
    print(json.dumps(body, sort_keys=True) if args.fmt == "json" else _summary(body))
    return 0


def run_results(args: argparse.Namespace) -> int:
    api = _client(args)
    body = api.retrieval(args.id)
    if body["status"] not in FINISHED:
        print(f"logarchive: {_summary(body)}: these are the results so far", file=sys.stderr)
    _write(api, body, args.fmt)
    return _failures(body)


def run_list(args: argparse.Namespace) -> int:
    n = 0
    for job in _client(args).retrievals(limit=args.limit):
        req = job["request"]
        selector = " ".join(f"{k}={v}" for k, v in req["selector"].items())
        grep = f" grep {req['grep']!r}" if req.get("grep") else ""
        print(f"{job['id']} {job['created_at']} {job['status']:<21} {selector} "
              f"{req['start']}..{req['end']}{grep}")
        n += 1
        if n >= args.limit:
            break
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    body = _client(args).cancel(args.id)
    if body.get("status") != "cancelled":
        raise LogarchiveError(f"retrieval {args.id}: still {body.get('status')} after the cancel")
    print(_summary(body))
    return 0

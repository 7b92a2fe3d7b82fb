"""``logarchive index backfill``: index every archive already in a bucket."""

from __future__ import annotations

import argparse
import sys

from .. import aws, layout
from ..awserrors import error_code
from ..download.selection import parse_instant
from ..errors import LogarchiveError, UsageError, describe
from ..index import Indexer, IndexStore
from ..times import SYNTAX
from ._common import (
    add_deprecated,
    add_endpoint_options,
    add_format_option,
    add_progress_option,
    progress_enabled,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="the DynamoDB archive index")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser(
        "backfill",
        help="index every archive object already in a bucket (HEAD only), in the current index schema; "
        "a run that stopped goes on where it stopped",
    )
    b.add_argument("--bucket", required=True, help="the archive bucket")
    b.add_argument("--table", required=True, help="the index table")
    b.add_argument("--stack", help="only this stack's archives (<stack>/shareable/...; default: all)")
    b.add_argument("--restart", action="store_true",
                   help="start from the first object, not where a previous run stopped (default: resume)")
    add_progress_option(b)
    add_endpoint_options(b)
    b.set_defaults(func=run_backfill)
    q = isub.add_parser("query", help="archives of a resource or container in a time range (index only)")
    q.add_argument("--table", required=True, help="the index table")
    q.add_argument("--stack", required=True, help="the stack whose archives to list")
    sel = q.add_mutually_exclusive_group(required=True)
    for opt in ("app-id", "database-id", "endpoint-id", "container-id"):
        sel.add_argument(f"--{opt}", help=f"the {opt[:-3]}'s id (one of these five is required)")
    sel.add_argument("--namespace", metavar="NS",
                     help="Kubernetes archives of this namespace (one of these five is required)")
    q.add_argument("--pod", metavar="NAME", help="within --namespace: this pod only (default: every pod)")
    q.add_argument("--container-name", dest="container_name", metavar="NAME",
                   help="within --namespace: this container only (default: every container)")
    q.add_argument("--start", required=True, help=f"from this time: {SYNTAX}")
    q.add_argument("--end", required=True, help="until this time, excluded (same syntax)")
    q.add_argument("--include-deleted", action="store_true", help="also list deleted archives")
    add_format_option(q, ("text", "json"), "text", "json: one JSON entry a line")
    add_deprecated(q, "--json", new="--format json", dest="fmt", nargs=0, const="json")
    add_endpoint_options(q)
    q.set_defaults(func=run_query)


PROGRESS_EVERY = 100


def run_backfill(args: argparse.Namespace) -> int:
    if args.stack and not layout.STACK_RE.match(args.stack):
        raise LogarchiveError(f"--stack {args.stack!r} is not a valid stack name")
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    ddb = aws.client("dynamodb", endpoint_url=args.endpoint_url, region=args.region)
    try:  # one line before any work, rather than one per archive
        ddb.describe_table(TableName=args.table)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise LogarchiveError(f"table {args.table}: does not exist") from None
        if error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
            raise LogarchiveError(f"table {args.table}: {describe(exc)}") from None
    indexer = Indexer(IndexStore(args.table, client=ddb), bucket=args.bucket, stack=args.stack, s3=s3)
    counts: dict[str, int] = {}
    failed = done = 0
    show = progress_enabled(args)
    # Each prefix resumes on its own (its position is saved under bucket/prefix).
    prefixes = (f"{args.stack}/shareable/", layout.k8s_root(args.stack)) if args.stack else ("",)
    for key, outcome in (item for prefix in prefixes
                         for item in indexer.backfill(prefix=prefix, restart=args.restart)):
        if outcome.startswith("error"):
            failed += 1
            print(f"logarchive: {key}: {outcome}", file=sys.stderr)
        label = "error" if outcome.startswith("error") else outcome
        counts[label] = counts.get(label, 0) + 1
        done += 1
        if show and done % PROGRESS_EVERY == 0:
            print(f"backfill: {done} objects indexed, at {key}", file=sys.stderr, flush=True)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to index"
    print(f"backfill of s3://{args.bucket} into {args.table}: {summary}")
    return 1 if failed else 0


def run_query(args: argparse.Namespace) -> int:
    import json

    from ..api import params as P

    params = {k: getattr(args, k) for k in P.SELECTOR_PARAMS}
    try:
        stack = P.parse_stack(args.stack, "")
        sel = P.parse_selector(params, stack)
    except P.ParamError as exc:
        raise UsageError(str(exc)) from None
    start, end = parse_instant(args.start, "--start"), parse_instant(args.end, "--end")
    if end <= start:
        raise UsageError("--end must be after --start")
    ddb = aws.client("dynamodb", endpoint_url=args.endpoint_url, region=args.region)
    store = IndexStore(args.table, client=ddb)
    after, n, read = None, 0, 0
    while True:
        page = store.query(sel, start, end, limit=1000, after=after, include_deleted=args.include_deleted)
        read += page.items_read
        for e in page.entries:
            n += 1
            if args.fmt == "json":
                print(json.dumps(e.public(), sort_keys=True))
            else:
                print(f"{e.first:%Y-%m-%dT%H:%M:%S} {e.last:%Y-%m-%dT%H:%M:%S} {e.state:7} {e.key}")
        if page.next is None:
            break
        after = page.next
    print(f"{n} archives ({read} index items read)", file=sys.stderr)
    return 0

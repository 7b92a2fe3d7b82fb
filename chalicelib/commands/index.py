"""``logarchive index backfill``: index every archive already in a bucket."""

from __future__ import annotations

import argparse
import sys

from .. import aws, layout
from ..errors import LogarchiveError
from ..index import Indexer, IndexStore
from ._common import add_endpoint_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="the DynamoDB archive index")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser("backfill", help="index every archive object already in a bucket (HEAD only)")
    b.add_argument("--bucket", required=True, help="the archive bucket")
    b.add_argument("--table", required=True, help="the index table")
    b.add_argument("--stack", help="only this stack's archives (<stack>/shareable/...)")
    add_endpoint_options(b)
    b.set_defaults(func=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    if args.stack and not layout.STACK_RE.match(args.stack):
        raise LogarchiveError(f"--stack {args.stack!r} is not a valid stack name")
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    ddb = aws.client("dynamodb", endpoint_url=args.endpoint_url, region=args.region)
    indexer = Indexer(IndexStore(args.table, client=ddb), bucket=args.bucket, stack=args.stack, s3=s3)
    counts: dict[str, int] = {}
    failed = 0
    for key, outcome in indexer.backfill(prefix=f"{args.stack}/shareable/" if args.stack else ""):
        if outcome.startswith("error"):
            failed += 1
            print(f"logarchive: {key}: {outcome}", file=sys.stderr)
        label = "error" if outcome.startswith("error") else outcome
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to index"
    print(f"backfill of s3://{args.bucket} into {args.table}: {summary}")
    return 1 if failed else 0

"""``logarchive status``: is the archive healthy? One screen from the buckets (docs/OPERATIONS.md)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from .. import aws
from ..errors import UsageError
from ._common import (
    add_endpoint_options,
    add_expected_owner_option,
    add_format_option,
    confirm_owner,
    pins_owner,
)
from .audit import _public_keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="is the archive healthy? hosts, the last archive run, quarantines, a verdict",
        description="Reads the stack's signed digests (and with --staging the staging bucket) and says "
        "healthy (exit 0), degraded (exit 3) or failing (exit 1), with every reason. Failing: no "
        "archive run for 2 h, a digest that does not verify, a host silent past --silent-after. "
        "Degraded: a host reporting an error or a line waiting over 2 h, quarantines, staged objects "
        "waiting over 2 h. Needs no master key.")
    p.add_argument("--bucket", required=True, help="the archive bucket or the customer's copy")
    p.add_argument("--stack", required=True, help="the stack to report on")
    p.add_argument("--public-key-file", nargs="+", required=True, metavar="FILE",
                   help="public signing key(s), PEM: only digests that verify are believed")
    p.add_argument("--staging", metavar="s3://BUCKET[/PREFIX]",
                   help="also the staging bucket: current heartbeats, pending and quarantined staged "
                   "objects (default: the archive side only)")
    p.add_argument("--silent-after", default="6h",
                   help="a host with no heartbeat for this long, not retired, is silent (default 6h)")
    p.add_argument("--days", type=int, default=7,
                   help="read the digests of this many days back for hosts and quarantines (default 7)")
    add_format_option(p, ("text", "json"), "text", "text for people, json for scripts")
    add_endpoint_options(p)
    add_expected_owner_option(p)
    p.set_defaults(func=pins_owner(run))


def run(args: argparse.Namespace) -> int:
    from ..audit.checks import parse_grace
    from ..status import overview

    try:
        silent_after = parse_grace(args.silent_after)
    except ValueError as exc:
        raise UsageError(str(exc).replace("--grace", "--silent-after")) from None
    if args.days < 1:
        raise UsageError(f"--days {args.days}: at least 1")
    if args.staging and (not args.staging.startswith("s3://") or not args.staging[5:].split("/", 1)[0]):
        raise UsageError(f"--staging {args.staging!r}: not an s3://BUCKET[/PREFIX] URL")
    keys = _public_keys(args.public_key_file)
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    confirm_owner(s3, args.bucket, args.expected_owner)
    now = datetime.now(UTC)
    st = overview.gather(s3, bucket=args.bucket, stack=args.stack, public_keys=keys, days=args.days,
                         silent_after=silent_after, staging=args.staging or "", now=now)
    if args.fmt == "json":
        print(json.dumps(overview.to_dict(st), sort_keys=True))
    else:
        print(overview.render(st, now))
    return overview.EXIT[st.verdict]

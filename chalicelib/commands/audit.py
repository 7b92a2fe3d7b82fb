"""``logarchive audit``: prove a stack's archive whole and unchanged from the bucket and the
public signing keys alone (docs/AUDIT.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import aws
from ..errors import LogarchiveError, UsageError
from ..layout import STACK_RE
from ._common import (
    add_endpoint_options,
    add_expected_owner_option,
    add_jobs_option,
    add_progress_option,
    confirm_owner,
    pins_owner,
    progress_enabled,
)


def check_stack(stack: str) -> str:
    """``--stack`` must be a stack name (``layout.STACK_RE``): a typo must not audit nothing."""
    if not STACK_RE.match(stack):
        raise UsageError(f"--stack {stack[:70]!r}: not a stack name ({STACK_RE.pattern})")
    return stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="prove a stack's archive whole and unchanged (signed digests, S3 checksums, segments)",
        description="Exit 0 with one summary line when everything holds; otherwise exit 1 and one "
        "line per finding naming the object. Reads the digests, one listing and one HEAD per "
        "archive; never archive bodies unless --deep. Needs no service and no master key.",
    )
    p.add_argument("--bucket", required=True, help="the archive bucket or the customer's copy")
    p.add_argument("--stack", required=True, help="the stack whose archives and digests are audited")
    p.add_argument("--public-key-file", nargs="+", required=True, metavar="FILE",
                   help="public signing key(s), PEM (several: keys rotated over the audited time)")
    p.add_argument("--start-date", help="YYYY-MM-DD (UTC), with --end-date: archives whose lines overlap "
                   "these days (default: every archive of the stack)")
    p.add_argument("--end-date",
                   help="YYYY-MM-DD (UTC), included whole (default: none, with no --start-date)")
    p.add_argument("--ship-state", action="append", default=[], metavar="FILE",
                   help="a host shipper's state (its --state file; repeatable, one a host): every "
                   "segment it staged must be archived once --grace has passed (default: none)")
    p.add_argument("--grace", default="2h", help="how long a staged segment may wait for archiving "
                   "(default 2h; archiving runs hourly)")
    p.add_argument("--max-digest-age", default="2h", metavar="AGE",
                   help="fail when the newest digest ends longer than this before now (or before the end "
                   "of a past --end-date): newer digests deleted, or sealing stopped (default 2h: an "
                   "hourly seal plus slack)")
    p.add_argument("--silent-after", default="6h", help="a host whose last signed heartbeat is older "
                   "than this, and that no signed retirement retired, is a finding (default 6h)")
    p.add_argument("--deep", action="store_true",
                   help="also read every archive's body and check its SHA-256 against the digest")
    p.add_argument("--format", dest="fmt", choices=("text", "jsonl"), default="text",
                   help="findings as text lines or JSON lines (default text)")
    p.add_argument("--report", metavar="FILE.html",
                   help="also write the auditor's report here (default: none)")
    add_jobs_option(p, 16, "parallel S3 requests, at most 32: the client's connection pool")
    add_progress_option(p)
    add_endpoint_options(p)
    add_expected_owner_option(p)
    p.set_defaults(func=pins_owner(run))


def _public_keys(paths: list[str]) -> list[Any]:
    from .. import digest

    keys = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise LogarchiveError(f"public key file {path}: {exc.strerror or exc}") from None
        keys.append(digest.load_public_key(data, name=f"public key file {path}"))
    return keys


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda total, what: tqdm(total=total, unit="obj", desc=what, file=sys.stderr,
                                    dynamic_ncols=True, leave=False)


def run(args: argparse.Namespace) -> int:
    from ..audit import checks, report
    from ..download.selection import SelectionError, parse_date

    check_stack(args.stack)
    try:
        grace = checks.parse_grace(args.grace)
        max_age = checks.parse_grace(args.max_digest_age, "--max-digest-age")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        silent_after = checks.parse_grace(args.silent_after, "--silent-after")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    start = parse_date(args.start_date, "--start-date") if args.start_date else None
    end = parse_date(args.end_date, "--end-date") if args.end_date else None
    if (start is None) != (end is None):
        raise SelectionError("You must pass both --start-date and --end-date")
    if start and end and end < start:
        raise SelectionError("End date must be after start date.")
    opts = checks.Options(
        bucket=args.bucket, stack=args.stack, public_keys=_public_keys(args.public_key_file),
        start_date=start, end_date=end, ship_states=args.ship_state, grace=grace, max_digest_age=max_age,
        deep=args.deep, workers=min(32, max(1, args.jobs)), silent_after=silent_after,
    )
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    confirm_owner(s3, args.bucket, args.expected_owner)
    result = checks.run(opts, s3, progress=_progress(progress_enabled(args)))
    if args.fmt == "jsonl":
        for f in result.findings:
            print(json.dumps(f.to_dict()))
        for key in result.pending:
            print(json.dumps({"pending": f"s3://{args.bucket}/{key}"}))
        print(json.dumps({"summary": result.summary(), "ok": result.ok}))
    else:
        for f in result.findings:
            print(f.line())
        print(result.summary())
    if args.report:
        report.write(args.report, result, opts)
    return 0 if result.ok else 1

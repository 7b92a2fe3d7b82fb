"""``logarchive hosts retire``: take a shipper host out of the watch on purpose (docs/SHIPPER.md).

The request is an object ``retire/<stack>/<host>.json`` in the staging bucket (a prefix hosts
cannot write). The next archive run seals it into the signed digest's ``retired_hosts`` and deletes
it; until then it is only a request, and the audit and ``logarchive status`` ignore it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from .. import aws
from ..awserrors import error_label
from ..errors import LogarchiveError, UsageError
from ..layout import STACK_RE
from ._common import add_endpoint_options

MAX_REASON = 500


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hosts", help="shipper hosts: retire one on purpose (docs/SHIPPER.md)")
    hsub = p.add_subparsers(dest="hosts_command", required=True)
    rp = hsub.add_parser(
        "retire", help="record that HOST stopped shipping on purpose (sealed into the next digest)",
        description="Writes a retirement request to the staging bucket. The next archive run (hourly "
        "at :30) records it in the signed digest's retired_hosts and deletes the request and the "
        "host's heartbeat; from then on neither the audit nor `logarchive status` calls the host "
        "silent. A host that reports again after its retirement is watched again.")
    rp.add_argument("host", metavar="HOST", help="the host name its shipper stages under (its --host)")
    rp.add_argument("--stack", required=True, help="the stack the host ships to")
    rp.add_argument("--staging", metavar="s3://BUCKET[/PREFIX]",
                    help="the stage's staging bucket; the request goes to its retire/ prefix "
                    "(default: $LOGARCHIVE_STAGING_BUCKET)")
    rp.add_argument("--reason", default="retired by an operator",
                    help=f"why, at most {MAX_REASON} characters, sealed with the retirement "
                    "(default: 'retired by an operator')")
    add_endpoint_options(rp)
    rp.set_defaults(func=run_retire)


def run_retire(args: argparse.Namespace) -> int:
    from ..staged import retirement_key, retirement_request

    if not STACK_RE.match(args.stack):
        raise UsageError(f"--stack {args.stack[:70]!r}: not a stack name ({STACK_RE.pattern})")
    host = args.host
    if not host or "/" in host or host.startswith((".", "_")) or len(host) > 255 or not host.isprintable():
        raise UsageError(f"HOST {host[:70]!r}: not a host name a shipper stages under")
    if len(args.reason) > MAX_REASON:
        raise UsageError(f"--reason: at most {MAX_REASON} characters")
    if args.staging is None:
        from ..settings import Settings

        bucket = Settings.from_env().staging_bucket
        if not bucket:
            raise UsageError("--staging (or $LOGARCHIVE_STAGING_BUCKET) is required: the stage's "
                             "staging bucket")
    elif not args.staging.startswith("s3://") or not args.staging[5:].split("/", 1)[0]:
        raise UsageError(f"--staging {args.staging!r}: not an s3://BUCKET[/PREFIX] URL")
    else:
        bucket = args.staging[5:].split("/", 1)[0]
    key = retirement_key(args.stack, host)
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    try:
        s3.put_object(Bucket=bucket, Key=key, ContentType="application/json",
                      Body=retirement_request(host, datetime.now(UTC), args.reason))
    except Exception as exc:
        raise LogarchiveError(f"s3://{bucket}/{key}: retirement request not written "
                              f"({error_label(exc)})") from None
    print(f"retirement of host {host} requested: s3://{bucket}/{key}\n"
          "the next archive run seals it into the signed digest (until then the host still counts)")
    return 0

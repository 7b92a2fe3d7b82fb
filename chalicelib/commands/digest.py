"""``logarchive digest backfill``: seal archives older than the first digest (docs/AUDIT.md)."""

from __future__ import annotations

import argparse
import sys

from .. import aws
from ..errors import UsageError
from ._common import add_deprecated, add_endpoint_options, add_progress_option, progress_enabled, size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digest", help="digests of the archive (docs/AUDIT.md)")
    dsub = p.add_subparsers(dest="digest_command", required=True)
    bp = dsub.add_parser(
        "backfill", help="seal the archives that predate the first digest into the next digest",
        description="Reads each archive older than the first digest whole (its SHA-256 is what is "
        "sealed), records it, and seals the next digest of the chain. Proves those archives "
        "unchanged from now on, not since they were archived.")
    bp.add_argument("--bucket", required=True, help="the archive bucket (where the chain head is)")
    bp.add_argument("--stack", required=True, help="the stack whose older archives are sealed")
    bp.add_argument("--signing-key-file", required=True, metavar="P",
                    help="the Ed25519 private key the archiver signs with (PEM)")
    bp.add_argument("--replicate-to", nargs="+", default=[], metavar="BUCKET",
                    help="direct-mode customer bucket(s): the digest is copied there as archives are "
                    "(default: none)")
    bp.add_argument("--part-size", type=size, default=16 << 20, metavar="SIZE",
                    help="the archiver's part size (LOGARCHIVE_PART_SIZE_MB), to record a multipart "
                    "checksum (default: 16MiB)")
    add_deprecated(bp, "--part-size-mb", new="--part-size 16MiB", dest="part_size", type=int,
                   convert=lambda mb: mb << 20, metavar="MB")
    add_progress_option(bp)
    bp.add_argument("--dry-run", action="store_true", help="list what would be sealed, change nothing")
    add_endpoint_options(bp)
    bp.set_defaults(func=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    from ..audit.backfill import backfill
    from ..digest import Ed25519Signer
    from .audit import _progress

    signer = Ed25519Signer.from_file(args.signing_key_file)
    if args.part_size < 5 << 20:
        raise UsageError(f"--part-size {args.part_size}: S3's minimum part is 5MiB")
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    res = backfill(s3, bucket=args.bucket, stack=args.stack, signer=signer, copies=tuple(args.replicate_to),
                   part_size=args.part_size, dry_run=args.dry_run,
                   progress=_progress(progress_enabled(args)))
    if args.dry_run:
        for key in res.candidates:
            print(f"would seal s3://{args.bucket}/{key}")
        print(f"{len(res.candidates)} archives before digests began")
        return 0
    for line in res.failed:
        print(f"logarchive: error: {line}", file=sys.stderr)
    if res.sealed is not None and res.sealed.key:
        print(f"sealed digest s3://{args.bucket}/{res.sealed.key} ({res.sealed.archives} archives)")
    elif res.recorded:
        print("logarchive: error: recorded, but not sealed: another sealer extended the chain first; "
              "its next seal takes them", file=sys.stderr)
        return 1
    print(f"{len(res.recorded)} of {len(res.candidates)} archives before digests began backfilled")
    return 1 if res.failed else 0

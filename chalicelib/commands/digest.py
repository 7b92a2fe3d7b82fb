"""``logarchive digest backfill`` and ``digest adopt``: older archives, and the chain's state (AUDIT.md)."""

from __future__ import annotations

import argparse
import sys

from .. import aws
from ..errors import UsageError
from ._common import add_deprecated, add_endpoint_options, add_progress_option, progress_enabled, size

TABLE_HELP = "the stage's idempotency table (LOGARCHIVE_IDEMPOTENCY_TABLE): the chain's state and the records"


def _chain_command(dsub: argparse._SubParsersAction, name: str, *, what: str, description: str,
                   stack_help: str) -> argparse.ArgumentParser:
    """A ``digest`` subcommand on one stack's chain: ``--bucket``, ``--stack``, ``--table``."""
    p = dsub.add_parser(name, help=what, description=description)
    p.add_argument("--bucket", required=True, help="the archive bucket")
    p.add_argument("--stack", required=True, help=stack_help)
    p.add_argument("--table", required=True, help=TABLE_HELP)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digest", help="digests of the archive (docs/AUDIT.md)")
    dsub = p.add_subparsers(dest="digest_command", required=True)
    bp = _chain_command(
        dsub, "backfill", what="seal the archives that predate the first digest into the next digest",
        description="Verifies every digest of the stack (stops at the first that fails), reads each "
        "archive older than the first digest whole (its SHA-256 is what is sealed), records it in "
        "the idempotency table, and seals the next digest of the chain. Proves those archives "
        "unchanged from now on, not since they were archived.",
        stack_help="the stack whose older archives are sealed")
    bp.add_argument("--signing-key-file", required=True, metavar="P",
                    help="the Ed25519 private key the archiver signs with (PEM); its public key verifies "
                    "the digests read")
    bp.add_argument("--public-key-file", nargs="+", default=[], metavar="FILE",
                    help="older public signing keys (PEM) the chain's digests may be signed with "
                    "(default: none, only the signing key's)")
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
    ap = _chain_command(
        dsub, "adopt", what="give a chain already in the bucket its state in the idempotency table",
        description="For a stage upgraded from a release that kept the chain head in the bucket, or "
        "whose table was re-created: verifies the stack's whole chain (signatures, sequence 1 to N, "
        "links) and only then records its newest digest as the chain's state, never over an existing "
        "state. The sealer refuses to seal until this is done (docs/OPERATIONS.md, \"A refused seal\").",
        stack_help="the stack whose chain is adopted")
    ap.add_argument("--public-key-file", nargs="+", required=True, metavar="FILE",
                    help="public signing key(s), PEM (several: keys rotated over the chain)")
    add_endpoint_options(ap)
    ap.set_defaults(func=run_adopt)


def run_backfill(args: argparse.Namespace) -> int:
    from ..archiver.digest_table import DigestTable
    from ..audit.backfill import backfill
    from ..digest import Ed25519Signer
    from .audit import _progress, _public_keys, check_stack

    check_stack(args.stack)
    signer = Ed25519Signer.from_file(args.signing_key_file)
    public_keys = tuple(_public_keys(args.public_key_file))
    if args.part_size < 5 << 20:
        raise UsageError(f"--part-size {args.part_size}: S3's minimum part is 5MiB")
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    ddb = aws.client("dynamodb", endpoint_url=args.endpoint_url, region=args.region)
    table = DigestTable(ddb, args.table, args.stack)
    res = backfill(s3, bucket=args.bucket, stack=args.stack, signer=signer, table=table,
                   public_keys=public_keys, copies=tuple(args.replicate_to),
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


def run_adopt(args: argparse.Namespace) -> int:
    from ..archiver.digest_table import DigestTable
    from ..audit.adopt import adopt
    from .audit import _public_keys, check_stack

    check_stack(args.stack)
    keys = _public_keys(args.public_key_file)
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    ddb = aws.client("dynamodb", endpoint_url=args.endpoint_url, region=args.region)
    state = adopt(s3, bucket=args.bucket, stack=args.stack, public_keys=keys,
                  table=DigestTable(ddb, args.table, args.stack))
    print(f"adopted the chain of {args.stack}: sequence {state.sequence}, s3://{args.bucket}/{state.key}")
    return 0

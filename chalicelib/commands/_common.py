"""Options shared by several subcommands: the vocabulary of docs/CLI.md.

The light part (AWS options, ``--jobs``, ``--format``, sizes, progress, deprecated spellings)
is :mod:`chalicelib.options`, which the shipper's own entry point shares; it is re-exported
here, so a command needs only ``from ._common import ...``. The key options are here.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from ..codec import DEFAULT_COMPRESSION, PRESETS
from ..keyring import KEYS_ENV, Keyring, gather_keys
from ..options import (  # noqa: F401  (re-exported: the one place commands take them from)
    FORMATS,
    SIZE_SYNTAX,
    account_id,
    add_aws_options,
    add_deprecated,
    add_expected_owner_option,
    add_format_option,
    add_jobs_option,
    add_progress_option,
    aws_profile,
    deprecated_aliases,
    parse_size,
    positive_int,
    progress_enabled,
    size,
    warn_deprecated,
)


def add_compression_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--compression fast|default|small`` (docs/PERFORMANCE.md: what each costs)."""
    p.add_argument(
        "--compression", choices=tuple(PRESETS), default=default,
        help="; ".join(f"{x.name}: {x.summary}" for x in PRESETS.values())
        + f" (default: {default or DEFAULT_COMPRESSION})",
    )


def add_endpoint_options(p: argparse.ArgumentParser) -> None:
    """Every command that reaches AWS: ``--profile``, ``--region``, ``--endpoint-url``."""
    add_aws_options(p)


def add_key_options(p: argparse.ArgumentParser, *, encrypt: bool = False, aptible: bool = False) -> None:
    """``--key-file FILE`` (repeatable) and ``$LOGARCHIVE_KEYS``. ``aptible``: also Aptible's
    spellings, ``--decryption-keys KEY...`` and ``--decryption-keys-file`` (logs-from-archive
    only); elsewhere they are deprecated spellings."""
    files_help = ("file of base64 keys, one a line" + (", the first encrypts" if encrypt else "")
                  + f"; repeatable (default: ${KEYS_ENV} only)")
    if aptible:
        p.add_argument(
            "--decryption-keys", nargs="+", default=[], metavar="KEY",
            help="base64 keys, as Aptible's CLI takes them (visible in process listings: prefer "
            f"--key-file or ${KEYS_ENV}; default: none)",
        )
        p.add_argument("--key-file", "--decryption-keys-file", dest="key_files", action="append",
                       default=[], metavar="FILE", help=files_help)
    else:
        p.set_defaults(decryption_keys=[])
        p.add_argument("--key-file", dest="key_files", action="append", default=[], metavar="FILE",
                       help=files_help)
        add_deprecated(p, "--decryption-keys-file", new="--key-file", dest="key_files", metavar="FILE")
        add_deprecated(p, "--decryption-keys", new="--key-file (keys on the command line are visible "
                       "to every process)", dest="decryption_keys", nargs="+", metavar="KEY")
    if encrypt:
        # Encrypting commands never read old objects: a decryption-only option would be a no-op.
        p.add_argument("--kms-key-id", metavar="KEY",
                       help="wrap each data key with this KMS key instead of a raw key (default: the "
                       "first raw key)")
    else:
        p.add_argument(
            "--allow-legacy-cbc",
            action="store_true",
            help="also read legacy AES/CBC objects, which carry no authentication tag (default: refuse them)",
        )


def _kms_client(args: argparse.Namespace) -> Any:  # boto3 loads only when a KMS key is used
    from .. import aws

    return aws.client("kms", endpoint_url=getattr(args, "endpoint_url", None),
                      region=getattr(args, "region", None))


def keyring_from_args(args: argparse.Namespace, *, kms_key_id: str | None = None) -> Keyring:
    """The key ring of every command: the keys of ``add_key_options`` (and ``$LOGARCHIVE_KEYS``),
    ``kms_key_id`` (default: ``--kms-key-id``) to encrypt with KMS; KMS is reached through the
    command's endpoint and region. A key file that is missing or bad fails here: call it
    before any listing."""
    return Keyring(
        gather_keys(inline=getattr(args, "decryption_keys", None) or [], files=args.key_files),
        kms_key_id=kms_key_id or getattr(args, "kms_key_id", None) or None,
        allow_legacy=getattr(args, "allow_legacy_cbc", False),
        kms_client_factory=lambda: _kms_client(args),
    )



def pins_owner(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``func`` (a command's ``run``) with ``--expected-owner`` pinned on ``args.bucket`` while it
    runs: every S3 call into that bucket, from any thread, sends ``ExpectedBucketOwner``
    (``aws.pinned_owner``). Pinning touches no network: usage errors still come first."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        owner, bucket = getattr(args, "expected_owner", None), getattr(args, "bucket", None)
        if not owner or not bucket:
            return func(args)
        from .. import aws

        with aws.pinned_owner(bucket, owner):
            return func(args)

    return run


def confirm_owner(s3: Any, bucket: str, owner: str | None) -> None:
    """With ``--expected-owner``: a listing of at most one key of ``bucket`` (sending it,
    :func:`pins_owner`) before the command reads anything — ``s3:ListBucket``, which every reader
    of the bucket has (HeadBucket needs the same in AWS, but another action locally). S3 answers
    403 both when another account owns the bucket and when these credentials may not list it: one
    line naming the bucket and both causes."""
    if not owner:
        return
    from ..awserrors import error_code, error_label, is_not_found
    from ..errors import LogarchiveError

    try:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except Exception as exc:  # botocore: the answer's status, or no answer at all
        code = error_code(exc)
        if code in ("403", "AccessDenied"):
            raise LogarchiveError(f"bucket {bucket}: S3 refused access ({code}): it is not owned by "
                                  f"account {owner} (--expected-owner), or these credentials may not list "
                                  "it") from None
        if code == "NoSuchBucket" or is_not_found(exc):
            raise LogarchiveError(f"bucket {bucket}: does not exist") from None
        raise LogarchiveError(f"bucket {bucket}: cannot check its owner ({error_label(exc)})") from None

"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from ..codec import DEFAULT_COMPRESSION, PRESETS
from ..keyring import KEYS_ENV, Keyring, gather_keys


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def add_compression_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--compression fast|default|small`` (docs/PERFORMANCE.md: what each costs)."""
    p.add_argument(
        "--compression", choices=tuple(PRESETS), default=default,
        help="; ".join(f"{x.name}: {x.summary}" for x in PRESETS.values())
        + f" (default: {default or DEFAULT_COMPRESSION})",
    )


def add_endpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint-url",
        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)",
    )
    p.add_argument("--region", help="AWS region (default: the boto3 credential chain's)")


def add_key_options(p: argparse.ArgumentParser, *, encrypt: bool = False) -> None:
    p.add_argument(
        "--decryption-keys",
        nargs="+",
        default=[],
        metavar="KEY",
        help="base64 keys (visible in process listings: prefer --decryption-keys-file "
        f"or ${KEYS_ENV}; default: none)",
    )
    p.add_argument(
        "--decryption-keys-file",
        "--key-file",
        dest="key_files",
        action="append",
        default=[],
        metavar="FILE",
        help="file of base64 keys, one a line" + (", the first encrypts" if encrypt else "")
        + f"; repeatable (default: ${KEYS_ENV} only)",
    )
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
    command's endpoint and region."""
    return Keyring(
        gather_keys(inline=args.decryption_keys, files=args.key_files),
        kms_key_id=kms_key_id or getattr(args, "kms_key_id", None) or None,
        allow_legacy=getattr(args, "allow_legacy_cbc", False),
        kms_client_factory=lambda: _kms_client(args),
    )


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress`` on stderr (default: when stderr is a terminal)."""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: when stderr is a terminal)")


def progress_enabled(args: argparse.Namespace) -> bool:
    import sys

    chosen = getattr(args, "progress", None)
    return sys.stderr.isatty() if chosen is None else bool(chosen)

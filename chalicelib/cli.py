"""The ``logarchive`` command: one subcommand a module in ``chalicelib/commands``.

Each module there defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed args and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import LogarchiveError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logarchive",
        description=(
            "Archive container logs to S3 and get them back, "
            "with nothing but the bucket and the keys."
        ),
    )
    parser.add_argument("--version", action="version", version=f"logarchive {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # botocore says "Found credentials in ..." and "Found endpoint for ..." at INFO: noise
        # for a CLI user, shown with -v.
        for name in ("botocore", "boto3", "urllib3", "aws_lambda_powertools"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LogarchiveError as exc:
        # One line, no traceback: these messages never hold key material.
        print(f"logarchive: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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
from .errors import run_command


def _command_modules(argv: list[str] | None) -> list[str]:
    """The command modules to register: only the named command's when a module bears its name.

    Each module imports what its commands need (boto3 alone takes ~0.3 s), so ``logarchive
    seal`` starts in a fraction of the time when it loads only ``commands/seal.py``. Anything
    else (``--help``, a command living in another module) registers them all.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))
    if argv is None:
        return names
    words = [a for a in argv if not a.startswith("-")]
    if words and words[0].replace("-", "_") in names:
        return [words[0].replace("-", "_")]
    return names


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line ``argv``, only as much of it as that line needs."""
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
    for name in _command_modules(argv):
        importlib.import_module(f"{commands.__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # botocore says at INFO where it found each endpoint: not for users
        logging.getLogger("botocore").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command("logarchive", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

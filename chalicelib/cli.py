"""The ``logarchive`` command: one subcommand a module in ``chalicelib/commands``.

Each module there defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed args and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import NoReturn

from . import __version__, commands, logsetup
from .errors import run_command


class Parser(argparse.ArgumentParser):
    """argparse, naming every missing option at once: a missing required option and a missing
    choice of a required group (``--bucket`` or ``--api-url``) are reported together. An
    unknown argument is reported under the usage line of the subcommand it was given to."""

    _deepest: Parser | None = None  # the last (sub)command parser that read arguments

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        Parser._deepest = self
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            (Parser._deepest or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _missing_groups(self) -> list[str]:
        given = {a.split("=", 1)[0] for a in getattr(self, "_given", []) if a.startswith("-")}
        missing = []
        for group in self._mutually_exclusive_groups:
            options = [o for a in group._group_actions for o in a.option_strings if o.startswith("--")]
            if group.required and not given & {o for a in group._group_actions for o in a.option_strings}:
                missing.append("one of " + " ".join(options))
        return missing

    def error(self, message: str) -> NoReturn:
        prefix = "the following arguments are required: "
        if message.startswith(prefix):
            message += "".join(f", {m}" for m in self._missing_groups())
        super().error(message)


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


def _finish(parser: argparse.ArgumentParser) -> None:
    """What every (sub)command parser gets: ``-v`` after the command too, and a subcommand
    choice named by its choices (never by its internal ``dest``) in usage and errors."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if action.metavar is None:
                action.metavar = "{" + ",".join(dict.fromkeys(action.choices)) + "}"
            for child in dict.fromkeys(action.choices.values()):
                _finish(child)
    if parser.prog != "logarchive" and "-v" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="debug logging (as before the command)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line ``argv``, only as much of it as that line needs."""
    parser = Parser(
        prog="logarchive",
        description=(
            "Archive container logs to S3 and get them back, "
            "with nothing but the bucket and the keys."
        ),
    )
    parser.add_argument("--version", action="version", version=f"logarchive {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (not the AWS SDK's requests: see --debug-aws; default: off)")
    parser.add_argument("--debug-aws", action="store_true",
                        help="also log the AWS SDK's requests and responses, secrets redacted (default: off)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules(argv):
        importlib.import_module(f"{commands.__name__}.{name}").register(sub)
    _finish(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2), --help or --version (0): a status, as from a command
        return int(exc.code or 0)
    # Never botocore's wire log under -v: it holds KMS data keys and secrets (logsetup.py).
    logsetup.configure(verbose=args.verbose, debug_aws=args.debug_aws)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .options import aws_profile

    with aws_profile(getattr(args, "profile", None)):
        return run_command("logarchive", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

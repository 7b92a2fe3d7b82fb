"""Errors that carry a one-line, secret-free message naming the object at fault."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any


class LogarchiveError(Exception):
    """Base class: ``str(err)`` is one line fit for an operator, never holding key bytes."""


class UsageError(LogarchiveError):
    """The command line asks for something impossible: missing or conflicting options (exit 2)."""


class EnvelopeError(LogarchiveError):
    """The encryption envelope (metadata or instruction file) is missing or malformed."""


class KeyNotFoundError(LogarchiveError):
    """None of the configured keys can unwrap this object's data key."""


class IntegrityError(LogarchiveError):
    """The ciphertext failed authentication (tampered, truncated or wrong key)."""


class UnsupportedFormatError(LogarchiveError):
    """The object uses a scheme this tool refuses to read (for example legacy CBC by default)."""


class LayoutError(LogarchiveError):
    """An object key does not follow any known archive layout."""


def describe(exc: BaseException) -> str:
    """One line for an exception no handler expected, at a command's top level. Its message
    is shown only for kinds whose messages hold no secret (ours, the OS's, AWS's)."""
    if isinstance(exc, LogarchiveError):
        return str(exc)
    if isinstance(exc, OSError):
        cause = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {cause}" if exc.filename is not None else cause
    if type(exc).__module__.startswith("botocore"):
        from .awserrors import error_hint

        return error_hint(exc) or (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    return f"unexpected {type(exc).__name__} (run with --verbose for the traceback)"


def stdout_gone() -> int:
    """stdout's reader has gone (``| head``): write nothing more, not even at exit; the exit
    status a shell reports for SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def run_command(prog: str, func: Callable[[Any], int | None], args: Any) -> int:
    """Run a command's function: its errors one line each on stderr, never a traceback
    (with ``args.verbose``, an error nobody expected also logs its traceback, redacted)."""
    try:
        return int(func(args) or 0)
    except UsageError as exc:
        # Options that contradict each other: a usage error, as argparse's own (status 2).
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except LogarchiveError as exc:
        # One line, no traceback: these messages never hold key material.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C (130), or SIGTERM/SIGHUP turned into one (143/129)
        return 128 + int(getattr(exc, "signum", 2))
    except BrokenPipeError:
        return stdout_gone()
    except Exception as exc:  # the last resort: still one line
        if getattr(args, "verbose", False):  # the traceback through logging, which redacts (logsetup)
            logging.getLogger(prog).debug("traceback of the unexpected error:", exc_info=True)
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        return 1

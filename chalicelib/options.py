"""The option vocabulary every command shares (docs/CLI.md states it; this module defines it).

Stdlib only: the shipper's own entry point (``logarchive-ship``) uses it without loading the
commands, boto3 or cryptography. ``chalicelib/commands/_common.py`` re-exports all of it.

- AWS: ``--profile``, ``--region``, ``--endpoint-url`` (:func:`add_aws_options`); on the commands
  that read a customer's bucket, ``--expected-owner ACCOUNT`` (:func:`add_expected_owner_option`).
- ``--jobs N`` for parallelism, ``--format text|json|jsonl`` for output, sizes as ``8MiB``
  (:func:`parse_size`, the one size parser), ``--key-file`` for keys (``_common``).
- ``--progress/--no-progress``: a progress bar on stderr, by default when stderr is a terminal
  (:func:`progress_enabled`, the one rule).
- An old spelling keeps working one release, with a deprecation line on stderr
  (:func:`add_deprecated`, :func:`warn_deprecated`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import LogarchiveError

FORMATS = ("text", "json", "jsonl")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?)?\s*\Z", re.I | re.ASCII)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
SIZE_SYNTAX = "a size like 8MiB, 512KiB, 1GiB or plain bytes"


class SizeSyntaxError(LogarchiveError, ValueError):
    """Not a size in :data:`SIZE_SYNTAX`."""


def parse_size(text: str | int) -> int:
    """``8MiB``, ``8M``, ``512k``, ``1GiB`` or plain bytes (units are powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise SizeSyntaxError(f"{text!r} is not a size (like 8MiB)")
    return int(m[1]) * _UNITS[(m[2] or "").lower()[:1]]


def size(text: str) -> int:
    """argparse ``type`` of a size option."""
    try:
        return parse_size(text)
    except SizeSyntaxError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


# -- deprecated spellings ----------------------------------------------------------------------

def deprecation_line(old: str, new: str) -> str:
    return (f"logarchive: warning: {old} is deprecated and goes in the next release; "
            f"use {new}")


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` (an option, a variable, a config key) still works this
    release; ``new`` is its spelling from now on."""
    print(deprecation_line(old, new), file=sys.stderr, flush=True)


class _Deprecated(argparse.Action):
    """An old spelling: warns, then does what ``new`` does (its value through ``convert``)."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str,
                 convert: Callable[[Any], Any] | None = None, **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        self.new, self.convert = new, convert

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        warn_deprecated(option_string or self.option_strings[0], self.new)
        value = self.convert(values) if self.convert else values
        if self.nargs == 0:
            value = self.const
        current = getattr(namespace, self.dest, None)
        if isinstance(current, list) and not isinstance(value, list):
            setattr(namespace, self.dest, [*current, value])  # an append option's old spelling
        else:
            setattr(namespace, self.dest, value)


def add_deprecated(p: argparse.ArgumentParser | Any, *old: str, new: str, dest: str,
                   convert: Callable[[Any], Any] | None = None, **kw: Any) -> argparse.Action:
    """The old spellings ``old`` of the option ``new`` (whose value lands in ``dest``), hidden
    from the help: the value goes through ``kw['type']`` then ``convert``."""
    return p.add_argument(*old, dest=dest, action=_Deprecated, new=new, convert=convert,
                          default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def deprecated_aliases(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The hidden old spellings of a parser (the conventions test checks each)."""
    return [a for a in p._actions if isinstance(a, _Deprecated)]


# -- the shared options ------------------------------------------------------------------------

def add_aws_options(p: argparse.ArgumentParser | Any) -> None:
    """``--profile``, ``--region``, ``--endpoint-url``: as the AWS CLI spells them."""
    p.add_argument("--profile", help="AWS named profile, from ~/.aws/config (default: $AWS_PROFILE, "
                   "else the credential chain's)")
    p.add_argument("--region", help="AWS region (default: $AWS_DEFAULT_REGION or the profile's)")
    p.add_argument("--endpoint-url",
                   help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)")


_ACCOUNT = re.compile(r"^\d{12}\Z", re.ASCII)


def account_id(text: str) -> str:
    """argparse ``type`` of an AWS account id (12 digits)."""
    if not _ACCOUNT.match(text):
        raise argparse.ArgumentTypeError(f"expected a 12-digit AWS account id, not {text[:40]!r}")
    return text


def add_expected_owner_option(p: argparse.ArgumentParser | Any, what: str = "--bucket") -> None:
    """``--expected-owner ACCOUNT``: the account that must own the bucket a command reads; every S3
    call into it then sends ``ExpectedBucketOwner`` (``commands._common.pins_owner``)."""
    p.add_argument("--expected-owner", metavar="ACCOUNT", type=account_id,
                   help=f"the AWS account that must own {what}: every S3 call into it sends "
                   "ExpectedBucketOwner, so a bucket another account holds under that name is refused "
                   "(one error line, exit 1) (default: not checked)")


_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@contextmanager
def aws_profile(profile: str | None) -> Iterator[None]:
    """While it lasts, every AWS client made uses the named ``profile`` (as the AWS CLI's
    ``--profile``, it wins over credentials in the environment). No profile: nothing changes."""
    if not profile:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("AWS_PROFILE", *_CREDENTIAL_ENV)}
    os.environ["AWS_PROFILE"] = profile
    for k in _CREDENTIAL_ENV:
        os.environ.pop(k, None)
    _reset_cached_clients()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reset_cached_clients()


def _reset_cached_clients() -> None:
    aws = sys.modules.get("chalicelib.aws")  # loaded only where boto3 is; never imported here
    if aws is not None:
        aws.reset_clients()


def add_jobs_option(p: argparse.ArgumentParser | Any, default: int | None, what: str,
                    *old: str, dest: str = "jobs", default_text: str | None = None) -> None:
    """``--jobs N`` (``what``: what runs N at a time); ``old`` spellings deprecated."""
    shown = default_text or str(default)
    p.add_argument("--jobs", dest=dest, type=positive_int, default=default, metavar="N",
                   help=f"{what} (default: {shown})")
    if old:
        add_deprecated(p, *old, new="--jobs", dest=dest, type=positive_int, metavar="N")


def add_format_option(p: argparse.ArgumentParser | Any, choices: tuple[str, ...], default: str | None,
                      help: str, dest: str = "fmt") -> None:
    """``--format`` with the values of :data:`FORMATS` this command writes."""
    assert set(choices) <= set(FORMATS), choices
    p.add_argument("--format", dest=dest, choices=choices, default=default,
                   help=f"{help} (default: {default or 'see above'})")


def add_progress_option(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when stderr is a terminal)")


def progress_enabled(args: argparse.Namespace | Any, *, stream: Any = None) -> bool:
    """The one rule: ``--progress``/``--no-progress`` if given, else whether stderr is a terminal."""
    chosen = getattr(args, "progress", None)
    if chosen is not None:
        return bool(chosen)
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""Errors that carry a one-line, secret-free message naming the object at fault."""

from __future__ import annotations


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

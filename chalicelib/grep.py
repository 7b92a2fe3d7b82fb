"""The one meaning of ``grep`` in the CLI, the API and retrieval jobs: an RE2 regular expression
(https://github.com/google/re2/wiki/Syntax) searched for in each line's text.

RE2 runs in time linear in the text, whatever the pattern, so no caller can stall a Lambda with
a pattern that backtracks. What RE2 refuses (look-around, back-references, repetition beyond
1000) is refused everywhere with the same one line: a usage error in the CLI, ``400`` in the
API (jobs get only patterns the API accepted).
"""

from __future__ import annotations

from typing import Any

import re2

from .errors import LogarchiveError

MAX_GREP = 256  # characters


class GrepError(LogarchiveError, ValueError):
    """A pattern RE2 does not accept (the message names the pattern and the cause)."""


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the cause goes into the one line, not to stderr


def compile_grep(pattern: str) -> Any:
    """The compiled pattern (``.search(text)``, ``.pattern``); raises :class:`GrepError`."""
    if not isinstance(pattern, str) or len(pattern) > MAX_GREP or "\n" in pattern:
        raise GrepError(f"grep must be a single-line regular expression of at most {MAX_GREP} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        cause = exc.args[0] if exc.args else exc
        if isinstance(cause, bytes):
            cause = cause.decode("utf-8", "replace")
        raise GrepError(f"grep {pattern!r} is not an RE2 regular expression ({cause})") from None

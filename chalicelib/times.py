"""The one syntax of every time a user gives: the CLI's options and the API's parameters alike.

A date ``YYYY-MM-DD`` (its 00:00Z) or an RFC 3339 time to the second,
``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or an offset (``+02:00``); without either it is UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# ASCII digits only, and nothing after (not even a newline): what the index and keys can hold.
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})([Zz]|[+-]\d{2}:\d{2})?)?\Z", re.ASCII
)
YEARS = (1970, 2200)  # what the index and the archive keys can hold
SYNTAX = ("a date YYYY-MM-DD or an RFC 3339 time to the second, like 2022-01-01T12:00:00Z "
          "(UTC unless an offset is given)")


class TimeSyntaxError(ValueError):
    """Not a time in :data:`SYNTAX`; ``str()`` says what is expected, callers name the option."""


def parse_time(text: str) -> datetime:
    """``text`` as an aware UTC datetime (second precision)."""
    m = _TIME_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise TimeSyntaxError(f"must be {SYNTAX}")
    zone = (m[7] or "+00:00").upper().replace("Z", "+00:00")
    clock = f"{m[4]}:{m[5]}:{m[6]}" if m[4] else "00:00:00"
    try:
        t = datetime.fromisoformat(f"{m[1]}-{m[2]}-{m[3]}T{clock}{zone}").astimezone(UTC)
    except (ValueError, OverflowError):
        raise TimeSyntaxError(f"is not a valid time ({SYNTAX})") from None
    if not YEARS[0] <= t.year <= YEARS[1]:
        raise TimeSyntaxError(f"must be between the years {YEARS[0]} and {YEARS[1]}")
    return t

"""Fast line filtering: a byte-level pre-check in front of the exact ``dockerlog.LineFilter``.

One implementation for both readers of archived lines: the retrieval Lambda (``scan``) and the
CLI's output writer (``logoutput``). The JSON parse is the costly part of a filter, so each
raw line first gets cheap tests on its bytes that are *necessary* conditions of a match:

- a grep that is a plain literal of characters Go's encoding/json (Docker's writer) never
  escapes appears verbatim in the raw line whenever it appears in the decoded ``log`` text;
- a line of a stream contains that stream's JSON value (``"stderr"``);
- the line's ``time`` is what ``dockerlog.line_time`` reads from the bytes.

A line that fails one is refused without parsing; the others go through ``LineFilter.matches``,
except under a time-only filter, where a time read from the bytes decides by itself. (That
shortcut trusts the first ``"time":"…"`` of the bytes to be the line's own; Docker writes it
last, after ``attrs``, so only a log label named ``time`` could differ.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from .dockerlog import LineFilter, LogLine, line_time

# Characters Go's encoding/json (Docker's writer) never escapes: a needle made only of these
# appears verbatim in the raw line whenever it appears in the decoded ``log`` text.
_VERBATIM = re.compile(r"^[A-Za-z0-9 _.,:;!?@#$%^*()\[\]{}=+~`|/'-]+\Z")

Verdict = Callable[[bytes], "bool | None"]


def raw_needle(flt: LineFilter) -> bytes | None:
    """Bytes every matching raw line contains, when the grep allows one (else None)."""
    if flt.grep is None:
        return None
    literal = re.sub(r"\\(.)", r"\1", flt.grep.pattern)
    # Only when the pattern is exactly an escaped literal of never-escaped characters.
    if re.escape(literal) == flt.grep.pattern and _VERBATIM.match(literal):
        return literal.encode()
    return None


def prefilter(flt: LineFilter) -> Verdict:
    """A test on raw bytes: False when ``flt`` surely refuses the line, True when it surely
    accepts it (time-only filters), None when only ``flt.matches`` can tell."""
    needle = raw_needle(flt)
    stream = f'"{flt.stream}"'.encode() if flt.stream is not None else None
    start, end = flt.start, flt.end
    ranged = start is not None or end is not None
    time_only = ranged and flt.stream is None and flt.grep is None

    def verdict(raw: bytes) -> bool | None:
        if needle is not None and needle not in raw:
            return False
        if stream is not None and stream not in raw:
            return False
        if ranged:
            t = line_time(raw)
            if t is not None:
                if (start is not None and t < start) or (end is not None and t >= end):
                    return False
                if time_only:
                    return True
        return None

    return verdict


def quick_reject(flt: LineFilter) -> Callable[[bytes], bool]:
    """True only for lines ``flt`` would refuse anyway (the pre-check's refusals)."""
    verdict = prefilter(flt)
    return lambda raw: verdict(raw) is False


def accepts(flt: LineFilter) -> Callable[[bytes], LogLine | bool]:
    """The full test of one raw line: False when refused, else the parsed line (when the
    exact test needed it) or True. Equivalent to ``flt.matches(LogLine.parse(raw))``."""
    verdict = prefilter(flt)

    def test(raw: bytes) -> LogLine | bool:
        v = verdict(raw)
        if v is not None:
            return v
        line = LogLine.parse(raw)
        return line if flt.matches(line) else False

    return test


def matching_lines(lines: Iterable[bytes], flt: LineFilter) -> Iterator[bytes]:
    """The non-empty raw lines ``flt`` accepts (all of them when it is inactive)."""
    if not flt.active:
        yield from (raw for raw in lines if raw)
        return
    test = accepts(flt)
    for raw in lines:
        if raw and test(raw) is not False:
            yield raw

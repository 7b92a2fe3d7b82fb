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

A line longer than ``dockerlog.LONG_LINE`` (1 MiB) is never parsed whole: its time is the
first ``"time":"…"`` of its bytes (found as it streamed past, exact), its stream is
``"stream":"…"`` in its first 1 MiB or last 64 KiB, and a grep searches those two pieces as
text. A line that passes is written whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from . import crilog
from .dockerlog import LONG_LINE, LONG_TAIL, LineFilter, LogLine, LongLine, line_time

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


def long_line_test(flt: LineFilter) -> Callable[[LongLine], bool]:
    """The test of a line longer than ``LONG_LINE``, from what is held of it (module doc)."""
    stream = f'"stream":"{flt.stream}"'.encode() if flt.stream is not None else None

    def test(line: LongLine) -> bool:
        if flt.start is not None or flt.end is not None:
            t = line.time
            if t is None or (flt.start is not None and t < flt.start):
                return False
            if flt.end is not None and t >= flt.end:
                return False
        if stream is not None and stream not in line.head and stream not in line.tail:
            return False
        if flt.grep is not None:
            return any(flt.grep.search(piece.decode("utf-8", "replace")) for piece in (line.head, line.tail))
        return True

    return test


def cri_accepts(flt: LineFilter) -> Callable[[bytes | LongLine], LogLine | bool]:
    """``accepts`` for CRI records (``crilog``): each record judged by its own time, stream and
    message (a partial record's piece alone); a record over ``LONG_LINE`` by its first bytes."""
    needle = raw_needle(flt)

    def test(raw: bytes | LongLine) -> LogLine | bool:
        if isinstance(raw, LongLine):
            head = raw.head
        elif needle is not None and needle not in raw:
            return False
        else:
            head = raw
        line = crilog.log_line(head)
        return line if flt.matches(line) else False

    return test


def accepts(flt: LineFilter, source: str = crilog.DOCKER) -> Callable[[bytes | LongLine], LogLine | bool]:
    """The full test of one raw line: False when refused, else the parsed line (when the
    exact test needed it) or True. Equivalent to ``flt.matches(LogLine.parse(raw))`` for
    lines up to ``LONG_LINE`` bytes; longer ones are judged by ``long_line_test``.
    ``source="cri"``: lines are CRI records (``cri_accepts``)."""
    if source == crilog.CRI:
        return cri_accepts(flt)
    verdict = prefilter(flt)
    long_test = long_line_test(flt)

    def test(raw: bytes | LongLine) -> LogLine | bool:
        if isinstance(raw, LongLine):
            return long_test(raw)
        if len(raw) > LONG_LINE:  # the same judgement, whether it came spooled or in one block
            return long_test(LongLine(raw[:LONG_LINE], raw[-LONG_TAIL:], len(raw), line_time(raw)))
        v = verdict(raw)
        if v is not None:
            return v
        line = LogLine.parse(raw)
        return line if flt.matches(line) else False

    return test


def matching_lines(lines: Iterable[bytes], flt: LineFilter, source: str = crilog.DOCKER) -> Iterator[bytes]:
    """The non-empty raw lines ``flt`` accepts (all of them when it is inactive)."""
    if not flt.active:
        yield from (raw for raw in lines if raw)
        return
    test = accepts(flt, source)
    for raw in lines:
        if raw and test(raw) is not False:
            yield raw

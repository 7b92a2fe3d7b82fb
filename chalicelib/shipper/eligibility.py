"""Which bytes of a log file are closed, so that they may ship now.

- a rotated file (``.N``, ``.N.gz``) is closed: everything not yet staged ships;
- the live ``-json.log`` of a stopped container is closed up to its last complete line; an
  unterminated last line (the last bytes Docker wrote) ships once the file has been quiet
  for ``settle`` seconds: Docker starts a restarted container's process before it records
  ``Running: true`` in config.v2.json, so a fresh line may still be under way;
- the live log of a running container ships only under ``--max-age``: when its oldest
  unshipped line is older than that, up to its last complete line. A line is never cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from ..dockerlog import line_time
from .identity import first_line, last_line_end
from .scan import Container


@dataclass(frozen=True)
class Decision:
    end: int | None  # logical end offset to ship up to; None: nothing ships now
    reason: str = ""  # why nothing ships (a "waiting" reason, not a problem)
    closes: bool = False  # the file is closed for good: staging to ``end`` completes it


WAIT_RUNNING = "live log of a running container (ships when it stops, rotates, or gets older than --max-age)"
WAIT_TAIL = "stopped container's unterminated last line (ships after --settle seconds of quiet)"
NOTHING_NEW = "nothing new"


def rotated(size: int, shipped: int) -> Decision:
    if size <= shipped:
        return Decision(None, NOTHING_NEW, closes=True)
    return Decision(size, closes=True)


def live(fh: BinaryIO, container: Container, size: int, mtime: float, shipped: int, *,
         now: float, max_age: float, settle: float,
         line_time: Callable[[bytes], datetime | None] = line_time) -> Decision:
    if size <= shipped:
        return Decision(None, NOTHING_NEW)
    if not container.running:
        end = last_line_end(fh, shipped, size)
        if end < size and now - mtime >= settle:
            end = size  # the truncated last line is the last byte Docker wrote: ship it as is
        return Decision(end) if end > shipped else Decision(None, WAIT_TAIL)
    if max_age <= 0:
        return Decision(None, WAIT_RUNNING)
    oldest = line_time(first_line(fh, shipped))
    if oldest is None or (now - oldest.timestamp()) < max_age:
        return Decision(None, WAIT_RUNNING)
    end = last_line_end(fh, shipped, size)
    return Decision(end) if end > shipped else Decision(None, WAIT_RUNNING)

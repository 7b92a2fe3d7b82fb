"""The summary of a pass: what shipped, what waits and why, what failed and why."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressLine:
    """One self-overwriting line on a terminal: segments and bytes staged so far in this pass.

    The standard library only: the shipper stays small (no tqdm)."""

    def __init__(self, out: TextIO = sys.stderr, *, every: float = 0.2) -> None:
        self.out, self.every = out, every
        self._last = 0.0
        self._shown = False

    def __call__(self, s: Summary) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        self.out.write(f"\rshipping: {plural(s.segments, 'segment')}, {human(s.bytes)} staged\x1b[K")
        self.out.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.out.write("\r\x1b[K")  # the summary replaces it
            self.out.flush()


@dataclass
class Summary:
    containers: int = 0
    segments: int = 0
    bytes: int = 0
    recovered: int = 0  # pending segments of a killed run, found already staged
    shipped_containers: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # container id -> name
    per_container: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    waiting: Counter = field(default_factory=Counter)
    retried: Counter = field(default_factory=Counter)  # transient races with Docker: next pass
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    planned: list[str] = field(default_factory=list)  # --dry-run lines
    # For the heartbeat (heartbeat.py): bytes of live logs not staged after the pass, the Docker
    # time (epoch seconds) of the oldest complete line among them, the pass's last problem.
    waiting_bytes: int = 0
    oldest_waiting: float | None = None
    last_error: str = ""
    started: float = field(default_factory=time.time)
    on_shipped: Callable[[Summary], None] | None = field(default=None, repr=False)  # a progress line

    def shipped(self, container_id: str, size: int, *, recovered: bool = False) -> None:
        self.segments += 1
        self.bytes += size
        if self.on_shipped is not None:
            self.on_shipped(self)
        self.recovered += int(recovered)
        self.shipped_containers.add(container_id)
        self.per_container[container_id][0] += 1
        self.per_container[container_id][1] += size

    def wait(self, reason: str, what: str) -> None:
        self.waiting[reason] += 1
        self._example(reason, what)

    def retry(self, reason: str, what: str) -> None:
        self.retried[reason] += 1
        self._example(reason, what)

    def problem(self, reason: str, what: str) -> None:
        self.problems[reason] += 1
        self.last_error = f"{what}: {reason}"
        self._example(reason, what)

    def backlog(self, size: int, oldest: float | None) -> None:
        """``size`` bytes of a live log wait, the oldest complete line among them of ``oldest``."""
        self.waiting_bytes += size
        if oldest is not None and (self.oldest_waiting is None or oldest < self.oldest_waiting):
            self.oldest_waiting = oldest

    def merge(self, other: Summary) -> None:
        """Add what ``other`` (another thread's part of the same pass) counted."""
        self.segments += other.segments
        self.bytes += other.bytes
        self.recovered += other.recovered
        self.shipped_containers |= other.shipped_containers
        self.names.update(other.names)
        for cid, (n, size) in other.per_container.items():
            self.per_container[cid][0] += n
            self.per_container[cid][1] += size
        self.waiting.update(other.waiting)
        self.retried.update(other.retried)
        self.problems.update(other.problems)
        for reason, examples in other.examples.items():
            self.examples[reason] = (self.examples[reason] + examples)[:3]
        self.backlog(other.waiting_bytes, other.oldest_waiting)
        self.last_error = other.last_error or self.last_error

    def _example(self, reason: str, what: str) -> None:
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(what)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, *, dry_run: bool = False, seconds: float = 0.0) -> str:
        verb = "would ship" if dry_run else "shipped"
        lines = [
            f"logarchive ship: {plural(self.containers, 'container')} scanned in {seconds:.1f} s",
            f"  {verb}: {plural(self.segments, 'segment')}, {human(self.bytes)}, "
            f"from {plural(len(self.shipped_containers), 'container')}"
            + (f" ({self.recovered} finished from an interrupted run)" if self.recovered else ""),
        ]
        shown = sorted(self.per_container.items(), key=lambda kv: -kv[1][1])
        for cid, (n, size) in shown[:10]:
            name = self.names.get(cid) or "?"
            lines.append(f"    {name} ({cid[:12]}): {plural(n, 'segment')}, {human(size)}")
        if len(shown) > 10:
            lines.append(f"    … and {len(shown) - 10} more containers")
        lines += [f"    {p}" for p in self.planned]
        if self.waiting:
            lines.append("  not shipped yet (normal, retried every pass):")
            lines += self._block(self.waiting)
        if self.retried:
            lines.append("  skipped this pass (Docker renamed or rewrote the file meanwhile; "
                         "retried next pass):")
            lines += self._block(self.retried)
        if self.problems:
            lines.append("  problems (one log line each above; retried next pass where that can help):")
            lines += self._block(self.problems)
        else:
            lines.append("  problems: none")
        return "\n".join(lines)

    def _block(self, counts: Counter) -> list[str]:
        out = []
        for reason, n in counts.most_common():
            eg = ", ".join(self.examples.get(reason, []))
            out.append(f"    {n:5d} × {reason}" + (f"  (e.g. {eg})" if eg else ""))
        return out

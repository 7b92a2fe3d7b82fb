"""A retrieval request: what to scan (selector, time range), what to keep (stream, grep), and
the restore tier for archives in cold storage.

The API builds it from validated parameters (``api/params.py``); the jobs table stores it with
the job item (``to_attrs``) and the planner and scan step read it back (``from_attrs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..index.store import Selector
from ..restores import DEFAULT_TIER

STORED_TIME = "%Y-%m-%dT%H:%M:%SZ"


def parse_stored_time(value: str) -> datetime:
    """A time as ``to_attrs`` stores it: UTC to the second, ``Z``."""
    return datetime.strptime(value, STORED_TIME).replace(tzinfo=UTC)


@dataclass(frozen=True)
class RetrievalRequest:
    selector: Selector
    start: datetime
    end: datetime
    stream: str | None
    grep: str | None
    restore_tier: str = DEFAULT_TIER  # for archives the scan finds in cold storage

    def to_attrs(self) -> dict[str, Any]:
        return {
            "stack": self.selector.stack,
            "sel_kind": self.selector.kind,
            "sel_id": self.selector.ident,
            "start": self.start.strftime(STORED_TIME),
            "end": self.end.strftime(STORED_TIME),
            "stream": self.stream or "",
            "grep": self.grep or "",
            "restore_tier": self.restore_tier,
            "sel_container": self.selector.container_name or "",  # kind pod: one container of it
        }

    @classmethod
    def from_attrs(cls, d: dict[str, Any]) -> RetrievalRequest:
        return cls(
            Selector(d["stack"], d["sel_kind"], d["sel_id"], d.get("sel_container") or None),
            parse_stored_time(d["start"]),
            parse_stored_time(d["end"]),
            d.get("stream") or None,
            d.get("grep") or None,
            d.get("restore_tier") or DEFAULT_TIER,
        )

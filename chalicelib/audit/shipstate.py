"""A host shipper's SQLite state (``shipper/state.py``'s schema), opened read-only.

The audit never writes it and never falls back to an empty store: a state it cannot read is an
error naming the file.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from ..errors import LogarchiveError


@dataclass(frozen=True)
class ShippedSegment:
    state_file: str
    container_id: str
    segment: int
    state: str  # pending | shipped | abandoned | explained (abandoned, and its explanation staged)
    staged_key: str
    host: str
    stack: str
    byte_start: int
    byte_end: int
    first_time: str
    last_time: str
    finished: datetime | None  # when S3 confirmed it (or it was abandoned)

    def name(self) -> str:
        return f"host {self.host or '?'} {self.state_file}: {self.staged_key}"


def read_segments(path: str) -> list[ShippedSegment]:
    """Every segment the state records, in (container, segment) order."""
    try:
        db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT container_id, segment, state, key, start, end, metadata, finished "
                "FROM segments ORDER BY container_id, segment"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LogarchiveError(f"--ship-state {path}: not a readable shipper state ({exc})") from None
    out = []
    for cid, seg, state, key, start, end, meta_text, finished in rows:
        try:
            meta = json.loads(meta_text)
        except ValueError:
            meta = {}
        out.append(ShippedSegment(
            state_file=path, container_id=cid, segment=int(seg), state=state, staged_key=key,
            host=meta.get("logarchive-host", ""), stack=meta.get("logarchive-stack", ""),
            byte_start=int(start), byte_end=int(end),
            first_time=meta.get("logarchive-first-time", ""), last_time=meta.get("logarchive-last-time", ""),
            finished=datetime.fromtimestamp(finished, UTC) if finished is not None else None,
        ))
    return out

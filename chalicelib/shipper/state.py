"""The local record of what shipped: SQLite in WAL mode, one transaction per step.

A segment goes ``pending`` (planned: number, byte range, SHA-256 and metadata fixed and
committed *before* any byte is sent) → ``shipped`` (committed only after S3 confirmed the
upload) or ``abandoned`` (its bytes were deleted by Docker before they could be sent) →
``explained`` (an explanation object for the archive's digests was staged, docs/AUDIT.md). A
restart after ``kill -9`` finds the pending segment and sends exactly the same bytes to
exactly the same key, so the crash window between S3's answer and the commit is closed by
the conditional create plus that same key, never by guessing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass

from ..errors import LogarchiveError
from ..staged import CUT_FROM_META, EVENT_REASON_META
from .identity import head_sha

ABANDONED_REASON = EVENT_REASON_META  # kept in an abandoned segment's metadata

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    container_id TEXT PRIMARY KEY,
    next_segment INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    container_id TEXT NOT NULL,
    head_len INTEGER NOT NULL,
    head_sha TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    shipped_end INTEGER NOT NULL DEFAULT 0,   -- logical bytes [0, shipped_end) are staged
    complete INTEGER NOT NULL DEFAULT 0,      -- a closed copy was staged to its very end
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_by_head ON sources(container_id, head_len, head_sha);
CREATE TABLE IF NOT EXISTS segments (
    container_id TEXT NOT NULL,
    segment INTEGER NOT NULL,
    source_id INTEGER NOT NULL,
    state TEXT NOT NULL,                      -- pending | shipped | abandoned | explained
    key TEXT NOT NULL,
    start INTEGER NOT NULL,                   -- logical byte range [start, end) of the source
    end INTEGER NOT NULL,
    encoding TEXT NOT NULL,                   -- identity | gzip (the staged bytes)
    size INTEGER NOT NULL,                    -- staged bytes
    sha256 TEXT NOT NULL,                     -- of the staged bytes
    closes INTEGER NOT NULL,                  -- staging it makes the source complete
    metadata TEXT NOT NULL,                   -- the S3 user metadata, JSON
    planned REAL NOT NULL,
    finished REAL,
    PRIMARY KEY (container_id, segment)
);
CREATE INDEX IF NOT EXISTS pending_segments ON segments(state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS cuts (
    source_id INTEGER PRIMARY KEY,            -- a source found shorter than what had shipped
    cut_from INTEGER NOT NULL                 -- its shipped end before the cut; told to the next segment
);
-- every pass looks for abandoned segments whose explanation is not staged yet
CREATE INDEX IF NOT EXISTS abandoned_segments ON segments(state) WHERE state = 'abandoned';
-- a file seen again in the inode it had: one indexed lookup (shipper/loop.py's idle pass)
CREATE INDEX IF NOT EXISTS sources_by_inode ON sources(container_id, dev, ino);
CREATE TABLE IF NOT EXISTS failures (         -- files that could not be read or decompressed
    container_id TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,                    -- bytes on disk when last tried
    cause TEXT NOT NULL,
    passes INTEGER NOT NULL,                  -- consecutive passes that met this cause
    given_up INTEGER NOT NULL DEFAULT 0,      -- explained as lost: not tried again while unchanged
    PRIMARY KEY (container_id, dev, ino)
);
CREATE TABLE IF NOT EXISTS idle_files (       -- files found fully shipped, as the scan saw them then
    container_id TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    PRIMARY KEY (container_id, dev, ino)
);
CREATE TABLE IF NOT EXISTS binding (          -- whose state this is: host, stack, staging
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

BINDING = ("host", "stack", "staging")


@dataclass
class Source:
    id: int
    container_id: str
    head_len: int
    head_sha: str
    dev: int
    ino: int
    shipped_end: int
    complete: bool

    def matches(self, head: bytes) -> bool:
        """Does a file whose first (up to HEAD_MAX) logical bytes are ``head`` hold this source?"""
        return 0 < self.head_len <= len(head) and head_sha(head[: self.head_len]) == self.head_sha


@dataclass(frozen=True)
class Failure:
    size: int
    cause: str
    passes: int
    given_up: bool


@dataclass
class Segment:
    container_id: str
    segment: int
    source_id: int
    state: str
    key: str
    start: int
    end: int
    encoding: str
    size: int
    sha256: str
    closes: bool
    metadata: dict[str, str]


def busy_seconds() -> float:
    """How long to wait for a state file another program has locked: 30 s, or
    ``$LOGARCHIVE_STATE_BUSY_SECONDS``."""
    try:
        return max(0.0, float(os.environ.get("LOGARCHIVE_STATE_BUSY_SECONDS", "30")))
    except ValueError:
        return 30.0


def state_error(path: str, exc: sqlite3.Error) -> LogarchiveError:
    """One line for a state file SQLite cannot use (corrupt, locked, a directory…)."""
    cause = str(exc) or type(exc).__name__
    if "locked" in cause:
        cause += f" by another program (waited {busy_seconds():g} s)"
    return LogarchiveError(f"state file {path}: {cause}")


class State:
    """Open (and create) the store at ``path``; ``readonly`` for ``--dry-run``."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        try:
            self._open(path, readonly)
        except sqlite3.Error as exc:
            raise state_error(path, exc) from None

    def _open(self, path: str, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            try:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
                self.db.execute("SELECT 1 FROM segments LIMIT 1")
            except sqlite3.Error:
                self.db = sqlite3.connect(":memory:", isolation_level=None)
                self.db.executescript(_SCHEMA)
            return
        self.db = sqlite3.connect(path, isolation_level=None, timeout=busy_seconds())
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss too, not only kill -9 of this process.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    # -- reads -------------------------------------------------------------------------
    def sources(self, container_id: str) -> list[Source]:
        rows = self.db.execute(
            "SELECT id, container_id, head_len, head_sha, dev, ino, shipped_end, complete "
            "FROM sources WHERE container_id = ? ORDER BY id", (container_id,)
        ).fetchall()
        return [Source(*r[:7], bool(r[7])) for r in rows]

    def source(self, source_id: int) -> Source:
        r = self.db.execute(
            "SELECT id, container_id, head_len, head_sha, dev, ino, shipped_end, complete "
            "FROM sources WHERE id = ?", (source_id,)
        ).fetchone()
        return Source(*r[:7], bool(r[7]))

    def match(self, container_id: str, head: bytes, dev: int, ino: int) -> Source | None:
        """The source held by a file with this head; the same inode wins, then the longest head.

        A file still in the inode its source was last seen in (every idle pass, for every file)
        is one indexed lookup; otherwise one per distinct recorded head length (HEAD_MAX, plus one
        per length of the container's files shorter than that).
        """
        rows = self.db.execute(
            "SELECT id, container_id, head_len, head_sha, dev, ino, shipped_end, complete "
            "FROM sources WHERE container_id = ? AND dev = ? AND ino = ?", (container_id, dev, ino),
        ).fetchall()
        same = [src for r in rows if (src := Source(*r[:7], bool(r[7]))).matches(head)]
        if same:  # the same inode wins anyway (below): no need to look further
            return max(same, key=lambda s: (s.head_len, s.id))
        lengths = [r[0] for r in self.db.execute(
            "SELECT DISTINCT head_len FROM sources WHERE container_id = ? AND head_len BETWEEN 1 AND ?",
            (container_id, len(head)),
        )]
        found: list[Source] = []
        for n in lengths:
            rows = self.db.execute(
                "SELECT id, container_id, head_len, head_sha, dev, ino, shipped_end, complete "
                "FROM sources WHERE container_id = ? AND head_len = ? AND head_sha = ?",
                (container_id, n, head_sha(head[:n])),
            ).fetchall()
            found += [Source(*r[:7], bool(r[7])) for r in rows]
        if not found:
            return None
        found.sort(key=lambda s: ((s.dev, s.ino) == (dev, ino), s.head_len, s.id), reverse=True)
        return found[0]

    def pending(self, container_id: str | None = None) -> list[Segment]:
        # The partial index: the planner would otherwise walk a container's every segment by key.
        sql = ("SELECT container_id, segment, source_id, state, key, start, end, encoding, size, "
               "sha256, closes, metadata FROM segments INDEXED BY pending_segments WHERE state = 'pending'")
        args: tuple = ()
        if container_id is not None:
            sql += " AND container_id = ?"
            args = (container_id,)
        rows = self.db.execute(sql + " ORDER BY container_id, segment", args).fetchall()
        return [Segment(*r[:10], bool(r[10]), json.loads(r[11])) for r in rows]

    def abandoned(self) -> list[Segment]:
        """Abandoned segments whose explanation is not staged yet."""
        rows = self.db.execute(
            "SELECT container_id, segment, source_id, state, key, start, end, encoding, size, "
            "sha256, closes, metadata FROM segments WHERE state = 'abandoned' ORDER BY container_id, segment"
        ).fetchall()
        return [Segment(*r[:10], bool(r[10]), json.loads(r[11])) for r in rows]

    def next_segment(self, container_id: str) -> int:
        r = self.db.execute(
            "SELECT next_segment FROM containers WHERE container_id = ?", (container_id,)
        ).fetchone()
        return r[0] if r else 1

    def cut_from(self, source_id: int) -> int | None:
        """The shipped end before a cut not yet recorded in a staged segment, if any."""
        r = self.db.execute("SELECT cut_from FROM cuts WHERE source_id = ?", (source_id,)).fetchone()
        return r[0] if r else None

    def shipped_segments(self, container_id: str) -> list[tuple[int, str]]:
        return self.db.execute(
            "SELECT segment, key FROM segments WHERE container_id = ? AND state = 'shipped' "
            "ORDER BY segment", (container_id,)
        ).fetchall()

    def failures(self) -> dict[tuple[str, int, int], Failure]:
        """Files that failed to read or decompress, by (container, dev, inode)."""
        rows = self.db.execute("SELECT container_id, dev, ino, size, cause, passes, given_up FROM failures")
        return {(r[0], r[1], r[2]): Failure(r[3], r[4], r[5], bool(r[6])) for r in rows}

    def idle_files(self) -> dict[tuple[str, int, int], tuple[int, float]]:
        """Files found fully shipped, with the size and mtime they had: while both stay the same
        a pass need not open them (shipper/loop.py). Empty for a state without the table."""
        try:
            rows = self.db.execute("SELECT container_id, dev, ino, size, mtime FROM idle_files").fetchall()
        except sqlite3.Error:
            return {}
        return {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}

    def binding(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, value FROM binding").fetchall())

    def is_empty(self) -> bool:
        """No segment recorded (a new state, or one lost and created again)."""
        return self.db.execute("SELECT 1 FROM segments LIMIT 1").fetchone() is None

    # -- writes (each one transaction) ---------------------------------------------------
    def bind(self, values: dict[str, str]) -> None:
        """Record whose state this is (checked at every start, shipper/binding.py)."""
        if self.readonly:
            return
        with self._tx() as db:
            db.executemany("INSERT INTO binding (name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value", sorted(values.items()))

    def save_idle_files(self, files: dict[tuple[str, int, int], tuple[int, float]]) -> None:
        if self.readonly:
            return
        with self._tx() as db:
            db.execute("DELETE FROM idle_files")
            db.executemany("INSERT INTO idle_files (container_id, dev, ino, size, mtime) "
                           "VALUES (?, ?, ?, ?, ?)", [(*k, *v) for k, v in files.items()])

    def failed(self, container_id: str, dev: int, ino: int, size: int, cause: str) -> int:
        """One more pass that could not read this file; returns the passes in a row with ``cause``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO failures (container_id, dev, ino, size, cause, passes) "
                "VALUES (?, ?, ?, ?, ?, 1) "
                "ON CONFLICT(container_id, dev, ino) DO UPDATE SET size = excluded.size, given_up = 0, "
                "passes = CASE WHEN cause = excluded.cause THEN passes + 1 ELSE 1 END, "
                "cause = excluded.cause",
                (container_id, dev, ino, size, cause),
            )
            r = db.execute("SELECT passes FROM failures WHERE container_id = ? AND dev = ? AND ino = ?",
                           (container_id, dev, ino)).fetchone()
        return int(r[0])

    def gave_up(self, container_id: str, dev: int, ino: int, size: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE failures SET given_up = 1, size = ? "
                       "WHERE container_id = ? AND dev = ? AND ino = ?", (size, container_id, dev, ino))

    def clear_failure(self, container_id: str, dev: int, ino: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM failures WHERE container_id = ? AND dev = ? AND ino = ?",
                       (container_id, dev, ino))

    def rebuild(self, containers: list[tuple[str, int, list[tuple[bytes, int, int, int]]]]) -> None:
        """``--rebuild-state``: per container (id, next segment number, files as (head, dev,
        inode, logical bytes staged)), in one transaction."""
        with self._tx() as db:
            for cid, next_segment, files in containers:
                if next_segment > 1:
                    db.execute("INSERT INTO containers (container_id, next_segment) VALUES (?, ?) "
                               "ON CONFLICT(container_id) DO UPDATE SET "
                               "next_segment = MAX(next_segment, excluded.next_segment)", (cid, next_segment))
                for head, dev, ino, end in files:
                    db.execute("INSERT INTO sources (container_id, head_len, head_sha, dev, ino, "
                               "shipped_end, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (cid, len(head), head_sha(head), dev, ino, end, time.time()))

    def advance(self, src: Source, end: int) -> None:
        """Bytes before ``end`` are accounted for (staged, or explained as lost)."""
        with self._tx() as db:
            db.execute("UPDATE sources SET shipped_end = MAX(shipped_end, ?) WHERE id = ?", (end, src.id))
        src.shipped_end = max(src.shipped_end, end)

    def moved(self, src: Source, dev: int, ino: int) -> None:
        """A recorded source found in another inode (``.1`` gzipped into ``.1.gz``): remember it,
        so that the next pass finds it with the one-lookup path of ``match``."""
        if self.readonly or src.id == 0 or (dev, ino) == (src.dev, src.ino):
            return
        with self._tx() as db:
            db.execute("UPDATE sources SET dev = ?, ino = ? WHERE id = ?", (dev, ino, src.id))
        src.dev, src.ino = dev, ino

    def new_source(self, container_id: str, head: bytes, dev: int, ino: int) -> Source:
        """A source seen for the first time (recorded only together with its first plan)."""
        return Source(0, container_id, len(head), head_sha(head), dev, ino, 0, False)

    def plan(self, src: Source, seg: Segment) -> Segment:
        """Record the intent to stage ``seg``: its number is reserved, its range fixed."""
        if self.readonly:
            return seg
        with self._tx() as db:
            if src.id == 0:
                cur = db.execute(
                    "INSERT INTO sources (container_id, head_len, head_sha, dev, ino, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (src.container_id, src.head_len, src.head_sha, src.dev, src.ino, time.time()),
                )
                src.id = int(cur.lastrowid or 0)
            seg.source_id = src.id
            db.execute(
                "INSERT INTO containers (container_id, next_segment) VALUES (?, ?) "
                "ON CONFLICT(container_id) DO UPDATE SET next_segment = excluded.next_segment",
                (seg.container_id, seg.segment + 1),
            )
            db.execute(
                "INSERT INTO segments (container_id, segment, source_id, state, key, start, end, "
                "encoding, size, sha256, closes, metadata, planned) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seg.container_id, seg.segment, seg.source_id, seg.key, seg.start, seg.end,
                 seg.encoding, seg.size, seg.sha256, int(seg.closes), json.dumps(seg.metadata),
                 time.time()),
            )
        seg.state = "pending"
        return seg

    def shipped(self, seg: Segment) -> None:
        """S3 confirmed: the range counts as staged from now on."""
        with self._tx() as db:
            db.execute(
                "UPDATE segments SET state = 'shipped', finished = ? "
                "WHERE container_id = ? AND segment = ?",
                (time.time(), seg.container_id, seg.segment),
            )
            db.execute(
                "UPDATE sources SET shipped_end = MAX(shipped_end, ?), complete = complete OR ? "
                "WHERE id = ?", (seg.end, int(seg.closes), seg.source_id),
            )
            if CUT_FROM_META in seg.metadata:  # staged with the segment: an audit finds it there
                db.execute("DELETE FROM cuts WHERE source_id = ?", (seg.source_id,))
        seg.state = "shipped"

    def cut(self, src: Source, size: int) -> None:
        """``src`` is now ``size`` bytes, less than had shipped: what it still holds was shipped,
        so bytes written from now on ship from ``size``. The old end waits for the next segment."""
        if self.readonly:
            return
        with self._tx() as db:
            db.execute("UPDATE sources SET shipped_end = ? WHERE id = ?", (size, src.id))
            db.execute("INSERT INTO cuts (source_id, cut_from) VALUES (?, ?) "
                       "ON CONFLICT(source_id) DO UPDATE SET cut_from = MAX(cut_from, excluded.cut_from)",
                       (src.id, src.shipped_end))
        src.shipped_end = size

    def abandon(self, seg: Segment, reason: str = "") -> None:
        """Given up: ``reason`` goes into the explanation staged for the archive's digests."""
        if reason:
            seg.metadata = {**seg.metadata, ABANDONED_REASON: reason}
        with self._tx() as db:
            db.execute(
                "UPDATE segments SET state = 'abandoned', finished = ?, metadata = ? "
                "WHERE container_id = ? AND segment = ?",
                (time.time(), json.dumps(seg.metadata), seg.container_id, seg.segment),
            )
        seg.state = "abandoned"

    def explained(self, seg: Segment) -> None:
        with self._tx() as db:
            db.execute("UPDATE segments SET state = 'explained' WHERE container_id = ? AND segment = ? "
                       "AND state = 'abandoned'", (seg.container_id, seg.segment))
        seg.state = "explained"

    def mark_complete(self, source_id: int) -> None:
        if not self.readonly:
            with self._tx() as db:
                db.execute("UPDATE sources SET complete = 1 WHERE id = ?", (source_id,))

    def grow_head(self, src: Source, head: bytes, dev: int, ino: int) -> None:
        """Remember a longer head (up to HEAD_MAX) and the inode the source lives in now."""
        if self.readonly or src.id == 0:
            return
        if len(head) <= src.head_len and (dev, ino) == (src.dev, src.ino):
            return
        new_len = max(src.head_len, len(head))
        sha = head_sha(head[:new_len])
        with self._tx() as db:
            db.execute(
                "UPDATE sources SET head_len = ?, head_sha = ?, dev = ?, ino = ? WHERE id = ?",
                (new_len, sha, dev, ino, src.id),
            )
        src.head_len, src.head_sha, src.dev, src.ino = new_len, sha, dev, ino


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def unplan(state: State, seg: Segment) -> None:
    """Forget a pending segment that certainly created nothing (its bytes changed before
    anything was sent in this very process), so that its number is used again: no gap."""
    with state._tx() as db:
        db.execute("DELETE FROM segments WHERE container_id = ? AND segment = ? AND state = 'pending'",
                   (seg.container_id, seg.segment))
        db.execute("UPDATE containers SET next_segment = ? WHERE container_id = ? AND next_segment = ?",
                   (seg.segment, seg.container_id, seg.segment + 1))

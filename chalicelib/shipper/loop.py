"""One pass over Docker's data root and kubelet's pods root, and the daemon loop around it.

Per container, files are taken oldest content first (``.N`` … ``.1``, live) and a problem
with one stops that container for this pass, so that segment numbers follow the order in
which Docker wrote the bytes. A pending segment left by a killed run is finished first.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, BinaryIO

from .. import layout
from ..crilog import line_time_for
from ..errors import LogarchiveError
from ..staged import (
    COMPRESSED_SIZE_META,
    CUT_FROM_META,
    EVENT_META,
    GZIP,
    IDENTITY,
    source_head,
    staged_metadata,
)
from . import eligibility
from .config import ShipConfig
from .heartbeat import PassReporter, pass_line, waiting
from .history import History, Unavailable
from .identity import (
    HEAD_MAX,
    GzipIncomplete,
    first_line,
    iter_salvage,
    last_line_end,
    read_head,
    salvage_length,
)
from .pods import scan_pods
from .report import Summary, human
from .scan import CHANGING, NOT_REGULAR, Container, LogFile, scan_root
from .segment import Measured, SegmentChanged, Staged, measure
from .state import ABANDONED_REASON, Failure, Segment, Source, State, unplan
from .upload import Conflict, Interrupted, Staging, Uploader, UploadError, make_client
from .watch import Watcher

log = logging.getLogger("logarchive.ship")

COMPRESSING = "rotated file being compressed by Docker (the plain copy ships instead)"
EMPTY = "empty file"
VANISHED = "file renamed or removed between scan and read"
REPLACED = "another file took this name between scan and read"
CHANGED = "file changed while being read (truncated or rewritten): nothing staged"
UNREADABLE = "file unreadable or corrupt: skipped this pass (given up after --give-up-after passes)"
GAVE_UP = "file given up after --give-up-after passes: what could be read shipped, the rest explained as lost"
UNEXPECTED = "unexpected error (reported; the other containers ship)"
DENIED = "permission denied"
SHRANK = "file is shorter than what was already staged (truncated by hand?)"
NO_CONFIG = "container config unreadable: its live log waits, rotated logs still ship"
S3_FAILED = "S3 upload failed (retried next pass)"
NOT_CHECKED = ("S3 unreachable: the state cannot be checked against this host's history, nothing ships "
               "(retried next pass)")
# An abandoned segment's explanation (docs/AUDIT.md): an empty staged object with these fields.
EVENT_FIELDS = frozenset({
    "logarchive-stack", "logarchive-host", "logarchive-container-id", "logarchive-container-name",
    "logarchive-kind", "logarchive-resource-id", "logarchive-service-id", "logarchive-segment",
    "logarchive-rotation", "logarchive-byte-start", "logarchive-byte-end", ABANDONED_REASON,
    COMPRESSED_SIZE_META,
})
CONFLICT = "staging key holds another object (left untouched)"
LOST = "bytes deleted by Docker before they could be staged"
ROOT = "Docker data root unreadable"
PODS_ROOT = "pods root unreadable"
PARALLEL = 8  # containers a watcher's pass ships at once (docs/PERFORMANCE.md, the race with kubelet)


def _label(cid: str, f: LogFile) -> str:
    """``0123456789ab…-json.log.1``: short enough for a log line, exact enough to find
    (a Kubernetes container: ``<pod uid>_<container>_<restart>/<file>``)."""
    if "_" in cid:
        return f"{cid}/{f.name}"
    return f"{cid[:12]}…{f.name[len(cid):]}" if f.name.startswith(cid) else f"{cid[:12]}/{f.name}"


def _exclusive(path: str) -> BinaryIO:
    """One shipper per state file: two would plan the same segment numbers. The kernel drops
    the lock when the process dies, kill -9 included."""
    fh = open(path, "ab")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise LogarchiveError(f"another logarchive ship is running with the state {path[:-5]}") from None
    return fh


class Unreadable(Exception):
    """A file that cannot be read or decompressed (EIO, a damaged .gz): counted per pass and
    given up after ``--give-up-after`` passes of the same cause."""


def _read_head(fh: BinaryIO, f: LogFile) -> bytes:
    try:
        return read_head(fh, f.gz)
    except GzipIncomplete as exc:
        raise Unreadable(f"damaged gzip: {exc}") from None
    except OSError as exc:
        raise Unreadable(f"read error: {exc.strerror or exc}") from None


def _untimed_tail_time(fh: BinaryIO, c: Container, start: int) -> datetime | None:
    """The time to record for bytes from ``start`` of a plain file in which no line has one: the
    container's exit, when it has stopped, else the time of the line before ``start``."""
    if c.running is False and c.finished_at is not None:
        return c.finished_at
    if start <= 0:
        return None
    return line_time_for(c.fmt)(first_line(fh, last_line_end(fh, 0, start - 1)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text[:300]}"


class Shipper:
    def __init__(self, cfg: ShipConfig, *, client: Any = None, stop: threading.Event | None = None,
                 progress: Callable[[Summary], None] | None = None) -> None:
        self.cfg = cfg
        self.progress = progress  # called as segments ship (a terminal's progress line)
        self.staging = Staging.parse(cfg.staging)
        self.stop = stop or threading.Event()
        self._lock: BinaryIO | None = None
        if not cfg.dry_run:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.state)), exist_ok=True)
            self._lock = _exclusive(cfg.state + ".lock")
        self.state = State(cfg.state, readonly=cfg.dry_run)
        self.client = client or make_client(cfg.endpoint_url or None, cfg.region or None, cfg.max_attempts)
        self.uploader = Uploader(self.client, self.staging.bucket, part_size=cfg.part_size,
                                 concurrency=cfg.jobs, stop=self.stop)
        self._dry_next: dict[str, int] = {}
        self.closed: set[tuple[int, int]] = set()  # (dev, inode) of CRI live logs closed for good
        self.watcher: Watcher | None = None
        self.reporter = PassReporter(cfg, self.client, self.staging.bucket, self.staging.prefix)
        # Files found fully shipped, by (container, dev, inode): (size, mtime) then. While those
        # are unchanged the file holds nothing new: the idle pass neither opens nor looks it up.
        self._done: dict[tuple[str, int, int], tuple[int, float]] = {}
        self._failures: dict[tuple[str, int, int], Failure] = {}  # loaded at each pass
        self._counted: dict[tuple[str, int, int], int] = {}  # failures counted in this pass
        self._started = cfg.dry_run  # the state's binding and history checked (start())
        self._scanned: list[Container] | None = None  # start()'s scan, used by the first pass
        self._saved_done = self.state.idle_files()  # the memo above, as the state keeps it
        self._done.update(self._saved_done)
        self._seen: set[tuple[str, int, int]] = set()  # files looked at in this pass

    def close(self) -> None:
        self.state.close()
        if self._lock is not None:
            self._lock.close()

    # -- the start: whose state, and is it behind what S3 holds? ---------------------------
    def binding(self) -> dict[str, str]:
        return {"host": self.cfg.host, "stack": self.cfg.stack, "staging": self.staging.url()}

    def history(self) -> History:
        host_prefix = "/".join(p for p in (self.staging.prefix, self.cfg.stack, self.cfg.host) if p)
        return History(self.client, self.staging.bucket, host_prefix, stack=self.cfg.stack,
                       archive_bucket=self.cfg.archive_bucket, classify=self._classify)

    def start(self) -> None:
        """Check (once) that the state is this host's and not behind its history in S3; with
        ``--rebuild-state``, rebuild an empty one from that history first. Raises
        LogarchiveError (one line) to refuse."""
        if self._started:
            return
        want, bound = self.binding(), self.state.binding()
        if bound and bound != want:
            raise LogarchiveError(
                f"state file {self.cfg.state} is the state of host {bound.get('host')!r}, stack "
                f"{bound.get('stack')!r}, staging {bound.get('staging')}, not of host {want['host']!r}, "
                f"stack {want['stack']!r}, staging {want['staging']}: another host's state would stage "
                "bytes again under numbers already used. Move it away, then start with --rebuild-state")
        scratch = Summary()
        containers = self._scan(scratch, None)
        if not scratch.problems:  # a root unreadable: the pass scans again and reports it
            self._scanned = containers
        history = self.history()
        empty = self.state.is_empty()
        if self.cfg.rebuild_state and empty:
            self._rebuild(history, containers)
        else:
            behind = self._behind(history, containers, empty)
            if behind:
                cid, where = behind
                hint = ("start with --rebuild-state to rebuild it from S3 first" if empty else
                        "move it away and start with --rebuild-state to rebuild it from S3")
                raise LogarchiveError(
                    f"state file {self.cfg.state} is behind this host's history in S3 (container {cid[:12]}: "
                    f"{where}): a lost, emptied, replaced or restored state would stage bytes again under "
                    f"numbers already used; {hint}")
        self.state.bind(want)
        self._started = True

    def _behind(self, history: History, containers: list[Container], empty: bool) -> tuple[str, str] | None:
        for c in containers:
            where = history.ahead(c.id, self.state.next_segment(c.id))
            if where is None and self.state.next_segment(c.id) == 1 and (empty or self.cfg.archive_bucket):
                where = history.archived_any(c)
            if where is not None:
                return c.id, where
        return None

    def _rebuild(self, history: History, containers: list[Container]) -> None:
        scratch = Summary()
        rebuilt, files, legacy = [], 0, 0
        for c in containers:
            r = history.rebuild(c, lambda f, c=c: self._open(f, _label(c.id, f), scratch))
            rebuilt.append((r.container_id, r.next_segment,
                            [(head, f.dev, f.ino, end) for f, head, end in r.files]))
            files += len(r.files)
            legacy += bool(r.legacy)
            if r.records:
                log.info("%s: rebuilt from %d segments in S3: next segment %d; %d files on disk staged "
                         "in part or whole%s", c.id[:12], r.records, r.next_segment, len(r.files),
                         f" ({r.legacy} archived without byte ranges: offsets from their lines' times)"
                         if r.legacy else "")
        self.state.rebuild(rebuilt)
        log.info("state %s rebuilt from %s%s: %d containers, %d files; %d containers with history older "
                 "than byte ranges in archive metadata", self.cfg.state, self.staging.url(),
                 f" and s3://{self.cfg.archive_bucket}" if self.cfg.archive_bucket else "",
                 len(rebuilt), files, legacy)

    # -- the loop ----------------------------------------------------------------------
    def run_forever(self) -> int:
        """Passes every ``interval`` seconds until ``stop`` is set (SIGTERM); returns 0.

        With a pods root, inotify (``watch.py``) also wakes it: a Kubernetes container's log
        closed for good, a rotation or a new pod runs a pass over those pods at once. A pass that
        fails as a whole is logged in one line and the next one runs (the per-pass guard)."""
        try:
            self.start()
        except Unavailable:
            pass  # the first pass reports it, and every pass tries again
        roots = " and ".join(r for r in (self.cfg.docker_root, self.cfg.pods_root) if r)
        if self.cfg.pods_root:
            self.watcher = Watcher.open(self.cfg.pods_root)
            if self.watcher is None:
                log.warning("%s: no filesystem notifications (inotify); polling every %gs only",
                            self.cfg.pods_root, self.cfg.interval)
        log.info("shipping %s to %s every %gs%s", roots, self.staging.url(), self.cfg.interval,
                 " and as kubelet's files change" if self.watcher else "")
        try:
            first = True
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    s = self.run_pass()
                except Exception as exc:  # noqa: BLE001 - the per-pass guard: report, carry on
                    log.error("pass failed, retried in %gs: %s", self.cfg.interval, _one_line(exc))
                    self.stop.wait(self.cfg.interval)
                    continue
                log.info("%s", pass_line(s, time.monotonic() - t0))  # every pass: nothing shipped is news too
                if first:
                    log.info("first pass: %d containers in %.1f s", s.containers, time.monotonic() - t0)
                    first = False
                self._idle(t0)
        finally:
            if self.watcher is not None:
                self.watcher.close()
        log.info("stopped cleanly")
        return 0

    def _log_pass(self, s: Summary) -> None:
        if s.segments or s.problems:
            log.info("pass: %d segments (%s) shipped, %d problems%s", s.segments, human(s.bytes),
                     sum(s.problems.values()),
                     "".join(f"; {n}× {r}" for r, n in s.problems.most_common(3)))

    def _idle(self, t0: float) -> None:
        """Until the next full pass; with a watcher, passes over the pods that changed meanwhile."""
        while not self.stop.is_set():
            left = self.cfg.interval - (time.monotonic() - t0)
            if left <= 0:
                return
            if self.watcher is None:
                self.stop.wait(left)
                return
            changes = self.watcher.wait(min(left, 1.0))
            if changes.overflow:
                return  # events were lost: a full pass now
            if changes:
                self.closed |= changes.closed
                self.watcher.sync()
                try:
                    self._log_pass(self.run_pass(only=changes.pods))
                except Exception as exc:  # noqa: BLE001 - the per-pass guard
                    log.error("pass over changed pods failed: %s", _one_line(exc))

    def _scan(self, s: Summary, only: set[str] | None) -> list[Container]:
        containers: list[Container] = []
        if self.cfg.docker_root and only is None:
            try:
                containers += scan_root(self.cfg.docker_root)
            except OSError as exc:
                self._problem(s, ROOT, self.cfg.docker_root, exc.strerror or str(exc))
        if self.cfg.pods_root:
            try:
                found = scan_pods(self.cfg.pods_root, only=only, closed=self.closed)
            except OSError as exc:
                self._problem(s, PODS_ROOT, self.cfg.pods_root, exc.strerror or str(exc))
            else:
                if only is None:  # forget closed inodes no longer on disk
                    live = {(f.dev, f.ino) for c in found for f in c.files if f.live}
                    self.closed &= live
                containers += found
        return containers

    def run_pass(self, only: set[str] | None = None) -> Summary:
        """One pass over every root (``only``: just these pod directories of the pods root)."""
        s = Summary(on_shipped=self.progress)
        try:
            self.start()
        except Unavailable as exc:
            self._problem(s, NOT_CHECKED, self.staging.url(), str(exc))
            if only is None:
                self.reporter.after_pass(s)
            return s
        if only is None and self._scanned is not None:
            containers = self._scanned  # start()'s scan, a moment ago
        else:
            containers = self._scan(s, only)
        self._scanned = None
        s.containers = len(containers)
        self._failures = self.state.failures()
        self._counted = {}
        if only is None:
            self._seen = set()
        if only is None and not s.problems:
            present = {c.id for c in containers}
            for seg in self.state.pending():
                if seg.container_id not in present and not self.stop.is_set():
                    self._retry(None, seg, [], s)  # the container was removed with a segment pending
        if only is not None and len(containers) > 1 and not self.cfg.dry_run:
            self._in_parallel(containers, s)
        else:
            for c in containers:
                if self.stop.is_set():
                    break
                self._guarded(c, s)
        if not self.cfg.dry_run:
            self._explain_abandoned(s)
            if only is None:
                self._keep_done()
        if only is None:  # a pass over a few pods (the watcher's) says nothing of the host
            self.reporter.after_pass(s)  # the heartbeat (and --metrics-file)
        return s

    def _guarded(self, c: Container, s: Summary) -> None:
        """One container; a surprise in it (a bug) is reported and the others ship."""
        try:
            self._container(c, s)
        except (sqlite3.Error, LogarchiveError):
            raise  # the state file itself failed: not this container's fault
        except Exception as exc:  # noqa: BLE001 - one container's surprise never stops the host
            self._problem(s, UNEXPECTED, c.id[:12], _one_line(exc))

    def _keep_done(self) -> None:
        """Keep the fully-shipped files of this pass (and only those: files gone are forgotten)
        in the state, so that a new process (``--once``) skips them too. Written when changed."""
        self._done = {k: v for k, v in self._done.items() if k in self._seen}
        if self._done != self._saved_done and not self.stop.is_set():
            self.state.save_idle_files(self._done)
            self._saved_done = dict(self._done)

    def _in_parallel(self, containers: list[Container], s: Summary) -> None:
        """A watcher's pass (exits, rotations): up to ``PARALLEL`` containers at once, so that a
        node whose pods all exit together ships them before kubelet deletes their logs. Each
        container is still taken whole by one thread (its segments in order); each thread has its
        own connection to the state (SQLite serialises the writes) and its own summary."""
        work = list(reversed(containers))
        lock = threading.Lock()

        def run() -> Summary:
            sib = self._sibling()
            sub = Summary()
            try:
                while not self.stop.is_set():
                    with lock:
                        if not work:
                            break
                        c = work.pop()
                    sib._guarded(c, sub)
            finally:
                sib.state.close()
            return sub

        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(containers))) as pool:
            futures = [pool.submit(run) for _ in range(min(PARALLEL, len(containers)))]
            for f in futures:
                s.merge(f.result())

    def _sibling(self) -> Shipper:
        """This shipper for another thread: the same S3 client and uploader, its own state connection."""
        sib = object.__new__(Shipper)
        sib.__dict__.update(self.__dict__)
        sib._lock = None
        sib.state = State(self.cfg.state)
        return sib

    def _explain_abandoned(self, s: Summary) -> None:
        """Stage an empty ``…-abandoned.event`` object for each abandoned segment: the archiver
        records it in the next digest, so an audit shows the gap as explained, not as a loss."""
        for seg in self.state.abandoned():
            if self.stop.is_set():
                return
            meta = {k: v for k, v in seg.metadata.items() if k in EVENT_FIELDS}
            meta[EVENT_META] = "abandoned"
            key = self.staging.event_key(self.cfg.stack, self.cfg.host, seg.container_id, seg.segment,
                                         "abandoned")
            try:
                self.uploader.stage_event(key, meta)
            except UploadError as exc:
                self._problem(s, S3_FAILED, f"{seg.container_id[:12]} segment {seg.segment}", str(exc))
                return
            self.state.explained(seg)
            log.info("%s segment %d: abandoned; explanation staged as %s", seg.container_id[:12], seg.segment,
                     self.staging.url(key))

    # -- one container -------------------------------------------------------------------
    def _container(self, c: Container, s: Summary) -> None:
        s.names[c.id] = (c.name if c.k8s is None else
                         f"{c.k8s.namespace}/{c.k8s.pod_name}/{c.name} restart {c.k8s.restart_count}")
        for name, cause in c.file_errors:
            self._problem(s, f"cannot read: {cause}", f"{c.id[:12]}/{name}")
        if c.config_error:
            self._problem(s, NO_CONFIG, c.id[:12], c.config_error)
        if c.changing:  # its files may be missing one renamed while listed: numbers stay in byte order
            self._transient(s, CHANGING, c.id[:12])
            return
        files = [f for f in c.ordered_files()]
        plain = {f.rotation for f in files if not f.gz}
        for seg in self.state.pending(c.id):
            if not self._retry(c, seg, files, s):
                return
        for f in files:
            if self.stop.is_set():
                return
            if f.gz and f.rotation in plain:
                s.wait(COMPRESSING, _label(c.id, f))
                continue
            if not self._file(c, f, s):
                return

    def _open(self, f: LogFile, label: str, s: Summary) -> BinaryIO | None:
        try:
            # O_NONBLOCK: a FIFO swapped in since the scan opens without waiting for a writer,
            # and is refused below; O_NOFOLLOW: a link is never followed.
            fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self._transient(s, VANISHED, label)
            return None
        except PermissionError:
            self._problem(s, DENIED, label)
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._problem(s, NOT_REGULAR, label)
            else:
                self._problem(s, f"cannot open: {exc.strerror or exc}", label)
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._problem(s, NOT_REGULAR, label)
            return None
        if (st.st_dev, st.st_ino) != (f.dev, f.ino):
            os.close(fd)
            self._transient(s, REPLACED, label)
            return None
        return os.fdopen(fd, "rb")

    def _head(self, fh: BinaryIO, f: LogFile, label: str, s: Summary) -> bytes | None:
        """The file's head, or None after reporting why it cannot be read (a pending segment's
        retry; ``_file`` counts such failures instead, with ``_read_head``)."""
        try:
            return _read_head(fh, f)
        except Unreadable as exc:
            self._problem(s, UNREADABLE, label, str(exc))
        return None

    def _file(self, c: Container, f: LogFile, s: Summary) -> bool:
        """Ship what is closed and new in ``f``; False stops this container for this pass.

        A file that cannot be read or decompressed stops its container for this pass (segment
        numbers stay in byte order) and is counted; after ``give_up_after`` passes of the same
        cause it is given up (``_give_up``) and the container's newer files ship."""
        key = (c.id, f.dev, f.ino)
        self._seen.add(key)
        failure = self._failures.get(key)
        if failure is not None and failure.given_up and failure.size == f.size:
            return True  # given up and explained; tried again only if it changes
        if self._done.get(key) == (f.size, f.mtime):
            return True  # fully shipped and unchanged since: nothing new (the idle pass)
        label = _label(c.id, f)
        fh = self._open(f, label, s)
        if fh is None:
            return False
        with fh:
            try:
                ok = self._ship_file(c, f, fh, label, s)
            except Unreadable as exc:
                return self._unreadable(c, f, fh, label, str(exc), s)
        if failure is not None and not self.cfg.dry_run:
            self.state.clear_failure(*key)
            del self._failures[key]
        return ok

    def _ship_file(self, c: Container, f: LogFile, fh: BinaryIO, label: str, s: Summary) -> bool:
        key = (c.id, f.dev, f.ino)
        head = _read_head(fh, f)
        if not head:
            s.wait(EMPTY, label)
            return True
        src = self.state.match(c.id, head, f.dev, f.ino)
        if src is not None and src.complete:
            if not self.cfg.dry_run:
                self.state.moved(src, f.dev, f.ino)
            self._done[key] = (f.size, f.mtime)
            return True
        shipped = src.shipped_end if src else 0
        st = os.fstat(fh.fileno())
        if not f.gz and st.st_size < shipped:
            # What it still holds was shipped; what is written after ships from its new end.
            self._problem(s, SHRANK, label, f"{st.st_size} < {shipped} bytes; shipping resumes "
                          f"at byte {st.st_size}, the cut recorded in the next segment")
            if src is not None and not self.cfg.dry_run:
                self.state.cut(src, st.st_size)
            return False
        encoding, end, closes = IDENTITY, None, True
        if f.gz:
            encoding = GZIP if shipped == 0 else IDENTITY  # a tail after a --max-age segment
        elif f.rotation > 0:
            d = eligibility.rotated(st.st_size, shipped)
            if d.end is None:
                if src is not None:
                    self.state.mark_complete(src.id)
                    self._done[key] = (f.size, f.mtime)
                return True
            end = d.end
        else:
            if c.running is None:
                return True  # config unreadable: counted once for the container
            # A CRI log not running is closed by the runtime (it exited or restarted): its
            # last bytes are final, no --settle (Docker's Running flag lags, kubelet's files do not).
            settle = 0.0 if c.k8s is not None else self.cfg.settle
            d = eligibility.live(fh, c, st.st_size, st.st_mtime, shipped, now=time.time(),
                                 max_age=self.cfg.max_age, settle=settle, line_time=line_time_for(c.fmt))
            if d.end is None:
                if d.reason != eligibility.NOTHING_NEW:
                    s.wait(d.reason, label)
                    s.backlog(*waiting(fh, shipped, st.st_size))
                elif src is not None:
                    self._done[key] = (f.size, f.mtime)
                return True
            end, closes = d.end, False
        staged = Staged(fh, f.gz, encoding, shipped, end)
        try:
            m = measure(staged, self._part_size(staged, st.st_size), line_time=line_time_for(c.fmt))
        except GzipIncomplete as exc:
            raise Unreadable(f"damaged gzip: {exc}") from None
        except SegmentChanged as exc:
            self._transient(s, CHANGED, label, str(exc))
            return False
        except OSError as exc:
            raise Unreadable(f"read error: {exc.strerror or exc}") from None
        if m.end <= shipped:  # a .gz holding nothing beyond what already shipped
            if src is not None:
                self.state.mark_complete(src.id)
                self._done[key] = (f.size, f.mtime)
            return True
        if m.first is None and not f.gz:
            # No line with a time: a killed container's unterminated last record shipping alone.
            # It was written before the container's exit and after the line before it.
            t = _untimed_tail_time(fh, c, shipped)
            if t is not None:
                m = replace(m, first=t, last=t)
        if src is None:
            src = self.state.new_source(c.id, head, f.dev, f.ino)
        else:
            self.state.grow_head(src, head, f.dev, f.ino)
        seg = self._segment(c, f, m, src, closes)
        if self.cfg.dry_run:
            s.planned.append(f"{label} bytes [{m.start}, {m.end}) as segment {seg.segment} "
                             f"({human(m.size)}, {seg.encoding}) -> {self.staging.url(seg.key)}")
            s.shipped(c.id, m.size)
            return True
        self.state.plan(src, seg)
        sent = self._send(seg, staged, m, label, s, fresh=True)
        if f.rotation == 0 and not f.gz:  # what this live log still holds back
            s.backlog(*waiting(fh, m.end if sent else shipped, st.st_size))
        return sent

    # -- files that cannot be read -------------------------------------------------------
    def _unreadable(self, c: Container, f: LogFile, fh: BinaryIO, label: str, cause: str, s: Summary) -> bool:
        """Count this pass's failure of ``f``; give it up after ``give_up_after`` in a row."""
        n = self.cfg.give_up_after
        if self.cfg.dry_run:
            self._problem(s, UNREADABLE, label, cause)
            return False
        key = (c.id, f.dev, f.ino)
        if key not in self._counted:  # once per pass, however often it is met
            self._counted[key] = self.state.failed(c.id, f.dev, f.ino, f.size, cause)
        passes = self._counted[key]
        if passes < n:
            self._problem(s, UNREADABLE, label, f"{cause}; pass {passes} of {n} before it is given up")
            return False
        return self._give_up(c, f, fh, label, cause, passes, s)

    def _give_up(self, c: Container, f: LogFile, fh: BinaryIO, label: str, cause: str, passes: int,
                 s: Summary) -> bool:
        """Ship the readable prefix of a damaged .gz (decompressed), then explain the rest as lost
        with an abandoned segment (``_explain_abandoned`` stages it); the file is not tried again
        while it stays as it is. True when done (the container's newer files go on); False when
        S3 failed (the give-up is retried next pass)."""
        try:
            head = read_head(fh, f.gz)
        except (GzipIncomplete, OSError):
            head = b""
        try:
            size = os.fstat(fh.fileno()).st_size
            readable = salvage_length(fh) if f.gz else 0
            if f.gz and not head and readable:
                head = b"".join(iter_salvage(fh, 0, min(HEAD_MAX, readable)))
        except OSError:
            size, readable = f.size, 0
        src = self.state.match(c.id, head, f.dev, f.ino) if head else None
        if src is None:
            src = self.state.new_source(c.id, head, f.dev, f.ino)
        kept = src.shipped_end
        if readable > kept:  # the readable prefix first, decompressed (ARCHITECTURE.md)
            staged = Staged(fh, True, IDENTITY, kept, readable, salvage=True)
            try:
                m = measure(staged, line_time=line_time_for(c.fmt))
            except (GzipIncomplete, SegmentChanged, OSError) as exc:
                self._problem(s, UNREADABLE, label, f"its readable part cannot be read again ({exc})")
                return False
            seg = self._segment(c, f, m, src, False)
            self.state.plan(src, seg)
            if not self._send(seg, staged, m, label, s, fresh=True):
                return False
            kept = readable
        if f.gz:
            lost = (f"{size} compressed bytes on disk; decompressed bytes from {kept} on are lost "
                    "(their end is unknown)")
        else:
            lost = f"bytes [{kept}, {size}) are lost"
        reason = f"given up after {passes} passes ({cause}): {lost}"
        number = self.state.next_segment(c.id)
        kind, rid, sid = self._classify(c) if c.k8s is None else (layout.K8S, "", "")
        meta = staged_metadata(
            stack=self.cfg.stack, host=self.cfg.host, container_id=c.id, container_name=c.name,
            kind=kind, resource_id=rid, service_id=sid, segment=number, rotation=f.rotation,
            byte_start=kept, byte_end=kept if f.gz else size, first=None, last=None, lines=0,
            sha256="", encoding=IDENTITY, k8s=c.k8s,
        )
        if f.gz:
            meta["logarchive-byte-end"] = ""  # unknown: the compressed size says what was on disk
            meta[COMPRESSED_SIZE_META] = str(size)
        key = self.staging.event_key(self.cfg.stack, self.cfg.host, c.id, number, "abandoned")
        gap = Segment(c.id, number, src.id, "new", key, kept, kept if f.gz else size, IDENTITY, 0, "",
                      True, meta)
        self.state.plan(src, gap)
        self.state.abandon(gap, reason)
        if f.gz:
            self.state.mark_complete(src.id)
        else:
            self.state.advance(src, size)
        self.state.gave_up(c.id, f.dev, f.ino, f.size)
        self._problem(s, GAVE_UP, label, f"{reason}; explained as segment {number}")
        return True

    def _part_size(self, staged: Staged, file_size: int) -> int:
        """Part size to hash parts by while measuring (0 when the size is not known up front)."""
        if staged.encoding == GZIP:
            return self.uploader.part_size_for(file_size)
        if staged.gz or staged.end is None:
            return 0
        return self.uploader.part_size_for(staged.end - staged.start)

    def _segment(self, c: Container, f: LogFile, m: Measured, src: Source, closes: bool) -> Segment:
        if self.cfg.dry_run:
            number = self._dry_next.get(c.id) or self.state.next_segment(c.id)
            self._dry_next[c.id] = number + 1
        else:
            number = self.state.next_segment(c.id)
        kind, rid, sid = self._classify(c) if c.k8s is None else (layout.K8S, "", "")
        meta = staged_metadata(
            stack=self.cfg.stack, host=self.cfg.host, container_id=c.id, container_name=c.name,
            kind=kind, resource_id=rid, service_id=sid, segment=number, rotation=f.rotation,
            byte_start=m.start, byte_end=m.end, first=m.first, last=m.last, lines=m.lines,
            sha256=m.sha256, encoding=m.encoding, k8s=c.k8s,
            source_head=source_head(src.head_len, src.head_sha) if src.head_len else "",
        )
        cut_from = self.state.cut_from(src.id) if src.id else None
        if cut_from is not None:
            meta[CUT_FROM_META] = str(cut_from)
        key = self.staging.key(self.cfg.stack, self.cfg.host, c.id, number, m.sha256, m.encoding)
        return Segment(c.id, number, src.id, "new", key, m.start, m.end, m.encoding, m.size, m.sha256,
                       closes, meta)

    def _classify(self, c: Container) -> tuple[str, str, str]:
        """(kind, resource id, service id) from the container's labels; see layout.py."""
        labels, cfg = c.labels, self.cfg
        for kind, name in (("apps", cfg.app_label), ("databases", cfg.database_label),
                           ("proxy", cfg.endpoint_label)):
            rid = labels.get(name, "")
            if not rid:
                continue
            sid = labels.get(cfg.service_label, "") if kind == "apps" else ""
            if layout.ID_RE.match(rid) and (kind != "apps" or layout.ID_RE.match(sid)):
                return kind, rid, sid
            log.warning("%s: label %s=%r (service %r) is not a valid id; staged as unlabeled",
                        c.id[:12], name, rid, sid)
            break
        return layout.UNLABELED, "", ""

    # -- sending ---------------------------------------------------------------------------
    def _send(self, seg: Segment, staged: Staged, m: Measured, label: str, s: Summary, *,
              fresh: bool) -> bool:
        try:
            outcome = self.uploader.upload(seg.key, staged, m, seg.metadata)
        except (SegmentChanged, GzipIncomplete) as exc:
            # Nothing was created (checked before PutObject / CompleteMultipartUpload).
            if fresh:
                unplan(self.state, seg)
            else:
                self.state.abandon(seg, f"{CHANGED} ({exc})")
            self._transient(s, CHANGED, label, str(exc))
            return False
        except Conflict as exc:
            self.state.abandon(seg, CONFLICT)
            self._problem(s, CONFLICT, label, str(exc))
            return False
        except UploadError as exc:
            self._problem(s, S3_FAILED, label, str(exc))
            return False
        except Interrupted:
            log.info("%s: upload interrupted by shutdown (resumes on the next start)", label)
            return False
        except OSError as exc:
            self._problem(s, f"read error: {exc.strerror or exc}", label)
            return False
        self.state.shipped(seg)
        s.shipped(seg.container_id, seg.size, recovered=outcome == "existed")
        log.info("%s: bytes [%d, %d) staged as segment %d (%s, %s%s) -> %s", label, seg.start, seg.end,
                 seg.segment, human(seg.size), seg.encoding,
                 ", found already staged" if outcome == "existed" else "", self.staging.url(seg.key))
        return True

    def _retry(self, c: Container | None, seg: Segment, files: list[LogFile], s: Summary) -> bool:
        """Finish a segment planned by an earlier (killed) run: same bytes, same key."""
        cid = seg.container_id
        label = f"{cid[:12]} segment {seg.segment}"
        if self.cfg.dry_run:
            s.planned.append(f"{label}: finish the interrupted upload to {self.staging.url(seg.key)}")
            return False
        try:
            found = self.uploader.existing_sha(seg.key)
        except UploadError as exc:
            self._problem(s, S3_FAILED, label, str(exc))
            return False
        if found == seg.sha256:
            self.state.shipped(seg)
            s.shipped(cid, seg.size, recovered=True)
            log.info("%s: found already staged at %s (recorded now)", label, self.staging.url(seg.key))
            return True
        if found is not None:
            self.state.abandon(seg, CONFLICT)
            self._problem(s, CONFLICT, label, f"sha256 {found!r}")
            return True
        src = self.state.source(seg.source_id)
        plain = {f.rotation for f in files if not f.gz}
        clean = c is not None and not c.file_errors
        for f in files:
            if (f.gz and f.rotation in plain) or (seg.encoding == GZIP and not f.gz):
                continue
            fh = self._open(f, _label(cid, f), s)
            if fh is None:
                clean = False
                continue
            with fh:
                head = self._head(fh, f, _label(cid, f), s)
                if head is None:
                    clean = False
                    continue
                if src.matches(head):
                    return self._resend(seg, fh, f, s)
        if clean or c is None:
            # Nothing at the key and not on disk: never sent, or sent by the killed run and since
            # archived and unstaged. The archiver's marker tells which.
            try:
                archived = self.uploader.archived_as(seg.key, seg.sha256)
            except UploadError as exc:
                self._problem(s, S3_FAILED, label, str(exc))
                return False
            if archived is not None:
                self.state.shipped(seg)
                s.shipped(cid, seg.size, recovered=True)
                log.info("%s: staged by an interrupted run and archived already as %s (recorded now)",
                         label, archived)
                return True
            self.state.abandon(seg, LOST)
            self._problem(s, LOST, label, f"bytes [{seg.start}, {seg.end}) of a file no longer on disk")
            return True
        return False

    def _resend(self, seg: Segment, fh: BinaryIO, f: LogFile, s: Summary) -> bool:
        """Measure the planned range again (parts hashes are not kept) and send it."""
        label = _label(seg.container_id, f)
        log.info("%s: sending segment %d again, as planned by an interrupted run", label, seg.segment)
        staged = Staged(fh, f.gz, seg.encoding, seg.start, seg.end)
        try:
            m = measure(staged, self._part_size(staged, os.fstat(fh.fileno()).st_size))
        except (SegmentChanged, GzipIncomplete) as exc:
            self.state.abandon(seg, f"{CHANGED} ({exc})")
            self._transient(s, CHANGED, label, str(exc))
            return False
        if (m.sha256, m.size) != (seg.sha256, seg.size):
            self.state.abandon(seg, "the planned bytes are not on disk any more")
            self._transient(s, CHANGED, label, "the planned bytes are not on disk any more")
            return False
        return self._send(seg, staged, m, label, s, fresh=False)

    def _transient(self, s: Summary, reason: str, what: str, detail: str = "") -> None:
        s.retry(reason, what)
        log.warning("%s: %s%s", what, reason, f" ({detail})" if detail else "")

    def _problem(self, s: Summary, reason: str, what: str, detail: str = "") -> None:
        s.problem(reason, what)
        log.warning("%s: %s%s", what, reason, f" ({detail})" if detail else "")

"""One pass over Docker's data root and kubelet's pods root, and the daemon loop around it.

Per container, files are taken oldest content first (``.N`` … ``.1``, live) and a problem
with one stops that container for this pass, so that segment numbers follow the order in
which Docker wrote the bytes. A pending segment left by a killed run is finished first.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from .. import layout
from ..crilog import line_time_for
from ..errors import LogarchiveError
from ..staged import CUT_FROM_META, EVENT_META, GZIP, IDENTITY, staged_metadata
from . import eligibility
from .config import ShipConfig
from .heartbeat import PassReporter, pass_line, waiting
from .identity import GzipIncomplete, read_head, same_file
from .pods import scan_pods
from .report import Summary, human
from .scan import Container, LogFile, scan_root
from .segment import Measured, SegmentChanged, Staged, measure
from .state import ABANDONED_REASON, Segment, Source, State, unplan
from .upload import Conflict, Interrupted, Staging, Uploader, UploadError, make_client
from .watch import Watcher

log = logging.getLogger("logarchive.ship")

COMPRESSING = "rotated file being compressed by Docker (the plain copy ships instead)"
EMPTY = "empty file"
VANISHED = "file renamed or removed between scan and read"
REPLACED = "another file took this name between scan and read"
CHANGED = "file changed while being read (truncated or rewritten): nothing staged"
GZ_BAD = "compressed file incomplete or corrupt (retried next pass)"
DENIED = "permission denied"
SHRANK = "file is shorter than what was already staged (truncated by hand?)"
NO_CONFIG = "container config unreadable: its live log waits, rotated logs still ship"
S3_FAILED = "S3 upload failed (retried next pass)"
# An abandoned segment's explanation (docs/AUDIT.md): an empty staged object with these fields.
EVENT_FIELDS = frozenset({
    "logarchive-stack", "logarchive-host", "logarchive-container-id", "logarchive-container-name",
    "logarchive-kind", "logarchive-resource-id", "logarchive-service-id", "logarchive-segment",
    "logarchive-rotation", "logarchive-byte-start", "logarchive-byte-end", ABANDONED_REASON,
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

    def close(self) -> None:
        self.state.close()
        if self._lock is not None:
            self._lock.close()

    # -- the loop ----------------------------------------------------------------------
    def run_forever(self) -> int:
        """Passes every ``interval`` seconds until ``stop`` is set (SIGTERM); returns 0.

        With a pods root, inotify (``watch.py``) also wakes it: a Kubernetes container's log
        closed for good, a rotation or a new pod runs a pass over those pods at once."""
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
                s = self.run_pass()
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
                self._log_pass(self.run_pass(only=changes.pods))

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
        containers = self._scan(s, only)
        s.containers = len(containers)
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
                self._container(c, s)
        if not self.cfg.dry_run:
            self._explain_abandoned(s)
        if only is None:  # a pass over a few pods (the watcher's) says nothing of the host
            self.reporter.after_pass(s)  # the heartbeat (and --metrics-file)
        return s

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
                    sib._container(c, sub)
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
            fh = open(f.path, "rb")
        except FileNotFoundError:
            self._transient(s, VANISHED, label)
            return None
        except PermissionError:
            self._problem(s, DENIED, label)
            return None
        except OSError as exc:
            self._problem(s, f"cannot open: {exc.strerror or exc}", label)
            return None
        if not same_file(fh, f.dev, f.ino):
            fh.close()
            self._transient(s, REPLACED, label)
            return None
        return fh

    def _head(self, fh: BinaryIO, f: LogFile, label: str, s: Summary) -> bytes | None:
        try:
            return read_head(fh, f.gz)
        except GzipIncomplete as exc:
            self._problem(s, GZ_BAD, label, str(exc))
        except OSError as exc:
            self._problem(s, f"read error: {exc.strerror or exc}", label)
        return None

    def _file(self, c: Container, f: LogFile, s: Summary) -> bool:
        """Ship what is closed and new in ``f``; False stops this container for this pass."""
        label = _label(c.id, f)
        fh = self._open(f, label, s)
        if fh is None:
            return False
        with fh:
            head = self._head(fh, f, label, s)
            if head is None:
                return False
            if not head:
                s.wait(EMPTY, label)
                return True
            src = self.state.match(c.id, head, f.dev, f.ino)
            if src is not None and src.complete:
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
                    return True
                end, closes = d.end, False
            staged = Staged(fh, f.gz, encoding, shipped, end)
            try:
                m = measure(staged, self._part_size(staged, st.st_size), line_time=line_time_for(c.fmt))
            except GzipIncomplete as exc:
                self._problem(s, GZ_BAD, label, str(exc))
                return False
            except SegmentChanged as exc:
                self._transient(s, CHANGED, label, str(exc))
                return False
            if m.end <= shipped:  # a .gz holding nothing beyond what already shipped
                if src is not None:
                    self.state.mark_complete(src.id)
                return True
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

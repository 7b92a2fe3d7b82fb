"""Notice within a second that a Kubernetes container's log was closed for good (Linux inotify).

The runtime holds ``<restart>.log`` open while the container runs and closes it when the
container exits; kubelet may delete the pod's directory seconds later. But the runtime also
closes (and reopens) the file at every kubelet rotation, which first renames ``<restart>.log``
to ``<restart>.log.<stamp>``. So a close is an exit only when no rename of that name and no new
file of that name goes with it: a ``IN_CLOSE_WRITE`` on ``<restart>.log`` becomes an exit after
``grace`` seconds without ``IN_MOVED_FROM``/``IN_CREATE`` of the same name (a close after the
rename carries the new name anyway). Rotations and new pod or container directories wake the
shipper too, so rotated files ship long before kubelet removes them.

inotify through ``ctypes`` (the standard library: the shipper stays light); where inotify is
missing (not Linux, no watches left) ``Watcher.open`` returns None and the shipper polls at its
``--interval`` (docs/SHIPPER.md says what that guarantees).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
import select
import struct
import time
from dataclasses import dataclass, field

log = logging.getLogger("logarchive.ship")

IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
_LIVE = re.compile(r"^(0|[1-9][0-9]{0,9})\.log\Z", re.ASCII)
_ROTATED = re.compile(r"^(0|[1-9][0-9]{0,9})\.log\.\d{8}-\d{6}(\.gz)?\Z", re.ASCII)
ROOT_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR
POD_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR
CONTAINER_MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR
GRACE = 0.5  # seconds a close waits for the rename or new file of a rotation


def _libc():
    name = ctypes.util.find_library("c")
    lib = ctypes.CDLL(name or "libc.so.6", use_errno=True)
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return lib


@dataclass
class Changes:
    """What the watcher saw: pod directories to look at now, live logs closed for good."""

    pods: set[str] = field(default_factory=set)
    closed: set[tuple[int, int]] = field(default_factory=set)  # (dev, inode) of closed live logs
    overflow: bool = False  # events were lost: look at everything

    def __bool__(self) -> bool:
        return bool(self.pods or self.closed or self.overflow)


class Watcher:
    """inotify watches on the pods root, each pod directory and each container directory."""

    def __init__(self, root: str, fd: int, lib) -> None:
        self.root = os.path.abspath(root)
        self.fd, self.lib = fd, lib
        self.paths: dict[int, str] = {}  # watch descriptor -> directory (relative to root, "" = root)
        self.wds: dict[str, int] = {}
        self.candidates: dict[str, float] = {}  # container dir/<restart>.log -> time of its close
        self.full = False  # inotify refused a watch: the daemon also polls
        self._buf = b""

    @classmethod
    def open(cls, root: str) -> Watcher | None:
        try:
            lib = _libc()
            fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        w = cls(root, fd, lib)
        if not w._add("", ROOT_MASK):
            w.close()
            return None
        w.sync()
        return w

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _add(self, rel: str, mask: int) -> bool:
        path = os.path.join(self.root, rel) if rel else self.root
        wd = self.lib.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC and not self.full:
                self.full = True
                log.warning("inotify: no watches left (fs.inotify.max_user_watches); polling as well")
            return False
        self.paths[wd], self.wds[rel] = rel, wd
        return True

    def sync(self) -> None:
        """Watch every pod and container directory there is (new ones are added as they come)."""
        try:
            pods = [e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for pod in pods:
            self._watch_pod(pod)

    def _watch_pod(self, pod: str) -> None:
        if pod not in self.wds and not self._add(pod, POD_MASK):
            return
        try:
            with os.scandir(os.path.join(self.root, pod)) as it:
                cdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for c in cdirs:
            rel = f"{pod}/{c}"
            if rel not in self.wds:
                self._add(rel, CONTAINER_MASK)

    def wait(self, timeout: float) -> Changes:
        """Events for up to ``timeout`` seconds; returns early once there is something to do
        (a close waiting for its grace is waited for, even past ``timeout``)."""
        out = Changes()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            now = time.monotonic()
            self._confirm(now, out)
            if out:
                return out
            left = deadline - now
            if left <= 0 and not self.candidates:
                return out
            waits = [1.0]
            if left > 0:
                waits.append(left)
            if self.candidates:
                waits.append(min(self.candidates.values()) + GRACE - now)
            try:
                ready, _, _ = select.select([self.fd], [], [], max(0.0, min(waits)))
            except InterruptedError:
                return out
            if ready:
                self._read(out)

    def _confirm(self, now: float, out: Changes) -> None:
        for rel, at in list(self.candidates.items()):
            if now - at < GRACE:
                continue
            del self.candidates[rel]
            try:
                st = os.stat(os.path.join(self.root, rel), follow_symlinks=False)
            except OSError:
                continue  # gone already: whatever it held is beyond reach
            out.closed.add((st.st_dev, st.st_ino))
            out.pods.add(rel.split("/", 1)[0])

    def _read(self, out: Changes) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size: pos + _EVENT.size + length].rstrip(b"\0").decode(errors="replace")
            pos += _EVENT.size + length
            self._event(wd, mask, name, out)

    def _event(self, wd: int, mask: int, name: str, out: Changes) -> None:
        if mask & IN_Q_OVERFLOW:
            out.overflow = True
            return
        rel = self.paths.get(wd)
        if rel is None:
            return
        if mask & IN_IGNORED:
            del self.paths[wd]
            self.wds.pop(rel, None)
            return
        depth = 0 if rel == "" else rel.count("/") + 1
        if depth < 2:
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                pod = name if depth == 0 else rel
                if depth == 0:
                    self._watch_pod(name)
                elif f"{rel}/{name}" not in self.wds:
                    self._add(f"{rel}/{name}", CONTAINER_MASK)
                out.pods.add(pod)
            return
        pod = rel.split("/", 1)[0]
        path = f"{rel}/{name}"
        if mask & IN_CLOSE_WRITE and _LIVE.match(name):
            self.candidates[path] = time.monotonic()
        elif mask & (IN_MOVED_FROM | IN_CREATE) and _LIVE.match(name):
            self.candidates.pop(path, None)  # a rotation (rename, then a new file): not an exit
            if mask & IN_CREATE:
                out.pods.add(pod)  # a new restart's log closes the previous one
        elif mask & (IN_MOVED_TO | IN_CREATE) and _ROTATED.match(name):
            out.pods.add(pod)  # a rotated file (or its .gz): closed, ships now

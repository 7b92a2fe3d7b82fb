"""Read kubelet's ``/var/log/pods`` from files: Kubernetes containers and their CRI log files.

Layout (kubelet): ``<pods root>/<namespace>_<pod name>_<pod uid>/<container name>/`` holds
``<restart count>.log`` (written by the runtime, containerd or CRI-O), rotated by kubelet to
``<restart>.log.<YYYYMMDD-HHMMSS>`` and later gzipped (``….gz``). The sibling
``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`` is a symlink to a
``<restart>.log``: the only place the runtime's container id shows, read when present.

A Kubernetes container run is one ``<restart>.log`` series: identity ``<pod uid>_<container
name>_<restart>`` (``staged.K8sIdentity``), a ``scan.Container`` of format ``cri`` whose files
are numbered like Docker's (0 = the live ``<restart>.log``, 1 = the newest rotation, …), so the
shipper's loop treats both alike. The live file is closed when a later restart's log exists
or when the watcher saw the runtime close it for good (``closed``); nothing here follows a
symlink: a pod or container directory that is a symlink is reported, never read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..layout import DNS_LABEL_RE, DNS_SUBDOMAIN_RE, POD_UID_RE
from ..staged import CRI, K8sIdentity
from .scan import Container, LogFile, Snapshot, snapshot

LOG_NAME = re.compile(r"^(?P<restart>0|[1-9][0-9]{0,9})\.log(?:\.(?P<stamp>\d{8}-\d{6}))?(?P<gz>\.gz)?\Z",
                      re.ASCII)
_LINK_NAME = re.compile(r"-(?P<cid>[0-9a-f]{64})\.log\Z", re.ASCII)
SYMLINKED = "symlinked directory (not followed: it may point outside the pods root)"
BAD_NAME = "not a <namespace>_<pod>_<uid> directory"


def pod_dir_parts(name: str) -> tuple[str, str, str] | None:
    """(namespace, pod name, pod uid) of a pod directory name, or None."""
    parts = name.split("_")
    if len(parts) != 3:
        return None
    ns, pod, uid = parts
    if DNS_LABEL_RE.match(ns) and DNS_SUBDOMAIN_RE.match(pod) and POD_UID_RE.match(uid):
        return ns, pod, uid
    return None


def container_ids(containers_root: str) -> dict[str, str]:
    """``<pod dir>/<container>/<restart>.log`` → the runtime's container id, from the symlinks
    of ``/var/log/containers`` (empty when that folder is absent or unreadable)."""
    out: dict[str, str] = {}
    try:
        entries = list(os.scandir(containers_root))
    except OSError:
        return out
    for entry in entries:
        m = _LINK_NAME.search(entry.name)
        if not m:
            continue
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        tail = "/".join(target.rstrip("/").split("/")[-3:])
        out[tail] = m["cid"]
    return out


def read_pod(path: str, name: str, ids: dict[str, str], closed: set[tuple[int, int]]) -> list[Container]:
    """The container runs of one pod directory (errors recorded on them, never raised)."""
    ns, pod, uid = pod_dir_parts(name) or ("", "", "")
    out: list[Container] = []
    try:
        cdirs = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        c = Container(id=name, path=path, fmt=CRI, pod_dir=name, running=True)
        c.file_errors.append((name, f"cannot list the pod folder ({exc.strerror or exc})"))
        return [c]
    for cdir in cdirs:
        if cdir.is_symlink():
            c = Container(id=name, path=cdir.path, fmt=CRI, pod_dir=name, running=True)
            c.file_errors.append((f"{name}/{cdir.name}", SYMLINKED))
            out.append(c)
            continue
        if not cdir.is_dir(follow_symlinks=False) or not DNS_LABEL_RE.match(cdir.name):
            continue
        out.extend(_read_container_dir(cdir.path, name, ns, pod, uid, cdir.name, ids, closed))
    return out


def _read_container_dir(path: str, pod_dir: str, ns: str, pod: str, uid: str, cname: str,
                        ids: dict[str, str], closed: set[tuple[int, int]]) -> list[Container]:
    runs: dict[int, Container] = {}
    errors: list[tuple[str, str]] = []
    try:
        snap = snapshot(path, lambda name: LOG_NAME.match(name) is not None)
    except OSError as exc:
        errors.append((f"{pod_dir}/{cname}", f"cannot list the container folder ({exc.strerror or exc})"))
        snap = Snapshot([], [], True)
    errors.extend((f"{pod_dir}/{cname}/{name}", why) for name, why in snap.errors)
    stamps: dict[int, set[str]] = {}
    found: list[tuple[int, str, bool, str, os.stat_result]] = []
    for name, st in snap.files:
        m = LOG_NAME.match(name)
        assert m is not None
        restart = int(m["restart"])
        stamps.setdefault(restart, set())
        if m["stamp"]:
            stamps[restart].add(m["stamp"])
        found.append((restart, m["stamp"] or "", bool(m["gz"]), name, st))
    newest = max(stamps, default=-1)
    # Rotated files by age, newest first: 1, 2, … (a plain file and its .gz share a number).
    rank = {r: {t: i for i, t in enumerate(sorted(ts, reverse=True), 1)} for r, ts in stamps.items()}
    for restart, stamp, gz, name, st in found:
        c = runs.get(restart)
        if c is None:
            k8s = K8sIdentity(ns, pod, uid, cname, restart, ids.get(f"{pod_dir}/{cname}/{restart}.log", ""))
            c = runs[restart] = Container(id=k8s.staged_id, path=path, name=cname, fmt=CRI, k8s=k8s,
                                          pod_dir=pod_dir, running=restart == newest,
                                          changing=not snap.settled)
        rotation = rank[restart][stamp] if stamp else 0
        c.files.append(LogFile(path=os.path.join(path, name), rotation=rotation, gz=gz, dev=st.st_dev,
                               ino=st.st_ino, size=st.st_size, mtime=st.st_mtime))
        if rotation == 0 and not gz and (st.st_dev, st.st_ino) in closed:
            c.running = False  # the runtime closed it for good (the watcher saw it)
    out = [runs[r] for r in sorted(runs)]
    if errors:
        if out:
            out[-1].file_errors.extend(errors)
        else:
            c = Container(id=f"{pod_dir}/{cname}", path=path, fmt=CRI, pod_dir=pod_dir, running=True)
            c.file_errors.extend(errors)
            out.append(c)
    return out


def scan_pods(pods_root: str, *, containers_root: str | None = None, only: Iterable[str] | None = None,
              closed: set[tuple[int, int]] | None = None) -> list[Container]:
    """The container runs under ``pods_root`` (``only``: these pod directories); raises OSError
    when the root itself is unreadable. ``closed``: (dev, inode) of live logs known closed."""
    if containers_root is None:
        containers_root = os.path.join(os.path.dirname(os.path.abspath(pods_root)), "containers")
    ids = container_ids(containers_root)
    closed = closed or set()
    wanted = None if only is None else set(only)
    with os.scandir(pods_root) as it:
        entries = sorted((e for e in it if wanted is None or e.name in wanted), key=lambda e: e.name)
    out: list[Container] = []
    for entry in entries:
        if entry.is_symlink():
            c = Container(id=entry.name, path=entry.path, fmt=CRI, pod_dir=entry.name, running=True)
            c.file_errors.append((entry.name, SYMLINKED))
            out.append(c)
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if pod_dir_parts(entry.name) is None:
            c = Container(id=entry.name, path=entry.path, fmt=CRI, pod_dir=entry.name, running=True)
            c.file_errors.append((entry.name[:300], BAD_NAME))
            out.append(c)
            continue
        out.extend(read_pod(entry.path, entry.name, ids, closed))
    return out


"""A fake Kubernetes node's log tree, written the way kubelet and a CRI runtime write it.

``<root>/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``: the runtime (containerd,
CRI-O) appends one CRI record a line, ``<RFC 3339 nano time> <stream> <P|F> <message>``, a
message longer than its buffer split into ``P`` records ended by an ``F`` one; it holds the file
open while the container runs and closes it when it exits. kubelet rotates
(``pkg/kubelet/logs/container_log_manager.go``): rename ``<n>.log`` to ``<n>.log.<YYYYMMDD-HHMMSS>``,
then ask the runtime to reopen (a new ``<n>.log``, the old descriptor closed); it gzips every
rotated file but the newest (``….tmp`` → rename to ``….gz`` → remove the plain file) and removes
the oldest beyond ``max_files``. ``<root>/containers/<pod>_<namespace>_<container>-<id>.log`` is
kubelet's symlink naming the runtime's container id. A restart is a new ``<n+1>.log``; deleting a
pod removes its directory and symlinks.

Used by ``logarchive local fake-kubelet``, ``make demo``, the tests and bench; never by the shipper.
"""

from __future__ import annotations

import errno
import gzip
import os
import secrets
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def cri_time(ns: int | None = None) -> str:
    """Go's RFC3339Nano, as containerd writes it: trailing zeros of the fraction trimmed."""
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return text + (f".{digits}" if digits else "") + "Z"


def cri_records(text: str | bytes, stream: str = "stdout", ns: int | None = None, *,
                max_record: int = 16384, end: bytes = b"\n") -> bytes:
    """One message as the runtime writes it: ``P`` records of ``max_record`` bytes, then ``F``."""
    data = text.encode() if isinstance(text, str) else text
    stamp = cri_time(ns).encode()
    pieces = [data[i:i + max_record] for i in range(0, len(data), max_record)] or [b""]
    out = []
    for i, piece in enumerate(pieces):
        tag = b"F" if i == len(pieces) - 1 else b"P"
        out.append(stamp + b" " + stream.encode() + b" " + tag + b" " + piece + end)
    return b"".join(out)


class FakeCriContainer:
    """One container of a pod: its ``<restart>.log`` series, written as the runtime does."""

    def __init__(self, pod: FakePod, name: str) -> None:
        self.pod, self.name = pod, name
        self.dir = pod.dir / name
        self.dir.mkdir(parents=True)
        self.restart = -1
        self.fh = None
        self.id = ""
        self.written: dict[int, bytearray] = {}  # restart -> every byte written to that series
        self._last_stamp = 0

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.restart}.log"

    @property
    def link(self) -> Path:
        return self.pod.node.containers / f"{self.pod.name}_{self.pod.namespace}_{self.name}-{self.id}.log"

    @property
    def running(self) -> bool:
        return self.fh is not None

    def start(self) -> None:
        """(Re)start: a new container id, restart count + 1, a new log opened for append."""
        self.exit()
        self.restart += 1
        self.id = secrets.token_hex(32)
        self.written[self.restart] = bytearray()
        self.fh = open(self.log_path, "ab", buffering=0)
        try:
            os.symlink(os.path.abspath(self.log_path), self.link)
        except OSError as exc:  # kubelet logs it and goes on: the id is then not known from disk
            if exc.errno != errno.ENAMETOOLONG:
                raise

    def exit(self) -> None:
        """The container exits: the runtime closes its log (the file stays)."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def write(self, data: bytes) -> None:
        assert self.fh is not None, "container not running"
        self.fh.write(data)
        self.written[self.restart] += data

    def log(self, text: str | bytes, stream: str = "stdout", ns: int | None = None, **kw) -> bytes:
        data = cri_records(text, stream, ns, **kw)
        self.write(data)
        return data

    def rotate(self, *, compress: bool = True, max_files: int = 5) -> Path:
        """kubelet's rotation of the live log: rename, reopen, gzip older ones, drop excess."""
        assert self.fh is not None, "kubelet rotates running containers only"
        stamp = max(int(time.time()), self._last_stamp + 1)  # one rotation a second at most
        self._last_stamp = stamp
        rotated = self.dir / f"{self.restart}.log.{datetime.fromtimestamp(stamp, UTC):%Y%m%d-%H%M%S}"
        os.rename(self.log_path, rotated)
        new = open(self.log_path, "ab", buffering=0)  # ReopenContainerLog: the new file, then
        self.fh.close()  # the old descriptor closed
        self.fh = new
        if compress:
            for old in self.rotated_files():
                if old != rotated and not old.name.endswith(".gz"):
                    compress_file(old)
        files = self.rotated_files()
        for old in files[: max(0, len(files) - (max_files - 1))]:
            old.unlink()
        return rotated

    def rotated_files(self) -> list[Path]:
        """This restart's rotated files, oldest first."""
        prefix = f"{self.restart}.log."
        found = (p for p in self.dir.iterdir() if p.name.startswith(prefix) and not p.name.endswith(".tmp"))
        return sorted(found, key=lambda p: p.name)


def compress_file(path: Path) -> Path:
    """kubelet's compressLog: ``.tmp``, renamed to ``.gz``, then the plain file removed."""
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    dst_path = path.with_name(path.name + ".gz")
    os.rename(tmp, dst_path)
    path.unlink()
    return dst_path


class FakePod:
    def __init__(self, node: FakeKubelet, namespace: str, name: str, uid: str | None = None) -> None:
        self.node, self.namespace, self.name = node, namespace, name
        self.uid = uid or str(uuid.uuid4())
        self.dir = node.pods / f"{namespace}_{name}_{self.uid}"
        self.dir.mkdir(parents=True)
        self.containers: dict[str, FakeCriContainer] = {}

    def container(self, name: str, *, start: bool = True) -> FakeCriContainer:
        c = self.containers[name] = FakeCriContainer(self, name)
        if start:
            c.start()
        return c

    def delete(self) -> None:
        """kubelet removes a deleted pod's logs: its directory and its symlinks."""
        for c in self.containers.values():
            c.exit()
        for link in self.node.containers.glob(f"{self.name}_{self.namespace}_*"):
            link.unlink()
        shutil.rmtree(self.dir)


class FakeKubelet:
    """``<root>/pods`` and ``<root>/containers`` of one node."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pods = self.root / "pods"
        self.containers = self.root / "containers"
        self.pods.mkdir(parents=True, exist_ok=True)
        self.containers.mkdir(parents=True, exist_ok=True)
        self.all: list[FakePod] = []

    def pod(self, namespace: str, name: str, uid: str | None = None) -> FakePod:
        p = FakePod(self, namespace, name, uid)
        self.all.append(p)
        return p


SAMPLE_START = datetime(2022, 1, 1, 12, 0, tzinfo=UTC)


def sample_node(root: Path) -> FakeKubelet:
    """A node to try the shipper on (``logarchive local fake-kubelet``), a line a second from
    2022-01-01T12:00:00Z: ``shop/web-7d9f`` (container ``web``: rotated three times, the older
    rotations gzipped, a 40 KiB message split into partial records, stderr lines with
    "timeout"; then exited), ``shop/worker-0`` (restarted twice: ``0.log``, ``1.log``, ``2.log``,
    the last still running), ``kube-system/coredns-5d78c`` (exited) and ``batch/report-28`` (a
    deleted pod: nothing of it is left on disk)."""
    node = FakeKubelet(root)
    t0 = int(SAMPLE_START.timestamp()) * 1_000_000_000
    sec = 1_000_000_000
    web = node.pod("shop", "web-7d9f").container("web")
    for i in range(240):
        ns = t0 + i * sec
        if i % 25 == 7:
            web.log(f"upstream timeout on /orders/{i} after 30s", "stderr", ns)
        elif i == 100:
            web.log("payload " + "x" * 40000, "stdout", ns)
        else:
            web.log(f"GET /orders/{i} 200 {i % 97}ms", "stdout", ns)
        if i in (60, 120, 180):
            web.rotate()
    web.exit()
    worker = node.pod("shop", "worker-0").container("worker")
    for restart in range(3):
        if restart:
            worker.start()
        for i in range(20):
            worker.log(f"job {restart}-{i} done", "stdout", t0 + (restart * 100 + i) * sec)
    dns = node.pod("kube-system", "coredns-5d78c").container("coredns")
    for i in range(30):
        dns.log(f"[INFO] query {i} NOERROR", "stdout", t0 + i * 2 * sec)
    dns.exit()
    gone = node.pod("batch", "report-28")
    gone.container("report").log("report written", "stdout", t0)
    gone.delete()
    return node

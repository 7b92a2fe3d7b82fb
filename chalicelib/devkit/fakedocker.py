"""A fake Docker data root, written the way dockerd's json-file driver writes it (demo, tests).

``containers/<id>/config.v2.json`` and ``hostconfig.json`` are replaced atomically (write
then rename, like dockerd's AtomicWriteFile); ``<id>-json.log`` is appended one JSON line
per message; rotation is dockerd's (``daemon/logger/loggerutils/logfile.go``): remove the
oldest, rename ``.N-1`` → ``.N`` down to ``.1`` → ``.2``, rename the live file to ``.1``, open a
new live file; with compress=true the new ``.1`` is then gzipped *asynchronously* into
``.1.gz`` (``.1`` and a growing ``.1.gz`` coexist until the copy is done and ``.1`` is
unlinked), and the next rotation waits for that compression.

Used by ``make demo`` and the tests (``tests/dockerfake.py``); never by the shipper itself.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path


def docker_time(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def json_line(text: str, stream: str = "stdout", ns: int | None = None) -> bytes:
    obj = {"log": text + "\n", "stream": stream, "time": docker_time(ns)}
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Compression:
    """dockerd's compressFile, one chunk at a time: ``.1`` → ``.1.gz``, then unlink ``.1``."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.dst = src.with_name(src.name + ".gz")
        self.inp = open(src, "rb")
        self.out = open(self.dst, "wb")
        self.z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def step(self, nbytes: int = 4096) -> bool:
        block = self.inp.read(nbytes)
        if block:
            self.out.write(self.z.compress(block))
            self.out.flush()
            return False
        self.out.write(self.z.flush())
        self.out.close()
        self.inp.close()
        os.unlink(self.src)
        return True


class FakeContainer:
    def __init__(self, root: Path, name: str, *, cid: str | None = None, labels: dict | None = None,
                 max_size: int = 0, max_file: int = 1, compress: bool = False, running: bool = True) -> None:
        self.id = cid or secrets.token_hex(32)
        self.name = name
        self.dir = root / "containers" / self.id
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / f"{self.id}-json.log"
        self.labels = labels or {}
        self.max_size, self.max_file, self.compress = max_size, max_file, compress
        self.running = False
        self.started_at = self.finished_at = "0001-01-01T00:00:00Z"
        self.written = bytearray()  # every byte ever written to this container's log, in order
        self.rotations = 0
        self.compression: _Compression | None = None
        self.file_ends: list[int] = []  # stream offset where each rotated file ends, newest first
        opts = {"max-size": str(max_size), "max-file": str(max_file)} if max_size else {}
        if compress:
            opts["compress"] = "true"
        _atomic_write(self.dir / "hostconfig.json",
                      json.dumps({"LogConfig": {"Type": "json-file", "Config": opts}}).encode())
        self.log_path.touch()
        if running:
            self.start()
        else:
            self._save_config()

    # -- state ------------------------------------------------------------------------
    def _save_config(self) -> None:
        cfg = {
            "ID": self.id, "Name": "/" + self.name, "LogPath": str(self.log_path),
            "State": {"Running": self.running, "Paused": False, "Restarting": False,
                      "Pid": 4242 if self.running else 0, "ExitCode": 0,
                      "StartedAt": self.started_at, "FinishedAt": self.finished_at},
            "Config": {"Image": "demo:latest", "Labels": self.labels},
        }
        _atomic_write(self.dir / "config.v2.json", json.dumps(cfg).encode())

    def start(self) -> None:
        self.running = True
        self.started_at = docker_time()
        self._save_config()

    def stop(self) -> None:
        self.finish_compression()
        self.running = False
        self.finished_at = docker_time()
        self._save_config()

    # -- writing ------------------------------------------------------------------------
    def log(self, text: str, stream: str = "stdout", ns: int | None = None) -> bytes:
        line = json_line(text, stream, ns)
        self.write(line)
        return line

    def write(self, data: bytes, *, rotate: bool = True) -> None:
        """Append ``data`` (rotating first when the live file reached max-size, as dockerd does)."""
        if rotate and self.max_size and self.log_path.stat().st_size >= self.max_size:
            self.rotate()
        with open(self.log_path, "ab") as fh:
            fh.write(data)
        self.written += data

    def rotate(self) -> None:
        self.finish_compression()  # dockerd holds rotateMu until the previous compression ends
        ext = ".gz" if self.compress else ""
        if self.max_file >= 2:
            last = self.dir / f"{self.log_path.name}.{self.max_file - 1}{ext}"
            last.unlink(missing_ok=True)
            for i in range(self.max_file - 1, 1, -1):
                src = self.dir / f"{self.log_path.name}.{i - 1}{ext}"
                if src.exists():
                    os.rename(src, self.dir / f"{self.log_path.name}.{i}{ext}")
            os.rename(self.log_path, self.dir / f"{self.log_path.name}.1")
        else:
            self.log_path.unlink()
        self.log_path.touch()
        self.file_ends.insert(0, len(self.written))
        del self.file_ends[max(0, self.max_file - 1):]
        self.rotations += 1
        if self.compress and self.max_file >= 2:
            self.compression = _Compression(self.dir / f"{self.log_path.name}.1")

    def compress_step(self, nbytes: int = 4096) -> None:
        if self.compression is not None and self.compression.step(nbytes):
            self.compression = None

    def finish_compression(self) -> None:
        while self.compression is not None:
            self.compress_step(1 << 20)

    def next_rotation_deletes_up_to(self) -> int | None:
        """Stream offset up to which the next rotation deletes bytes (None: deletes nothing)."""
        if self.max_file >= 2 and len(self.file_ends) >= self.max_file - 1:
            return self.file_ends[-1]
        if self.max_file < 2:
            return len(self.written)
        return None


class FakeDockerRoot:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "containers").mkdir(parents=True, exist_ok=True)
        self.containers: list[FakeContainer] = []

    def add(self, name: str, **kw) -> FakeContainer:
        c = FakeContainer(self.root, name, **kw)
        self.containers.append(c)
        return c


SAMPLE_START = datetime(2022, 1, 1, 12, 0, tzinfo=UTC)


def sample_host(root: Path) -> FakeDockerRoot:
    """A Docker data root to try the shipper on (``logarchive local fake-docker``): exited
    containers of app 42 (one rotated, with compress=true) and database 9, a line a second from
    2022-01-01T12:00:00Z; some stderr lines of app 42 contain "timeout"."""
    fake = FakeDockerRoot(root)
    t0 = int(SAMPLE_START.timestamp()) * 1_000_000_000
    web = fake.add("web-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "7"},
                   max_size=8 * 1024, max_file=4, compress=True)
    for i in range(300):
        if i % 25 == 7:
            web.log(f"upstream timeout on /orders/{i} after 30s", "stderr", ns=t0 + i * 1_000_000_000)
        else:
            web.log(f"GET /orders/{i} 200 {i % 97}ms", "stdout", ns=t0 + i * 1_000_000_000)
    web.stop()
    db = fake.add("postgres-1", labels={"logarchive.database_id": "9"})
    for i in range(60):
        db.log(f"checkpoint {i} complete", "stderr", ns=t0 + i * 5_000_000_000)
    db.stop()
    return fake

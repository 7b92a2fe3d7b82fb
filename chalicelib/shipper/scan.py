"""Read Docker's data root from files: containers, their log settings and their log files.

No daemon or socket: ``containers/<id>/config.v2.json``, ``hostconfig.json`` and
``<id>-json.log`` with its rotated siblings ``.1`` … ``.N`` (``.N.gz`` when compress=true).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..dockerlog import parse_docker_time
from ..staged import DOCKER, K8sIdentity

_LOG_NAME = re.compile(r"^(?P<cid>[0-9a-f]{12,64})-json\.log(?:\.(?P<rot>\d+))?(?P<gz>\.gz)?\Z", re.ASCII)
_CONTAINER_DIR = re.compile(r"^[0-9a-f]{12,64}\Z")
SNAPSHOT_TRIES = 5  # listings of a folder that keeps changing before its container waits a pass
CHANGING = "its log files changed at every listing (rotating): looked at again next pass"


@dataclass(frozen=True)
class LogFile:
    """One physical log file as seen by the scan (its name changes, its content does not)."""

    path: str
    rotation: int  # 0 = the live ``-json.log``
    gz: bool
    dev: int
    ino: int
    size: int  # bytes on disk (compressed size for .gz)
    mtime: float

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def live(self) -> bool:
        return self.rotation == 0 and not self.gz


@dataclass
class Container:
    """One container directory; ``config_error`` is set when config.v2.json cannot be read."""

    id: str
    path: str
    name: str = ""
    running: bool | None = None  # None: unknown (config unreadable)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    log_driver: str = "json-file"
    max_file: int | None = None
    compress: bool = False
    config_error: str | None = None
    files: list[LogFile] = field(default_factory=list)
    file_errors: list[tuple[str, str]] = field(default_factory=list)  # (name, cause)
    fmt: str = DOCKER  # the log files' format: docker (json-file) or cri (shipper/pods.py)
    k8s: K8sIdentity | None = None  # a Kubernetes container run's names (cri)
    pod_dir: str = ""  # cri: the pod's directory name under the pods root
    changing: bool = False  # no moment of its folder found (``snapshot``): not shipped this pass

    def ordered_files(self) -> list[LogFile]:
        """Oldest content first: ``.N`` … ``.1``, then the live file; plain before ``.gz``."""
        return sorted(self.files, key=lambda f: (-f.rotation, f.gz))


# A folder entry named like a log that is not a regular file: a FIFO would block the open, a
# device never end, a link is not followed (loop.py says the same of what it meets at open).
NOT_REGULAR = "not a regular file (not followed): a FIFO, device or link is never opened"


@dataclass
class Snapshot:
    """The wanted files of one folder at one moment (:func:`snapshot`)."""

    files: list[tuple[str, os.stat_result]]  # (name, lstat) of each regular file, by name
    errors: list[tuple[str, str]]  # (name, why it is not in ``files``)
    settled: bool  # False: no moment found (the folder kept changing); the last round's view


def _listing(path: str, wanted: Callable[[str], bool]) -> dict[str, int]:
    """{name: inode as the listing gives it} of the ``wanted`` names of folder ``path``."""
    with os.scandir(path) as it:
        return {entry.name: entry.inode() for entry in it if wanted(entry.name)}


def snapshot(path: str, wanted: Callable[[str], bool]) -> Snapshot:
    """The regular files of folder ``path`` whose name is ``wanted``, each with its lstat, as
    they were at one moment; the others named with why (lstat's error, ``NOT_REGULAR``).

    A listing and then an lstat per name are not one moment: a rotation in between binds the
    listed live name to the new file, and the file listed under it, renamed, is in neither (a
    rotated file gzipped in between is gone the same way). Its bytes would then ship after the
    newer file's: segments out of byte order. So the folder is listed again after the lstats,
    until a listing finds the same names in the same inodes as the one before it: no rename,
    new file or removal came in between, so the lstats between them saw that moment (a log
    rotation never gives a name back the inode it had). The inodes compared are the listings'
    own (``d_ino``), never lstat's: on some filesystems (overlayfs) the two differ. After
    ``SNAPSHOT_TRIES`` rounds without such a pair: the last round, not ``settled``. Raises
    OSError when the folder cannot be listed."""
    listed = _listing(path, wanted)
    found = Snapshot([], [], False)
    for _ in range(SNAPSHOT_TRIES):
        found, whole = Snapshot([], [], True), True
        for name in sorted(listed):
            try:
                st = os.lstat(os.path.join(path, name))
            except FileNotFoundError:
                whole = False  # renamed or removed since the listing: the next listing shows it
                continue
            except OSError as exc:
                found.errors.append((name, exc.strerror or str(exc)))
                continue
            if stat.S_ISREG(st.st_mode):
                found.files.append((name, st))
            else:
                found.errors.append((name, NOT_REGULAR))
        again = _listing(path, wanted)
        if whole and again == listed:
            return found
        listed = again
    found.settled = False
    return found


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    try:
        return parse_docker_time(value)
    except ValueError:
        return None


def _read_json(path: str) -> dict:
    with open(path, "rb") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def read_container(path: str, cid: str) -> Container:
    """Load one container's settings and list its log files (errors recorded, never raised)."""
    c = Container(id=cid, path=path)
    try:
        cfg = _read_json(os.path.join(path, "config.v2.json"))
        state = cfg.get("State") or {}
        c.running = bool(state.get("Running")) or bool(state.get("Restarting"))
        c.started_at = _time(state.get("StartedAt"))
        c.finished_at = _time(state.get("FinishedAt"))
        c.name = str(cfg.get("Name") or "").lstrip("/")
        labels = (cfg.get("Config") or {}).get("Labels") or {}
        c.labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    except FileNotFoundError:
        c.config_error = "config.v2.json missing"
    except PermissionError:
        c.config_error = "config.v2.json: permission denied"
    except (ValueError, AttributeError, TypeError) as exc:
        c.config_error = f"config.v2.json corrupt ({type(exc).__name__})"
    except OSError as exc:
        c.config_error = f"config.v2.json unreadable ({exc.strerror or exc})"
    try:
        host = _read_json(os.path.join(path, "hostconfig.json"))
        log_config = host.get("LogConfig") or {}
        c.log_driver = str(log_config.get("Type") or "json-file")
        opts = log_config.get("Config") or {}
        if "max-file" in opts:
            c.max_file = int(opts["max-file"])
        c.compress = str(opts.get("compress", "")).lower() == "true"
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # the log settings only describe; the files on disk are what ships
    try:
        snap = snapshot(path, lambda name: (m := _LOG_NAME.match(name)) is not None and m["cid"] == cid)
    except OSError as exc:
        c.file_errors.append((cid, f"cannot list the container folder ({exc.strerror or exc})"))
        return c
    c.changing = not snap.settled
    c.file_errors.extend(snap.errors)
    for name, st in snap.files:
        m = _LOG_NAME.match(name)
        assert m is not None
        c.files.append(LogFile(
            path=os.path.join(path, name), rotation=int(m["rot"] or 0), gz=bool(m["gz"]),
            dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime=st.st_mtime,
        ))
    return c


def scan_root(docker_root: str) -> list[Container]:
    """All containers under ``<docker_root>/containers``; raises OSError if that is unreadable."""
    base = os.path.join(docker_root, "containers")
    found = []
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if _CONTAINER_DIR.match(entry.name) and entry.is_dir(follow_symlinks=False):
            found.append(read_container(entry.path, entry.name))
    return found

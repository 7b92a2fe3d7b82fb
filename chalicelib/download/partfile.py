"""Temporary files that become final only by an atomic rename, and do not outlive a crash.

``PartFile(directory)`` creates ``.logarchive-*.part`` beside its destination and holds an
exclusive ``flock`` on it for as long as this process may use it; ``commit(final)`` fsyncs
it and renames it into place. ``release()`` (always, in a ``finally``) removes whatever was
not committed.

A process killed outright (SIGKILL, power loss) cannot clean up, but its locks die with it:
``sweep(directory)`` in a later run removes exactly those orphans, never a part that a live
process (this one or another run writing to the same directory) still holds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from typing import BinaryIO

PREFIX = ".logarchive-"
SUFFIX = ".part"


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_below(root: str, relative: str) -> tuple[int, str]:
    """Open the directory ``root/relative``, creating what is missing, without following a
    symbolic link in ``relative`` (``root`` is the caller's choice and may be one).

    Returns its descriptor (the caller closes it) and a path that reaches the directory
    through that descriptor (``/proc/self/fd/N`` on Linux), so that a link swapped in for a
    component later is not followed either. Raises OSError (ELOOP for a link).
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in relative.split("/"):
            if name in ("", "."):
                continue
            if name == "..":
                raise OSError(errno.EINVAL, "'..' in a path below the download location")
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(f"/proc/self/fd/{fd}/{name}"):
                    raise OSError(errno.ELOOP, f"{name} is a symbolic link (not followed)") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    through_fd = f"/proc/self/fd/{fd}"
    if os.path.isdir(through_fd):
        return fd, through_fd
    return fd, os.path.join(root, relative)  # no /proc (macOS): the components were checked


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class PartFile:
    """One locked temporary file; use as a context manager or call ``release()``."""

    def __init__(self, directory: str, *, durable: bool = True) -> None:
        while True:
            fd, path = tempfile.mkstemp(dir=directory, prefix=PREFIX, suffix=SUFFIX)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                _unlink(path)
                raise
            if os.fstat(fd).st_nlink:
                break
            # A sweep took it between creation and lock (it looked orphaned): try again.
            os.close(fd)
        # A second descriptor keeps the lock after the file object is closed.
        self._lock_fd: int | None = os.dup(fd)
        self.path: str | None = path
        self.durable = durable
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes, /) -> int:
        return self.file.write(data)

    def close(self) -> None:
        """Flush (and fsync, when durable) and close; the lock and the file stay."""
        if not self.file.closed:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()

    def commit(self, final: str) -> None:
        """Rename into place (atomically replacing ``final``)."""
        if self.path is None:
            raise ValueError("part already committed or released")
        self.close()
        os.replace(self.path, final)
        self.path = None
        if self.durable:
            fsync_dir(os.path.dirname(os.path.abspath(final)))

    def release(self) -> None:
        """Remove the file unless committed; drop the lock. Safe to call twice."""
        if not self.file.closed:
            self.file.close()
        if self.path is not None:
            _unlink(self.path)
            self.path = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def sweep(directory: str) -> list[str]:
    """Remove parts in ``directory`` whose writer is gone; returns their paths."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            # Unlocked: its writer is dead, or is between creating and locking it, in which
            # case the writer sees the unlink (st_nlink == 0) and makes another.
            _unlink(path)
            removed.append(path)
        finally:
            os.close(fd)
    return removed

"""Temporary files that become final only by an atomic rename, and do not outlive a crash.

``PartFile(directory)`` creates ``.logarchive-*.part`` beside its destination and holds an
exclusive ``flock`` on it for as long as this process may use it; ``commit(final)`` fsyncs
it and renames it into place. ``release()`` (always, in a ``finally``) removes whatever was
not committed.

A process killed outright (SIGKILL, power loss) cannot clean up, but its locks die with it:
``sweep(directory)`` in a later run removes exactly those orphans, never a part that a live
process (this one or another run writing to the same directory) still holds.

Interrupted (Ctrl-C, SIGTERM, SIGHUP: ``on_signals``), the process removes every part it
holds, and its private scratch directories, at once: ``cancel()`` unlinks them from the signal
handler, so no decrypted, unverified byte keeps a name while the workers wind down; from then
on no part is created or committed (``Cancelled``), and ``check()`` stops a running download at
its next chunk. A second signal exits at once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..errors import LogarchiveError

PREFIX = ".logarchive-"
SUFFIX = ".part"


class Cancelled(LogarchiveError):
    """The run was interrupted: no new part, no commit."""


class WriteFailed(LogarchiveError):
    """Writing a part failed (disk full, I/O error): ``strerror`` says why, for the caller to
    name the file it was writing."""

    def __init__(self, strerror: str) -> None:
        super().__init__(strerror)
        self.strerror = strerror


# This process's uncommitted parts and scratch directories, for ``cancel`` (an RLock: the signal
# handler runs in the main thread, which may be inside a ``with _lock`` itself).
_lock = threading.RLock()
_live: set[str] = set()
_scratch: set[str] = set()
_cancelled = threading.Event()


def cancel() -> None:
    """Stop: every live part and scratch directory of this process is removed now, and no part
    is created or committed any more (async-signal use: called from a signal handler)."""
    _cancelled.set()
    with _lock:
        paths, dirs = list(_live), list(_scratch)
    for path in paths:
        _unlink(path)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def cancelled() -> bool:
    return _cancelled.is_set()


def check() -> None:
    """Raise ``Cancelled`` once the run was interrupted (a download calls it per chunk)."""
    if _cancelled.is_set():
        raise Cancelled("interrupted")


@contextmanager
def scratch_dir() -> Iterator[str]:
    """A private temporary directory (mode 0700) that ``cancel`` removes with its content."""
    check()
    path = tempfile.mkdtemp(prefix="logarchive-")
    with _lock:
        _scratch.add(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with _lock:
            _scratch.discard(path)


_SIGNALS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)",
            signal.SIGHUP: "hung up (SIGHUP)"}


@contextmanager
def on_signals(prog: str) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP during the block: the first removes every part and scratch
    directory at once (``cancel``), says so on stderr, and raises ``KeyboardInterrupt`` (with the
    signal's number in ``signum``) in the main thread to stop starting work; a second exits at
    once. Only the main thread can set handlers: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handler(signum: int, _frame: object) -> None:
        nonlocal count
        count += 1
        cancel()
        if count > 1:
            os._exit(128 + signum)
        # os.write: the main thread may be inside a write to sys.stderr (not reentrant).
        os.write(2, f"{prog}: {_SIGNALS[signum]}: starting no new download; partial files removed "
                 "(again to exit at once)\n".encode())
        exc = KeyboardInterrupt()
        exc.signum = signum  # type: ignore[attr-defined]
        raise exc

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _cancelled.clear()  # the next command in this process (tests) starts afresh


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


def _forget(path: str) -> None:
    """Remove an uncommitted part and its registration."""
    _unlink(path)
    with _lock:
        _live.discard(path)


def _close_quietly(fh: BinaryIO) -> None:
    """Close ``fh``; a buffer that cannot go out (disk full) is dropped: the file is discarded."""
    if fh.closed:
        return
    try:
        fh.close()
    except OSError:
        try:  # the buffered writer stays open when its flush failed: close the descriptor
            os.close(fh.fileno())
        except (OSError, ValueError):
            pass


class PartFile:
    """One locked temporary file; use as a context manager or call ``release()``."""

    def __init__(self, directory: str, *, durable: bool = True) -> None:
        while True:
            check()
            fd, path = tempfile.mkstemp(dir=directory, prefix=PREFIX, suffix=SUFFIX)
            with _lock:
                _live.add(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                check()  # cancelled meanwhile: ``cancel`` may have missed this one
            except BaseException:
                os.close(fd)
                _forget(path)
                raise
            if os.fstat(fd).st_nlink:
                break
            # A sweep took it between creation and lock (it looked orphaned): try again.
            os.close(fd)
            _forget(path)
        # A second descriptor keeps the lock after the file object is closed.
        self._lock_fd: int | None = os.dup(fd)
        self.path: str | None = path
        self.durable = durable
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes, /) -> int:
        """Write; a full disk or an I/O error raises ``WriteFailed`` (its ``strerror``)."""
        try:
            return self.file.write(data)
        except OSError as exc:
            raise WriteFailed(exc.strerror or type(exc).__name__) from None

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as exc:
            raise WriteFailed(exc.strerror or type(exc).__name__) from None

    def close(self) -> None:
        """Flush (and fsync, when durable) and close; the lock and the file stay."""
        if not self.file.closed:
            try:
                self.file.flush()
                if self.durable:
                    os.fsync(self.file.fileno())
            except OSError as exc:  # a full disk often shows only here, when the buffer goes out
                raise WriteFailed(exc.strerror or type(exc).__name__) from None
            finally:
                _close_quietly(self.file)

    def commit(self, final: str) -> None:
        """Rename into place (atomically replacing ``final``); not once the run was cancelled."""
        if self.path is None:
            raise ValueError("part already committed or released")
        self.close()
        with _lock:
            check()
            os.replace(self.path, final)
            _live.discard(self.path)
        self.path = None
        if self.durable:
            fsync_dir(os.path.dirname(os.path.abspath(final)))

    def release(self) -> None:
        """Remove the file unless committed; drop the lock. Safe to call twice, and never fails:
        a disk full when the last buffer goes out must not keep the file."""
        _close_quietly(self.file)
        if self.path is not None:
            _forget(self.path)
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

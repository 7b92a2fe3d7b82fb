"""The one setting that scales every limit a test must still have: ``LOGARCHIVE_TEST_PATIENCE``
(a factor, default 1; say 4 on a machine busy with other suites). Tests wait on events (a
process exiting, progress made); these limits only stop a test that makes no progress at all."""

from __future__ import annotations

import os


def patience(seconds: float) -> float:
    """``seconds`` scaled by ``$LOGARCHIVE_TEST_PATIENCE``."""
    try:
        factor = float(os.environ.get("LOGARCHIVE_TEST_PATIENCE", "1"))
    except ValueError:
        factor = 1.0
    return seconds * max(factor, 1.0)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` has used so far; 0 once it is gone.

    A kill "at a random point of its work" is a kill after a random amount of CPU time: on a
    loaded machine the wall time of the same point grows (a Python start-up took 2.7 s of wall
    time and 0.3 s of CPU at a load of 10 on 2 cores), its CPU time does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def kill_after_work(proc, work: float, *, log_path=None, ready: bytes = b"", stop=None) -> bool:
    """SIGKILL ``proc`` once it has used ``work`` CPU seconds (counted from when ``ready``
    appears in ``log_path`` after this call, when given: start-up is not the work under test);
    returns whether it was killed (False: it exited first, or ``stop`` was set first)."""
    import signal
    import time

    start = os.path.getsize(log_path) if log_path else 0
    base = None if ready else 0.0
    while proc.poll() is None:
        if stop is not None and stop.is_set():
            return False
        if base is None:
            with open(log_path, "rb") as fh:
                fh.seek(start)
                if ready in fh.read():
                    base = cpu_seconds(proc.pid)
        elif cpu_seconds(proc.pid) - base >= work:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    return False

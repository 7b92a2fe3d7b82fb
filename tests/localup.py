"""`logarchive local up` as a user runs it: a child process, its printed endpoints, the CLI against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chalicelib.devkit import local_aws

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LocalUp:
    proc: subprocess.Popen
    endpoint: str
    api_url: str | None
    banner: list[str]

    def env(self) -> dict[str, str]:
        """What the printed ``export`` line sets: the CLI's environment against this stack."""
        return {**clean_env(), **local_aws.LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOGARCHIVE_"))}


@contextmanager
def local_up(*args: str) -> Iterator[LocalUp]:
    """Start ``logarchive local up ARGS``; yield once it printed "Ctrl-C to stop."; SIGTERM it after."""
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "local", "up", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    banner: list[str] = []
    try:
        for line in proc.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C to stop."):
                break
        else:
            raise AssertionError("local up exited: " + "\n".join(banner) + proc.stderr.read())
        endpoint = next(x.split(" at ", 1)[1] for x in banner if x.startswith("local AWS up at "))
        api = [x.split(" at ", 1)[1].split("/ ", 1)[0] for x in banner if x.startswith("retrieval API up at ")]
        yield LocalUp(proc, endpoint, api[0] if api else None, banner)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say what it was doing instead of hanging the suite
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError("local up did not stop within 60 s of SIGTERM:\n" + err[-4000:]) from None


def cli(*argv: str, env: dict[str, str], check: bool = True, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """One ``logarchive`` command as its own process."""
    proc = subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd or ROOT, input=stdin, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"logarchive {' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc

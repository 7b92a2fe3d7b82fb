"""Progress on a terminal: ship and archive --once show segments and bytes; logs-from-archive counts bytes."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from retrieval_helpers import on_terminal

from chalicelib.devkit.fakedocker import sample_host
from chalicelib.keyring import MasterKey

ROOT = Path(__file__).resolve().parents[1]


def on_tty(argv: list[str], env: dict[str, str], *, stdout_tty: bool = False) -> tuple[int, str]:
    """Run a `logarchive` command with stderr (and maybe stdout) on a pseudo-terminal; all it showed there."""
    rc, seen, _ = on_terminal([sys.executable, "-m", "chalicelib.cli", *argv], env, stdout=stdout_tty, stderr=True)
    return rc, seen


def test_ship_archive_and_retrieval_show_bytes_and_segments_on_a_terminal(buckets, tmp_path) -> None:
    env = {**os.environ}
    sample_host(tmp_path / "docker")
    key_file = tmp_path / "k"
    key_file.write_text(MasterKey.generate().to_base64() + "\n")
    staging = f"s3://{buckets.staging}/staged"
    rc, seen = on_tty(["ship", "--docker-root", str(tmp_path / "docker"), "--staging", staging, "--stack",
                       "teststack", "--state", str(tmp_path / "ship.db"), "--once"], env)
    assert rc == 0, seen
    assert "shipping: 1 segment, " in seen  # the first segment shows at once; the summary replaces the line
    rc, seen = on_tty(["archive", "--once", "--staging", staging, "--archive-bucket", buckets.archive, "--stack",
                       "teststack", "--key-file", str(key_file)], env)
    assert rc == 0, seen
    assert "archiving" in seen and "segments=5/5" in seen, seen[-3000:]
    assert re.search(r"\| [\d.]+k/[\d.]+k \[", seen)  # bytes (kibibytes), not 5 items
    rc, seen = on_tty(["logs-from-archive", "--bucket", buckets.archive, "--stack", "teststack", "--app-id", "42",
                       "--decryption-keys-file", str(key_file), "--download-location", str(tmp_path / "out")],
                      env, stdout_tty=True)
    assert rc == 0, seen
    assert "archives=4/4" in seen and re.search(r"\| [\d.]+k/[\d.]+k \[", seen)  # bytes, not 4 files

"""Careless input to the ``logarchive`` commands: one line naming the file or object and the
cause, a non-zero exit, never a traceback. Real processes, so that what a user sees is what
is checked (stderr, exit status, a closed pipe)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from archiver_support import STAGING_PREFIX, docker_lines, stage

from chalicelib.keyring import MasterKey

ROOT = Path(__file__).resolve().parent.parent


def logarchive(*argv: str, env: dict | None = None, cwd: str | None = None, **kw) -> subprocess.CompletedProcess:
    """``env``: variables to set, or to remove (None)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], capture_output=True, text=True,
                          env={k: v for k, v in full.items() if v is not None}, cwd=cwd or str(ROOT),
                          timeout=300, **kw)


def one_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode != 0, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def ship_args(tmp_path: Path, state: Path) -> list[str]:
    (tmp_path / "docker" / "containers").mkdir(parents=True, exist_ok=True)
    return ["ship", "--once", "--docker-root", str(tmp_path / "docker"), "--staging", "s3://nowhere/staged",
            "--stack", "s", "--host", "h", "--state", str(state), "--endpoint-url", "http://127.0.0.1:9"]


@pytest.mark.parametrize("kind", ["corrupt", "directory"])
def test_ship_with_an_unusable_state_file(tmp_path, kind):
    state = tmp_path / "ship.db"
    if kind == "corrupt":
        state.write_bytes(b"not a database, just words " * 100)
    else:
        state.mkdir()
    one_line(logarchive(*ship_args(tmp_path, state)), str(state))


def test_ship_with_a_locked_state_file(tmp_path):
    state = tmp_path / "ship.db"
    holder = sqlite3.connect(state, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the database
    try:
        line = one_line(logarchive(*ship_args(tmp_path, state), env={"LOGARCHIVE_STATE_BUSY_SECONDS": "0.2"}),
                        str(state))
        assert "locked" in line
    finally:
        holder.close()


def test_ship_into_a_closed_pipe(tmp_path):
    state = tmp_path / "ship.db"
    args = [*ship_args(tmp_path, state), "--dry-run"]
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    proc.stdout.close()  # `| head` that has already exited
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode != 0


@pytest.mark.parametrize("command", [["keys", "id", "--key-file"], ["keys", "generate", "--output"]])
def test_keys_with_a_key_file_that_is_not_utf8(tmp_path, command):
    key_file = tmp_path / "keys"
    secret = MasterKey.generate().to_base64()
    key_file.write_bytes(b"\xff\xfe" + secret.encode() + b"\n")
    line = one_line(logarchive(*command, str(key_file)), str(key_file))
    assert secret not in line and "UTF-8" in line


def test_setup_deployment_files_outside_the_repository(tmp_path):
    one_line(logarchive("setup", "deployment-files", cwd=str(tmp_path)), "config.json")


def test_archive_without_credentials(tmp_path, buckets):
    key_file = tmp_path / "keys"
    key_file.write_text(MasterKey.generate().to_base64() + "\n")
    no_creds = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
                "AWS_PROFILE": None, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None}
    line = one_line(logarchive("archive", "--once", "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}",
                               "--archive-bucket", buckets.archive, "--key-file", str(key_file),
                               "--stack", "teststack", env=no_creds))
    assert "credentials" in line


def test_archive_into_a_missing_archive_bucket_stops_with_one_line(tmp_path, buckets):
    s3 = boto3.client("s3")
    for i in range(3):
        stage(s3, buckets.staging, f"c{i}", docker_lines(3, seed=i))
    key_file = tmp_path / "keys"
    key_file.write_text(MasterKey.generate().to_base64() + "\n")
    proc = logarchive("archive", "--once", "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}",
                      "--archive-bucket", "no-such-archive-bucket", "--key-file", str(key_file),
                      "--stack", "teststack")
    line = one_line(proc, "no-such-archive-bucket")
    assert "NoSuchBucket" in line or "does not exist" in line
    assert len(s3.list_objects_v2(Bucket=buckets.staging, Prefix=STAGING_PREFIX)["Contents"]) == 3


def test_index_backfill_into_a_missing_table(buckets):
    one_line(logarchive("index", "backfill", "--bucket", buckets.archive, "--table", "no-such-table"),
             "no-such-table")

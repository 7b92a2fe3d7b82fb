"""Crash safety: a killed download leaves no final file that is partial or unverified, and
the next run removes the temporary files the killed one could not (their lock died with it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import boto3
from retrieval_helpers import STACK, archive_key, files_under, leftovers, put_archive, t

from chalicelib.download import partfile
from chalicelib.keyring import Keyring, MasterKey

K = MasterKey.generate()

CHILD = """
import sys, time
from chalicelib.download.partfile import PartFile
p = PartFile(sys.argv[1])
p.write(b"unverified plaintext" * 1000)
p.file.flush()
print(p.path, flush=True)
time.sleep(60)
"""


def test_sweep_removes_only_parts_whose_writer_died(tmp_path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        orphan = child.stdout.readline().strip()
        assert os.path.exists(orphan)
        mine = partfile.PartFile(str(tmp_path))
        mine.write(b"x")
        mine.close()
        assert partfile.sweep(str(tmp_path)) == []  # both writers alive: nothing removed
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert os.path.exists(orphan)  # SIGKILL: no clean-up ran
        assert partfile.sweep(str(tmp_path)) == [orphan]
        assert mine.path and os.path.exists(mine.path)  # still ours, still locked
        mine.commit(str(tmp_path / "final"))
        assert (tmp_path / "final").read_bytes() == b"x"
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    mine.release()
    assert sorted(os.listdir(tmp_path)) == ["final"]


def _line(i: int) -> str:
    return json.dumps({"log": f"request {i} took {i % 97} ms\n", "stream": "stdout",
                       "time": f"2022-12-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i:09d}Z"},
                      separators=(",", ":")) + "\n"


def test_killed_download_then_rerun(buckets, aws_endpoint, tmp_path) -> None:
    s3, ring = boto3.client("s3"), Keyring([K])
    data = {}
    for n in range(10):
        key = archive_key("apps", "90", f"{n:02x}" * 32, t("2022-12-02T00:00:00"), t("2022-12-02T23:59:59"), K.key_id)
        data[key] = "".join(_line(i) for i in range(n, 25000 + n)).encode()  # ~1.3 MB each
        put_archive(s3, buckets.customer, key, data[key], ring)
    dest = tmp_path / "dl"
    argv = [sys.executable, "-m", "chalicelib.cli", "logs-from-archive", "--bucket", buckets.customer,
            "--stack", STACK, "--app-id", "90", "--download-location", str(dest), "--jobs", "2",
            "--format", "jsonl", "--grep", "took [0-9]+ ms"]
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "LOGARCHIVE_KEYS": K.to_base64()}

    def final_files() -> list[str]:
        return [f for f in files_under(dest) if not os.path.basename(f).startswith(".")] if dest.exists() else []

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not final_files() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    def check_complete(names: list[str]) -> None:
        for rel in names:
            key = next(k for k in data if "/".join(k.split("/")[4:])[:-3] + ".jsonl" == rel)
            assert (dest / rel).read_bytes() == data[key]  # every final file is whole and verified

    landed = final_files()
    check_complete(landed)
    # Re-run: everything lands, and the parts the killed run left are gone.
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(final_files()) == 10
    check_complete(final_files())
    assert leftovers(str(tmp_path)) == []

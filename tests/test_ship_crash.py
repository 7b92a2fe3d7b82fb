"""Exactly-once under kill -9: a writer rotates logs like dockerd while the shipper is killed
at random points and restarted; at the end every container's staged segments, concatenated in
segment order (gzip-encoded ones decompressed), are exactly the bytes the writer wrote."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import boto3
from patience import kill_after_work, patience

ROOT = Path(__file__).resolve().parent.parent
STACK, HOST, PREFIX = "crash", "host-1", "staged"


def _ship_cmd(tmp: Path, bucket: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chalicelib.cli", "ship", "--docker-root", str(tmp / "docker"),
            "--staging", f"s3://{bucket}/{PREFIX}", "--stack", STACK, "--host", HOST,
            "--state", str(tmp / "state" / "ship.db"), *extra]


def test_kill_9_at_random_points_loses_nothing_and_ships_nothing_twice(buckets, tmp_path: Path) -> None:
    bucket = buckets.staging
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    writer = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "dockerfake.py"), "--root", str(tmp_path / "docker"),
         "--truth", str(tmp_path / "truth"), "--rotations", "200", "--bucket", bucket,
         "--prefix", f"{PREFIX}/{STACK}/{HOST}", "--seed", str(rnd.randint(0, 10**6))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    time.sleep(0.3)  # let the writer create the containers
    kills = 0
    shipper_log = open(tmp_path / "shipper.log", "wb")
    daemon = _ship_cmd(tmp_path, bucket, "--interval", "0.05", "--max-age", "0.5s", "--settle", "2s")
    try:
        while writer.poll() is None:
            shipper_log.flush()
            proc = subprocess.Popen(daemon, cwd=ROOT, env=env, stdout=shipper_log, stderr=shipper_log)
            # At a random point of its work, not of the clock: load stretches start-up (2.7 s
            # of wall time for 0.3 s of CPU at a load of 10), and a kill then tests nothing.
            kill_after_work(proc, rnd.uniform(0.0, 0.15), log_path=tmp_path / "shipper.log", ready=b"INFO shipping ")
            kills += 1
    finally:
        if writer.poll() is None:
            writer.kill()
    out, err = writer.communicate()
    assert writer.returncode == 0, err.decode()[-2000:]
    stats = json.loads(out)
    assert stats["rotations"] >= 200
    assert kills >= 5
    print(f"writer: {stats}, shipper killed {kills} times")

    # The containers have all exited: a last pass ships their live logs to the very end.
    final = subprocess.run(_ship_cmd(tmp_path, bucket, "--once", "--settle", "0"), cwd=ROOT, env=env,
                           capture_output=True, timeout=patience(600))
    assert final.returncode == 0, final.stdout.decode() + final.stderr.decode()[-3000:]

    s3 = boto3.client("s3")
    for truth in sorted((tmp_path / "truth").iterdir()):
        cid = truth.name
        objs = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}/{STACK}/{HOST}/{cid}/"):
            objs += page.get("Contents", [])
        segs = []
        for obj in objs:
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            meta = got["Metadata"]
            body = got["Body"].read()
            assert meta["logarchive-sha256"] == __import__("hashlib").sha256(body).hexdigest()
            if meta["logarchive-encoding"] == "gzip":
                body = gzip.decompress(body)
            assert len(body) == int(meta["logarchive-byte-end"]) - int(meta["logarchive-byte-start"])
            segs.append((int(meta["logarchive-segment"]), body))
        segs.sort()
        numbers = [n for n, _ in segs]
        assert numbers == list(range(1, len(segs) + 1)), f"{cid[:12]}: segment numbers {numbers}"
        for n, body in segs:
            assert body.endswith(b"\n"), f"{cid[:12]} segment {n} cuts a line"
        staged = b"".join(body for _, body in segs)
        expected = truth.read_bytes()
        assert len(staged) == len(expected), f"{cid[:12]}: staged {len(staged)} bytes, written {len(expected)}"
        assert staged == expected, f"{cid[:12]}: staged bytes differ from what was written"
        print(f"{cid[:12]}: {len(segs)} segments, {len(staged)} bytes, {sum(1 for o in objs if o['Key'].endswith('.gz'))} gzip")

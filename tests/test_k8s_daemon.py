"""The shipper daemon on a Kubernetes node (issue 20): it wins the race with kubelet deleting a
pod's logs, tells a rotation's close from an exit, and loses nothing under kill -9."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from patience import kill_after_work, patience

from chalicelib import layout
from chalicelib.devkit.fakekubelet import FakeKubelet
from chalicelib.staged import is_heartbeat

ROOT = Path(__file__).resolve().parent.parent
STACK, HOST, PREFIX = "teststack", "node-1", "staged"


def _ship_cmd(tmp: Path, bucket: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chalicelib.shipper", "--pods-root", str(tmp / "node" / "pods"),
            "--staging", f"s3://{bucket}/{PREFIX}", "--stack", STACK, "--host", HOST,
            "--state", str(tmp / "state" / "ship.db"), *extra]


def staged_segments(bucket: str, cid: str) -> list[tuple[dict[str, str], bytes]]:
    """(metadata, logical bytes) of each segment staged for one container run (its raw SHA-256
    checked), in segment order."""
    s3 = boto3.client("s3")
    segs = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}/{STACK}/{HOST}/{cid}/"):
        for obj in page.get("Contents", []):
            if is_heartbeat(obj["Key"]):
                continue
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            body, meta = got["Body"].read(), got["Metadata"]
            assert meta["logarchive-sha256"] == hashlib.sha256(body).hexdigest()
            if meta.get("logarchive-encoding") == "gzip":
                body = gzip.decompress(body)
            segs.append((int(meta.get("logarchive-segment", 0)), meta, body))
    segs.sort(key=lambda x: x[0])
    return [(meta, body) for _, meta, body in segs]


def staged_bytes(bucket: str, cid: str) -> tuple[list[int], bytes]:
    """(segment numbers, logical bytes in segment order) staged for one container run."""
    segs = staged_segments(bucket, cid)
    return [int(meta["logarchive-segment"]) for meta, _ in segs], b"".join(b for _, b in segs)


def segments_evidence(bucket: str, cid: str, written: bytes, rotations: list[int]) -> str:
    """What a failed comparison needs to be understood after the temporary folder is gone: per
    staged segment its number, rotation, logical byte range and first line, where its bytes lie
    in what was written, and the offsets of the writer's rotations."""
    lines = []
    for meta, body in staged_segments(bucket, cid):
        first = body.split(b"\n", 1)[0][:90]
        lines.append(f"  segment {meta.get('logarchive-segment')} rotation {meta.get('logarchive-rotation')} "
                     f"bytes [{meta.get('logarchive-byte-start')}, {meta.get('logarchive-byte-end')}) "
                     f"{len(body)} B, found in written at {written.find(body[:200]) if body else -1}: {first!r}")
    return "\n".join([f"rotations of the series at written offsets {rotations}", *lines])


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def wait_for(what, condition, seconds: float = 60.0, proc=None) -> None:
    deadline = time.monotonic() + patience(seconds)
    while not condition():
        assert proc is None or proc.poll() is None, f"the daemon exited while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} after {patience(seconds):.0f} s"
        time.sleep(0.05)


class Daemon:
    def __init__(self, tmp: Path, bucket: str, *extra: str) -> None:
        self.log_path = tmp / "shipper.log"
        self.log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(_ship_cmd(tmp, bucket, *extra), cwd=ROOT, env=env,
                                     stdout=self.log, stderr=self.log)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_for("daemon start", lambda: "as kubelet's files change" in self.text(), proc=self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=patience(60)) == 0, self.text()[-3000:]
        self.log.close()


GRACE_BEFORE_DELETE = 10.0  # N: kubelet deletes the pod's logs this long after its containers exit


def test_pod_deleted_seconds_after_exit_loses_nothing_whatever_the_interval(buckets, tmp_path: Path) -> None:
    """Daemon at its defaults but for an hour-long --interval (polling alone would lose it all):
    the close of each container's log is an exit (no rename, no new file goes with it), so it
    ships before kubelet deletes the pod directory N seconds later."""
    node = FakeKubelet(tmp_path / "node")
    daemon = Daemon(tmp_path, buckets.staging, "--interval", "1h")
    try:
        daemon.wait_ready()
        pods = []
        for i in range(3):
            pod = node.pod("shop", f"job-{i}")
            for name in ("main", "sidecar"):
                c = pod.container(name)
                for n in range(50):
                    c.log(f"{name} line {n} of pod {i}")
                c.log("no newline at the end, written by a crash", end=b"") if name == "sidecar" else None
            pods.append(pod)
        # A rotation closes and reopens 0.log: not an exit. Only the rotated file ships.
        rotating = pods[0].containers["main"]
        rotated = rotating.rotate()
        rotating.log("after the rotation")
        cid0 = layout.cri_container_id(pods[0].uid, "main", 0)
        wait_for("the rotated file staged", lambda: staged_bytes(buckets.staging, cid0)[1] ==
                 rotated.read_bytes(), proc=daemon.proc)
        for pod in pods:
            for c in pod.containers.values():
                c.exit()
        time.sleep(GRACE_BEFORE_DELETE)  # the race as kubelet runs it: not an event to wait on
        for pod in pods:
            pod.delete()
    finally:
        daemon.stop()
    for pod in pods:
        for c in pod.containers.values():
            numbers, got = staged_bytes(buckets.staging, layout.cri_container_id(pod.uid, c.name, 0))
            assert numbers == list(range(1, len(numbers) + 1))
            assert got == bytes(c.written[0]), f"{pod.name}/{c.name}: {len(got)} of {len(c.written[0])} bytes"
    assert "Traceback" not in daemon.text()


def test_kill_9_at_random_points_with_rotations_restarts_and_gzip(buckets, tmp_path: Path) -> None:
    """As the Docker path is tested: a writer rotates (kubelet's way, gzipping older rotations)
    and restarts containers while the daemon is killed at random points of its work and
    restarted; in the end each container run's segments are exactly its bytes, numbered 1…n."""
    node = FakeKubelet(tmp_path / "node")
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "11")))
    containers = [node.pod(ns, f"p{i}").container("app") for i, ns in enumerate(("a", "b", "c"))]
    done, enough = threading.Event(), threading.Event()
    rotations: dict[tuple[int, int], list[int]] = {}  # (container, restart) -> offsets of its rotations
    killed = threading.Semaphore(0)  # released at each kill
    AHEAD = 60  # steps the writer may take per daemon life: what it writes does not grow with the load

    def write() -> None:
        try:
            step, allowed = 0, AHEAD
            while step < 300 or not enough.is_set():
                while step >= allowed and not enough.is_set():  # wait for the daemon's next kill
                    if killed.acquire(timeout=0.05):
                        allowed += AHEAD
                step += 1
                c = containers[step % len(containers)]
                for n in range(rnd.randint(1, 30)):
                    c.log(f"step {step} line {n} " + "x" * rnd.randint(0, 300), max_record=256)
                r = rnd.random()
                if r < 0.15:
                    rotations.setdefault((step % len(containers), c.restart), []).append(len(c.written[c.restart]))
                    c.rotate(max_files=1000)  # keep every rotation: a deletion would lose bytes legitimately
                elif r < 0.18:
                    c.start()  # a restart: the runtime closes <n>.log, writes <n+1>.log
                time.sleep(0.005)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    kills = 0
    try:
        while not done.is_set():
            d = Daemon(tmp_path, buckets.staging, "--interval", "0.05", "--max-age", "0.5s", "--settle", "2s")
            if kill_after_work(d.proc, rnd.uniform(0.0, 0.15), log_path=d.log_path, ready=b"INFO shipping ",
                               stop=done):
                kills += 1
                killed.release()
                if kills >= 8:
                    enough.set()
            else:  # the writer is done: this one goes too, as abruptly
                d.proc.kill()
                d.proc.wait()
            d.log.close()
    finally:
        enough.set()
        writer.join()
    for c in containers:
        c.exit()
    # A --once pass cannot know that the last runs exited (nothing on disk says so: SHIPPER.md,
    # "Without notifications"): --max-age 1ms ships their complete lines.
    final = subprocess.run(_ship_cmd(tmp_path, buckets.staging, "--once", "--settle", "0", "--max-age", "1ms"),
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                           timeout=patience(600))
    assert final.returncode == 0, final.stdout.decode()[-3000:] + final.stderr.decode()[-3000:]
    assert kills >= 8
    for i, c in enumerate(containers):
        for restart, written in c.written.items():
            cid = layout.cri_container_id(c.pod.uid, "app", restart)
            numbers, got = staged_bytes(buckets.staging, cid)
            assert numbers == list(range(1, len(numbers) + 1)), numbers
            if got != bytes(written):
                evidence = segments_evidence(buckets.staging, cid, bytes(written), rotations.get((i, restart), []))
                shipper_log = [line for line in (tmp_path / "shipper.log").read_text(errors="replace").splitlines()
                               if cid in line or "Traceback" in line or "killed" in line]
                raise AssertionError(f"{c.pod.name} restart {restart}: {len(got)} of {len(written)} bytes, "
                                     f"first difference at {_first_difference(got, bytes(written))}\n{evidence}\n"
                                     + "\n".join(shipper_log[-80:]))

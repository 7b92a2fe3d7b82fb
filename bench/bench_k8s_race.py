"""The race with kubelet, measured (issue 20; docs/PERFORMANCE.md "Shipper on a Kubernetes node").

For P pods (one container each, ``--lines`` lines written while it ran), the shipper daemon runs
at its defaults (``logarchive-ship --pods-root … --interval 1h``: polling alone would lose
everything), every container exits at once (the runtime closes its log), and kubelet deletes
every pod directory N seconds later. Per N tried: the bytes staged against the bytes written.
First one run without deletion gives T, the time from the exits to the last segment staged;
then N is tried from ceil(T) upward (and below it, to show what is lost) until nothing is lost.
Then the daemon's CPU while it watches the P running pods, idle, for ``--idle-seconds``.

    python bench/bench_k8s_race.py [--pods 10 1000] [--lines 20] [--idle-seconds 60]

Against the local moto server on 127.0.0.1 (each segment is one PUT to it).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from chalicelib.devkit import local_aws  # noqa: E402
from chalicelib.devkit.fakekubelet import FakeKubelet  # noqa: E402
from chalicelib.staged import is_heartbeat  # noqa: E402

OUT = ROOT / "bench" / "out" / "k8s-race"
BUCKET = "bench-logarchive-staging"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """One fresh node of ``pods`` running pods and a daemon watching it."""

    def __init__(self, endpoint: str, pods: int, lines: int, tag: str, interval: str = "1h") -> None:
        self.dir = OUT / tag
        shutil.rmtree(self.dir, ignore_errors=True)
        self.node = FakeKubelet(self.dir / "node")
        self.prefix = f"staged-{tag}"
        self.containers = []
        for i in range(pods):
            c = self.node.pod("bench", f"pod-{i}").container("app")
            for n in range(lines):
                c.log(f"pod {i} line {n}: GET /api/items/{n} 200")
            self.containers.append(c)
        env = {**os.environ, **local_aws.LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(ROOT)}
        self.log_path = self.dir / "ship.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.shipper", "--pods-root", str(self.dir / "node" / "pods"),
             "--staging", f"s3://{BUCKET}/{self.prefix}", "--stack", "bench", "--host", "node",
             "--state", str(self.dir / "ship.db"), "--interval", interval],
            cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        # Started, watching, and its first full pass (nothing ships: every log is live and young) over.
        while b"INFO first pass: " not in self.log_path.read_bytes():
            assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
            time.sleep(0.05)

    def staged_segments(self) -> int:
        return self.log_path.read_bytes().count(b" staged as segment ")

    def exit_all(self) -> float:
        t = time.monotonic()
        for c in self.containers:
            c.exit()
        return t

    def delete_all(self) -> None:
        for pod in self.node.all:
            pod.delete()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        self.log.close()

    def lost_bytes(self) -> int:
        s3 = boto3.client("s3")
        staged = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=self.prefix + "/"):
            staged += sum(o["Size"] for o in page.get("Contents", []) if not is_heartbeat(o["Key"]))
        return sum(len(c.written[0]) for c in self.containers) - staged


def time_to_ship(endpoint: str, pods: int, lines: int) -> float:
    run = Run(endpoint, pods, lines, f"t-{pods}")
    try:
        t0 = run.exit_all()
        while run.staged_segments() < pods:
            assert run.proc.poll() is None
            time.sleep(0.02)
        return time.monotonic() - t0
    finally:
        run.stop()


def trial(endpoint: str, pods: int, lines: int, n: float) -> int:
    run = Run(endpoint, pods, lines, f"n-{pods}-{n:g}")
    try:
        t0 = run.exit_all()
        time.sleep(max(0.0, t0 + n - time.monotonic()))
        run.delete_all()
        time.sleep(1.0)  # whatever is in flight finishes from its open descriptor
    finally:
        run.stop()
    return run.lost_bytes()


def idle_cpu(endpoint: str, pods: int, lines: int, seconds: float, interval: str) -> tuple[float, float]:
    run = Run(endpoint, pods, lines, f"idle-{pods}", interval)
    try:
        c0, t0 = cpu_seconds(run.proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(run.proc.pid), time.monotonic()
    finally:
        run.stop()
    return c1 - c0, t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--lines", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--idle-interval", nargs="+", default=["1h", "60s"],
                    help="--interval of the idle runs (1h: the watcher alone; 60s: a full pass a minute too)")
    ap.add_argument("--idle-only", action="store_true", help="skip the race, measure idle CPU only")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}, load {' '.join(load)}")
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, (BUCKET,))
        for pods in ([] if a.idle_only else a.pods):
            t = time_to_ship(endpoint, pods, a.lines)
            print(f"{pods} pods: exit → every log staged in {t:.2f} s (no deletion)", flush=True)
            below = max(0.5, math.floor(t / 2 * 2) / 2)
            lost = trial(endpoint, pods, a.lines, below) if below < t else None
            if lost is not None:
                print(f"  N = {below:g} s: {lost} bytes lost", flush=True)
            n = max(1.0, float(math.ceil(t)))
            while True:
                lost = trial(endpoint, pods, a.lines, n)
                print(f"  N = {n:g} s: {lost} bytes lost", flush=True)
                if lost == 0:
                    break
                n += max(1.0, round(n / 2))
            print(f"{pods} pods: smallest N tried with nothing lost: {n:g} s", flush=True)
        pods = max(a.pods)
        for interval in a.idle_interval:
            cpu, wall = idle_cpu(endpoint, pods, a.lines, a.idle_seconds, interval)
            print(f"idle, watching {pods} running pods for {wall:.0f} s at --interval {interval}: {cpu:.2f} CPU s "
                  f"({100 * cpu / wall:.2f} % of one core)", flush=True)
    shutil.rmtree(OUT, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exactly once across the whole pipeline, under kill -9 on both sides of the staging bucket.

A writer (``tests/dockerfake.py``) rotates the logs of four containers like dockerd (three
with compress=true) for 150+ rotations. Meanwhile the shipper daemon is SIGKILLed at random
points and restarted, and ``logarchive archive --once`` runs over and over against the same
moto server, SIGKILLed at random points too (sometimes two runs overlap, sometimes a run is
left to finish). The writer never rotates away bytes that are neither staged nor archived (a
shipper and an archiver that keep up), so every byte must arrive.

At the end (containers stopped, one clean shipper pass and one clean archiver pass), for every
container the archives in the CUSTOMER bucket, fetched and decrypted by ``logarchive
logs-from-archive --decompress``, concatenated in segment order (the ``.N`` of the key), are
exactly the bytes the writer wrote; the staging bucket is empty (no version left); no
multipart upload is open in any bucket; every archive key has exactly one version in the
archive bucket and in the customer bucket.

The shipper is also left down for a moment after some kills, so that the archiver may take a
segment out of staging before the shipper that sent it has recorded it, and the writer rotate
its file away meanwhile.

``E2E_SEED=<n>`` replays a seed (the timing of kills still varies from run to run).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from patience import cpu_seconds, patience

from chalicelib import layout
from chalicelib.keyring import MasterKey
from chalicelib.staged import ARCHIVED_PREFIX

ROOT = Path(__file__).resolve().parent.parent
STACK, HOST, PREFIX = "teststack", "host-1", "staged"
ROTATIONS = 150
MIN_KILLS = 5  # of each lane


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "chalicelib.cli", *args]


@dataclass
class Lane:
    """One command run over and over, each run SIGKILLed at a random moment (or, with
    ``finish``, sometimes left to exit); ``overlap``: the chance a round starts two at once."""

    name: str
    argv: list[str]
    env: dict[str, str]
    rnd: random.Random
    kill_after: tuple[float, float]  # CPU seconds (after ``ready``, if given)
    log: Path
    finish: float = 0.0
    overlap: float = 0.0
    down: tuple[float, float] = (0.0, 0.0)  # pause after a round: the command is down a while
    on_kill: Callable[[], None] | None = None  # called after each kill (statistics only)
    ready: bytes = b""  # a log line the command writes once started: CPU counts from there
    kills: int = 0  # killed while running
    finished: Counter = field(default_factory=Counter)  # exit status of runs left to finish
    seconds: list[float] = field(default_factory=list)  # how long the runs left to finish took
    error: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            with open(self.log, "ab") as out:
                while not stop.is_set():
                    self._round(stop, out)
                    stop.wait(self.rnd.uniform(*self.down))
        except BaseException as exc:  # surfaced by the test thread
            self.error = exc

    def _round(self, stop: threading.Event, out) -> None:
        n = 2 if self.rnd.random() < self.overlap else 1
        procs = []
        t0 = time.monotonic()
        out.flush()
        log_start = os.path.getsize(self.log)
        base: float | None = None if self.ready else 0.0
        for _ in range(n):
            # Killed after a random amount of CPU time (counted from the ``ready`` line, if
            # any): a random point of its work however loaded the machine, where the clock
            # would mostly hit a start-up that load stretches (2.7 s wall for 0.3 s of CPU).
            cpu_limit = None if self.rnd.random() < self.finish else self.rnd.uniform(*self.kill_after)
            procs.append((subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=out), cpu_limit))
        try:
            while any(p.poll() is None for p, _ in procs):
                if base is None:
                    with open(self.log, "rb") as fh:
                        fh.seek(log_start)
                        base = cpu_seconds(procs[0][0].pid) if self.ready in fh.read() else None
                for p, cpu_limit in procs:
                    worked = (base is not None and cpu_limit is not None
                              and cpu_seconds(p.pid) - base >= cpu_limit)
                    if p.poll() is None and (stop.is_set() or worked):
                        p.send_signal(signal.SIGKILL)
                        p.wait()
                        self.kills += 1
                        if self.on_kill is not None and not stop.is_set():
                            self.on_kill()
                time.sleep(0.01)
        finally:
            for p, _ in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                    self.kills += 1
        for p, cpu_limit in procs:
            if cpu_limit is None and p.returncode >= 0:
                self.finished[p.returncode] += 1
                self.seconds.append(time.monotonic() - t0)


def _segments(s3, bucket: str, prefix: str) -> set[tuple[str, int]]:
    """(container id, segment) of every staged or archive object under ``prefix``."""
    out = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if prefix == f"{PREFIX}/":
                if obj["Key"].endswith("/_heartbeat.json"):
                    continue  # the host's heartbeat, no segment
                cid, name = obj["Key"].split("/")[-2:]
                out.add((cid, int(name.split("-", 1)[0])))
            else:
                a = layout.parse(obj["Key"])
                out.add((a.container_id, a.rotation))
    return out


@dataclass
class Windows:
    """Where an archiver kill left a segment: archived but not yet in the customer bucket, or
    in the customer bucket but still staged (a listing right after the kill; another archiver
    or the shipper may blur it: statistics, never asserted)."""

    buckets: object
    uncopied: int = 0
    undeleted: int = 0

    def __call__(self) -> None:
        s3 = boto3.session.Session().client("s3")  # this runs in the lane's thread
        staged = _segments(s3, self.buckets.staging, f"{PREFIX}/")
        archived = _segments(s3, self.buckets.archive, f"{STACK}/")
        customer = _segments(s3, self.buckets.customer, f"{STACK}/")
        self.uncopied += bool(archived - customer)
        self.undeleted += bool(customer & staged)


def _problems(summary: str) -> set[str]:
    """The problem reasons of a ``ship --once`` summary."""
    block = summary.partition("  problems (")[2].splitlines()[1:]
    return {line.split(" × ", 1)[1].split("  (e.g.")[0] for line in block if " × " in line}


def _count(path: Path, pattern: str) -> int:
    return len(re.findall(pattern, path.read_text(errors="replace")))


def test_kill_9_on_both_sides_customer_gets_every_byte_once(buckets, aws_endpoint, tmp_path: Path) -> None:
    seed = int(os.environ.get("E2E_SEED") or random.SystemRandom().randrange(10**6))
    print(f"E2E_SEED={seed}")
    try:
        _run(seed, buckets, aws_endpoint, tmp_path)
    except AssertionError as exc:
        raise AssertionError(f"[E2E_SEED={seed}] {exc}") from None


def _run(seed: int, buckets, aws_endpoint: str, tmp: Path) -> None:
    t_start = time.monotonic()
    rnd = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ENDPOINT_URL": aws_endpoint}
    env.pop("LOGARCHIVE_KEYS", None)
    key_file = tmp / "master.key"
    key_file.write_text(MasterKey.generate().to_base64())
    s3 = boto3.client("s3")

    state = ["--state", str(tmp / "state" / "ship.db")]
    ship = _cli("ship", "--docker-root", str(tmp / "docker"), "--staging", f"s3://{buckets.staging}/{PREFIX}",
                "--stack", STACK, "--host", HOST, *state)
    archive = _cli("archive", "--once", "--staging", f"s3://{buckets.staging}/{PREFIX}/",
                   "--archive-bucket", buckets.archive, "--replicate-to", buckets.customer,
                   "--key-file", str(key_file), "--stack", STACK)

    writer = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "dockerfake.py"), "--root", str(tmp / "docker"),
         "--truth", str(tmp / "truth"), "--rotations", str(ROTATIONS), "--bucket", buckets.staging,
         "--prefix", f"{PREFIX}/{STACK}/{HOST}", "--seed", str(rnd.randrange(10**6)),
         "--archive-bucket", buckets.archive, "--archive-prefix", f"{STACK}/shareable/"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    shipper = Lane("shipper", [*ship, "--interval", "0.05", "--max-age", "0.5s", "--settle", "2s"], env,
                   random.Random(rnd.random()), (0.0, 0.15), tmp / "shipper.log", down=(0.0, 0.5),
                   ready=b"INFO shipping ")
    archiver = Lane("archiver", archive, env, random.Random(rnd.random()), (0.3, 2.0), tmp / "archiver.log",
                    finish=0.3, overlap=0.25, on_kill=Windows(buckets))
    stop = threading.Event()
    lanes = [threading.Thread(target=lane.run, args=(stop,), name=lane.name) for lane in (shipper, archiver)]
    for t in lanes:
        t.start()
    try:
        # The writer ends by itself: done, or no staging progress for a patience-scaled while.
        out, err = writer.communicate()
        # A fast writer must not leave the test without kills: both lanes go on (the archiver
        # still has staged work, the shipper stopped containers' logs) until each has some;
        # every round of a lane ends in a kill or a run left to finish, so this is progress.
        while min(shipper.kills, archiver.kills) < MIN_KILLS and all(t.is_alive() for t in lanes):
            time.sleep(0.05)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        stop.set()
        for t in lanes:
            t.join()
    for lane in (shipper, archiver):
        assert lane.error is None, f"{lane.name} lane: {lane.error!r}"
    assert writer.returncode == 0, err.decode()[-2000:]
    stats = json.loads(out)
    assert stats["rotations"] >= ROTATIONS
    assert min(shipper.kills, archiver.kills) >= MIN_KILLS, f"kills: shipper {shipper.kills}, archiver {archiver.kills}"
    # A run left to finish met no crash of its own: anything but success is a defect.
    assert set(archiver.finished) <= {0}, f"archiver runs that finished: exit statuses {dict(archiver.finished)}"
    t_chaos = time.monotonic() - t_start

    # Containers stopped: one clean pass on each side finishes what the killed runs left.
    final = subprocess.run([*ship, "--once", "--settle", "0"], cwd=ROOT, env=env, capture_output=True,
                           timeout=patience(600))
    # A segment a killed shipper sent but did not record, which the archiver has since taken out
    # of staging and whose file Docker rotated away, is found by the archiver's marker: no problem.
    assert _problems(final.stdout.decode()) == set(), final.stdout.decode()[-3000:]
    assert final.returncode == 0, final.stdout.decode() + final.stderr.decode()[-3000:]
    done = subprocess.run(archive, cwd=ROOT, env=env, capture_output=True, timeout=patience(600))
    assert done.returncode == 0, done.stdout.decode()[-2000:] + done.stderr.decode()[-3000:]

    # The staging bucket is empty but for the archiver's "archived" markers (empty objects, each
    # naming an archive key): every staged version archived and deleted, nothing quarantined, no
    # replication marker left.
    left = s3.list_object_versions(Bucket=buckets.staging)
    rest = [v["Key"] for v in left.get("Versions", []) + left.get("DeleteMarkers", [])
            if not (v["Key"].startswith(ARCHIVED_PREFIX) and v.get("Size") == 0)
            and not v["Key"].endswith("/_heartbeat.json")]  # the shipper's heartbeat stays
    assert not rest, f"staging not empty: {rest[:10]}"
    markers = [v["Key"] for v in left.get("Versions", []) if v["Key"].startswith(ARCHIVED_PREFIX)]
    assert markers, "no archived marker in staging"
    archived_as = s3.head_object(Bucket=buckets.staging, Key=markers[0])["Metadata"]["logarchive-archive-key"]
    for bucket in buckets.all():
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), f"{bucket}: open multipart uploads"
    keys = {}
    for bucket in (buckets.archive, buckets.customer):
        versions, markers = [], []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += [(v["Key"], v["ETag"]) for v in page.get("Versions", [])]
            markers += page.get("DeleteMarkers", [])
        assert not markers, f"{bucket}: delete markers"
        twice = sorted(k for k, n in Counter(k for k, _ in versions).items() if n > 1)
        assert not twice, f"{bucket}: {len(twice)} keys with more than one version, e.g. {twice[:3]}"
        keys[bucket] = dict(versions)
    assert archived_as in keys[buckets.archive], f"{markers[0]} names {archived_as}, not an archive"
    # Bytes Docker rotated away are never reported lost: the writer only rotates away what is
    # staged or archived, and a segment archived before its shipper recorded it has a marker.
    assert _count(shipper.log, "deleted by Docker before") == 0, "shipper reported bytes lost"
    # direct mode: the customer's copy is the archive object, byte for byte (single-part objects
    # here: the ETag is the MD5 of the bytes)
    assert keys[buckets.archive] == keys[buckets.customer], "archive and customer buckets hold different objects"

    # Every container's bytes, as the customer gets them back.
    truths = sorted((tmp / "truth").iterdir())
    fetches = {}
    for truth in truths:
        dest = tmp / "restored" / truth.name
        fetches[truth.name] = (dest, subprocess.Popen(
            _cli("logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--container-id", truth.name,
                 "--key-file", str(key_file), "--download-location", str(dest), "--decompress"),
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    by_rel = {k.split("/", 4)[4]: k for k in keys[buckets.customer]}
    summary = []
    for truth in truths:
        cid = truth.name
        dest, proc = fetches[cid]
        fout, ferr = proc.communicate(timeout=patience(600))
        assert proc.returncode == 0, f"{cid[:12]}: logs-from-archive: {ferr.decode()[-2000:]}"
        segments = []
        for path in dest.rglob("*"):
            if path.is_file():
                rel = str(path.relative_to(dest))
                assert rel.endswith(".jsonl"), rel
                key = by_rel[rel[: -len(".jsonl")] + ".gz"]  # KeyError: a file of no customer key
                segments.append((layout.parse(key).rotation, path.read_bytes()))
        mine = sorted(k for k in keys[buckets.customer] if f"/{cid}-json.log." in k)
        assert len(segments) == len(mine), f"{cid[:12]}: {len(mine)} archives, {len(segments)} fetched"
        segments.sort(key=lambda s: s[0])
        numbers = [n for n, _ in segments]
        assert len(set(numbers)) == len(numbers), f"{cid[:12]}: a segment number twice: {numbers}"
        got, want = b"".join(b for _, b in segments), truth.read_bytes()
        if got != want:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), min(len(got), len(want)))
            raise AssertionError(f"{cid[:12]}: customer bytes differ from what was written: {len(got)} vs "
                                 f"{len(want)} bytes, first difference at {at}; segments {numbers}")
        gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        summary.append(f"{cid[:12]}: {len(segments)} archives, {len(got)} bytes, gaps {gaps}")

    w, slog, alog = archiver.on_kill, shipper.log, archiver.log
    print(f"writer {stats}; chaos {t_chaos:.1f}s, total {time.monotonic() - t_start:.1f}s\n"
          f"shipper: killed {shipper.kills}x; after a kill {_count(slog, 'again, as planned')} segments sent again, "
          f"{_count(slog, 'found already staged')} found already staged, "
          f"{_count(slog, 'archived already as')} found archived (marker), "
          f"{_count(slog, 'deleted by Docker before')} abandoned (bytes gone)\n"
          f"archiver: killed {archiver.kills}x ({w.uncopied} left an archive without its customer copy, "
          f"{w.undeleted} a copied segment still staged), {sum(archiver.finished.values())} runs finished "
          f"(in {', '.join(f'{x:.1f}' for x in archiver.seconds)} s); "
          f"{_count(alog, r': archived as ')} archived, {_count(alog, r': already-archived as ')} already archived, "
          f"{_count(alog, r': gone')} gone, {_count(alog, r': superseded')} superseded")
    print("\n".join(summary))

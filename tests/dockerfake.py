"""The fake Docker data root for tests, and the crash test's writer process.

The builder lives in ``chalicelib/devkit/fakedocker.py`` (``make demo`` uses it too); this
module re-exports it. As a script, ``python tests/dockerfake.py --root R --truth T …`` is the
writer of ``tests/test_ship_crash.py``: it writes and rotates logs like dockerd while the
shipper is killed and restarted, and records every byte it wrote. It never rotates away bytes
that are not staged yet; with ``--archive-bucket`` (``tests/test_e2e_exactly_once.py``, an
archiver running too) bytes the archiver already took out of staging count as staged.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from patience import patience  # tests/ is on sys.path: as a script and under pytest

from chalicelib.devkit.fakedocker import FakeContainer, FakeDockerRoot, docker_time, json_line

__all__ = ["FakeContainer", "FakeDockerRoot", "docker_time", "json_line", "writer_main"]


# -- the crash test's writer process --------------------------------------------------------
def _segments(s3, bucket: str, prefix: str, cache: dict[str, tuple[int, int]], *,
              contains: str = "", archived: bool = False) -> dict[int, int]:
    """{segment: log bytes} of the objects under ``prefix`` (staged, or ``archived`` objects)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if contains not in obj["Key"] or obj["Key"].endswith("/_heartbeat.json"):
                continue  # (the host's heartbeat is no segment)
            if obj["Key"] not in cache:
                try:
                    meta = s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
                except s3.exceptions.ClientError:  # archived and deleted since the listing: counted
                    continue                       # in the archive bucket, on the next look
                size = (int(meta["logarchive-bytes"]) if archived
                        else int(meta["logarchive-byte-end"]) - int(meta["logarchive-byte-start"]))
                cache[obj["Key"]] = (int(meta["logarchive-segment"]), size)
            segment, size = cache[obj["Key"]]
            out[segment] = size
    return out


def _staged_bytes(s3, bucket: str, prefix: str, cache: dict[str, tuple[int, int]],
                  archive: tuple[str, str, str] | None = None) -> int:
    """Log bytes staged for one container; with ``archive`` (bucket, prefix, container id),
    also those the archiver already took out of staging (each segment counted once)."""
    segs = _segments(s3, bucket, prefix, cache)  # staging first: what leaves it is archived by then
    if archive is not None:
        abucket, aprefix, cid = archive
        segs.update(_segments(s3, abucket, aprefix, cache, contains=f"/{cid}-json.log.", archived=True))
    return sum(segs.values())


def writer_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--rotations", type=int, default=200)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", required=True, help="<prefix>/<stack>/<host>")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--archive-bucket", help="an archiver runs too: bytes it archived count as staged")
    ap.add_argument("--archive-prefix", default="", help="<stack>/shareable/ in --archive-bucket")
    a = ap.parse_args(argv)
    import boto3  # only the writer process needs it

    s3 = boto3.client("s3")
    rnd = random.Random(a.seed)
    fake = FakeDockerRoot(Path(a.root))
    size = 6000
    cs = [
        fake.add("web-1", labels={"logarchive.app_id": "11", "logarchive.service_id": "7"},
                 max_size=size, max_file=3, compress=True),
        fake.add("db-1", labels={"logarchive.database_id": "22"}, max_size=size, max_file=3, compress=True),
        fake.add("proxy-1", labels={"logarchive.endpoint_id": "33"}, max_size=size, max_file=3),
        fake.add("worker-1", max_size=size, max_file=5, compress=True),
    ]
    caches: dict[str, dict[str, tuple[int, int]]] = {c.id: {} for c in cs}
    seq = 0
    stall_limit = patience(180)  # no staging progress for this long: the shipper is gone
    while sum(c.rotations for c in cs) < a.rotations:
        for c in cs:
            if not c.running:
                if rnd.random() < 0.05:  # restart: dockerd starts the process before recording it
                    c.write(json_line("restarted"))
                    c.start()
                continue
            for _ in range(rnd.randint(1, 4)):
                seq += 1
                line = json_line(f"{c.name} message {seq} " + "x" * rnd.randint(0, 300),
                                 rnd.choice(("stdout", "stderr")))
                limit = c.next_rotation_deletes_up_to()
                if limit is not None and c.max_size and c.log_path.stat().st_size >= c.max_size:
                    # A shipper that keeps up: the bytes this rotation deletes must be staged.
                    prefix = f"{a.prefix}/{c.id}/"
                    archive = (a.archive_bucket, a.archive_prefix, c.id) if a.archive_bucket else None
                    # Waits as long as the shipper makes progress, however slowly (a loaded machine).
                    staged, since = -1, time.monotonic()
                    while (now_staged := _staged_bytes(s3, a.bucket, prefix, caches[c.id], archive)) < limit:
                        if now_staged > staged:
                            staged, since = now_staged, time.monotonic()
                        elif time.monotonic() - since > stall_limit:
                            print(f"writer: no staging progress for {stall_limit:.0f} s waiting for {c.name}",
                                  file=sys.stderr)
                            return 3
                        time.sleep(0.05)
                if rnd.random() < 0.2:  # a line in two writes: readers see half a line
                    cut = rnd.randint(1, len(line) - 1)
                    c.write(line[:cut])
                    c.compress_step(2048)
                    c.write(line[cut:], rotate=False)
                else:
                    c.write(line)
            c.compress_step(2048)
            if c.name == "worker-1" and rnd.random() < 0.03:
                c.stop()
        time.sleep(0.004)
    for c in cs:
        if c.running:
            c.stop()
        c.finish_compression()
    truth = Path(a.truth)
    truth.mkdir(parents=True, exist_ok=True)
    for c in cs:
        (truth / c.id).write_bytes(bytes(c.written))
    print(json.dumps({"rotations": sum(c.rotations for c in cs), "bytes": sum(len(c.written) for c in cs)}))
    return 0


if __name__ == "__main__":
    sys.exit(writer_main())

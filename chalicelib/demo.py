"""``make demo``: the flow on this machine, against the embedded local AWS (moto over HTTP).

Step 1, the host shipper: containers on a fake Docker data root (rotated with compress=true,
exited, restarted, running) are staged with ``logarchive ship --once``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import boto3

from . import cli, local
from .shipper.fakedocker import FakeDockerRoot

OUT = Path("demo-output")
STACK = "demo"


def fake_docker_host(root: Path) -> FakeDockerRoot:
    """A few containers in the states a real host has them."""
    fake = FakeDockerRoot(root)
    web = fake.add("web-1", labels={"logarchive.app_id": "101", "logarchive.service_id": "7"},
                   max_size=64 * 1024, max_file=3, compress=True)
    for i in range(2500):
        web.log(f"GET /items/{i} 200 {i % 97}ms", "stdout")
    web.finish_compression()
    db = fake.add("postgres-1", labels={"logarchive.database_id": "202"})
    for i in range(300):
        db.log(f"checkpoint {i} complete", "stderr")
    db.stop()
    job = fake.add("nightly-job", labels={"logarchive.app_id": "101", "logarchive.service_id": "8"})
    job.log("run 1 done")
    job.stop()
    return fake


def ship_step(endpoint: str, staging_bucket: str) -> int:
    print("== 1. logarchive ship: a fake Docker host's closed logs to the staging bucket")
    fake = fake_docker_host(OUT / "docker")
    argv = ["ship", "--docker-root", str(OUT / "docker"), "--staging", f"s3://{staging_bucket}/staged",
            "--stack", STACK, "--host", "demo-host", "--state", str(OUT / "ship.db"), "--once",
            "--settle", "0", "--endpoint-url", endpoint]
    print("$ logarchive " + " ".join(argv))
    rc = cli.main(argv)
    job = next(c for c in fake.containers if c.name == "nightly-job")
    job.start()  # restarted: it appends to the same file; only the new bytes ship
    job.log("run 2 done")
    job.stop()
    time.sleep(0.01)
    print("\n-- the nightly job ran again; a second pass ships only its new line:")
    rc = max(rc, cli.main(argv))
    s3 = boto3.client("s3", endpoint_url=endpoint)
    print("\nstaged objects:")
    for obj in s3.list_objects_v2(Bucket=staging_bucket, Prefix="staged/").get("Contents", []):
        print(f"  {obj['Size']:8d}  s3://{staging_bucket}/{obj['Key']}")
    return rc


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    buckets = local.StackBuckets.for_stack(STACK)
    with local.moto_server() as endpoint:
        local.use_endpoint(endpoint)
        local.create_buckets(endpoint, buckets.all())
        print(f"local AWS at {endpoint}; buckets {', '.join(buckets.all())}\n")
        return ship_step(endpoint, buckets.staging)


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the whole flow on this machine, against the embedded local AWS (moto over HTTP).

1. ``logarchive ship --once``: a fake Docker host's closed logs (rotated with compress=true,
   exited, restarted; one still running) are staged in the staging bucket; so are a fake
   Kubernetes node's (``--pods-root``: kubelet's CRI logs, rotated and gzipped, restarts,
   partial records, a deleted pod).
2. ``logarchive archive --once``: the same scheduler and worker code as the hourly Lambdas
   gzip, encrypt and write them to the archive bucket and the customer's bucket.
3. ``logarchive logs-from-archive``: the customer's way back, with only the bucket and the key;
   the restored bytes are compared with every byte the fake Docker and the fake kubelet wrote
   (``--namespace`` for the Kubernetes archives, under ``_k8s/<stack>/``).
4. The index and the retrieval API of ``logarchive local up``'s stage: archives were indexed as
   they landed, and ``POST /retrievals`` asks for all stderr lines of app 101 containing
   "timeout" in a time window; the ``retrieval_worker`` code answers from the queue.
5. ``logarchive audit``: the customer's bucket, the public signing key and the shipper's state
   prove the archive whole and unchanged (``demo-output/audit.html``).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from . import local_aws, local_stack
from .fakedocker import FakeContainer, FakeDockerRoot
from .fakekubelet import FakeKubelet, sample_node

OUT = Path("demo-output")
STACK = "demo"
APP_ID = "101"


def say(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(argv: list[str]) -> int:
    """Run one ``logarchive`` command as its own process, as an operator would type it."""
    print("$ logarchive " + " ".join(argv), flush=True)
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], check=False).returncode


def fake_docker_host(root: Path) -> FakeDockerRoot:
    """A few containers in the states a real host has them."""
    fake = FakeDockerRoot(root)
    web = fake.add("web-1", labels={"logarchive.app_id": APP_ID, "logarchive.service_id": "7"},
                   max_size=96 * 1024, max_file=3, compress=True)
    web.start()
    for i in range(2000):
        web.log(f"GET /items/{i} 200 {i % 97}ms", "stdout")
        if i % 400 == 7:
            web.log(f"upstream timeout on /items/{i} after 30s", "stderr")
    web.finish_compression()
    db = fake.add("postgres-1", labels={"logarchive.database_id": "202"})
    db.start()
    for i in range(300):
        db.log(f"checkpoint {i} complete", "stderr")
    db.stop()
    job = fake.add("nightly-job", labels={"logarchive.app_id": APP_ID, "logarchive.service_id": "8"})
    job.start()
    job.log("run 1 done")
    job.log("run 1: connection timeout to billing, retried", "stderr")
    job.stop()
    return fake


def ship_step(endpoint: str, staging_bucket: str) -> FakeDockerRoot:
    say("1. logarchive ship: a fake Docker host's closed logs to the staging bucket")
    fake = fake_docker_host(OUT / "docker")
    argv = ["ship", "--docker-root", str(OUT / "docker"), "--staging", f"s3://{staging_bucket}/staged",
            "--stack", STACK, "--host", "demo-host", "--state", str(OUT / "ship.db"), "--once",
            "--settle", "0", "--endpoint-url", endpoint]
    run(argv)
    job = next(c for c in fake.containers if c.name == "nightly-job")
    job.start()  # restarted: it appends to the same file; only the new bytes ship
    job.log("run 2 done")
    job.stop()
    time.sleep(0.01)
    print("\n-- the nightly job ran again; a second pass ships only its new lines:")
    run(argv)
    return fake


def k8s_ship_step(endpoint: str, staging_bucket: str) -> FakeKubelet:
    say("1b. logarchive ship --pods-root: a fake Kubernetes node's closed CRI logs, the same way")
    node = sample_node(OUT / "node")
    run(["ship", "--pods-root", str(OUT / "node" / "pods"), "--staging", f"s3://{staging_bucket}/staged",
         "--stack", STACK, "--host", "demo-node", "--state", str(OUT / "ship-node.db"), "--once",
         "--endpoint-url", endpoint])
    return node


def k8s_restore_step(endpoint: str, buckets: local_aws.StackBuckets, key_file: Path,
                     node: FakeKubelet) -> bool:
    say("3b. logarchive logs-from-archive --namespace: the Kubernetes archives, byte for byte")
    common = ["--bucket", buckets.customer, "--stack", STACK, "--decryption-keys-file", str(key_file),
              "--endpoint-url", endpoint]
    ok = True
    for pod in node.all:
        for c in pod.containers.values():
            print("$ logarchive logs-from-archive " + " ".join(
                [*common, "--namespace", pod.namespace, "--pod", pod.name, "--container-name", c.name,
                 "--download-location", "-", "--decompress"]), flush=True)
            got = subprocess.run([sys.executable, "-m", "chalicelib.cli", "logs-from-archive", *common,
                                  "--namespace", pod.namespace, "--pod", pod.name, "--container-name", c.name,
                                  "--download-location", "-", "--decompress"], capture_output=True)
            whole = b"".join(bytes(c.written[r]) for r in sorted(c.written))
            if not pod.dir.exists():
                verdict = "pod deleted before the shipper came: nothing on disk to ship (as expected)"
            elif got.stdout == whole:
                verdict = f"all {len(whole)} bytes of {c.restart + 1} run(s), exactly once"
            else:
                verdict, ok = f"MISMATCH ({len(got.stdout)} of {len(whole)} bytes)", False
            print(f"  {pod.namespace}/{pod.name}/{c.name}: {verdict}")
    return ok


def archive_step(endpoint: str, buckets: local_aws.StackBuckets, key_file: Path) -> None:
    say("2. logarchive archive: staged segments -> gzip -> AES-256-GCM -> archive + customer bucket, "
        "and a signed digest of them")
    run(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged", "--archive-bucket",
         buckets.archive, "--replicate-to", buckets.customer, "--stack", STACK,
         "--key-file", str(key_file), "--signing-key-file", str(OUT / "signing.pem"),
         "--table", local_stack.LocalStage(STACK).table("leases"), "--endpoint-url", endpoint])
    s3 = boto3.client("s3")
    left = s3.list_objects_v2(Bucket=buckets.staging, Prefix="staged/").get("KeyCount", 0)
    print(f"staged objects left after archiving: {left}")
    print(f"customer bucket s3://{buckets.customer}:")
    for obj in s3.list_objects_v2(Bucket=buckets.customer).get("Contents", []):
        print(f"  {obj['Size']:7d}  {obj['Key']}")


def restore_step(
    endpoint: str, buckets: local_aws.StackBuckets, key_file: Path, fake: FakeDockerRoot
) -> bool:
    say("3. logarchive logs-from-archive: search, download and decrypt from the customer bucket")
    common = ["--bucket", buckets.customer, "--stack", STACK, "--key-file", str(key_file),
              "--endpoint-url", endpoint]
    run(["logs-from-archive", *common, "--app-id", APP_ID])
    restored = OUT / "restored"
    rc = run(["logs-from-archive", *common, "--app-id", APP_ID, "--download-location", str(restored)])
    rc = max(rc, run(["logs-from-archive", *common, "--database-id", "202",
                      "--download-location", str(restored)]))
    print("\n-- restored archives (standard gzip) against the bytes Docker wrote:")
    ok = rc == 0
    for c in fake.containers:
        files = sorted(restored.rglob(f"{c.id}-json.log*.archived.gz"), key=_segment_number)
        data = b"".join(gzip.decompress(f.read_bytes()) for f in files)
        whole = bytes(c.written)
        if data == whole:
            verdict = "all bytes, exactly once"
        elif c.running and whole.startswith(data):
            verdict = (f"exact prefix; {len(whole) - len(data)} bytes still in the live log of a running "
                       "container (they ship when it rotates, exits or --max-age passes)")
        else:
            verdict, ok = "MISMATCH", False
        print(f"  {c.name:12s} {len(files)} archive(s), {len(data):7d} of {len(whole):7d} bytes: {verdict}")
    return ok


def _segment_number(path: Path) -> int:
    # <cid>-json.log.<N>.<start>.<end>.archived.gz: N is the per-container segment number
    parts = path.name.split(".")
    return int(parts[2]) if len(parts) > 6 and parts[2].isdigit() else 0


def api_step(api_url: str, fake: FakeDockerRoot) -> bool:
    say("4. the index and the retrieval API (local up's: the Lambdas' code behind chalice's local server)")
    now = datetime.now(UTC).replace(microsecond=0)
    question = {"app_id": APP_ID, "start": _iso(now - timedelta(hours=1)),
                "end": _iso(now + timedelta(minutes=1)), "stream": "stderr", "grep": "timeout"}
    query = f"app_id={APP_ID}&start={question['start']}&end={question['end']}"
    # The indexer ran as each archive landed (what the restore step got of app 101 is all of them).
    archived = len(list((OUT / "restored").rglob(f"apps-{APP_ID}/**/*.archived.gz")))
    archives = local_stack.wait_indexed(api_url, query, archived)
    print(f"GET {api_url}/archives?{query}: {len(archives)} archives")
    print(f"POST {api_url}/retrievals {json.dumps(question)}")
    status, lines = local_stack.ask_over_http(api_url, question)
    p = status["progress"]
    print(f"GET /retrievals/{status['id']}: {status['status']}, archives {p['archives_done']}/"
          f"{p['archives_total']}, {p['bytes_scanned']} bytes scanned, {len(lines)} lines:")
    for x in lines:
        print("  " + x.decode())
    expected = sorted(
        line for c in fake.containers if c.labels.get("logarchive.app_id") == APP_ID
        for line in bytes(c.written).splitlines() if b'"stderr"' in line and b"timeout" in line
    )
    # A running container's live log is not archived yet: its lines cannot be in the answer.
    shipped = [x for x in expected if any(x in _archived(c) for c in fake.containers)]
    ok = sorted(lines) == sorted(shipped)
    print(f"-- exactly the {len(shipped)} archived stderr lines of app {APP_ID} containing 'timeout': "
          f"{'yes' if ok else 'NO'}")
    return ok


_archived_cache: dict[str, bytes] = {}


def _archived(c: FakeContainer) -> bytes:
    if c.id not in _archived_cache:
        files = sorted((OUT / "restored").rglob(f"{c.id}-json.log*.archived.gz"), key=_segment_number)
        _archived_cache[c.id] = b"".join(gzip.decompress(f.read_bytes()) for f in files)
    return _archived_cache[c.id]


def audit_step(endpoint: str, buckets: local_aws.StackBuckets) -> bool:
    say("5. logarchive audit: the customer's bucket and the public signing key prove the archive whole")
    report = OUT / "audit.html"
    rc = run(["audit", "--bucket", buckets.customer, "--stack", STACK, "--public-key-file",
              str(OUT / "signing.pub"), "--ship-state", str(OUT / "ship.db"),
              "--ship-state", str(OUT / "ship-node.db"), "--report", str(report),
              "--endpoint-url", endpoint])
    print(f"auditor's report: {report}")
    return rc == 0


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    buckets = local_aws.StackBuckets.for_stack(STACK)
    key_file = OUT / "master.key"
    say("0. logarchive keys generate: the customer's master key (only its id is ever printed)")
    run(["keys", "generate", "--output", str(key_file)])
    run(["keys", "id", "--key-file", str(key_file)])
    print("-- and the signing key of the digests (the public half goes to the auditor):")
    run(["keys", "signing-generate", "--private-key-file", str(OUT / "signing.pem"),
         "--public-key-file", str(OUT / "signing.pub")])
    # What `logarchive local up --stack demo --api-port 0 --key-file demo-output/master.key` runs.
    with (
        local_aws.moto_server() as endpoint,
        local_stack.running_stage(endpoint, STACK, keys_text=key_file.read_text(), api_port=0,
                                  lambda_log=OUT / "lambda.log") as api_url,
    ):
        print(f"local AWS at {endpoint}, retrieval API at {api_url}/; "
              f"versioned buckets {', '.join(buckets.all())}; Lambda logs in {OUT / 'lambda.log'}")
        fake = ship_step(endpoint, buckets.staging)
        node = k8s_ship_step(endpoint, buckets.staging)
        archive_step(endpoint, buckets, key_file)
        restored_ok = restore_step(endpoint, buckets, key_file, fake)
        restored_ok = k8s_restore_step(endpoint, buckets, key_file, node) and restored_ok
        api_ok = api_step(api_url, fake)
        audit_ok = audit_step(endpoint, buckets)
    say("result")
    print(f"restored bytes equal what Docker and kubelet's runtime wrote: {'yes' if restored_ok else 'NO'}; "
          f"API answer exact: {'yes' if api_ok else 'NO'}; audit passed: {'yes' if audit_ok else 'NO'}; "
          f"files under {OUT}/")
    return 0 if restored_ok and api_ok and audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())

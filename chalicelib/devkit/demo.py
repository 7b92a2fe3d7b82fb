"""``make demo``: the whole flow on this machine, against the embedded local AWS (moto over HTTP).

1. ``logarchive ship --once``: a fake Docker host's closed logs (rotated with compress=true,
   exited, restarted; one still running) are staged in the staging bucket.
2. ``logarchive archive --once``: the same scheduler and worker code as the hourly Lambdas
   gzip, encrypt and write them to the archive bucket and the customer's bucket.
3. ``logarchive logs-from-archive``: the customer's way back, with only the bucket and the key;
   the restored bytes are compared with every byte the fake Docker wrote.
4. The index and the retrieval API: ``logarchive index backfill`` fills the DynamoDB index and
   ``POST /retrievals`` (through ``chalice.test.Client``) asks for all stderr lines of app 101
   containing "timeout" in a time window; the ``retrieval_worker`` Lambda answers.
5. ``logarchive audit``: with the customer's bucket, the public signing key and the host's
   shipper state only, the archive is proven whole and unchanged; the auditor's report is
   written to ``demo-output/audit.html``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from . import local_aws, local_stack
from .fakedocker import FakeContainer, FakeDockerRoot

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


def archive_step(endpoint: str, buckets: local_aws.StackBuckets, key_file: Path) -> None:
    say("2. logarchive archive: staged segments -> gzip -> AES-256-GCM -> archive + customer bucket, "
        "and a signed digest of them")
    run(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged", "--archive-bucket",
         buckets.archive, "--replicate-to", buckets.customer, "--stack", STACK,
         "--key-file", str(key_file), "--signing-key-file", str(OUT / "signing.pem"),
         "--endpoint-url", endpoint])
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
    common = ["--bucket", buckets.customer, "--stack", STACK, "--decryption-keys-file", str(key_file),
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


def api_step(endpoint: str, buckets: local_aws.StackBuckets, key_b64: str, fake: FakeDockerRoot) -> bool:
    say("4. the index and the retrieval API (API Gateway + Lambda, through chalice.test.Client)")
    from chalice.test import Client

    results_bucket = f"{STACK}-logarchive-results"
    local_aws.create_buckets(endpoint, (results_bucket,))
    local_stack.create_table(local_stack.INDEX_TABLE)
    local_stack.create_table(local_stack.JOBS_TABLE)
    queue_url = local_stack.create_queue()
    run(["index", "backfill", "--bucket", buckets.archive, "--table", local_stack.INDEX_TABLE,
         "--stack", STACK, "--endpoint-url", endpoint])
    env = {
        "LOGARCHIVE_STACK": STACK,
        "LOGARCHIVE_ARCHIVE_BUCKET": buckets.archive,
        "LOGARCHIVE_INDEX_TABLE": local_stack.INDEX_TABLE,
        "LOGARCHIVE_JOBS_TABLE": local_stack.JOBS_TABLE,
        "LOGARCHIVE_RETRIEVAL_QUEUE_URL": queue_url,
        "LOGARCHIVE_RESULTS_BUCKET": results_bucket,
        "LOGARCHIVE_KEYS": key_b64,
        "LOGARCHIVE_API_TOKEN_SECRET": local_stack.create_token_secret(f"logarchive-{STACK}-api-token"),
    }
    now = datetime.now(UTC).replace(microsecond=0)
    question = {"app_id": APP_ID, "start": _iso(now - timedelta(hours=1)),
                "end": _iso(now + timedelta(minutes=1)), "stream": "stderr", "grep": "timeout"}
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # no EMF lines in the demo's output
    import app  # the Chalice app at the project root

    warnings.filterwarnings("ignore", "IAMAuthorizer is not a supported in local mode")
    with (
        tempfile.TemporaryDirectory() as tmp,
        Client(app.app, stage_name="local", project_dir=local_stack.write_stage(tmp, env)) as client,
    ):
        query = f"/archives?stack={STACK}&app_id={APP_ID}&start={question['start']}&end={question['end']}"
        page = json.loads(client.http.get(query).body)
        if "archives" not in page:
            raise RuntimeError(f"GET {query}: {page}")
        print(f"GET {query}: {len(page['archives'])} archives, {page['items_read']} index items read")
        print(f"POST /retrievals {json.dumps(question)}")
        status, lines = local_stack.ask(client, queue_url, question)
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
              str(OUT / "signing.pub"), "--ship-state", str(OUT / "ship.db"), "--report", str(report),
              "--endpoint-url", endpoint])
    print(f"auditor's report: {report}")
    return rc == 0


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    buckets = local_aws.StackBuckets.for_stack(STACK)
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, buckets.all())
        print(f"local AWS at {endpoint}; versioned buckets {', '.join(buckets.all())}")
        say("0. logarchive keys generate: the customer's master key (only its id is ever printed)")
        key_file = OUT / "master.key"
        run(["keys", "generate", "--output", str(key_file)])
        run(["keys", "id", "--key-file", str(key_file)])
        print("-- and the signing key of the digests (the public half goes to the auditor):")
        run(["keys", "signing-generate", "--private-key-file", str(OUT / "signing.pem"),
             "--public-key-file", str(OUT / "signing.pub")])
        key_b64 = key_file.read_text().split()[0]
        fake = ship_step(endpoint, buckets.staging)
        archive_step(endpoint, buckets, key_file)
        restored_ok = restore_step(endpoint, buckets, key_file, fake)
        api_ok = api_step(endpoint, buckets, key_b64, fake)
        audit_ok = audit_step(endpoint, buckets)
    say("result")
    print(f"restored bytes equal what Docker wrote: {'yes' if restored_ok else 'NO'}; "
          f"API answer exact: {'yes' if api_ok else 'NO'}; audit passed: {'yes' if audit_ok else 'NO'}; "
          f"files under {OUT}/")
    return 0 if restored_ok and api_ok and audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())

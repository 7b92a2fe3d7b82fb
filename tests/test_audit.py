"""``logarchive audit`` end to end, through the CLI only, on the local AWS.

Two hosts ship, ``archive --once --signing-key-file`` runs twice, and the audit of the customer
bucket passes. Then each way of losing or changing the archive is done, caught by its name, and
undone, after which the audit passes again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from archiver_support import TABLE, create_idempotency_table
from dockerfake import FakeDockerRoot

from chalicelib import layout
from chalicelib.cli import main

STACK = "teststack"


class Scene:
    def __init__(self, buckets, tmp: Path, capsys) -> None:
        self.b, self.tmp, self.capsys = buckets, tmp, capsys
        self.s3 = boto3.client("s3")
        self.hosts = {h: FakeDockerRoot(tmp / h) for h in ("host-a", "host-b")}
        self.key_file = tmp / "master.key"
        self.private, self.public = tmp / "signing.pem", tmp / "signing.pub"
        create_idempotency_table()

    def cli(self, *argv: str) -> tuple[int, str, str]:
        rc = main(list(argv))
        got = self.capsys.readouterr()
        return rc, got.out, got.err

    def ship(self, host: str) -> None:
        rc, out, err = self.cli(
            "ship", "--docker-root", str(self.tmp / host), "--staging", f"s3://{self.b.staging}/staged",
            "--stack", STACK, "--host", host, "--state", str(self.state(host)), "--once", "--settle", "0")
        assert rc == 0, out + err

    def state(self, host: str) -> Path:
        return self.tmp / f"{host}.db"

    def archive(self, *, signed: bool = True) -> str:
        signing = ["--signing-key-file", str(self.private), "--table", TABLE] if signed else []
        rc, out, err = self.cli(
            "archive", "--once", "--staging", f"s3://{self.b.staging}/staged", "--archive-bucket",
            self.b.archive, "--replicate-to", self.b.customer, "--stack", STACK,
            "--key-file", str(self.key_file), *signing)
        assert rc == 0, out + err
        return out

    def audit(self, *extra: str, public: Path | None = None, bucket: str = "") -> tuple[int, list[str]]:
        rc, out, err = self.cli("audit", "--bucket", bucket or self.b.customer, "--stack", STACK,
                                "--public-key-file", str(public or self.public), *extra)
        assert "Traceback" not in err, err
        return rc, out.splitlines()

    def passes(self, *extra: str) -> str:
        rc, lines = self.audit(*extra)
        assert rc == 0 and len(lines) == 1, lines
        return lines[0]

    def caught(self, kind: str, obj: str, *extra: str, public: Path | None = None, bucket: str = "") -> list[str]:
        rc, lines = self.audit(*extra, public=public, bucket=bucket)
        assert rc == 1, lines
        found = [line for line in lines if line.startswith(f"{kind}: ") and obj in line]
        assert found, (kind, obj, lines)
        return lines

    def keys(self, prefix: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.b.customer, Prefix=prefix)
                .get("Contents", [])]

    def undo_latest(self, key: str, bucket: str = "") -> None:
        """Remove the newest version (or delete marker) of ``key``: what was there before is back."""
        bucket = bucket or self.b.customer
        v = self.s3.list_object_versions(Bucket=bucket, Prefix=key)
        newest = [x for x in v.get("Versions", []) + v.get("DeleteMarkers", []) if x["Key"] == key
                  and x["IsLatest"]][0]
        self.s3.delete_object(Bucket=bucket, Key=key, VersionId=newest["VersionId"])


def logs(c, n: int, tag: str) -> None:
    for i in range(n):
        c.log(f"{tag} line {i} " + "x" * 40)


@pytest.fixture
def scene(buckets, tmp_path, capsys) -> Scene:
    return two_hosts_two_runs(Scene(buckets, tmp_path, capsys))


def two_hosts_two_runs(sc: Scene, *, first_signed: bool = True) -> Scene:
    assert sc.cli("keys", "generate", "--output", str(sc.key_file))[0] == 0
    rc, out, _ = sc.cli("keys", "signing-generate", "--private-key-file", str(sc.private),
                        "--public-key-file", str(sc.public))
    assert rc == 0 and len(out.strip()) == 64
    a, b = sc.hosts["host-a"], sc.hosts["host-b"]
    web = a.add("web-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "7"},
                max_size=2500, max_file=9)
    db = b.add("db-1", labels={"logarchive.database_id": "9"})
    logs(web, 60, "web")
    logs(db, 20, "db")
    db.stop()
    sc.ship("host-a")
    sc.ship("host-b")
    sc.archive(signed=first_signed)
    if not first_signed:
        # S3's LastModified has whole seconds: the first digest must begin in a later one.
        newest = max(o["LastModified"] for o in sc.s3.list_objects_v2(Bucket=sc.b.customer)["Contents"])
        while datetime.now(UTC) < newest + timedelta(seconds=1):
            time.sleep(0.05)
    logs(web, 40, "web again")
    web.stop()
    job = b.add("job-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "8"})
    logs(job, 5, "job")
    job.stop()
    sc.ship("host-a")
    sc.ship("host-b")
    sc.archive()
    return sc


def test_audit_passes_then_catches_each_change_by_name_and_passes_once_undone(scene: Scene) -> None:
    sc = scene
    summary = sc.passes()
    assert summary.startswith("2 digests, ") and ", 3 containers contiguous, 0 pending" in summary
    archives = sc.keys(f"{STACK}/shareable/")
    digests = sorted(sc.keys("_logarchive/digests/"))
    assert len(digests) == 2 and len(archives) >= 5
    assert f"{len(archives)} archives" in summary
    parsed = [layout.parse(k) for k in archives]
    first, last = min(p.start for p in parsed).date(), max(p.end for p in parsed).date()
    assert sc.passes("--start-date", first.isoformat(), "--end-date", last.isoformat()) == summary
    rc, out, _ = sc.cli("audit", "--bucket", sc.b.archive, "--stack", STACK, "--public-key-file", str(sc.public))
    assert rc == 0 and out.splitlines() == [summary]  # the archive bucket holds the same
    # Aptible's tool lists "<stack>" without a slash and stops at a key it does not know: it sees
    # archives only, and our own logs-from-archive lists the stack as before.
    assert all(layout.parse(k) for k in sc.keys(STACK))
    assert sc.cli("logs-from-archive", "--bucket", sc.b.customer, "--stack", STACK, "--app-id", "42")[0] == 0

    victim = next(k for k in archives if "/apps-42/service-7/" in k)
    sc.s3.delete_object(Bucket=sc.b.customer, Key=victim)
    states = [f"--ship-state={sc.state(h)}" for h in sc.hosts]
    lines = sc.caught("archive missing", victim, *states, "--grace", "0s")
    assert len(lines) == 2, lines  # that one line: no gap, and it was archived once
    sc.undo_latest(victim)
    sc.passes()

    # Same size, and S3 holds a SHA-256 checksum of the new bytes: only that checksum tells.
    size = sc.s3.head_object(Bucket=sc.b.customer, Key=victim)["ContentLength"]
    sc.s3.put_object(Bucket=sc.b.customer, Key=victim, Body=os.urandom(size), ChecksumAlgorithm="SHA256")
    lines = sc.caught("archive changed", victim)
    assert "S3's SHA-256 checksum is " in lines[0] and "bytes, the digest recorded" not in lines[0]
    sc.caught("archive changed", victim, "--deep")
    sc.undo_latest(victim)
    sc.passes()
    sc.passes("--deep")
    # The same bytes stored again without a SHA-256 checksum: unproven by a HEAD, proven by --deep.
    same = sc.s3.get_object(Bucket=sc.b.customer, Key=victim)
    sc.s3.put_object(Bucket=sc.b.customer, Key=victim, Body=same["Body"].read(), Metadata=same["Metadata"])
    lines = sc.caught("archive changed", victim)
    assert "no S3 checksum where the digest recorded one" in lines[0]
    sc.passes("--deep")
    sc.undo_latest(victim)

    first, second = digests
    got = sc.s3.get_object(Bucket=sc.b.customer, Key=second)
    doc = json.loads(got["Body"].read())
    doc["archives"] = doc["archives"][1:]  # an archive struck from the record
    edited = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    sc.s3.put_object(Bucket=sc.b.customer, Key=second, Body=edited, Metadata=got["Metadata"])
    sc.caught("digest edited", second)
    sc.undo_latest(second)
    sc.passes()

    sc.s3.delete_object(Bucket=sc.b.customer, Key=first)
    sc.caught("digest missing", first)
    sc.undo_latest(first)
    sc.passes()

    # The newest digest deleted from both buckets, before anything newer names it: within
    # --max-digest-age no audit can tell (its archives look pending); past it the chain stops. The
    # next seal does not extend the shortened chain: the table names the digest that is gone.
    for bucket in (sc.b.customer, sc.b.archive):
        sc.s3.delete_object(Bucket=bucket, Key=second)
    rc, lines = sc.audit()
    assert rc == 0 and ", 0 pending" not in lines[0], lines
    lines = sc.caught("chain stops", first, "--max-digest-age", "0s")
    assert "Newer digests were deleted" in lines[0], lines
    rc, out, err = sc.cli(
        "archive", "--once", "--staging", f"s3://{sc.b.staging}/staged", "--archive-bucket", sc.b.archive,
        "--stack", STACK, "--key-file", str(sc.key_file), "--signing-key-file", str(sc.private), "--table", TABLE)
    assert rc == 1 and err.count("\n") == 1 and "not sealed" in err and second in err and "is gone" in err, err
    for bucket in (sc.b.customer, sc.b.archive):
        sc.undo_latest(second, bucket)
    sc.passes()

    other_private, other_public = sc.tmp / "other.pem", sc.tmp / "other.pub"
    assert sc.cli("keys", "signing-generate", "--private-key-file", str(other_private),
                  "--public-key-file", str(other_public))[0] == 0
    sc.caught("bad signature", first, public=other_public)
    sc.passes()  # the right key again; several keys may be given, for rotation
    rc, lines = sc.audit("--public-key-file", str(other_public), str(sc.public))
    assert rc == 0, lines


def test_a_staged_segment_lost_before_archiving_is_a_gap_and_shipped_but_never_archived(scene: Scene) -> None:
    sc = scene
    a = sc.hosts["host-a"]
    api = a.add("api-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "9"},
                max_size=2000, max_file=9)
    logs(api, 120, "api")
    api.stop()
    sc.ship("host-a")
    staged = sorted(
        o["Key"] for o in sc.s3.list_objects_v2(Bucket=sc.b.staging, Prefix="staged/").get("Contents", [])
         if f"/{api.id}/" in o["Key"])
    assert len(staged) >= 3
    lost = staged[1]  # segment 2: its neighbours arrive, it does not
    kept = sc.s3.get_object(Bucket=sc.b.staging, Key=lost)
    body, meta = kept["Body"].read(), kept["Metadata"]
    sc.s3.delete_object(Bucket=sc.b.staging, Key=lost)
    sc.archive()

    lines = sc.caught("segment gap", api.id)
    assert any("segment 2 missing" in line for line in lines), lines
    state = ["--ship-state", str(sc.state("host-a")), "--ship-state", str(sc.state("host-b"))]
    lines = sc.caught("shipped but never archived", lost, *state, "--grace", "0s")
    assert sum(line.startswith("shipped but never archived: ") for line in lines) == 1, lines
    # Within the grace period it is only waiting.
    rc, lines = sc.audit(*state)
    assert rc == 1 and not any(line.startswith("shipped but never archived") for line in lines)

    report = sc.tmp / "audit.html"
    rc, lines = sc.audit("--format", "jsonl", "--report", str(report))
    found = [json.loads(x) for x in lines]
    assert rc == 1 and found[-1]["ok"] is False
    assert [f["finding"] for f in found[:-1]] == ["segment gap"] and found[0]["container_id"] == api.id
    html = report.read_text()
    assert "segment gap" in html and "class='red'" in html and "<script" not in html and "http" not in html

    # Had Docker deleted those bytes before they were staged, the shipper would have recorded the
    # segment abandoned: with its state, the gap is explained, not a loss.
    db = sqlite3.connect(sc.state("host-a"))
    with db:
        db.execute("UPDATE segments SET state = 'abandoned' WHERE key = ?", (lost,))
    summary = sc.passes(*state, "--grace", "0s")
    assert ", 1 explained" in summary
    with db:
        db.execute("UPDATE segments SET state = 'shipped' WHERE key = ?", (lost,))
    db.close()
    sc.caught("shipped but never archived", lost, *state, "--grace", "0s")

    sc.s3.put_object(Bucket=sc.b.staging, Key=lost, Body=body, Metadata=meta)
    sc.archive()
    summary = sc.passes(*state, "--grace", "0s")
    assert summary.startswith("4 digests, ") and "4 containers contiguous" in summary


def api_segments(sc: Scene) -> list[str]:
    """A container of host-a whose log ships in several segments: their staged keys, in order."""
    api = sc.hosts["host-a"].add("api-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "9"},
                                 max_size=2000, max_file=9)
    logs(api, 120, "api")
    api.stop()
    sc.ship("host-a")
    return sorted(o["Key"] for o in sc.s3.list_objects_v2(Bucket=sc.b.staging, Prefix="staged/")["Contents"]
                  if f"/{api.id}/" in o["Key"])


def test_an_abandoned_event_staged_by_an_insider_contradicts_the_hosts_state(scene: Scene) -> None:
    """A writer of the staging bucket deletes a staged segment and stages an ``abandoned`` event for
    it, key and metadata agreeing: the archiver records it, and without the host's state the gap is
    explained (AUDIT.md names this as not provable). With ``--ship-state`` it is caught: the host
    abandons only what it never staged, and its state says it shipped that segment."""
    sc = scene
    staged = api_segments(sc)
    victim = staged[1]
    meta = sc.s3.head_object(Bucket=sc.b.staging, Key=victim)["Metadata"]
    sc.s3.delete_object(Bucket=sc.b.staging, Key=victim)
    event = {k: v for k, v in meta.items() if k not in ("logarchive-sha256", "logarchive-lines")}
    event.update({"logarchive-event": "abandoned", "logarchive-event-reason": "bytes deleted by Docker"})
    sc.s3.put_object(Bucket=sc.b.staging, Key=victim.rsplit("/", 1)[0] + "/00000002-abandoned.event", Body=b"",
                     Metadata=event)
    out = sc.archive()
    assert "1 explained" in out, out
    state = ["--ship-state", str(sc.state("host-a")), "--ship-state", str(sc.state("host-b")), "--grace", "0s"]
    assert ", 1 explained" in sc.passes()
    lines = sc.caught("shipped but never archived", victim, *state)
    assert "a digest says the host abandoned it, but its state says it shipped it" in lines[0], lines


def test_a_quarantined_segment_is_explained_not_a_gap(scene: Scene) -> None:
    sc = scene
    staged = api_segments(sc)
    bad = sc.s3.get_object(Bucket=sc.b.staging, Key=staged[1])
    sc.s3.put_object(Bucket=sc.b.staging, Key=staged[1], Body=b"not what the shipper hashed",
                     Metadata=bad["Metadata"])
    rc, out, _ = sc.cli(
        "archive", "--once", "--staging", f"s3://{sc.b.staging}/staged", "--archive-bucket", sc.b.archive,
        "--replicate-to", sc.b.customer, "--stack", STACK, "--key-file", str(sc.key_file),
        "--signing-key-file", str(sc.private), "--table", TABLE)
    assert rc == 1  # one quarantined
    summary = sc.passes("--ship-state", str(sc.state("host-a")), "--grace", "0s")
    assert "4 containers contiguous" in summary and ", 1 explained" in summary


def test_retention_shorter_than_the_buckets_default_is_caught(buckets, tmp_path, capsys) -> None:
    sc = Scene(buckets, tmp_path, capsys)
    # (the local AWS enables Object Lock on an empty bucket only)
    assert sc.cli("setup", "object-lock", "--bucket", buckets.customer, "--mode", "governance",
                  "--days", "30")[0] == 0
    two_hosts_two_runs(sc)
    sc.passes()
    victim = sc.keys(f"{STACK}/shareable/")[0]
    held = sc.s3.head_object(Bucket=sc.b.customer, Key=victim)["ObjectLockRetainUntilDate"]
    sc.s3.put_object_retention(Bucket=sc.b.customer, Key=victim, BypassGovernanceRetention=True, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)})
    lines = sc.caught("retention shorter than the bucket's policy", victim)
    assert "the bucket's default is GOVERNANCE 30 days" in lines[0]
    sc.s3.put_object_retention(Bucket=sc.b.customer, Key=victim, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": held})
    sc.passes()


def test_archives_before_digests_began_are_reported_once_then_backfilled(buckets, tmp_path, capsys) -> None:
    sc = two_hosts_two_runs(Scene(buckets, tmp_path, capsys), first_signed=False)
    summary = sc.passes()
    before = int(summary.split(" before digests began")[0].rsplit(", ", 1)[1])
    assert summary.startswith("1 digest, ") and before >= 2
    rc, out, err = sc.cli("digest", "backfill", "--bucket", sc.b.archive, "--stack", STACK,
                          "--signing-key-file", str(sc.private), "--replicate-to", sc.b.customer,
                          "--table", TABLE)
    assert rc == 0, err
    assert out.splitlines()[-1] == f"{before} of {before} archives before digests began backfilled"
    summary = sc.passes()
    assert summary.startswith("2 digests, ") and "before digests began" not in summary
    # From now on they are proven: replacing one is caught.
    old = next(k for k in sc.keys(f"{STACK}/shareable/") if "/databases-9/" in k)
    sc.s3.put_object(Bucket=sc.b.customer, Key=old, Body=b"x", ChecksumAlgorithm="SHA256")
    sc.caught("archive changed", old)


def test_bad_input_is_one_line_and_a_non_zero_exit(scene: Scene) -> None:
    sc = scene
    junk = sc.tmp / "junk.pub"
    junk.write_text("not a key")
    cases = [
        (["--bucket", "no-such-bucket", "--public-key-file", str(sc.public)], "no-such-bucket"),
        (["--bucket", sc.b.customer, "--public-key-file", str(junk)], str(junk)),
        (["--bucket", sc.b.customer, "--public-key-file", str(sc.tmp / "absent.pub")], "absent.pub"),
        (["--bucket", sc.b.customer, "--public-key-file", str(sc.public), "--ship-state", str(junk)], str(junk)),
        (["--bucket", sc.b.customer, "--public-key-file", str(sc.public), "--grace", "soon"], "--grace"),
        (["--bucket", sc.b.customer, "--public-key-file", str(sc.public), "--start-date", "2026-13-01",
          "--end-date", "2026-12-01"], "--start-date"),
    ]
    for argv, named in cases:
        rc, out, err = sc.cli("audit", "--stack", STACK, *argv)
        assert rc in (1, 2) and out == "", (argv, out, err)  # 2: a usage error
        assert err.count("\n") == 1 and err.startswith("logarchive: error: ") and named in err, (argv, err)


def test_bytes_that_do_not_continue_the_previous_segment_are_a_gap(scene: Scene) -> None:
    sc = scene
    api = sc.hosts["host-a"].add("api-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "9"})
    logs(api, 30, "api")
    api.stop()
    sc.ship("host-a")
    key = next(o["Key"] for o in sc.s3.list_objects_v2(Bucket=sc.b.staging, Prefix="staged/")["Contents"]
               if f"/{api.id}/" in o["Key"])
    # As if a host had staged this segment claiming bytes 100 further on: its numbers still run on.
    got = sc.s3.get_object(Bucket=sc.b.staging, Key=key)
    meta = dict(got["Metadata"])
    meta["logarchive-segment"] = "2"
    for name in ("logarchive-byte-start", "logarchive-byte-end"):
        meta[name] = str(int(meta[name]) + 100)
    sc.s3.put_object(Bucket=sc.b.staging, Key=key.replace("/00000001-", "/00000002-"), Body=got["Body"].read(),
                     Metadata=meta)
    sc.archive()
    lines = sc.caught("segment gap", ".log.2.")
    assert any("bytes [100, " in line and "do not continue segment 1" in line for line in lines), lines

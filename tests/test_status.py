"""``logarchive status``: hosts, the last archive run, quarantines and a verdict, from the buckets;
exit 0 healthy, 1 failing, 3 degraded, 2 a usage error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import test_hosts
import test_ship
from archiver_support import docker_lines, stage
from test_digests import digests_in
from test_hosts import PUBLIC, archive
from test_ship import HOST, STACK, ship

from chalicelib import cli
from chalicelib.digest import load_public_key
from chalicelib.status import overview

fake = test_ship.fake
key_file = test_hosts.key_file


def status(buckets, capsys, *extra: str) -> tuple[int, str]:
    rc = cli.main(["status", "--bucket", buckets.archive, "--stack", STACK, "--public-key-file", PUBLIC, *extra])
    return rc, capsys.readouterr().out


def shipped_and_archived(buckets, fake, tmp_path, key_file, capsys) -> None:
    c = fake.add("app")
    c.log("hello")
    c.stop()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    archive(buckets, key_file, capsys)


def test_healthy_then_silent_host_fails(buckets, fake, tmp_path, key_file, capsys) -> None:
    rc, out = status(buckets, capsys)
    assert rc == 1 and "verdict: failing: no verified digest of stack teststack" in out, out
    shipped_and_archived(buckets, fake, tmp_path, key_file, capsys)
    rc, out = status(buckets, capsys)
    assert rc == 0, out
    assert "last archive run:" in out and "digest 1 with 1 archives" in out
    assert f"    {HOST}: last heartbeat" in out and "0 B waiting" in out and out.endswith("verdict: healthy\n")
    rc, out = status(buckets, capsys, "--format", "json")
    doc = json.loads(out)
    assert rc == 0 and (doc["verdict"], doc["reasons"]) == ("healthy", [])
    assert [(h["host"], h["source"], h["bytes_waiting"]) for h in doc["hosts"]] == [(HOST, "digest", 0)]
    assert doc["last_run"]["sequence"] == 1 and doc["last_run"]["age_seconds"] >= 0
    rc, out = status(buckets, capsys, "--silent-after", "0s")
    assert rc == 1 and f"host {HOST} silent since" in out and "SILENT" in out, out


def test_quarantines_and_staging_degrade(buckets, fake, tmp_path, key_file, capsys) -> None:
    shipped_and_archived(buckets, fake, tmp_path, key_file, capsys)
    s3 = boto3.client("s3")
    bad = stage(s3, buckets.staging, "bad", docker_lines(5, seed=9), segment=3, cid="c" * 64,
                **{"logarchive-sha256": "0" * 64})
    archive(buckets, key_file, capsys, rc=1)  # 1: a segment was quarantined
    rc, out = status(buckets, capsys)
    assert rc == 3, out
    assert f"    {bad.key}: sha256 mismatch" in out
    assert "verdict: degraded: 1 quarantined segment(s) recorded in the last 7 days" in out
    c = fake.add("more")
    c.log("waits in staging")
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    rc, out = status(buckets, capsys, "--staging", f"s3://{buckets.staging}/staged", "--format", "json")
    doc = json.loads(out)
    assert rc == 3
    assert (doc["staging"]["pending"], doc["staging"]["quarantined"]) == (1, 1)
    assert doc["hosts"][0]["source"] == "staging"  # the newer, unsigned heartbeat
    assert f"1 quarantined object(s) in s3://{buckets.staging}/staged" in doc["reasons"]


def test_a_digest_that_does_not_verify_fails(buckets, fake, tmp_path, key_file, capsys) -> None:
    shipped_and_archived(buckets, fake, tmp_path, key_file, capsys)
    s3 = boto3.client("s3")
    (d,) = digests_in(s3, buckets.archive)
    body = d.body.replace(HOST.encode(), b"host-X")
    s3.put_object(Bucket=buckets.archive, Key=d.key, Body=body, Metadata=d.metadata())
    rc, out = status(buckets, capsys)
    assert rc == 1 and "digest does not verify" in out and d.key in out, out
    assert "hosts: 0" in out  # nothing from a digest that does not verify


def test_no_archive_run_for_two_hours_fails(buckets, fake, tmp_path, key_file, capsys) -> None:
    fake.add("running").log("waits for --max-age")
    shipped_and_archived(buckets, fake, tmp_path, key_file, capsys)
    keys = [load_public_key(open(PUBLIC, "rb").read())]
    later = datetime.now(UTC) + timedelta(hours=3)
    st = overview.gather(boto3.client("s3"), bucket=buckets.archive, stack=STACK, public_keys=keys,
                         silent_after=timedelta(days=1), now=later)
    assert st.verdict == overview.FAILING
    assert st.reasons == [f"no archive run for 3 h 0 min (the newest digest ended {st.last_run['end_time']}; "
                          "runs are hourly)"]
    # What waits on the host has waited 3 h by then too (its age at the heartbeat plus the time since).
    assert [d.split(" for ")[0] for d in st.degraded] == [f"host {HOST} holds a complete line unshipped"]
    assert st.degraded[0].split(" for ")[1].startswith("3 h 0 min")


def test_usage_errors(buckets, capsys) -> None:
    assert status(buckets, capsys, "--silent-after", "later")[0] == 2
    assert status(buckets, capsys, "--staging", "bucket")[0] == 2
    assert status(buckets, capsys, "--days", "0")[0] == 2

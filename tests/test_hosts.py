"""Hosts in the signed chain: heartbeats sealed into the next digest's ``hosts``, ``logarchive hosts
retire`` sealed into ``retired_hosts``, the audit's "host h silent since T" from the buckets alone,
and the scheduler Lambda's host metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import test_ship
from archiver_support import archiver_env, create_idempotency_table, lambda_client, run_scheduler
from emf import totals
from test_digests import digests_in
from test_ship import HOST, STACK, ship

from chalicelib import cli
from chalicelib.staged import heartbeat_key, retirement_key

fake = test_ship.fake  # the fake Docker root fixture
VECTORS = Path(__file__).parent / "vectors" / "digest"
PRIVATE, PUBLIC = str(VECTORS / "ed25519-private.pem"), str(VECTORS / "ed25519-public.pem")


@pytest.fixture
def key_file(tmp_path) -> str:
    from chalicelib.keyring import MasterKey

    path = tmp_path / "master.key"
    path.write_text(MasterKey.generate().to_base64())
    return str(path)


def archive(buckets, key_file: str, capsys, rc: int = 0) -> str:
    assert cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/", "--archive-bucket",
                     buckets.archive, "--key-file", key_file, "--stack", STACK,
                     "--signing-key-file", PRIVATE, "--table", create_idempotency_table()]) == rc
    return capsys.readouterr().out


def audit(buckets, capsys, *extra: str) -> tuple[int, str]:
    rc = cli.main(["audit", "--bucket", buckets.archive, "--stack", STACK, "--public-key-file", PUBLIC,
                   "--no-progress", *extra])
    return rc, capsys.readouterr().out


def retire(buckets, host: str, capsys, *extra: str) -> tuple[int, str]:
    rc = cli.main(["hosts", "retire", "--stack", STACK, "--staging", f"s3://{buckets.staging}/staged", host,
                   *extra])
    return rc, capsys.readouterr().out


def test_heartbeats_are_sealed_once_and_a_silent_host_is_found(buckets, fake, tmp_path, key_file, capsys):
    c = fake.add("app")
    c.log("hello")
    c.stop()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    s3 = boto3.client("s3")
    beat = json.loads(s3.get_object(Bucket=buckets.staging, Key=heartbeat_key("staged", STACK, HOST))["Body"]
                      .read())
    out = archive(buckets, key_file, capsys)
    assert "1 archived (76 log bytes), 0 quarantined, 0 failed" in out  # the heartbeat is no segment
    (d1,) = digests_in(s3, buckets.archive)
    assert d1.digest.version == 2
    assert [h.to_dict() for h in d1.digest.hosts] == [beat]
    # It stays in staging (the metrics read it), but the next digest does not repeat it.
    assert s3.head_object(Bucket=buckets.staging, Key=heartbeat_key("staged", STACK, HOST))
    archive(buckets, key_file, capsys)
    assert digests_in(s3, buckets.archive)[1].digest.hosts == ()

    rc, out = audit(buckets, capsys)
    assert rc == 0, out
    rc, out = audit(buckets, capsys, "--silent-after", "0s")  # as if 6 h had passed
    line = f"host silent: host {HOST}: silent since {beat['time']}"
    assert rc == 1 and line in out, out
    rc, out = audit(buckets, capsys, "--silent-after", "soon")
    assert rc == 2


def test_only_a_sealed_retirement_quiets_a_silent_host(buckets, fake, tmp_path, key_file, capsys):
    c = fake.add("app")
    c.log("hello")
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    archive(buckets, key_file, capsys)
    s3 = boto3.client("s3")
    rc, out = retire(buckets, HOST, capsys, "--reason", "decommissioned")
    assert rc == 0 and f"s3://{buckets.staging}/{retirement_key(STACK, HOST)}" in out
    # Requested, not sealed: the audit reads only signed digests, so the host is still silent.
    assert "host silent" in audit(buckets, capsys, "--silent-after", "0s")[1]
    archive(buckets, key_file, capsys)
    last = digests_in(s3, buckets.archive)[-1].digest
    assert [(r.host, r.reason) for r in last.retired_hosts] == [(HOST, "decommissioned")]
    for key in (retirement_key(STACK, HOST), heartbeat_key("staged", STACK, HOST)):
        assert "Contents" not in s3.list_objects_v2(Bucket=buckets.staging, Prefix=key)  # request and beat gone
    rc, out = audit(buckets, capsys, "--silent-after", "0s")
    assert rc == 0, out
    archive(buckets, key_file, capsys)
    assert digests_in(s3, buckets.archive)[-1].digest.retired_hosts == ()  # sealed once

    # The host comes back: it is watched again.
    c.start()
    c.log("back")
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    archive(buckets, key_file, capsys)
    assert "host silent: host host-1" in audit(buckets, capsys, "--silent-after", "0s")[1]


def test_the_key_names_the_host_not_the_heartbeat(buckets, key_file, capsys):
    """A host writes only under its own prefix; a heartbeat claiming another host counts as its own."""
    s3 = boto3.client("s3")
    body = {"host": "someone-else", "time": "2026-01-01T00:00:00.000000Z", "shipper_version": "x",
            "containers_seen": 1, "bytes_shipped": 0, "bytes_waiting": 5, "oldest_waiting_age_seconds": 1.5,
            "last_error": ""}
    s3.put_object(Bucket=buckets.staging, Key=heartbeat_key("staged", STACK, "real-host"), Body=json.dumps(body))
    s3.put_object(Bucket=buckets.staging, Key=heartbeat_key("staged", STACK, "bad-host"), Body=b"{not json")
    archive(buckets, key_file, capsys)
    (d,) = digests_in(s3, buckets.archive)
    assert [(h.host, h.bytes_waiting) for h in d.digest.hosts] == [("real-host", 5)]


def test_retire_usage_errors(buckets, monkeypatch, capsys):
    assert retire(buckets, "a/b", capsys)[0] == 2
    monkeypatch.delenv("LOGARCHIVE_STAGING_BUCKET", raising=False)
    assert cli.main(["hosts", "retire", "--stack", STACK, "h"]) == 2
    assert "--staging (or $LOGARCHIVE_STAGING_BUCKET) is required" in capsys.readouterr().err
    monkeypatch.setenv("LOGARCHIVE_STAGING_BUCKET", buckets.staging)
    assert cli.main(["hosts", "retire", "--stack", STACK, "h"]) == 0
    assert f"s3://{buckets.staging}/retire/{STACK}/h.json" in capsys.readouterr().out
    assert cli.main(["hosts", "retire", "--stack", STACK, "--staging", "nowhere", "h"]) == 2
    assert cli.main(["hosts", "retire", "--stack", STACK, "--staging", f"s3://{buckets.staging}", "h",
                     "--reason", "x" * 501]) == 2


def test_scheduler_lambda_publishes_host_metrics(buckets, monkeypatch, tmp_path, capsys):
    archiver_env(monkeypatch, buckets)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("LOGARCHIVE_HOST_SILENT_SECONDS", "3600")
    s3 = boto3.client("s3")
    from datetime import UTC, datetime, timedelta

    from chalicelib.dockerlog import format_utc

    def beat(host: str, age: timedelta, waiting_age: float | None) -> None:
        doc = {"host": host, "time": format_utc(datetime.now(UTC) - age), "shipper_version": "t",
               "containers_seen": 1, "bytes_shipped": 0, "bytes_waiting": 10,
               "oldest_waiting_age_seconds": waiting_age, "last_error": ""}
        s3.put_object(Bucket=buckets.staging, Key=heartbeat_key("staged", STACK, host), Body=json.dumps(doc))

    beat("fresh", timedelta(0), 120.0)
    beat("quiet", timedelta(hours=2), 5.0)
    client = lambda_client(tmp_path)
    capsys.readouterr()
    payload = run_scheduler(client)
    m = totals(capsys.readouterr().out)
    assert payload["hosts"] == {"reporting": 1, "silent": ["quiet"], "oldest_waiting_seconds": pytest.approx(
        120.0, abs=float(os.environ.get("LOGARCHIVE_TEST_PATIENCE", "1")) * 60)}
    assert (m["HostsReporting"], m["HostsSilent"], m["ArchiveRuns"]) == (1, 1, 1)
    assert 120 <= m["OldestWaitingAge"]


def test_a_sealer_killed_after_its_commit_seals_a_retirement_once(buckets, capsys):
    """Killed between the digest's commit and the request's delete: the next seal drops the request
    the previous digest already holds, instead of retiring the host twice."""
    from archiver_support import Crash

    from chalicelib.archiver.digest_table import DigestTable
    from chalicelib.archiver.heartbeats import HostView
    from chalicelib.archiver.sealing import Sealer
    from chalicelib.digest import Ed25519Signer

    s3 = boto3.client("s3")
    assert retire(buckets, "old-host", capsys, "--reason", "gone")[0] == 0
    signer = Ed25519Signer.from_file(PRIVATE)

    table = DigestTable(boto3.client("dynamodb"), create_idempotency_table(), STACK)

    def sealer() -> Sealer:
        return Sealer(s3, bucket=buckets.archive, stack=STACK, signer=signer, table=table,
                      hosts=HostView(s3, buckets.staging, "staged", STACK))

    def die(params, **_):
        if params.get("Key", "").startswith("retire/"):
            raise Crash()

    s3.meta.events.register("before-parameter-build.s3.DeleteObject", die)
    with pytest.raises(Crash):
        sealer().seal()
    s3.meta.events.unregister("before-parameter-build.s3.DeleteObject", die)
    (first,) = digests_in(s3, buckets.archive)
    assert [r.host for r in first.digest.retired_hosts] == ["old-host"]
    assert s3.head_object(Bucket=buckets.staging, Key=retirement_key(STACK, "old-host"))  # left behind
    second = sealer().seal()
    assert second.sequence == 2
    assert digests_in(s3, buckets.archive)[1].digest.retired_hosts == ()
    assert "Contents" not in s3.list_objects_v2(Bucket=buckets.staging, Prefix="retire/")

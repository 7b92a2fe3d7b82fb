"""Replication modes: ``s3-replication`` (markers, the scheduler's status check and re-drive)
and the local ``logarchive archive --once`` command (in process and through SQS)."""

from __future__ import annotations

import boto3
import pytest
from archiver_support import (
    STAGING_PREFIX,
    archived,
    archiver_env,
    assert_converged,
    deliver,
    docker_lines,
    lambda_client,
    run_scheduler,
    stage,
)

from chalicelib import aws, cli


@pytest.fixture
def repl(monkeypatch, buckets, tmp_path):
    env = archiver_env(monkeypatch, buckets, mode="s3-replication")
    return env, lambda_client(tmp_path)


def fake_status(statuses: dict[str, str]):
    """moto keeps no ReplicationStatus: set it on the real client's parsed HeadObject response."""
    def hook(http_response, parsed, model, **_):
        for fragment, status in statuses.items():
            if fragment in http_response.url:
                parsed["ReplicationStatus"] = status
    aws.client("s3").meta.events.register("after-call.s3.HeadObject", hook)
    return hook


def test_s3_replication_reports_and_redrives(repl, buckets, monkeypatch):
    env, client = repl
    s3 = boto3.client("s3")
    cids = ["a" * 64, "b" * 64, "c" * 64]
    staged = [stage(s3, buckets.staging, f"s{i}", docker_lines(20, seed=i), segment=1, cid=cid)
              for i, cid in enumerate(cids)]
    run_scheduler(client)
    deliver(client, env["queue_url"])
    assert_converged(buckets, env["keyring"], staged)  # archive bucket only
    assert not s3.list_objects_v2(Bucket=buckets.customer).get("Contents")
    markers = s3.list_objects_v2(Bucket=buckets.staging, Prefix="replication-pending/")["Contents"]
    assert len(markers) == 3

    hook = fake_status({cids[0]: "FAILED", cids[1]: "PENDING", cids[2]: "COMPLETED"})
    report = run_scheduler(client)["replication"]
    assert (report["checked"], report["failed"], report["completed"], report["redriven"]) == (3, 1, 1, 1)
    in_customer = archived(s3, buckets.customer, env["keyring"])
    assert list(in_customer.values()) == [staged[0].data]
    left = [m["Key"] for m in s3.list_objects_v2(Bucket=buckets.staging, Prefix="replication-pending/")["Contents"]]
    assert len(left) == 1 and cids[1] in left[0]

    monkeypatch.setenv("LOGARCHIVE_REPLICATION_PENDING_SECONDS", "0")  # PENDING for too long now
    report = run_scheduler(client)["replication"]
    assert (report["stalled"], report["redriven"]) == (1, 1)
    assert sorted(archived(s3, buckets.customer, env["keyring"]).values()) == sorted([staged[0].data, staged[1].data])
    assert not s3.list_objects_v2(Bucket=buckets.staging, Prefix="replication-pending/").get("Contents")
    # a copy made by re-drive is the archive object byte for byte (same ETag, same envelope)
    for key in in_customer:
        assert (s3.head_object(Bucket=buckets.customer, Key=key)["ETag"]
                == s3.head_object(Bucket=buckets.archive, Key=key)["ETag"])
    aws.client("s3").meta.events.unregister("after-call.s3.HeadObject", hook)


@pytest.fixture
def cli_env(monkeypatch, buckets, tmp_path):
    env = archiver_env(monkeypatch, buckets)
    monkeypatch.delenv("LOGARCHIVE_KEYS")
    key_file = tmp_path / "keys"
    key_file.write_text(env["key"].to_base64() + "\n")
    return env, str(key_file)


@pytest.mark.parametrize("via_sqs", [False, True], ids=["in-process", "sqs"])
def test_archive_once_command(cli_env, buckets, via_sqs, capsys):
    env, key_file = cli_env
    s3 = boto3.client("s3")
    staged = [stage(s3, buckets.staging, "a", docker_lines(30, seed=1), segment=1),
              stage(s3, buckets.staging, "b.gz", docker_lines(30, seed=2), segment=2, encoding="gzip")]
    bad = stage(s3, buckets.staging, "bad", b"", segment=3)
    argv = ["archive", "--once", "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}",
            "--archive-bucket", buckets.archive, "--replicate-to", buckets.customer,
            "--key-file", key_file, "--stack", "teststack"]
    if via_sqs:
        argv += ["--queue-url", env["queue_url"]]
    assert cli.main(argv) == 1  # one object was quarantined: attention needed
    out, err = capsys.readouterr()
    assert "2 archived" in out and "1 quarantined" in out
    assert f"quarantined s3://{buckets.staging}/{bad.key}" in err and "zero bytes" in err
    assert key_file not in out + err
    assert_converged(buckets, env["keyring"], staged + [bad], destinations=(buckets.customer,),
                     quarantined=(bad.key,))
    # run again: nothing left to do, nothing written twice
    assert cli.main(argv) == 0
    assert_converged(buckets, env["keyring"], staged + [bad], destinations=(buckets.customer,),
                     quarantined=(bad.key,))


def test_archive_once_without_key_fails_in_one_line(cli_env, buckets, capsys):
    assert cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/",
                     "--archive-bucket", buckets.archive]) == 2  # a missing option: a usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no master key" in err[0]

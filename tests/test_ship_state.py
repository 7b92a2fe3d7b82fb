"""The shipper's state and what the archive keeps of it (issue 18, findings 2 and 5).

A killed container's unterminated last record reaches the archive with a time; archive objects
carry the byte range and the source file's identity; the state is bound to its host and stack,
and a lost state is refused on a host with history unless ``--rebuild-state`` rebuilds it, so
that nothing ships twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import boto3
import pytest
from archiver_support import archived, archiver_env
from dockerfake import FakeDockerRoot
from test_ship import args, ship, staged

from chalicelib import cli, layout
from chalicelib.archiver.messages import Job
from chalicelib.archiver.worker import Status, Worker
from chalicelib.dockerlog import parse_docker_time
from chalicelib.settings import Settings
from chalicelib.staged import fmt_time


@pytest.fixture
def fake(tmp_path) -> FakeDockerRoot:
    return FakeDockerRoot(tmp_path / "docker")


@pytest.fixture
def env(monkeypatch, buckets):
    return archiver_env(monkeypatch, buckets)


def archive_all(buckets, env) -> list:
    """The worker over every staged object (the scheduler's listing, without the queue)."""
    s3 = boto3.client("s3")
    worker = Worker(replace(Settings.from_env()), env["keyring"])
    out = []
    for obj in s3.list_objects_v2(Bucket=buckets.staging, Prefix="staged/").get("Contents", []):
        out.append(worker.archive(Job(buckets.staging, obj["Key"], obj["ETag"], obj["Size"])))
    return out


def archive_heads(bucket: str) -> list[dict]:
    s3 = boto3.client("s3")
    return [s3.head_object(Bucket=bucket, Key=o["Key"])["Metadata"]
            for o in s3.list_objects_v2(Bucket=bucket, Prefix="teststack/").get("Contents", [])]


def test_killed_containers_unterminated_last_record_is_archived_with_its_exit_time(
        buckets, env, fake, tmp_path, capsys) -> None:
    """Failed before the fix: the tail shipped alone with no time and the worker quarantined it
    ("no line has a time"), so 770 of 812 bytes came back."""
    c = fake.add("killed")
    for i in range(5):
        c.log(f"working {i}")
    c.write(b'{"log":"half a record when SIGKILL came","stre')
    c.stop()
    exit_time = parse_docker_time(c.finished_at)
    # the first pass is within --settle: the complete lines ship; the tail waits, then ships alone
    assert cli.main(args(tmp_path, buckets.staging, "--once", "--settle", "1h")) == 0
    ship(tmp_path, buckets.staging, capsys)  # --settle 0
    tail_meta, tail = staged(buckets.staging, c.id)[-1]
    assert tail.startswith(b'{"log":"half a record')
    assert tail_meta["logarchive-first-time"] == tail_meta["logarchive-last-time"] == fmt_time(exit_time)

    outcomes = archive_all(buckets, env)
    assert [o.status for o in outcomes] == [Status.ARCHIVED, Status.ARCHIVED], [o.reason for o in outcomes]
    got = archived(boto3.client("s3"), buckets.archive, env["keyring"])
    keys = sorted(got, key=lambda k: layout.parse(k).rotation)
    assert b"".join(got[k] for k in keys) == bytes(c.written)  # every byte, the tail included
    assert layout.parse(keys[-1]).end == exit_time.replace(microsecond=0)


def test_untimed_tail_of_a_running_container_takes_the_previous_lines_time(buckets, fake, tmp_path, capsys):
    c = fake.add("binary")
    c.log("timed line")
    prev = parse_docker_time(c.written.decode().split('"time":"')[1].split('"')[0])
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    c.start()
    c.write(b"no json, no time\n")
    c.running = False
    c.finished_at = "0001-01-01T00:00:00Z"  # Docker's zero time: the exit is unknown
    c._save_config()
    ship(tmp_path, buckets.staging, capsys)
    meta, body = staged(buckets.staging, c.id)[-1]
    assert body == b"no json, no time\n"
    assert meta["logarchive-first-time"] == meta["logarchive-last-time"] == fmt_time(prev)


def test_archive_objects_carry_the_byte_range_and_the_source_identity(buckets, env, fake, tmp_path, capsys):
    c = fake.add("web", max_size=3000, max_file=3, compress=True)
    for i in range(60):
        c.log(f"line {i}")
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    segs = staged(buckets.staging, c.id)
    assert len(segs) >= 2
    archive_all(buckets, env)
    heads = sorted(archive_heads(buckets.archive), key=lambda m: int(m["logarchive-segment"]))
    assert len(heads) == len(segs)
    for (smeta, body), ameta in zip(segs, heads, strict=True):
        assert ameta["logarchive-byte-start"] == smeta["logarchive-byte-start"]
        assert ameta["logarchive-byte-end"] == smeta["logarchive-byte-end"]
        n, _, sha = ameta["logarchive-source-head"].partition(":")
        assert ameta["logarchive-source-head"] == smeta["logarchive-source-head"]
        if smeta["logarchive-byte-start"] == "0":  # the segment starts its file: its head is there
            assert hashlib.sha256(body[: int(n)]).hexdigest() == sha
    assert b"".join(body for _, body in segs) == bytes(c.written)

"""The shipper's state and what the archive keeps of it (issue 18, findings 2 and 5).

A killed container's unterminated last record reaches the archive with a time; archive objects
carry the byte range and the source file's identity; the state is bound to its host and stack,
and a lost state is refused on a host with history unless ``--rebuild-state`` rebuilds it, so
that nothing ships twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import boto3
import pytest
from archiver_support import T0, archived, archiver_env, docker_lines, stage
from dockerfake import FakeDockerRoot
from test_audit import Scene, two_hosts_two_runs
from test_ship import args, ship, staged

from chalicelib import cli, layout
from chalicelib.archiver.messages import Job
from chalicelib.archiver.worker import Status, Worker
from chalicelib.dockerlog import parse_docker_time
from chalicelib.settings import Settings
from chalicelib.staged import fmt_time, is_reserved


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
        if not is_reserved(obj["Key"]):  # the host's heartbeat is not a segment
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


# -- the state bound to its host, and rebuilt from S3 ------------------------------------------
def _busy_host(fake: FakeDockerRoot):
    """Two containers: compressed rotations and plain ones, both running."""
    a = fake.add("gz", max_size=1500, max_file=4, compress=True)
    b = fake.add("plain", max_size=1500, max_file=4)
    for i in range(45):
        a.log(f"a {i}")
        b.log(f"b {i}")
    a.finish_compression()
    return a, b


def _more(a, b, n: int = 30) -> None:
    for i in range(n):
        a.log(f"a more {i}")
        b.log(f"b more {i}")
    a.finish_compression()


def _drop_state(tmp_path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"ship.db{suffix}").unlink(missing_ok=True)


def ship2(tmp, bucket: str, capsys, *extra: str) -> tuple[int, str]:
    """``ship`` with stdout and stderr (where a refusal's one line goes)."""
    rc = cli.main(args(tmp, bucket, "--once", "--settle", "0", *extra))
    got = capsys.readouterr()
    return rc, got.out + got.err


def _numbers_and_bytes(bucket: str, c) -> tuple[list[int], bytes]:
    segs = staged(bucket, c.id)
    return [int(m["logarchive-segment"]) for m, _ in segs], b"".join(b for _, b in segs)


def test_lost_state_is_refused_then_rebuilt_so_nothing_ships_twice(buckets, fake, tmp_path, capsys):
    """Failed before the fix: with the state file gone, numbering restarted at 1 and the bytes
    still on disk were staged a second time, silently."""
    a, b = _busy_host(fake)
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    _drop_state(tmp_path)
    rc, out = ship2(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "behind this host's history" in out and "--rebuild-state" in out, out
    _more(a, b)
    a.stop()
    b.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys, "--rebuild-state")
    assert rc == 0, out
    for c in (a, b):
        numbers, data = _numbers_and_bytes(buckets.staging, c)
        assert numbers == list(range(1, len(numbers) + 1)), numbers  # no number twice, no gap
        assert data == bytes(c.written)  # every byte once: what rotated away shipped before
    # --rebuild-state left in the configuration: a later start with a good state just ships
    rc, out = ship(tmp_path, buckets.staging, capsys, "--rebuild-state")
    assert rc == 0 and "shipped: 0 segments" in out, out


def test_another_hosts_state_is_refused(buckets, fake, tmp_path, capsys):
    a, _ = _busy_host(fake)
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    rc, out = ship2(tmp_path, buckets.staging, capsys, "--host", "host-2")
    assert rc == 1 and "is the state of host 'host-1'" in out, out


def test_restored_old_backup_is_refused(buckets, fake, tmp_path, capsys):
    a, b = _busy_host(fake)
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    backup = (tmp_path / "ship.db").read_bytes()
    _more(a, b)
    a.stop()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    _drop_state(tmp_path)
    (tmp_path / "ship.db").write_bytes(backup)
    rc, out = ship2(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "behind this host's history" in out and "move it away" in out, out


def _rebuilt_from_the_archive_ships_only_the_rest(tmp_path, buckets, capsys, first: dict, *cs) -> None:
    """More lines, the containers stop, ``--rebuild-state --archive-bucket``: numbering goes on
    after what was archived, and only the bytes no archive holds are staged."""
    _more(*cs)
    for c in cs:
        c.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys, "--rebuild-state", "--archive-bucket", buckets.archive)
    assert rc == 0, out
    for c in cs:
        numbers, data = _numbers_and_bytes(buckets.staging, c)
        before_numbers, before = first[c.id]
        assert numbers == list(range(before_numbers[-1] + 1, before_numbers[-1] + 1 + len(numbers))), numbers
        assert before + data == bytes(c.written)


def test_rebuild_from_the_archive_after_the_markers_expired(buckets, env, fake, tmp_path, capsys):
    """Staging empty (all archived) and the 30-day markers gone: only the archive objects'
    metadata remember. Without --archive-bucket the start cannot see that history (SHIPPER.md
    says so); with it the start refuses, and the rebuild reads it."""
    a, b = _busy_host(fake)
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    first = {c.id: _numbers_and_bytes(buckets.staging, c) for c in (a, b)}
    assert all(o.status is Status.ARCHIVED for o in archive_all(buckets, env))
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=buckets.staging).get("Contents", []):
        s3.delete_object(Bucket=buckets.staging, Key=obj["Key"])  # the markers expired
    _drop_state(tmp_path)
    rc, out = ship2(tmp_path, buckets.staging, capsys, "--archive-bucket", buckets.archive)
    assert rc == 1 and "behind this host's history" in out and buckets.archive in out, out
    _rebuilt_from_the_archive_ships_only_the_rest(tmp_path, buckets, capsys, first, a, b)


def test_what_still_gets_through_is_caught_by_the_audit_by_name(buckets, tmp_path, capsys):
    """A lost state on a host whose markers expired and whose shipper cannot read the archive
    (no --archive-bucket): the start sees no history, the bytes still on disk are staged again
    under numbers used already. Failed before the audit check: the audit said "contiguous"."""
    sc = two_hosts_two_runs(Scene(buckets, tmp_path, capsys))
    sc.passes()
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=buckets.staging, Prefix="archived/").get("Contents", []):
        s3.delete_object(Bucket=buckets.staging, Key=obj["Key"])  # 30 days later
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"host-a.db{suffix}").unlink(missing_ok=True)
    web = sc.hosts["host-a"].containers[0]
    oldest = max(web.dir.glob(f"{web.id}-json.log.*"), key=lambda p: int(p.name.rsplit(".", 1)[-1]))
    oldest.unlink()  # Docker's max-file rotated it away: the numbering of what is left shifts
    sc.ship("host-a")
    sc.archive()
    lines = sc.caught("segment archived twice", "", "--ship-state", str(sc.state("host-a")))
    twice = [line for line in lines if line.startswith("segment archived twice: ")]
    assert any(f"of container {web.id[:12]} archived 2 times" in line for line in twice), lines
    assert any("overlap bytes archived as" in line for line in twice), lines


def test_the_worker_names_a_segment_number_archived_twice(buckets, env):
    """Failed before: the second segment 1 (other bytes, other times) was archived silently."""
    s3 = boto3.client("s3")
    cid = "ab" * 32
    stage(s3, buckets.staging, "first", docker_lines(3, seed=1), segment=1, cid=cid)
    stage(s3, buckets.staging, "again", docker_lines(4, seed=2, start=T0 + timedelta(hours=1)), segment=1, cid=cid)
    outcomes = archive_all(buckets, env)
    assert all(o.status is Status.ARCHIVED for o in outcomes), [o.reason for o in outcomes]
    said = [w for o in outcomes for w in o.warnings if w.startswith("duplicate segment 1: also archived as ")]
    # the one archived second names the first (the first had nothing to compare with yet)
    assert len(said) == 1 and f"{cid}-json.log.1." in said[0], said


def test_the_host_reads_exactly_what_the_rebuild_needs() -> None:
    from chalicelib.setup.iam import host_history_read

    assert host_history_read("stg", "staged/", "prod", "web-7") == [
        {"Sid": "OwnQuarantinedSegments", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::stg/quarantine/staged/prod/web-7/*"]}]
    listing, heads = host_history_read("stg", "staged", "prod", "web-7", "arch")[1:]
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == ["arn:aws:s3:::arch"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["prod/shareable/v3/*"]}}
    assert heads["Action"] == ["s3:GetObject"] and heads["Resource"] == ["arn:aws:s3:::arch/prod/shareable/v3/*"]


def test_rebuild_of_history_archived_before_byte_ranges_uses_line_times(buckets, env, fake, tmp_path, capsys):
    """Archives written before logarchive-byte-start/-end and -source-head existed: numbering from
    their segment numbers, offsets from their last line time (docs/SHIPPER.md)."""
    a, b = _busy_host(fake)
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    first = {c.id: _numbers_and_bytes(buckets.staging, c) for c in (a, b)}
    archive_all(buckets, env)
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=buckets.staging).get("Contents", []):
        s3.delete_object(Bucket=buckets.staging, Key=obj["Key"])
    old = ("logarchive-byte-start", "logarchive-byte-end", "logarchive-source-head")
    for obj in s3.list_objects_v2(Bucket=buckets.archive, Prefix="teststack/").get("Contents", []):
        meta = s3.head_object(Bucket=buckets.archive, Key=obj["Key"])["Metadata"]
        s3.copy_object(Bucket=buckets.archive, Key=obj["Key"], MetadataDirective="REPLACE",
                       CopySource={"Bucket": buckets.archive, "Key": obj["Key"]},
                       Metadata={k: v for k, v in meta.items() if k not in old})
    _drop_state(tmp_path)
    _rebuilt_from_the_archive_ships_only_the_rest(tmp_path, buckets, capsys, first, a, b)


def test_source_identity_and_marker_metadata_in_the_staged_contract() -> None:
    from chalicelib.staged import StagedMeta, archived_marker_metadata, parse_source_head, source_head

    ident = source_head(4096, "a" * 64)
    assert ident == f"4096:{'a' * 64}" and parse_source_head(ident) == (4096, "a" * 64)
    for bad in ("", "0:" + "a" * 64, "4096:" + "A" * 64, "4096:abc", "１:" + "a" * 64, "12"):
        assert parse_source_head(bad) is None, bad
    assert StagedMeta.parse({"logarchive-source-head": ident}).source_head == ident
    assert StagedMeta.parse({"logarchive-source-head": "junk"}).source_head == ""
    assert archived_marker_metadata("k", "f" * 64, byte_start=0, byte_end=10, source_head=ident) == {
        "logarchive-archive-key": "k", "logarchive-sha256": "f" * 64, "logarchive-byte-start": "0",
        "logarchive-byte-end": "10", "logarchive-source-head": ident}
    assert archived_marker_metadata("k", None) == {"logarchive-archive-key": "k"}

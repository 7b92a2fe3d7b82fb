"""``logarchive ship`` against a fake Docker data root and the local S3 (moto server over HTTP)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from dockerfake import FakeDockerRoot, json_line

from chalicelib import cli
from chalicelib.keyring import MasterKey
from chalicelib.shipper.config import ShipConfig
from chalicelib.shipper.loop import Shipper
from chalicelib.shipper.upload import make_client

ROOT = Path(__file__).resolve().parent.parent
STACK, HOST = "teststack", "host-1"


@pytest.fixture
def fake(tmp_path: Path) -> FakeDockerRoot:
    return FakeDockerRoot(tmp_path / "docker")


def args(tmp: Path, bucket: str, *extra: str) -> list[str]:
    return ["ship", "--docker-root", str(tmp / "docker"), "--staging", f"s3://{bucket}/staged",
            "--stack", STACK, "--host", HOST, "--state", str(tmp / "ship.db"), *extra]


def ship(tmp: Path, bucket: str, capsys, *extra: str) -> tuple[int, str]:
    rc = cli.main(args(tmp, bucket, "--once", "--settle", "0", *extra))
    return rc, capsys.readouterr().out


def staged(bucket: str, cid: str | None = None) -> list[tuple[dict, bytes]]:
    """(metadata, logical bytes) of every staged segment, in (container, segment) order."""
    s3 = boto3.client("s3")
    out = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="staged/").get("Contents", []):
        if obj["Key"].endswith((".event", "/_heartbeat.json")):
            continue  # an abandoned segment's explanation (docs/AUDIT.md), the host's heartbeat: not bytes
        got = s3.get_object(Bucket=bucket, Key=obj["Key"])
        meta, body = got["Metadata"], got["Body"].read()
        assert meta["logarchive-sha256"] == hashlib.sha256(body).hexdigest()
        if meta["logarchive-encoding"] == "gzip":
            assert obj["Key"].endswith(".log.gz")
            body = gzip.decompress(body)
        if cid is None or meta["logarchive-container-id"] == cid:
            out.append((meta, body))
    out.sort(key=lambda mb: (mb[0]["logarchive-container-id"], int(mb[0]["logarchive-segment"])))
    return out


def joined(bucket: str, cid: str) -> bytes:
    return b"".join(body for _, body in staged(bucket, cid))


def test_ships_closed_logs_once_with_metadata(buckets, fake, tmp_path, capsys) -> None:
    web = fake.add("web-1", labels={"logarchive.app_id": "42", "logarchive.service_id": "7"},
                   max_size=3000, max_file=3, compress=True)
    for i in range(90):
        web.log(f"web line {i}")
    web.finish_compression()
    db = fake.add("db-1", labels={"logarchive.database_id": "9"})
    for i in range(20):
        db.log(f"db line {i}", "stderr")
    db.stop()
    idle = fake.add("idle")  # running, empty live log

    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    assert "shipped: 3 segments" in out and "from 2 containers" in out
    assert "live log of a running container" in out and "empty file" in out
    assert "problems: none" in out
    # web: .2.gz (staged as it lies) and .1.gz; the live file waits (running)
    segs = staged(buckets.staging, web.id)
    assert [m["logarchive-encoding"] for m, _ in segs] == ["gzip", "gzip"]
    assert [m["logarchive-rotation"] for m, _ in segs] == ["2", "1"]
    live_size = web.log_path.stat().st_size
    assert b"".join(b for _, b in segs) == bytes(web.written[: len(web.written) - live_size])
    m, body = staged(buckets.staging, db.id)[0]
    assert body == bytes(db.written)
    assert m == {
        "logarchive-stack": STACK, "logarchive-host": HOST, "logarchive-container-id": db.id,
        "logarchive-container-name": "db-1", "logarchive-kind": "databases", "logarchive-resource-id": "9",
        "logarchive-service-id": "", "logarchive-segment": "1", "logarchive-rotation": "0",
        "logarchive-byte-start": "0", "logarchive-byte-end": str(len(db.written)),
        "logarchive-first-time": m["logarchive-first-time"], "logarchive-last-time": m["logarchive-last-time"],
        "logarchive-lines": "20", "logarchive-sha256": hashlib.sha256(bytes(db.written)).hexdigest(),
        "logarchive-encoding": "identity",
        "logarchive-source-head": f"{len(db.written)}:{hashlib.sha256(bytes(db.written)).hexdigest()}",
    }
    assert m["logarchive-first-time"].endswith("Z") and len(m["logarchive-first-time"]) == 27
    assert m["logarchive-first-time"] <= m["logarchive-last-time"]
    assert segs[0][0]["logarchive-kind"] == "apps" and segs[0][0]["logarchive-service-id"] == "7"
    assert idle.id not in {mm["logarchive-container-id"] for mm, _ in staged(buckets.staging)}

    # A second pass ships nothing again; stopping web ships its live log (only).
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and "shipped: 0 segments" in out
    web.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert "shipped: 1 segment," in out
    assert joined(buckets.staging, web.id) == bytes(web.written)


def test_plain_rotated_file_is_not_shipped_again_once_compressed(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("api", max_size=2000, max_file=3, compress=True)
    for i in range(40):
        c.log(f"line {i}")
    assert c.compression is not None and (c.dir / f"{c.id}-json.log.1").exists()
    c.compress_step(500)  # .1 and a partial .1.gz side by side, as dockerd leaves them
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert "being compressed by Docker" in out
    assert [m["logarchive-encoding"] for m, _ in staged(buckets.staging, c.id)] == ["identity"]
    c.finish_compression()  # now .1.gz only; then it becomes .2.gz
    ship(tmp_path, buckets.staging, capsys)
    for i in range(40):
        c.log(f"more {i}")
    c.finish_compression()
    assert (c.dir / f"{c.id}-json.log.2.gz").exists()
    c.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    assert joined(buckets.staging, c.id) == bytes(c.written)
    segs = staged(buckets.staging, c.id)
    assert [int(m["logarchive-segment"]) for m, _ in segs] == list(range(1, len(segs) + 1))


def test_restarted_container_ships_only_new_bytes(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("job")
    c.log("first run")
    c.stop()
    ship(tmp_path, buckets.staging, capsys)
    c.start()
    c.log("second run")
    ship(tmp_path, buckets.staging, capsys)  # running: the new line waits
    assert len(staged(buckets.staging, c.id)) == 1
    c.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    segs = staged(buckets.staging, c.id)
    assert len(segs) == 2 and b"first run" in segs[0][1] and b"second run" not in segs[0][1]
    assert b"second run" in segs[1][1] and b"first run" not in segs[1][1]
    assert segs[1][0]["logarchive-byte-start"] == segs[0][0]["logarchive-byte-end"]
    assert joined(buckets.staging, c.id) == bytes(c.written)


def test_max_age_ships_old_lines_of_a_running_container_without_cutting_one(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("longrunner")
    old = time.time_ns() - 3 * 3600 * 10**9
    for i in range(5):
        c.log(f"old {i}", ns=old + i)
    half = json_line("half written")
    c.write(half[:10])
    rc, out = ship(tmp_path, buckets.staging, capsys, "--max-age", "1h")
    (m, body), = staged(buckets.staging, c.id)
    assert body == bytes(c.written[:-10]) and body.endswith(b"\n")
    c.write(half[10:], rotate=False)
    c.log("fresh")
    rc, out = ship(tmp_path, buckets.staging, capsys, "--max-age", "1h")
    assert len(staged(buckets.staging, c.id)) == 1  # the oldest unshipped line is fresh
    assert "live log of a running container" in out
    c.stop()
    ship(tmp_path, buckets.staging, capsys, "--max-age", "1h")
    assert joined(buckets.staging, c.id) == bytes(c.written)


def test_bad_input_is_counted_and_never_crashes(buckets, fake, tmp_path, capsys) -> None:
    trunc = fake.add("truncated")
    trunc.log("complete")
    trunc.write(b'{"log":"cut mid-li')
    trunc.stop()
    junk = fake.add("junk")
    junk.write(b"not json at all\n\x00\x01\x02binary\xff\xfe\n")
    junk.log("after junk")
    junk.stop()
    broken = fake.add("broken-config", max_size=1500, max_file=3)
    for i in range(30):
        broken.log(f"b {i}")
    (broken.dir / "config.v2.json").write_bytes(b"{not json")
    gone = fake.add("missing-config")
    gone.log("x")
    (gone.dir / "config.v2.json").unlink()

    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1, out  # a problem was met
    assert joined(buckets.staging, trunc.id) == bytes(trunc.written)  # the cut last line, as is
    assert joined(buckets.staging, junk.id) == bytes(junk.written)
    assert (m := staged(buckets.staging, junk.id)[0][0])["logarchive-lines"] == "3"
    assert m["logarchive-first-time"] == m["logarchive-last-time"] != ""
    # rotated files of the container with a corrupt config still ship; its live log waits
    assert joined(buckets.staging, broken.id) == bytes(broken.written[: len(broken.written) - broken.log_path.stat().st_size])
    assert "2 × container config unreadable" in out
    assert staged(buckets.staging, gone.id) == []

    broken.running = False
    broken._save_config()  # repaired: retried next pass
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert joined(buckets.staging, broken.id) == bytes(broken.written)


def test_unterminated_last_line_waits_for_settle(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("crashy")
    c.log("ok")
    c.write(b'{"log":"no newline')
    c.stop()
    for _ in range(2):  # the first pass ships the complete line; the second explains the wait
        cli.main(args(tmp_path, buckets.staging, "--once", "--settle", "1h"))
        out = capsys.readouterr().out
    assert "unterminated last line" in out
    assert joined(buckets.staging, c.id) == bytes(c.written[: c.written.index(b"\n") + 1])
    ship(tmp_path, buckets.staging, capsys)  # --settle 0
    assert joined(buckets.staging, c.id) == bytes(c.written)


# Run as root, the shipper would read a file of mode 000: the child gives up the capabilities
# that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; capset(2) may always lower
# one's own), then reads files as their owner does.
_WITHOUT_DAC_OVERRIDE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
header, caps = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()  # _LINUX_CAPABILITY_VERSION_3
if libc.capget(header, caps) != 0:
    raise OSError(ctypes.get_errno(), "capget")
caps[0] &= ~0b110  # effective
caps[1] &= ~0b110  # permitted
if libc.capset(header, caps) != 0:
    raise OSError(ctypes.get_errno(), "capset")
from chalicelib import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _run_shipper(argv: list[str], tmp: Path) -> tuple[int, str, str]:
    """``logarchive`` as its own process, subject to file permissions even as root.

    A fresh interpreter, never ``os.fork()`` of this test process: it runs threads (earlier
    tests' pools, botocore's), and a lock one of them held at the fork stays held forever in
    the child, which then hangs or fails only on a loaded machine (issue 18, finding 7)."""
    root = Path(__file__).resolve().parents[1]
    code = _WITHOUT_DAC_OVERRIDE if os.geteuid() == 0 else "import sys; from chalicelib import cli; sys.exit(cli.main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp,
                          env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_permission_denied_is_reported_and_retried(buckets, fake, tmp_path) -> None:
    c = fake.add("secret", max_size=1000, max_file=3)
    for i in range(40):
        c.log(f"s {i}")
    rotated = c.dir / f"{c.id}-json.log.1"
    os.chmod(rotated, 0)
    argv = args(tmp_path, buckets.staging, "--once")
    rc, out, err = _run_shipper(argv, tmp_path)
    assert rc == 1, out + err
    assert "permission denied" in out and "permission denied" in err
    assert (c.dir / f"{c.id}-json.log.2").exists()
    assert [m["logarchive-rotation"] for m, _ in staged(buckets.staging, c.id)] == ["2"]
    os.chmod(rotated, 0o644)
    rc, out, err = _run_shipper(argv, tmp_path)
    assert rc == 0, out + err
    assert len(staged(buckets.staging, c.id)) == 2


def test_s3_unreachable_fails_cleanly_and_retries(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("app")
    c.log("hello")
    c.stop()
    # A port bound here and never listened on refuses every connection, and no other
    # process (a second suite) can take it meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        rc = cli.main(args(tmp_path, buckets.staging, "--once", "--endpoint-url", dead, "--max-attempts", "2"))
    out = capsys.readouterr().out
    assert rc == 1 and "S3 unreachable" in out  # the state's start check (issue 18) asks S3 first
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and "shipped: 1 segment," in out
    assert joined(buckets.staging, c.id) == bytes(c.written)


def _shipper(tmp: Path, bucket: str, **kw) -> Shipper:
    cfg = ShipConfig.resolve({"docker_root": str(tmp / "docker"), "staging": f"s3://{bucket}/staged",
                              "stack": STACK, "host": HOST, "state": str(tmp / "ship.db"), "once": True,
                              "settle": 0, **kw}, env={})
    client = make_client(None, None, 2)
    return Shipper(cfg, client=client)


class _Killed(BaseException):
    """Stands for kill -9 right after S3 answered (BaseException: nothing catches it)."""


def _ship_killed_after_put(tmp_path, bucket: str) -> None:
    """One pass killed right after S3 accepted an upload, before the state recorded it."""
    first = _shipper(tmp_path, bucket)

    def die(**_):
        raise _Killed()

    first.client.meta.events.register("after-call.s3.PutObject", die)
    with pytest.raises(_Killed):
        first.run_pass()
    first.close()


def test_crash_between_s3_success_and_commit_is_recovered_without_duplicate(buckets, fake, tmp_path) -> None:
    c = fake.add("app")
    for i in range(10):
        c.log(f"line {i}")
    c.stop()
    _ship_killed_after_put(tmp_path, buckets.staging)
    assert len(staged(buckets.staging)) == 1  # S3 has it, the state does not say so yet
    c.start()
    c.log("written after the crash")  # the live file grew: the retry must not re-plan
    c.stop()
    second = _shipper(tmp_path, buckets.staging)
    s = second.run_pass()
    assert s.recovered == 1 and s.segments == 2 and s.ok
    segs = staged(buckets.staging, c.id)
    assert [m["logarchive-segment"] for m, _ in segs] == ["1", "2"]
    assert b"".join(b for _, b in segs) == bytes(c.written)


def test_segment_archived_before_its_commit_and_rotated_away_is_recorded_not_lost(
        buckets, fake, tmp_path, capsys) -> None:
    """Killed after S3 took the segment, before the state said so; the archiver archives and
    unstages it; Docker rotates the file away. The archiver's marker says it is archived."""
    c = fake.add("app", max_size=1, max_file=1)  # every write rotates: the old file is deleted
    c.write(b"".join(json_line(f"line {i}") for i in range(10)), rotate=False)
    c.stop()
    _ship_killed_after_put(tmp_path, buckets.staging)
    (seg_meta, seg_bytes), = staged(buckets.staging)
    assert bytes(c.written) == seg_bytes
    key_file = tmp_path / "master.key"
    key_file.write_text(MasterKey.generate().to_base64())
    assert cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/",
                     "--archive-bucket", buckets.archive, "--key-file", str(key_file), "--stack", STACK]) == 0
    s3 = boto3.client("s3")
    archives = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.archive).get("Contents", [])]
    assert len(archives) == 1 and staged(buckets.staging) == []
    c.start()
    after = c.log("after the rotation")  # the staged file is deleted: only this line is on disk
    c.stop()
    assert c.rotations == 1
    capsys.readouterr()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    assert "deleted by Docker" not in out
    second = _shipper(tmp_path, buckets.staging)
    assert second.state.pending() == []
    second.close()
    # nothing sent again: the only staged segment is the new one, number 2
    (meta2, body2), = staged(buckets.staging)
    assert meta2["logarchive-segment"] == "2" and body2 == after
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.archive).get("Contents", [])] == archives


def lose_a_staged_segment(fake, tmp_path, bucket: str):
    """Segment 1 ("only line") staged by a run killed before recording it, then gone from staging
    without an archive (no marker) while Docker rotated its bytes away; "after the rotation" is
    on disk. Returns the container."""
    c = fake.add("app", max_size=1, max_file=1)
    c.write(json_line("only line"), rotate=False)
    c.stop()
    _ship_killed_after_put(tmp_path, bucket)
    s3 = boto3.client("s3")
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])  # not by the archiver: no marker
    c.start()
    c.log("after the rotation")
    c.stop()
    return c


def test_lost_when_no_marker_says_archived(buckets, fake, tmp_path, capsys) -> None:
    """The same crash, but the staged object vanished without an archive (no marker): lost."""
    lose_a_staged_segment(fake, tmp_path, buckets.staging)
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "bytes deleted by Docker before they could be staged" in out, out


def test_multipart_upload_and_file_changed_during_upload(buckets, fake, tmp_path) -> None:
    c = fake.add("big", max_size=6 * 1024 * 1024, max_file=3)
    line = json_line("y" * 1000)
    data = line * (6 * 1024 * 1024 // len(line) + 1)
    c.write(data)
    c.log("rotate now")  # rotates: .1 holds the 6 MiB
    rotated = c.dir / f"{c.id}-json.log.1"
    shipper = _shipper(tmp_path, buckets.staging, part_size="5MiB")

    def truncate(**_):  # between the measuring read and the upload read
        with open(rotated, "r+b") as fh:
            fh.truncate(1024 * 1024)

    shipper.client.meta.events.register("before-call.s3.CreateMultipartUpload", truncate)
    s = shipper.run_pass()
    assert s.segments == 0 and sum(s.retried.values()) == 1, s.render()
    assert staged(buckets.staging) == []
    assert boto3.client("s3").list_multipart_uploads(Bucket=buckets.staging).get("Uploads", []) == []
    shipper.client.meta.events.unregister("before-call.s3.CreateMultipartUpload", truncate)
    os.truncate(rotated, 0)
    with open(rotated, "ab") as fh:  # the bytes back, then one rewritten in place while uploading
        fh.write(data)

    def rewrite(**_):
        with open(rotated, "r+b") as fh:
            fh.seek(5_500_000)
            fh.write(b"Z")

    shipper.client.meta.events.register("before-call.s3.CreateMultipartUpload", rewrite)
    s = shipper.run_pass()
    assert s.segments == 0 and "changed while being read" in s.render(), s.render()
    assert staged(buckets.staging) == []
    shipper.client.meta.events.unregister("before-call.s3.CreateMultipartUpload", rewrite)
    os.truncate(rotated, 0)
    with open(rotated, "ab") as fh:  # put the bytes back: same content, same identity
        fh.write(data)
    s = shipper.run_pass()
    assert s.segments == 1, s.render()
    (m, body), = staged(buckets.staging, c.id)
    assert body == data and m["logarchive-segment"] == "1"  # the number was not burnt


def test_dry_run_ships_nothing_and_changes_no_state(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("app")
    c.log("x")
    c.stop()
    rc = cli.main(args(tmp_path, buckets.staging, "--dry-run", "--settle", "0"))
    out = capsys.readouterr().out
    assert rc == 0 and "would ship: 1 segment," in out and "as segment 1" in out
    assert staged(buckets.staging) == [] and not (tmp_path / "ship.db").exists()


def test_options_from_config_file_and_environment(tmp_path) -> None:
    conf = tmp_path / "ship.toml"
    conf.write_text('[ship]\nstaging = "s3://from-file/p"\nstack = "filestack"\nmax_age = "2h"\ninterval = "30s"\n')
    env = {"LOGARCHIVE_SHIP_STACK": "envstack", "LOGARCHIVE_SHIP_PART_SIZE": "16MiB"}
    cfg = ShipConfig.resolve({"max_age": "90m", "host": None}, env=env, config_path=str(conf))
    assert (cfg.staging, cfg.stack, cfg.max_age, cfg.interval, cfg.part_size) == (
        "s3://from-file/p", "envstack", 5400.0, 30.0, 16 << 20)
    assert cfg.host  # defaults to this host's name
    with pytest.raises(Exception, match="unknown option"):
        (tmp_path / "bad.toml").write_text("nope = 1\n")
        ShipConfig.resolve({}, env=env, config_path=str(tmp_path / "bad.toml"))


def test_daemon_stops_cleanly_on_sigterm(buckets, fake, tmp_path) -> None:
    c = fake.add("app")
    c.log("x")
    c.stop()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOGARCHIVE_SHIP_SETTLE": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", *args(tmp_path, buckets.staging, "--interval", "0.2")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not staged(buckets.staging) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err
    assert joined(buckets.staging, c.id) == bytes(c.written)


def test_a_second_shipper_on_the_same_state_is_refused(buckets, fake, tmp_path, capsys) -> None:
    first = _shipper(tmp_path, buckets.staging)
    try:
        rc = cli.main(args(tmp_path, buckets.staging, "--once"))
        assert rc == 1 and "another logarchive ship is running" in capsys.readouterr().err
    finally:
        first.close()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0


def test_container_removed_with_a_segment_pending(buckets, fake, tmp_path) -> None:
    c = fake.add("gone-soon")
    c.log("bye")
    c.stop()
    first = _shipper(tmp_path, buckets.staging)

    def die(**_):
        raise _Killed()

    first.client.meta.events.register("before-call.s3.PutObject", die)  # killed before sending
    with pytest.raises(_Killed):
        first.run_pass()
    first.close()
    shutil.rmtree(c.dir)  # docker rm, before the shipper came back
    second = _shipper(tmp_path, buckets.staging)
    s = second.run_pass()
    assert s.problems == {"bytes deleted by Docker before they could be staged": 1}, s.render()
    assert "bytes deleted by Docker" in s.render() and staged(buckets.staging) == []
    explanation = boto3.client("s3").head_object(
        Bucket=buckets.staging, Key=f"staged/{STACK}/{HOST}/{c.id}/00000001-abandoned.event")
    assert explanation["ContentLength"] == 0 and explanation["Metadata"]["logarchive-event"] == "abandoned"
    assert second.state.pending() == []
    assert second.run_pass().ok  # reported once, not every pass


def test_lean_entry_point_ships_the_same(buckets, fake, tmp_path, capsys) -> None:
    from chalicelib.shipper.__main__ import main

    c = fake.add("app")
    c.log("x")
    c.stop()
    rc = main(args(tmp_path, buckets.staging, "--once", "--settle", "0")[1:])
    assert rc == 0 and "shipped: 1 segment," in capsys.readouterr().out
    assert joined(buckets.staging, c.id) == bytes(c.written)
    # No --staging nor --stack: a usage error naming both, one line, no traceback.
    assert main(["--docker-root", str(tmp_path), "--once"]) == 2
    err = capsys.readouterr().err
    assert "error: the following arguments are required: --staging, --stack" in err and err.count("\n") == 1


def test_shutdown_between_parts_aborts_the_upload_and_the_next_start_finishes_it(buckets, fake, tmp_path) -> None:
    c = fake.add("big", max_size=11 * 1024 * 1024, max_file=3)
    line = json_line("z" * 1000)
    c.write(line * (11 * 1024 * 1024 // len(line) + 1))
    c.log("rotate")
    first = _shipper(tmp_path, buckets.staging, part_size="5MiB")
    first.client.meta.events.register("after-call.s3.UploadPart", lambda **_: first.stop.set())  # SIGTERM
    s = first.run_pass()
    first.close()
    assert s.segments == 0 and s.ok
    assert staged(buckets.staging) == []
    assert boto3.client("s3").list_multipart_uploads(Bucket=buckets.staging).get("Uploads", []) == []
    second = _shipper(tmp_path, buckets.staging, part_size="5MiB")
    assert len(second.state.pending()) == 1
    s = second.run_pass()
    assert s.segments == 1 and s.ok, s.render()
    (m, body), = staged(buckets.staging, c.id)
    assert m["logarchive-segment"] == "1" and body == bytes(c.written[: len(body)]) and len(body) > 11 * 2**20

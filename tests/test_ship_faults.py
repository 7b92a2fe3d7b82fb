"""The shipper under file faults (issue 18, finding 1): one bad file never stops a host.

A rotated ``.gz`` with bad deflate data, a bad CRC or trailing garbage, a file that answers
EIO, a FIFO or a device: each is skipped for the pass with one line naming it and the cause,
every other container ships, and after ``--give-up-after`` passes of the same failure the file
is given up: its readable prefix staged decompressed, the rest explained as lost.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import stat
import threading
from pathlib import Path

import boto3
import pytest
from dockerfake import FakeDockerRoot
from patience import patience
from test_ship import HOST, STACK, args, joined, ship, staged

from chalicelib import cli
from chalicelib.shipper import identity
from chalicelib.shipper.config import ShipConfig
from chalicelib.shipper.loop import Shipper
from chalicelib.shipper.upload import make_client


@pytest.fixture
def fake(tmp_path: Path) -> FakeDockerRoot:
    return FakeDockerRoot(tmp_path / "docker")


def events(bucket: str, cid: str) -> list[dict]:
    """Metadata of the ``…-abandoned.event`` objects staged for container ``cid``."""
    s3 = boto3.client("s3")
    out = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"staged/{STACK}/{HOST}/{cid}/").get("Contents", []):
        if obj["Key"].endswith(".event"):
            out.append(s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"])
    return out


def _damage(data: bytes, how: str) -> bytes:
    if how == "bad-crc":
        out = bytearray(data)
        out[-8] ^= 0xFF  # the trailer's CRC-32
        return bytes(out)
    if how == "trailing-garbage":
        return data + b"\x00garbage after the gzip stream\n"
    assert how == "bad-deflate"
    out = bytearray(data)
    mid = len(out) * 2 // 3
    out[mid:mid + 64] = b"\xff" * 64
    return bytes(out)


def _damaged_rotation(fake: FakeDockerRoot, how: str):
    """A stopped container with one compressed rotation (damaged ``how``) and a live log."""
    c = fake.add("damaged", max_size=20000, max_file=3, compress=True)
    for i in range(300):
        c.log(f"line {i} " + "x" * 40)
    c.finish_compression()
    gz = c.dir / f"{c.id}-json.log.1.gz"
    assert gz.exists() and not (c.dir / f"{c.id}-json.log.2.gz").exists()
    good = gzip.decompress(gz.read_bytes())
    gz.write_bytes(_damage(gz.read_bytes(), how))
    c.stop()
    return c, gz, good


@pytest.mark.parametrize("how", ["bad-crc", "trailing-garbage", "bad-deflate"])
def test_damaged_gz_is_skipped_each_pass_then_given_up_with_its_readable_prefix(
        buckets, fake, tmp_path, capsys, caplog, how) -> None:
    """Failed before the fix: an isal error nothing caught aborted the pass (bad CRC, bad
    deflate), or the file was retried as "incomplete" forever (trailing garbage)."""
    c, gz, good = _damaged_rotation(fake, how)
    other = fake.add("healthy")
    other.log("fine")
    other.stop()
    compressed = gz.stat().st_size

    for n in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="logarchive.ship"):
            rc, out = ship(tmp_path, buckets.staging, capsys)
        assert rc == 1, out
        # one line naming the file and the cause; the other container shipped
        lines = [r.getMessage() for r in caplog.records if gz.name[12:] in r.getMessage()
                 or c.id[:12] in r.getMessage()]
        assert len(lines) == 1 and "damaged gzip" in lines[0] and f"pass {n} of 3" in lines[0], lines
        assert joined(buckets.staging, other.id) == bytes(other.written)
        # the damaged file's container waits, in byte order: nothing of it staged yet
        assert staged(buckets.staging, c.id) == [] and events(buckets.staging, c.id) == []

    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "given up" in out, out
    segs = staged(buckets.staging, c.id)
    prefix = segs[0][1]
    assert segs[0][0]["logarchive-encoding"] == "identity"  # staged decompressed
    assert segs[0][0]["logarchive-byte-start"] == "0"
    assert segs[0][0]["logarchive-byte-end"] == str(len(prefix))
    if how == "bad-deflate":
        assert 0 < len(prefix) < len(good)
        # what inflated before the damage was detected: the bytes up to the damage are right
        assert good.startswith(prefix[: len(prefix) * 9 // 10])
    else:
        assert prefix == good  # every byte was readable: only the damage itself is lost
    [event] = events(buckets.staging, c.id)
    assert event["logarchive-event"] == "abandoned"
    assert event["logarchive-segment"] == "2"
    assert event["logarchive-compressed-size"] == str(compressed)
    assert event["logarchive-byte-start"] == str(len(prefix)) and event["logarchive-byte-end"] == ""
    assert f"{compressed} compressed bytes" in event["logarchive-event-reason"]
    # then the container's newer file (its live log) ships, after the explained gap
    assert segs[1][0]["logarchive-segment"] == "3" and segs[1][1] == bytes(c.written)[len(good):]

    # given up: never tried again while unchanged
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and "shipped: 0 segments" in out and "problems: none" in out, out


def test_give_up_after_is_an_option_in_all_three_spellings(tmp_path) -> None:
    toml = tmp_path / "ship.toml"
    toml.write_text('staging = "s3://b/p"\nstack = "s"\nonce = true\ngive_up_after = 5\n')
    assert ShipConfig.resolve({}, env={}, config_path=str(toml)).give_up_after == 5
    env = {"LOGARCHIVE_SHIP_GIVE_UP_AFTER": "7"}
    assert ShipConfig.resolve({}, env=env, config_path=str(toml)).give_up_after == 7
    assert ShipConfig.resolve({"give_up_after": 2}, env=env, config_path=str(toml)).give_up_after == 2
    assert ShipConfig.resolve({"staging": "s3://b", "stack": "s", "once": True}, env={}).give_up_after == 3


def test_read_error_skips_the_file_not_the_host_and_gives_it_up(buckets, fake, tmp_path, capsys,
                                                                 caplog, monkeypatch) -> None:
    """EIO on a file's first read. Failed before the fix: nothing was given up (the container
    waited forever) and EIO while measuring raised out of the pass."""
    bad = fake.add("eio", max_size=2000, max_file=3)
    for i in range(70):
        bad.log(f"e {i}")
    bad.stop()
    rotated = bad.dir / f"{bad.id}-json.log.1"
    assert (bad.dir / f"{bad.id}-json.log.2").exists()
    target = rotated.stat().st_ino
    ok = fake.add("ok")
    ok.log("fine")
    ok.stop()

    real = identity.logical_stream

    class Eio:
        def read(self, n: int = -1) -> bytes:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def faulty(fh, gz):  # the disk under one file answers EIO
        return Eio() if os.fstat(fh.fileno()).st_ino == target else real(fh, gz)

    monkeypatch.setattr(identity, "logical_stream", faulty)
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="logarchive.ship"):
            rc, out = ship(tmp_path, buckets.staging, capsys, "--give-up-after", "2")
        assert rc == 1 and joined(buckets.staging, ok.id) == bytes(ok.written), out
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all("json.log.1: " in m and "Input/output error" in m for m in said), said
    assert "given up" in out, out
    [event] = events(buckets.staging, bad.id)
    size = rotated.stat().st_size
    assert event["logarchive-byte-start"] == "0" and event["logarchive-byte-end"] == str(size)
    assert "Input/output error" in event["logarchive-event-reason"]
    # the files before and after it shipped, numbered around the explained gap
    segs = staged(buckets.staging, bad.id)
    assert [m["logarchive-rotation"] for m, _ in segs] == ["2", "0"]
    assert [m["logarchive-segment"] for m, _ in segs] == ["1", "3"] and event["logarchive-segment"] == "2"


def _shipper(tmp: Path, bucket: str, stop: threading.Event | None = None, **kw) -> Shipper:
    cfg = ShipConfig.resolve({"docker_root": str(tmp / "docker"), "staging": f"s3://{bucket}/staged",
                              "stack": STACK, "host": HOST, "state": str(tmp / "ship.db"), "once": True,
                              "settle": 0, **kw}, env={})
    return Shipper(cfg, client=make_client(None, None, 2), stop=stop)


def _in_thread(tmp: Path, bucket: str, run, stop: threading.Event | None = None, **kw):
    """``run(shipper)`` in a thread of its own (SQLite connections stay in their thread)."""
    result: list = []
    done = threading.Event()

    def main() -> None:
        shipper = _shipper(tmp, bucket, stop, **kw)
        try:
            result.append(run(shipper))
        finally:
            shipper.close()
            done.set()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    return t, done, result


def test_fifo_and_device_named_like_logs_are_never_opened(buckets, fake, tmp_path) -> None:
    """Failed before the fix: the pass blocked for ever in open() of the FIFO."""
    hostile = {}
    for kind in ("fifo", "link", "device"):
        c = fake.add(kind)
        c.log("real line")
        c.stop()
        path = c.dir / f"{c.id}-json.log.1"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "link":
            os.symlink("/dev/zero", path)
        elif os.geteuid() == 0:
            os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
        else:
            continue
        hostile[kind] = (c, path)
    t, _, result = _in_thread(tmp_path, buckets.staging, Shipper.run_pass)
    t.join(patience(120))
    try:
        assert not t.is_alive(), "the pass hangs on the FIFO"
    finally:
        if t.is_alive():  # let the blocked open() return so the thread ends
            os.close(os.open(hostile["fifo"][1], os.O_WRONLY | os.O_NONBLOCK))
            t.join(patience(30))
    s = result[0]
    assert sum(n for r, n in s.problems.items() if "not a regular file" in r) == len(hostile), s.render()
    for c, _ in hostile.values():  # the real log beside it shipped
        assert joined(buckets.staging, c.id) == bytes(c.written)


def test_daemon_carries_on_past_a_damaged_file(buckets, fake, tmp_path, caplog) -> None:
    """``--interval``: failed before the fix (the daemon's thread died on the isal error within
    its first pass, and every restart met the same file)."""
    c, gz, good = _damaged_rotation(fake, "bad-crc")
    other = fake.add("healthy")
    other.log("fine")
    other.stop()
    stop = threading.Event()
    t, done, rc = _in_thread(tmp_path, buckets.staging, Shipper.run_forever, stop, once=False, interval=0.05)
    try:
        # progress, not time: wait until the damaged file was given up and the rest shipped
        deadline = patience(180)
        waited = 0.0
        while not events(buckets.staging, c.id) and not done.is_set() and waited < deadline:
            done.wait(0.2)
            waited += 0.2
        assert not done.is_set(), "the daemon exited"
        assert events(buckets.staging, c.id), "never given up"
    finally:
        stop.set()
        t.join(patience(60))
    assert rc == [0]
    assert joined(buckets.staging, other.id) == bytes(other.written)
    assert staged(buckets.staging, c.id)[0][1] == good


def test_cli_once_reports_a_damaged_file_in_one_line(buckets, fake, tmp_path, capsys) -> None:
    c, gz, _ = _damaged_rotation(fake, "bad-deflate")
    rc = cli.main(args(tmp_path, buckets.staging, "--once"))
    out = capsys.readouterr().out
    assert rc == 1 and "file unreadable or corrupt" in out and "Traceback" not in out, out


def test_a_surprise_in_one_container_is_reported_and_the_others_ship(buckets, fake, tmp_path, monkeypatch):
    """The per-container guard: an unexpected exception (a bug) names the container and the
    class, and the pass goes on. Injected at our own boundary: nothing left raises here."""
    bad = fake.add("bad")
    bad.log("x")
    bad.stop()
    good = fake.add("good")
    good.log("y")
    good.stop()
    real = Shipper._file

    def flaky(self, c, f, s):
        if c.id == bad.id:
            raise RuntimeError("injected surprise")
        return real(self, c, f, s)

    monkeypatch.setattr(Shipper, "_file", flaky)
    t, _, result = _in_thread(tmp_path, buckets.staging, Shipper.run_pass)
    t.join(patience(120))
    summary = result[0]
    assert summary.problems == {"unexpected error (reported; the other containers ship)": 1}, summary.render()
    assert summary.examples["unexpected error (reported; the other containers ship)"] == [bad.id[:12]]
    assert joined(buckets.staging, good.id) == bytes(good.written)


def test_the_daemon_survives_a_pass_that_fails_as_a_whole(buckets, fake, tmp_path, monkeypatch, caplog):
    """The per-pass guard: a pass that raises is logged in one line and the next pass runs."""
    c = fake.add("later")
    c.log("shipped by the pass after the failed one")
    c.stop()
    real = Shipper.run_pass
    calls = []

    def fails_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the whole pass failed")
        return real(self)

    monkeypatch.setattr(Shipper, "run_pass", fails_once)
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="logarchive.ship"):
        t, done, rc = _in_thread(tmp_path, buckets.staging, Shipper.run_forever, stop, once=False, interval=0.05)
        try:
            waited = 0.0
            while not staged(buckets.staging, c.id) and not done.is_set() and waited < patience(120):
                done.wait(0.2)
                waited += 0.2
        finally:
            stop.set()
            t.join(patience(60))
    assert rc == [0] and joined(buckets.staging, c.id) == bytes(c.written)
    assert any("pass failed" in r.getMessage() and "injected" in r.getMessage() for r in caplog.records)

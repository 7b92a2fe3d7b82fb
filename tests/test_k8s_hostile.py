"""Hostile CRI input (issue 20): partial records across a rotation, no newline at EOF, CRLF,
invalid UTF-8, kubelet rotating mid-read, symlinks out of the pods root, names at their limits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import boto3
import pytest
from retrieval_helpers import run_cli
from test_k8s import STACK, archive, joined, ship, staged

from chalicelib import crilog, layout
from chalicelib.devkit.fakekubelet import FakeKubelet, cri_records, cri_time
from chalicelib.keyring import MasterKey
from chalicelib.shipper.config import ShipConfig
from chalicelib.shipper.loop import Shipper
from chalicelib.shipper.pods import scan_pods
from chalicelib.shipper.report import Summary
from chalicelib.staged import IDENTITY, K8sIdentity, StagedMeta, staged_key, staged_metadata


@pytest.fixture
def node(tmp_path: Path) -> FakeKubelet:
    return FakeKubelet(tmp_path / "node")


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_text(MasterKey.generate().to_base64() + "\n")
    return path


def fetch(buckets, keyfile: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--key-file",
                    str(keyfile), "--download-location", "-", *extra], capsys)


def test_partial_record_continued_across_a_rotation(buckets, node, tmp_path, keyfile, capsys) -> None:
    c = node.pod("ns", "p").container("app")
    c.log("before")
    now = cri_time().encode()
    c.write(now + b" stdout P first half of a long line \n")  # a P record ends 0.log …
    c.rotate()
    c.write(now + b" stdout F and its second half\n")  # … its F begins the new 0.log
    c.log("after")
    c.start()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    segs = staged(buckets.staging)[layout.cri_container_id(c.pod.uid, "app", 0)]
    assert len(segs) == 2 and joined(segs) == bytes(c.written[0])  # byte-exact, split where kubelet split
    # The joiner carries a P record over to the next file's F when fed in order.
    lines = list(crilog.to_docker_lines(joined(segs).splitlines()))
    assert json.loads(lines[1])["log"] == "first half of a long line and its second half\n"
    archive(buckets, keyfile, capsys)
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--container-name", "app", "--format", "jsonl")
    assert rc == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    # Streamed, the two archives' records join across the archive boundary (the time is the P's).
    assert [r["log"] for r in records] == ["before\n", "first half of a long line and its second half\n", "after\n"]
    assert records[1]["time"] == now.decode()
    # With a filter, the joined line is what is judged (the grep matches only its second half).
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--format", "jsonl", "--grep", "second")
    assert rc == 0 and [json.loads(x)["log"] for x in out.splitlines()] == [
        "first half of a long line and its second half\n"], err
    # Byte-exact (the default) is unchanged: the archives' bytes, one after the other.
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--decompress")
    assert rc == 0 and out.encode() == bytes(c.written[0]), err
    # The continuing archive missing from the bucket: the half is a line of its own, not dropped.
    s3 = boto3.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=buckets.customer)["Contents"])
    second = next(k for k in keys if "/0.log.2." in k)
    s3.delete_object(Bucket=buckets.customer, Key=second)
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--format", "jsonl")
    assert rc == 0, err
    assert [json.loads(x)["log"] for x in out.splitlines()] == ["before\n", "first half of a long line "]


def test_record_without_newline_at_eof_crlf_and_invalid_utf8(buckets, node, tmp_path, keyfile, capsys) -> None:
    c = node.pod("ns", "p").container("app")
    c.log("windows line\r")  # CRLF: the message keeps its \r
    c.log(b"bad \xff\xfe utf-8 timeout")
    c.log("cut short by a crash", end=b"")  # the runtime died mid-record
    c.start()  # the next run: 0.log is closed, its last bytes final (no --settle for CRI)
    rc, out = ship(tmp_path, buckets.staging, capsys, "--settle", "1h")
    assert rc == 0, out
    got = joined(staged(buckets.staging)[layout.cri_container_id(c.pod.uid, "app", 0)])
    assert got == bytes(c.written[0]) and not got.endswith(b"\n")
    archive(buckets, keyfile, capsys)
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--format", "jsonl")
    assert rc == 0 and "Traceback" not in err, err
    records = [json.loads(x) for x in out.splitlines()]
    # Docker's shape; invalid UTF-8 replaced (as Docker itself does); an F record is a whole line
    assert [r["log"] for r in records] == ["windows line\r\n", "bad \ufffd\ufffd utf-8 timeout\n",
                                           "cut short by a crash\n"]
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", "ns", "--grep", "timeout", "--format", "text")
    assert rc == 0 and out == "bad \ufffd\ufffd utf-8 timeout\n", err


def test_kubelet_rotating_between_scan_and_read_loses_nothing(buckets, node, tmp_path, capsys) -> None:
    c = node.pod("ns", "p").container("app")
    for i in range(30):
        c.log(f"line {i}")
    cfg = ShipConfig.resolve({"pods_root": str(tmp_path / "node" / "pods"), "staging": f"s3://{buckets.staging}/staged",
                              "stack": STACK, "host": "node-1", "state": str(tmp_path / "ship.db"), "once": True,
                              "max_age": "1ms"})
    shipper = Shipper(cfg)
    try:
        [seen] = scan_pods(cfg.pods_root)
        c.rotate()  # renamed and a new 0.log while the shipper holds the old listing
        c.log("after the rotation")
        s = Summary()
        shipper._container(seen, s)  # the listed 0.log is now another file: retried, nothing staged
        assert s.segments == 0 and s.retried
        c.start()
        s = shipper.run_pass()
        assert not s.problems, s.problems
    finally:
        shipper.close()
    got = joined(staged(buckets.staging)[layout.cri_container_id(c.pod.uid, "app", 0)])
    assert got == bytes(c.written[0])


def test_symlinks_out_of_the_pods_root_are_reported_never_followed(buckets, node, tmp_path, capsys) -> None:
    outside = tmp_path / "outside" / "app"
    outside.mkdir(parents=True)
    (outside / "0.log").write_bytes(cri_records("secret from elsewhere"))
    uid = "0d3e5f6a-1111-2222-3333-444455556666"
    os.symlink(tmp_path / "outside", node.pods / f"ns_evil_{uid}")  # a pod dir that is a symlink
    pod = node.pod("ns", "ok")
    os.symlink(outside, pod.dir / "linked")  # a container dir that is a symlink
    c = pod.container("app")
    c.log("fine")
    os.symlink(outside / "0.log", c.dir / "7.log")  # a log file that is a symlink
    c.start()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1 and out.count("symlinked directory (not followed") >= 1, out
    assert "not a regular file (not followed)" in out, out
    every = b"".join(body for segs in staged(buckets.staging).values() for _, body in segs)  # heartbeat skipped
    assert b"secret from elsewhere" not in every
    assert joined(staged(buckets.staging)[layout.cri_container_id(pod.uid, "app", 0)]) == bytes(c.written[0])


def test_names_at_their_length_limits_fit_keys_and_metadata(buckets, node, tmp_path, keyfile, capsys) -> None:
    """A namespace of 63 and a pod name of 253 characters. On disk kubelet's directory
    ``<namespace>_<pod>_<uid>`` must fit NAME_MAX (255 bytes), so with a 63-character namespace a
    pod name of 154 is the longest a node can hold: that one is shipped from disk; the 253 one is
    staged as a shipper would stage it (same builders) to prove keys and metadata hold it."""
    ns, cname = "n" * 63, "c" * 63
    on_disk = "p" * 153 + "q"
    c = node.pod(ns, on_disk).container(cname)
    c.log("at the limits")
    c.start()
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    longest = ("p" * 62 + ".") * 4 + "q"
    assert len(longest) == 253 and layout.DNS_SUBDOMAIN_RE.match(longest)
    k8s = K8sIdentity(ns, longest, "f" * 8 + "-aaaa-bbbb-cccc-" + "d" * 12, cname, 123456789, "e" * 64)
    data = cri_records("the longest names")
    sha = hashlib.sha256(data).hexdigest()
    meta = staged_metadata(stack=STACK, host="h" * 63, container_id="", container_name="", kind="", resource_id="",
                           service_id="", segment=99999999, rotation=9, byte_start=0, byte_end=len(data),
                           first=None, last=None, lines=1, sha256=sha, encoding=IDENTITY, k8s=k8s)
    key = staged_key("staged", STACK, "h" * 63, k8s.staged_id, 99999999, sha, IDENTITY)
    assert StagedMeta.parse(meta).problem is None
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.staging, Key=key, Body=data, Metadata=meta)
    for m in (meta, s3.head_object(Bucket=buckets.staging, Key=key)["Metadata"]):
        assert sum(len(k) + len(v) for k, v in m.items()) <= 2048  # S3's limit on user metadata
    archive(buckets, keyfile, capsys)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.customer, Prefix="_k8s/")["Contents"]]
    assert len(keys) == 2
    for key in keys:
        assert len(key.encode()) <= 1024
        size = sum(len(k) + len(v) for k, v in s3.head_object(Bucket=buckets.customer, Key=key)["Metadata"].items())
        assert size <= 2048, (key, size)
    assert {layout.parse(k).pod_name for k in keys} == {on_disk, longest}
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", ns, "--pod", on_disk, "--decompress")
    assert rc == 0 and out.encode() == bytes(c.written[0]), err
    rc, out, err = fetch(buckets, keyfile, capsys, "--namespace", ns, "--pod", longest, "--decompress")
    assert rc == 0 and out.encode() == data, err
    # One character more is no Kubernetes name: refused as a usage error, not a traceback.
    rc, _, err = fetch(buckets, keyfile, capsys, "--namespace", "n" * 64)
    assert rc == 2 and "is not a Kubernetes namespace" in err
    rc, _, err = fetch(buckets, keyfile, capsys, "--namespace", ns, "--pod", longest + "x")
    assert rc == 2 and "is not a pod name" in err


def test_partial_record_seams_between_archives(tmp_path: Path) -> None:
    """``logoutput.CriSeams``: joined only into the next segment of the same container run; a
    partial whose continuation is not next (not selected, missing, another container) is written
    as its own line; none is dropped. Byte-exact output never goes through it."""
    import gzip
    import io
    from types import SimpleNamespace

    from chalicelib.download.logoutput import CriSeams, OutputOptions, write_output

    def run(*archives: tuple[str, int, list[bytes]]) -> list[str]:
        opts, out = OutputOptions(fmt="jsonl"), io.BytesIO()
        seams = CriSeams(opts)
        for i, (cid, segment, records) in enumerate(archives):
            path = tmp_path / f"{i}.gz"
            path.write_bytes(gzip.compress(b"".join(r + b"\n" for r in records)))
            out.write(seams.begin(SimpleNamespace(container_id=cid, rotation=segment))[0])
            write_output(str(path), out, opts, name=str(i), source=crilog.CRI, seams=seams)
            seams.done()
        out.write(seams.finish()[0])
        return [json.loads(x)["log"] for x in out.getvalue().splitlines()]

    a = ("c1", 1, [b"2022-01-01T00:00:00Z stdout F whole", b"2022-01-01T00:00:01Z stdout P half "])
    b = ("c1", 2, [b"2022-01-01T00:00:02Z stdout F rest", b"2022-01-01T00:00:03Z stdout F next"])
    assert run(a, b) == ["whole\n", "half rest\n", "next\n"]
    assert run(a, ("c1", 3, b[2])) == ["whole\n", "half ", "rest\n", "next\n"]  # segment 2 not selected
    assert run(a, ("c2", 2, b[2])) == ["whole\n", "half ", "rest\n", "next\n"]  # another container
    assert run(a) == ["whole\n", "half "]  # the last archive: ended as it stands

"""Kubernetes nodes: CRI logs under /var/log/pods shipped, archived under ``_k8s/<stack>/…`` and
read back (issue 20), against a fake kubelet and the local S3 (moto server over HTTP)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import boto3
import pytest
from patience import patience
from retrieval_helpers import run_cli

from chalicelib import cli, crilog, layout
from chalicelib.devkit.fakekubelet import FakeKubelet, cri_records, sample_node
from chalicelib.keyring import MasterKey
from chalicelib.staged import StagedMeta, is_heartbeat

STACK, HOST = "teststack", "node-1"


def ship(tmp: Path, bucket: str, capsys, *extra: str) -> tuple[int, str]:
    rc = cli.main(["ship", "--pods-root", str(tmp / "node" / "pods"), "--staging", f"s3://{bucket}/staged",
                   "--stack", STACK, "--host", HOST, "--state", str(tmp / "ship.db"), "--once",
                   "--settle", "0", *extra])
    return rc, capsys.readouterr().out


def staged(bucket: str) -> dict[str, list[tuple[dict, bytes]]]:
    """Staged segments by container component, in segment order: (metadata, logical bytes)."""
    s3 = boto3.client("s3")
    out: dict[str, list[tuple[dict, bytes]]] = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="staged/").get("Contents", []):
        if is_heartbeat(obj["Key"]):
            continue  # the host's heartbeat (docs/SHIPPER.md), no segment
        got = s3.get_object(Bucket=bucket, Key=obj["Key"])
        meta, body = got["Metadata"], got["Body"].read()
        assert meta["logarchive-sha256"] == hashlib.sha256(body).hexdigest()
        if meta["logarchive-encoding"] == "gzip":
            body = gzip.decompress(body)
        assert obj["Key"].split("/")[3] == meta["logarchive-container-id"]  # the path names it
        out.setdefault(meta["logarchive-container-id"], []).append((meta, body))
    for segs in out.values():
        segs.sort(key=lambda mb: int(mb[0]["logarchive-segment"]))
    return out


def joined(segs: list[tuple[dict, bytes]]) -> bytes:
    return b"".join(body for _, body in segs)


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_text(MasterKey.generate().to_base64() + "\n")
    return path


def archive(buckets, keyfile: Path, capsys) -> None:
    rc = cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged", "--archive-bucket",
                   buckets.archive, "--replicate-to", buckets.customer, "--stack", STACK, "--key-file",
                   str(keyfile)])
    capsys.readouterr()
    assert rc == 0


def test_sample_node_ships_every_closed_byte_once_with_its_names(buckets, tmp_path, capsys) -> None:
    node = sample_node(tmp_path / "node")
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    got = staged(buckets.staging)
    for pod in node.all:
        for c in pod.containers.values():
            for restart, written in c.written.items():
                cid = layout.cri_container_id(pod.uid, c.name, restart)
                if not pod.dir.exists():
                    assert cid not in got  # the deleted pod's logs were gone before the shipper came
                    continue
                # Every byte (the running worker's too: its sample lines are older than --max-age).
                assert joined(got[cid]) == bytes(written), cid
                for meta, _ in got[cid]:
                    m = StagedMeta.parse(meta)
                    assert m.problem is None and m.source_format == "cri" and m.kind == "k8s"
                    assert (m.k8s.namespace, m.k8s.pod_name, m.k8s.pod_uid, m.k8s.container_name,
                            m.k8s.restart_count) == (pod.namespace, pod.name, pod.uid, c.name, restart)
    web = next(p for p in node.all if p.name == "web-7d9f").containers["web"]
    web_segs = got[layout.cri_container_id(web.pod.uid, "web", 0)]
    assert [m["logarchive-encoding"] for m, _ in web_segs].count("gzip") == 2  # two rotations gzipped
    # The container id is read from /var/log/containers' symlink of that run.
    assert {m["logarchive-k8s-container-id"] for m, _ in web_segs} == {web.id}
    # A second pass ships nothing more: each byte once.
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    assert sum(len(v) for v in staged(buckets.staging).values()) == sum(len(v) for v in got.values())


def test_live_log_waits_until_its_container_restarts_then_ships_whole(buckets, tmp_path, capsys) -> None:
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("shop", "api-1").container("api")
    c.log("first run")  # now: younger than --max-age
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and staged(buckets.staging) == {}, out
    c.log("partial and" * 3, max_record=10)  # P records, then F
    c.start()  # the runtime closed 0.log; 1.log is the new run
    c.log("second run")
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0, out
    got = staged(buckets.staging)
    assert joined(got[layout.cri_container_id(c.pod.uid, "api", 0)]) == bytes(c.written[0])
    assert layout.cri_container_id(c.pod.uid, "api", 1) not in got  # still running


def test_archive_and_logs_from_archive_by_namespace_pod_container(buckets, tmp_path, keyfile, capsys) -> None:
    node = sample_node(tmp_path / "node")
    assert ship(tmp_path, buckets.staging, capsys)[0] == 0
    archive(buckets, keyfile, capsys)
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.customer).get("Contents", [])]
    assert keys and all(k.startswith(f"_k8s/{STACK}/v3/") for k in keys)
    head = s3.head_object(Bucket=buckets.customer, Key=next(k for k in keys if "/coredns/" in k))["Metadata"]
    dns = next(p for p in node.all if p.namespace == "kube-system")
    assert head["logarchive-format"] == "cri"
    assert (head["logarchive-k8s-namespace"], head["logarchive-k8s-pod-name"], head["logarchive-k8s-pod-uid"],
            head["logarchive-k8s-container-name"], head["logarchive-k8s-restart-count"],
            head["logarchive-k8s-container-id"]) == (
        "kube-system", "coredns-5d78c", dns.uid, "coredns", "0", dns.containers["coredns"].id)
    base = ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--key-file", str(keyfile)]
    # byte-exact by default (decompressed to stdout): a container's archives are its files
    rc, out, err = run_cli([*base, "--namespace", "shop", "--pod", "worker-0", "--container-name", "worker",
                            "--download-location", "-", "--decompress"], capsys)
    worker = next(p for p in node.all if p.name == "worker-0").containers["worker"]
    assert rc == 0, err
    assert out.encode() == b"".join(bytes(worker.written[r]) for r in sorted(worker.written))
    # --grep and line times understand CRI records; the raw records come out
    rc, out, err = run_cli([*base, "--namespace", "shop", "--container-name", "web", "--download-location", "-",
                            "--decompress", "--grep", "timeout", "--start", "2022-01-01T12:02:00Z"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines and all(" stderr F upstream timeout" in x and x >= "2022-01-01T12:02:00" for x in lines)
    # --format jsonl: Docker's shape, partial records joined (the 40,000-byte message is one line)
    rc, out, err = run_cli([*base, "--namespace", "shop", "--container-name", "web", "--download-location", "-",
                            "--format", "jsonl"], capsys)
    assert rc == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    assert [list(r) for r in records[:1]] == [["log", "stream", "time"]]
    big = [r for r in records if r["log"].startswith("payload ")]
    assert len(big) == 1 and big[0]["log"] == "payload " + "x" * 40000 + "\n"
    assert len(records) == 240
    # another namespace selects nothing of these; an unknown one nothing at all
    rc, out, err = run_cli([*base, "--namespace", "nope"], capsys)
    assert rc == 1 and "No files found" in err


def test_selection_options_are_usage_errors(buckets, tmp_path, keyfile, capsys) -> None:
    base = ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--key-file", str(keyfile)]
    for extra, message in (
        (["--pod", "x"], "give it too"),
        (["--namespace", "Bad_NS"], "is not a Kubernetes namespace"),
        (["--namespace", "ns", "--app-id", "4"], "only one of"),
        (["--namespace", "ns", "--pod", "a" * 254], "is not a pod name"),
    ):
        rc, _, err = run_cli([*base, *extra], capsys)
        assert rc == 2 and message in err, (extra, err)


def test_joiner_turns_cri_records_into_docker_lines() -> None:
    raw = (cri_records("ab" * 5, "stdout", 1_000_000_000_123_000_000, max_record=4)
           + cri_records("err", "stderr", 1_000_000_001_000_000_000))
    lines = list(crilog.to_docker_lines(raw.splitlines()))
    assert lines == [
        b'{"log":"ababababab\\n","stream":"stdout","time":"2001-09-09T01:46:40.123Z"}',
        b'{"log":"err\\n","stream":"stderr","time":"2001-09-09T01:46:41Z"}',
    ]


def test_roots_from_the_command_line_environment_and_toml(tmp_path: Path) -> None:
    from chalicelib.shipper.config import ShipConfig

    base = {"staging": "s3://b/p", "stack": "s", "once": True}
    plain = ShipConfig.resolve(base, env={})
    assert (plain.docker_root, plain.pods_root) == ("/var/lib/docker", "")  # as before: Docker's root
    only_pods = ShipConfig.resolve({**base, "pods_root": "/var/log/pods"}, env={})
    assert (only_pods.docker_root, only_pods.pods_root) == ("", "/var/log/pods")
    both = ShipConfig.resolve({**base, "pods_root": "/p", "docker_root": "/d"}, env={})
    assert (both.docker_root, both.pods_root) == ("/d", "/p")
    toml = tmp_path / "ship.toml"
    toml.write_text('[ship]\npods_root = "/srv/pods"\n')
    from_file = ShipConfig.resolve(base, env={}, config_path=str(toml))
    assert (from_file.docker_root, from_file.pods_root) == ("", "/srv/pods")
    from_env = ShipConfig.resolve(base, env={"LOGARCHIVE_SHIP_PODS_ROOT": "/e"})
    assert from_env.pods_root == "/e"
    # --pods-root without DIR means kubelet's default
    import argparse

    from chalicelib.shipper.cli import add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["--pods-root"]).pods_root == "/var/log/pods"
    assert p.parse_args(["--pods-root", "/x"]).pods_root == "/x"


def test_watcher_tells_a_rotation_from_an_exit(tmp_path: Path) -> None:
    """A rotation closes 0.log after renaming it (and a new 0.log appears): no exit. An exit is a
    close of 0.log with neither: reported as closed after the grace, with the file's inode."""
    import os

    from chalicelib.shipper.watch import GRACE, Watcher

    node = FakeKubelet(tmp_path / "node")
    w = Watcher.open(str(node.pods))
    assert w is not None
    try:
        c = node.pod("ns", "p").container("app")
        pod_dir = c.pod.dir.name
        seen = set()
        while pod_dir not in seen:  # the new pod (its container directory is watched from now on)
            seen |= w.wait(patience(10)).pods
        c.log("x")
        c.rotate()
        c.log("y")
        changes = w.wait(patience(10))
        assert changes.pods == {pod_dir} and not changes.closed  # the rotated file: a pass, no exit
        changes = w.wait(GRACE * 2)
        assert not changes.closed
        st = os.stat(c.log_path)
        c.exit()
        closed = set()
        while not closed:
            changes = w.wait(patience(10))
            assert changes, "no event for the exit"
            closed |= changes.closed
        assert closed == {(st.st_dev, st.st_ino)} and changes.pods == {pod_dir}
    finally:
        w.close()

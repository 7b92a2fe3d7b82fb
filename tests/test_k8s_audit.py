"""Digests (v2) and the audit cover Kubernetes containers as they cover Docker ones (issue 20):
entries carry ``source_format: cri`` and the ``k8s`` names, and per-container completeness works
on ``<pod_uid>_<container>_<restart>`` ids."""

from __future__ import annotations

from pathlib import Path

import boto3
from archiver_support import TABLE, create_idempotency_table
from test_digests import digests_in

from chalicelib import layout
from chalicelib.cli import main
from chalicelib.devkit.fakekubelet import FakeKubelet
from chalicelib.staged import is_heartbeat

STACK = "teststack"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_digest_entries_name_the_kubernetes_container_and_the_audit_finds_its_gap(buckets, tmp_path: Path,
                                                                                  capsys) -> None:
    key, private, public = tmp_path / "master.key", tmp_path / "signing.pem", tmp_path / "signing.pub"
    assert cli(capsys, "keys", "generate", "--output", str(key))[0] == 0
    assert cli(capsys, "keys", "signing-generate", "--private-key-file", str(private),
               "--public-key-file", str(public))[0] == 0
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("shop", "api-6f9").container("api")
    for i in range(250):
        c.log(f"request {i} " + "y" * 60)
        if i % 50 == 49 and i < 240:  # four rotations, then 50 lines in the live 0.log
            c.rotate(max_files=100)
    c.exit()
    c.start()  # restart 1 is running: only restart 0 is closed
    ship = ["ship", "--pods-root", str(tmp_path / "node" / "pods"), "--staging", f"s3://{buckets.staging}/staged",
            "--stack", STACK, "--host", "node-1", "--state", str(tmp_path / "ship.db"), "--once"]
    assert cli(capsys, *ship)[0] == 0
    s3 = boto3.client("s3")
    staged = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=buckets.staging, Prefix="staged/")["Contents"]
                    if not is_heartbeat(o["Key"]))
    cid = layout.cri_container_id(c.pod.uid, "api", 0)
    assert len(staged) == 5 and all(f"/{cid}/" in k for k in staged)
    lost = staged[2]
    s3.delete_object(Bucket=buckets.staging, Key=lost)  # segment 3 never reaches the archive
    create_idempotency_table()
    rc, out, err = cli(capsys, "archive", "--once", "--staging", f"s3://{buckets.staging}/staged",
                       "--archive-bucket", buckets.archive, "--replicate-to", buckets.customer, "--stack", STACK,
                       "--key-file", str(key), "--signing-key-file", str(private), "--table", TABLE)
    assert rc == 0, out + err
    [signed] = digests_in(s3, buckets.customer)
    entries = signed.digest.archives
    assert len(entries) == 4
    for e in entries:
        assert e.container_id == cid and e.source_format == "cri"
        names = dict(e.k8s)
        runtime_id = names.pop("container_id")
        assert names == {"namespace": "shop", "pod_name": "api-6f9", "pod_uid": c.pod.uid,
                         "container_name": "api", "restart_count": 0}
        assert len(runtime_id) == 64  # read from /var/log/containers' symlink of that run
    rc, out, err = cli(capsys, "audit", "--bucket", buckets.customer, "--stack", STACK,
                       "--public-key-file", str(public))
    assert rc == 1, out + err
    gaps = [line for line in out.splitlines() if line.startswith("segment gap: ") and cid in line]
    assert gaps and "segment 3 missing" in gaps[0], out

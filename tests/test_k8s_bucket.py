"""Kubernetes archives beside Docker's in one stack (issue 20): Aptible's reference tool still
reads the stack, and every set-up that names the archive prefix covers ``_k8s/<stack>/`` too."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from test_deployment_files import ENV

from chalicelib import cli, layout
from chalicelib.devkit.fakedocker import sample_host
from chalicelib.devkit.fakekubelet import sample_node
from chalicelib.keyring import MasterKey
from chalicelib.setup import bucket_policy, iam
from chalicelib.setup.resources import StageResources

STACK = "teststack"


@pytest.fixture
def both_kinds(buckets, tmp_path: Path, capsys) -> Path:
    """One host with Docker and kubelet, shipped by one `ship` with both roots, then archived."""
    sample_host(tmp_path / "docker")
    sample_node(tmp_path / "node")
    key = tmp_path / "master.key"
    key.write_text(MasterKey.generate().to_base64() + "\n")
    rc = cli.main(["ship", "--docker-root", str(tmp_path / "docker"), "--pods-root", str(tmp_path / "node" / "pods"),
                   "--staging", f"s3://{buckets.staging}/staged", "--stack", STACK, "--host", "h",
                   "--state", str(tmp_path / "ship.db"), "--once", "--settle", "0"])
    assert rc == 0, capsys.readouterr().out
    rc = cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged", "--archive-bucket",
                   buckets.archive, "--replicate-to", buckets.customer, "--stack", STACK, "--key-file", str(key)])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    return key


def _keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3")
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def test_aptible_listing_of_the_stack_meets_only_keys_it_parses(buckets, both_kinds) -> None:
    """RETRIEVAL.md: the reference tool lists every key under ``<stack>`` (no slash) and stops at
    the first it cannot read under its v2/v3 naming. Kubernetes archives must not be among them."""
    everything = _keys(buckets.customer, "")
    assert any(k.startswith(f"_k8s/{STACK}/") for k in everything)  # both kinds are in the bucket
    listed = _keys(buckets.customer, STACK)  # no slash, as the reference tool lists
    assert listed and all(not k.startswith("_k8s/") for k in listed)
    for key in listed:
        parsed = layout.parse(key)  # v2/v3 naming: <stack>/shareable/v2|v3/<key id>/<resource>/<cid>-json…
        assert parsed.schema in ("v2", "v3") and parsed.kind in (*layout.KINDS, layout.UNLABELED), key
        assert key.split("/")[1] == "shareable", key
    # No stack name can begin the Kubernetes root: a stack is [A-Za-z0-9]… (layout.STACK_RE)
    assert not layout.STACK_RE.match(layout.K8S_ROOT)


def test_audit_listing_and_index_backfill_cover_k8s(buckets, both_kinds, capsys) -> None:
    from chalicelib.audit.bucket import list_archives
    from chalicelib.devkit.local_stack import create_table

    listed = {x.key for x in list_archives(boto3.client("s3"), buckets.customer, STACK)}
    assert listed == set(_keys(buckets.customer, f"{STACK}/shareable/")) | set(_keys(buckets.customer, f"_k8s/{STACK}/"))
    assert any(k.startswith("_k8s/") for k in listed)

    ddb = boto3.client("dynamodb")
    create_table("idx")
    rc = cli.main(["index", "backfill", "--bucket", buckets.customer, "--table", "idx", "--stack", STACK])
    out = capsys.readouterr().out
    assert rc == 0, out
    items = ddb.scan(TableName="idx")["Items"]
    k8s_heads = [i for i in items if i["sk"]["S"] == "head" and i["kind"]["S"] == "k8s"]
    assert len(k8s_heads) == len([k for k in listed if k.startswith("_k8s/")])
    head = next(i for i in k8s_heads if i["pod_name"]["S"] == "coredns-5d78c")
    assert head["resource_id"]["S"] == "kube-system" and head["source_format"]["S"] == "cri"
    # the namespace is the resource of its index items: <stack>#k8s#<namespace>#<hour>
    assert any(i["pk"]["S"].startswith(f"{STACK}#k8s#kube-system#") for i in items)


def test_customer_bucket_policy_must_let_kubernetes_archives_in() -> None:
    """A policy that grants the replication role only ``<stack>/*`` would refuse ``_k8s/…``."""
    role = "arn:aws:iam::111122223333:role/r"
    seed = bucket_policy.render("b", role)
    assert bucket_policy.missing_grants(seed, "b", role) == []
    narrow = json.loads(json.dumps(seed).replace("arn:aws:s3:::b/*", "arn:aws:s3:::b/stack/*"))
    missing = bucket_policy.missing_grants(narrow, "b", role)
    assert missing and all("arn:aws:s3:::b/*" in m for m in missing)


def test_iam_lets_the_functions_reach_kubernetes_archives() -> None:
    res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_REPLICATE_TO": "cu"})
    for fn in ("archive_worker", "index_archive", "retrieval_worker", "api_handler"):
        text = json.dumps(iam.function_policy(res, fn))
        assert "arn:aws:s3:::arc/_k8s/s1/*" in text, fn
        assert "arn:aws:s3:::arc/s1/shareable/*" in text, fn
    assert "arn:aws:s3:::cu/_k8s/s1/*" in json.dumps(iam.function_policy(res, "archive_worker"))

"""docs/KUBERNETES.md's DaemonSet passes Kubernetes' own schemas (kubernetes-validate, no cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

DOC = Path(__file__).resolve().parent.parent / "docs" / "KUBERNETES.md"
VERSION = "1.30.0"


def documents() -> list[dict]:
    [block] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [d for d in yaml.safe_load_all(block) if d]


def test_manifest_is_valid_for_kubernetes() -> None:
    docs = documents()
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "DaemonSet"]
    for d in docs:
        kubernetes_validate.validate(d, VERSION, strict=True)  # raises ValidationError


def test_manifest_mounts_the_logs_read_only_and_keeps_state_on_the_host() -> None:
    ds = documents()[2]
    pod = ds["spec"]["template"]["spec"]
    [c] = pod["containers"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/var/log/pods"]["readOnly"] and mounts["/var/log/containers"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/logarchive"
    assert c["resources"]["limits"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert "--pods-root=/var/log/pods" in c["args"]


def test_the_validator_catches_a_broken_manifest() -> None:
    ds = documents()[2]
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = "yes please"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSION, strict=True)

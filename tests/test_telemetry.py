"""Where the Lambdas' metrics and logs go: the stage's Powertools settings, else the committed ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from emf import documents, namespaces

from chalicelib import telemetry
from chalicelib.setup import deployment

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter: the names are read when the app is imported, as in a Lambda, where the
# stage's environment is set before the import.
INVOKE_HEALTH = """
import tempfile
from chalice.test import Client
import app
with tempfile.TemporaryDirectory() as d, Client(app.app, project_dir=d) as client:
    # No stage settings here: /health answers 503 ("not configured") without calling anything;
    # the request's metric is what this test reads, whatever the answer.
    assert client.http.get("/health").status_code in (200, 503)
"""


def _emf_of_health(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    proc = subprocess.run([sys.executable, "-c", INVOKE_HEALTH], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_code_defaults_are_the_committed_stage_values() -> None:
    config = deployment.load_config(ROOT)
    for stage in config["stages"]:
        env = deployment.stage_env(config, stage)
        assert env.get("POWERTOOLS_METRICS_NAMESPACE", telemetry.DEFAULT_NAMESPACE) == telemetry.DEFAULT_NAMESPACE
        assert env.get("POWERTOOLS_SERVICE_NAME", telemetry.DEFAULT_SERVICE) == telemetry.DEFAULT_SERVICE


@pytest.mark.parametrize("env, namespace, service", [
    ({}, "logarchive", "logarchive"),
    ({"POWERTOOLS_METRICS_NAMESPACE": "acme/logs", "POWERTOOLS_SERVICE_NAME": "archive-eu"}, "acme/logs",
     "archive-eu"),
])
def test_metrics_namespace_and_service_follow_the_environment(env, namespace, service) -> None:
    out = _emf_of_health(**env)
    assert namespaces(out) == {namespace}  # ApiRequests and the cold-start metric alike
    docs = documents(out)
    assert docs and {d["service"] for d in docs} == {service}
    assert any("ApiRequests" in d for d in docs)

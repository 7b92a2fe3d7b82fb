"""The packaged template: every API route except /health is signed (SigV4 / IAM), as in app.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_packaged_template_puts_iam_auth_on_every_route_but_health(tmp_path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / name, proj / name)
    shutil.copytree(ROOT / "chalicelib", proj / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", proj / ".chalice", ignore=shutil.ignore_patterns("deployments"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    chalice = Path(sys.executable).with_name("chalice")
    # Terraform: CloudFormation cannot express on_s3_event on an existing bucket (see docs).
    out = subprocess.run([str(chalice), "package", "--pkg-format", "terraform", str(tmp_path / "out")],
                         cwd=proj, env=env, capture_output=True, text=True, timeout=580)
    assert out.returncode == 0, out.stderr[-3000:]
    tf = json.loads((tmp_path / "out" / "chalice.tf.json").read_text())
    swagger = tf["locals"]["chalice_api_swagger"]
    swagger = json.loads(swagger) if isinstance(swagger, str) else swagger
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    routes = {(p, m): d.get("security") for p, ms in swagger["paths"].items() for m, d in ms.items()}
    assert ("/health", "get") in routes and ("/retrievals", "post") in routes and len(routes) >= 5
    for (path, method), security in routes.items():
        if path == "/health":
            assert not security
        else:
            assert security == [{"sigv4": []}], (path, method)
    functions = set(tf["resource"]["aws_lambda_function"])
    assert {"index_archive", "retrieval_worker", "api_handler"} <= functions

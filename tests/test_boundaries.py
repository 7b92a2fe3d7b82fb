"""The import boundaries between the programs, checked in a fresh interpreter each.

A Lambda (``import app``) loads no module of the shipper, the commands, the download library or
the devkit, nor the CLI's and tests' libraries; the shipper's entry point loads none of the
Lambda stack (boto3, cryptography, Chalice, Powertools) nor the archiver, index or commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (what is imported, module prefixes that must not be loaded afterwards)
BOUNDARIES = {
    "app": (
        "chalicelib.shipper", "chalicelib.commands", "chalicelib.download", "chalicelib.devkit",
        "chalicelib.cli", "chalicelib.sqs_pump", "tqdm", "moto", "sqlite3",
    ),
    "chalicelib.shipper.__main__": (
        "boto3", "cryptography", "chalice", "aws_lambda_powertools", "chalicelib.archiver",
        "chalicelib.index", "chalicelib.commands", "chalicelib.jobs", "chalicelib.api",
        "chalicelib.download", "chalicelib.devkit",
    ),
    # the AWS error vocabulary is shared with the shipper: botocore at most
    "chalicelib.awserrors": ("boto3", "botocore"),
    # the staged-object contract: written by the shipper, read by the archiver
    "chalicelib.staged": ("boto3", "botocore", "cryptography", "chalicelib.archiver", "chalicelib.shipper"),
}


def loaded_after_import(module: str) -> list[str]:
    code = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def forbidden(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("module", sorted(BOUNDARIES))
def test_import_boundary(module: str) -> None:
    loaded = loaded_after_import(module)
    assert module in loaded  # it really was imported (the check below could not pass vacuously)
    assert forbidden(loaded, BOUNDARIES[module]) == []


def test_the_check_sees_a_crossing() -> None:
    # The same check finds a boundary crossed: a command's module loads the shipper.
    assert "chalicelib.shipper.cli" in forbidden(loaded_after_import("chalicelib.commands.ship"), BOUNDARIES["app"])

"""docs/OPERATIONS.md's first deploy ("Top to bottom", Development) as written, against
``logarchive local up --iam``, in a copy of the project, in eu-west-1 and in ap-southeast-2 (issue 19).

Replaced, because they need real Lambda (tests/first_deploy_local.py stands in):
- ``.venv/bin/chalice deploy --stage dev`` -> ``deploy``: the functions' roles from the generated
  policy files (what chalice deploy creates for IAM);
- ``.venv/bin/logarchive setup post-deploy --stage dev`` -> nothing (it configures the Lambda
  functions and event sources chalice deploy makes);
- ``aws lambda invoke --function-name logarchive-dev-archive_scheduler /dev/stdout`` -> ``invoke``:
  the scheduler's real handler with the stage's environment under its role.
Every other line runs as written (the AWS CLI against the local AWS).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from localup import ROOT, clean_env, local_up

from chalicelib.devkit import local_aws

HELPER = f"{sys.executable} {ROOT / 'tests' / 'first_deploy_local.py'}"
REPLACED = {
    ".venv/bin/chalice deploy --stage dev": f"{HELPER} deploy --stage dev",
    ".venv/bin/logarchive setup post-deploy --stage dev": "true  # post-deploy: no Lambda functions locally",
    "aws lambda invoke --function-name logarchive-dev-archive_scheduler /dev/stdout":
        f"{HELPER} invoke archive_scheduler --stage dev",
}


def dev_block() -> str:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = text[text.index("### Development (`dev`, `chalice deploy`"):]
    block = section[section.index("```sh\n") + 6:]
    return block[:block.index("```\n")]


def project_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        if name.startswith(("tests/", "bench/")) or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)  # times kept: make sees the virtualenv as up to date
    (dest / ".venv").symlink_to(ROOT / ".venv")
    # The block's `make .venv/.installed` must find the shared virtualenv up to date, or pip would
    # re-point its editable install at this temporary copy (a stale stamp in a working clone).
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    for name in ("pyproject.toml", "requirements.txt"):
        os.utime(dest / name, (stamp - 1, stamp - 1))
    return dest


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2"])
def test_operations_first_deploy_runs_against_local_up_iam(tmp_path: Path, region: str) -> None:
    script = dev_block()
    for line, local in REPLACED.items():
        assert line in script, line
        script = script.replace(line, local)
    project = project_copy(tmp_path / "project")
    with local_up("--port", str(local_aws.free_port()), "--stack", "firstdeploy", "--iam") as up:
        export = next(x for x in up.banner if x.strip().startswith("export "))
        creds = dict(kv.split("=", 1) for kv in export.split()[1:])
        env = {**clean_env(), **creds, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
               "PYTHONPATH": str(project)}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Every generated file names the stage's region only, and the scheduler answered its report.
    for path in (project / ".chalice").glob("*dev*.json"):
        assert "us-east-1" not in path.read_text(), path.name
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["listed"] == 0 and report["scheduled"] == 0
    assert (f"ok   logarchive-dev-archive-123456789012-{region}: exists, owned by 123456789012, in {region}"
            in done.stdout)
    assert os.path.exists(project / "dev-signing.pub.pem")

"""docs/OPERATIONS.md's first deploy ("Top to bottom") as written, against ``logarchive local up
--iam``, each block in a fresh copy of the project: the Development block in eu-west-1, the
Production block in ap-southeast-2 (issue 19), both started together on one ``local up --iam``.
That no ``us-east-1`` is left in any generated file of either stage in either region is
tests/test_deployment_files.py's (cheap) test.

Replaced in the Development block, because they need real Lambda (tests/first_deploy_local.py
stands in):
- ``.venv/bin/chalice deploy --stage dev`` -> ``deploy``: the functions' roles from the generated
  policy files (what chalice deploy creates for IAM);
- ``.venv/bin/logarchive setup post-deploy --stage dev`` -> nothing (it configures the Lambda
  functions and event sources chalice deploy makes);
- ``aws lambda invoke --function-name logarchive-dev-archive_scheduler /dev/stdout`` -> ``invoke``:
  the scheduler's real handler with the stage's environment under its role.

Replaced in the Production block:
- ``aws cloudformation deploy --template-file build/prod/packaged.json --stack-name logarchive-prod …``
  -> ``cloudformation-deploy`` of the same packaged template: the local AWS has no Lambda and no
  Serverless transform, so the functions, the API and their permissions and gateway responses are
  left out; the local AWS's CloudFormation deploys the rest as stack ``logarchive-prod`` (queues,
  tables, alarm topic, the functions' roles — each checked to carry its generated policy file, and
  made assumable by the local administrator in Lambda's place — and the replication role); what
  that CloudFormation does not create (moto 5.2.5: the seven alarms, silently, and the API token
  secret) is made with CloudWatch's and Secrets Manager's own APIs from the template's
  properties. A resource type it does not know, or a resource the stack lacks, fails;
- ``aws lambda invoke --function-name logarchive-prod-archive_scheduler /dev/stdout`` -> ``invoke``:
  the scheduler's real handler under the role the stack made for it (it seals the first digest
  with the block's KMS key; the test then audits it with the public key the block wrote).
``make package STAGE=prod`` runs as written, offline: the environment has ``WHEELHOUSE`` (the
Makefile's variable) naming the Lambda wheels of requirements.txt cached by
``chalicelib.setup.package.wheelhouse`` (as tests/test_deployed_package.py's; PyPI is needed the
first time only), so the package is the real one. ``aws kms create-key --key-spec ECC_NIST_P256`` /
``get-public-key``, Secrets Manager, ``aws cloudformation package`` (which uploads the 29 MiB
deployment.zip into the block's artifacts bucket) and ``describe-stacks`` run as written against
the local AWS.

Every other line runs as written, the AWS CLI against the local AWS. Each ``aws`` line runs the
AWS CLI's own entry point with the line's arguments, environment, directory, umask and standard
streams, in a process forked from one that imported the CLI once (tests/warm_aws.py): starting an
interpreter and importing botocore and awscli was ~0.4 s of each line's ~0.5 s, most of the blocks'
time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import warm_aws
from localup import ROOT, LocalUp, clean_env, local_up

from chalicelib.devkit import local_aws, packaged
from chalicelib.setup import package

HELPER = f"{sys.executable} {ROOT / 'tests' / 'first_deploy_local.py'}"
DEV_REPLACED = {
    ".venv/bin/chalice deploy --stage dev": f"{HELPER} deploy --stage dev",
    ".venv/bin/logarchive setup post-deploy --stage dev": "true  # post-deploy: no Lambda functions locally",
    "aws lambda invoke --function-name logarchive-dev-archive_scheduler /dev/stdout":
        f"{HELPER} invoke archive_scheduler --stage dev",
}
PROD_REPLACED = {
    "aws cloudformation deploy --template-file build/prod/packaged.json --stack-name logarchive-prod \\\n"
    "  --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND":
        f"{HELPER} cloudformation-deploy --template-file build/prod/packaged.json --stack-name logarchive-prod"
        " --stage prod",
    "aws lambda invoke --function-name logarchive-prod-archive_scheduler /dev/stdout":
        f"{HELPER} invoke archive_scheduler --stage prod --stack-name logarchive-prod",
}
ACCOUNT = "123456789012"  # the local AWS's


def block(heading: str) -> str:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = text[text.index(heading):]
    body = section[section.index("```sh\n") + 6:]
    return body[:body.index("```\n")]


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


@pytest.fixture(scope="module")
def iam_aws() -> Iterator[LocalUp]:
    """One ``local up --iam`` for both blocks (their regions, names and roles differ)."""
    with local_up("--port", str(local_aws.free_port()), "--stack", "firstdeploy", "--iam") as up:
        yield up


@pytest.fixture(scope="module")
def aws_path() -> Iterator[str]:
    """``$PATH`` with the warm AWS CLI (tests/warm_aws.py) first; the plain one when the ``aws`` on
    ``$PATH`` is not a Python script we can find the interpreter of."""
    found = shutil.which("aws")
    interpreter = warm_aws.aws_interpreter(found) if found else None
    if interpreter is None:
        yield os.environ["PATH"]
        return
    # A short path (a socket's is at most 107 bytes), private to this user (mode 0700).
    where = Path(tempfile.mkdtemp(prefix="logarchive-aws-"))
    sock = str(where / "aws.sock")
    server = subprocess.Popen([interpreter, "-I", str(ROOT / "tests" / "warm_aws.py"), "serve", sock],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert server.stdout.readline().strip() == "ready", server.communicate(timeout=30)
        warm_aws.install(str(where), interpreter, sock)
        yield f"{where}{os.pathsep}{os.environ['PATH']}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(where, ignore_errors=True)


def admin_keys(up: LocalUp) -> dict[str, str]:
    """The local AWS's administrator's keys, from ``local up``'s export line."""
    export = next(x for x in up.banner if x.strip().startswith("export "))
    creds = dict(kv.split("=", 1) for kv in export.split()[1:])
    return {"aws_access_key_id": creds["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"]}


def environ(up: LocalUp, path: str, project: Path, region: str, **env: str) -> dict[str, str]:
    """The blocks' environment: the local AWS's administrator (``local up``'s export line), the
    region, the project's code, the warm AWS CLI."""
    export = next(x for x in up.banner if x.strip().startswith("export "))
    creds = dict(kv.split("=", 1) for kv in export.split()[1:])
    return {**clean_env(), **creds, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "PYTHONPATH": str(project), "PATH": path, **env}


@dataclass
class Run:
    """A block running in the background: its project copy, its output files, its environment."""

    proc: subprocess.Popen
    project: Path
    region: str
    env: dict[str, str]
    out: Path
    err: Path

    def result(self) -> str:
        """Its stdout, once it exited 0 (its stderr, each line traced with its start time: where
        a slow run spends its time, in the failure's message)."""
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out, err = self.out.read_text(), self.err.read_text()
        assert self.proc.returncode == 0, out[-3000:] + err[-6000:]
        return out


def start_block(up: LocalUp, path: str, script: str, replaced: dict[str, str], where: Path, region: str,
                **env: str) -> Run:
    for line, local in replaced.items():
        assert line in script, line
        script = script.replace(line, local)
    project = project_copy(where / "project")
    environment = environ(up, path, project, region, **env)
    traced = "PS4='+ $EPOCHREALTIME '; set -x\n" + script
    out, err = where / "stdout", where / "stderr"
    with out.open("w") as o, err.open("w") as e:  # files, not pipes: two blocks write at once
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", traced], cwd=project, env=environment,
                                stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    return Run(proc, project, region, environment, out, err)


@pytest.fixture(scope="module")
def blocks(iam_aws: LocalUp, aws_path: str, tmp_path_factory) -> Iterator[dict[str, Run]]:
    """Both blocks, started together (each is a line after another; the machine's second core
    works on the other meanwhile): Development in eu-west-1, Production in ap-southeast-2."""
    wheels = package.wheelhouse(ROOT / "requirements.txt", packaged.wheel_cache())
    runs = {
        "dev": start_block(iam_aws, aws_path, block("### Development (`dev`, `chalice deploy`"), DEV_REPLACED,
                           tmp_path_factory.mktemp("dev"), "eu-west-1"),
        "prod": start_block(iam_aws, aws_path, block("### Production (`prod`, `chalice package`"), PROD_REPLACED,
                            tmp_path_factory.mktemp("prod"), "ap-southeast-2", WHEELHOUSE=str(wheels)),
    }
    try:
        yield runs
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def test_development_block_runs_against_local_up_iam(blocks: dict[str, Run]) -> None:
    run = blocks["dev"]
    stdout, project, region = run.result(), run.project, run.region
    # Every generated file names the stage's region only, and the scheduler answered its report.
    for path in (project / ".chalice").glob("*dev*.json"):
        assert "us-east-1" not in path.read_text(), path.name
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["listed"] == 0 and report["scheduled"] == 0
    assert (f"ok   logarchive-dev-archive-{ACCOUNT}-{region}: exists, owned by {ACCOUNT}, in {region}"
            in stdout)
    assert (project / "dev-signing.pub.pem").exists()


def test_production_block_runs_against_local_up_iam(blocks: dict[str, Run], iam_aws: LocalUp) -> None:
    run = blocks["prod"]
    stdout, project, region = run.result(), run.project, run.region
    for path in [*(project / ".chalice").glob("*prod*.json"), project / "build" / "prod" / "packaged.json"]:
        assert "us-east-1" not in path.read_text(), path.name
    config = json.loads((project / ".chalice" / "config.json").read_text())
    signing = config["stages"]["prod"]["environment_variables"]["LOGARCHIVE_SIGNING_KMS_KEY_ID"]
    assert signing.startswith(f"arn:aws:kms:{region}:{ACCOUNT}:key/"), signing  # the key the block made
    pem = (project / "prod-signing.pub.pem").read_text()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----"), pem
    # The packaged template names the code the block uploaded into its artifacts bucket.
    packaged_template = json.loads((project / "build" / "prod" / "packaged.json").read_text())
    code = packaged_template["Resources"]["ArchiveScheduler"]["Properties"]["CodeUri"]
    assert code.startswith(f"s3://logarchive-prod-artifacts-{ACCOUNT}-{region}/"), code
    # describe-stacks printed the outputs that need no Lambda; the scheduler answered its report.
    lines = stdout.strip().splitlines()
    outputs = json.loads("\n".join(lines[lines.index("["):lines.index("]") + 1]))
    keys = {o["OutputKey"]: o["OutputValue"] for o in outputs}
    assert keys["ReplicationRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/logarchive-prod-replication"
    assert keys["WorkQueueUrl"].endswith(f"/{ACCOUNT}/logarchive-prod-work"), keys
    assert "EndpointURL" not in keys  # the API needs Lambda: left out locally
    # The template's alarms, each notifying the stack's topic (made directly: moto's
    # CloudFormation knows no CloudWatch alarm).
    alarms = boto3.client("cloudwatch", region_name=region, endpoint_url=iam_aws.endpoint,
                          **admin_keys(iam_aws)).describe_alarms()["MetricAlarms"]
    expected = {r["Properties"]["AlarmName"] for r in packaged_template["Resources"].values()
                if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(expected) == 7 and {a["AlarmName"] for a in alarms} == expected, alarms
    assert {tuple(a["AlarmActions"]) for a in alarms} == {(keys["AlarmTopicArn"],)}
    report = json.loads(lines[-1])
    assert report["listed"] == 0 and report["scheduled"] == 0
    # It sealed the first digest with the KMS key the block made, and the public key the block
    # wrote from KMS verifies it: the audit of the (empty) archive passes.
    assert report["digest"]["sequence"] == 1, report
    archive = f"logarchive-prod-archive-{ACCOUNT}-{region}"
    audit = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "audit", "--bucket", archive, "--stack", "prod",
         "--public-key-file", "prod-signing.pub.pem", "--expected-owner", ACCOUNT],
        cwd=project, env=run.env, capture_output=True, text=True)
    assert audit.returncode == 0 and "Traceback" not in audit.stderr, audit.stdout + audit.stderr
    assert audit.stdout.startswith("1 digest, 0 archives"), audit.stdout

"""``chalice package`` + ``cfn-lint``: the deployable template of every stage.

Offline by design: ``chalice package`` would ``pip download`` requirements.txt for the
Lambda platform, so the project is packaged from a copy whose requirements.txt is empty
(the template does not depend on it; docs/OPERATIONS.md says how a release is built).
No AWS credentials: ``chalice package`` needs only a region.

app.py must define every function of the deployment (``setup.resources.FUNCTIONS``) with
the decorator shapes the merge template expects (docs/OPERATIONS.md, "What app.py must
keep"), so that every override of the merge template is exercised; the checks run over the
functions, events, queues, roles and routes the template has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.index.indexer import INDEXER_EVENTS
from chalicelib.setup import deployment
from chalicelib.setup.resources import FUNCTIONS, cfn_name

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STAGES = ("dev", "prod")
CRON = "cron(30 * ? * * *)"
FUNCTION_TYPE = "AWS::Serverless::Function"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") or k in ("AWS_DEFAULT_REGION",)}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


def _copy_project(dest: Path, app: Path) -> Path:
    shutil.copy(app, dest / "app.py")
    shutil.copytree(ROOT / "chalicelib", dest / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".chalice").mkdir()
    for f in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(f, dest / ".chalice" / f.name)
    (dest / "requirements.txt").write_text("")  # offline: no pip download
    return dest


def _package(project: Path, stage: str, out: Path, merge: Path | None = None) -> dict[str, Any]:
    cmd = [str(BIN / "chalice"), "package", "--stage", stage]
    if merge:
        cmd += ["--merge-template", str(merge)]
    proc = subprocess.run([*cmd, str(out)], cwd=project, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads((out / "sam.json").read_text())


@pytest.fixture(scope="module", params=STAGES)
def packaged(request, tmp_path_factory) -> dict[str, Any]:
    stage = request.param
    base = tmp_path_factory.mktemp(f"pkg-{stage}")
    (base / "project").mkdir()
    project = _copy_project(base / "project", ROOT / "app.py")
    plain = _package(project, stage, base / "plain")
    present = {k for k, v in plain["Resources"].items() if v["Type"] == FUNCTION_TYPE}
    # An override of a function app.py lacks would become a typeless stub in the template.
    assert sorted({cfn_name(fn) for fn in FUNCTIONS} - present) == []
    template = _package(project, stage, base / "out", ROOT / ".chalice" / f"merge-template-{stage}.json")
    return {"stage": stage, "template": template, "dir": base / "out", "project": project,
            "config": deployment.load_config(ROOT)}


def _resources(t: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def _functions(t: dict[str, Any]) -> dict[str, Any]:
    return _resources(t, FUNCTION_TYPE)


def _cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cfn-lint"), "--format", "parseable", str(path)],
                          capture_output=True, text=True, timeout=180)


def test_deployment_files_are_generated_from_config() -> None:
    assert deployment.sync(ROOT, check=True) == []


def test_sam_template_passes_cfn_lint(packaged) -> None:
    proc = _cfn_lint(packaged["dir"] / "sam.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_infra_template_passes_cfn_lint(stage: str) -> None:
    proc = _cfn_lint(ROOT / ".chalice" / f"infra-{stage}.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_function_is_known_and_configured(packaged) -> None:
    t, stage, config = packaged["template"], packaged["stage"], packaged["config"]
    functions = _functions(t)
    by_cfn = {cfn_name(fn): fn for fn in FUNCTIONS}
    # every handler of app.py is packaged, and nothing else
    assert sorted(functions) == sorted(by_cfn)
    for name, fn in functions.items():
        assert name in by_cfn, f"{name} is not in docs/ARCHITECTURE.md's function list"
        props = fn["Properties"]
        settings = config["lambda_functions"][by_cfn[name]]
        assert props["MemorySize"] == settings["lambda_memory_size"]
        assert props["Timeout"] == settings["lambda_timeout"]
        assert props["FunctionName"] == deployment.stage_resources(config, stage).function_name(by_cfn[name])
        assert props["Tracing"] == "Active"
        policy = deployment.iam.function_policy(deployment.stage_resources(config, stage), by_cfn[name])
        role = t["Resources"][props["Role"]["Fn::GetAtt"][0]]
        assert role["Properties"]["Policies"][0]["PolicyDocument"] == policy


def test_archive_worker_size(packaged) -> None:
    worker = _functions(packaged["template"])["ArchiveWorker"]
    assert (worker["Properties"]["MemorySize"], worker["Properties"]["Timeout"]) == (1769, 900)


def test_schedule_is_half_past_every_hour(packaged) -> None:
    schedules = [(name, ev["Properties"]["Schedule"])
                 for name, fn in _functions(packaged["template"]).items()
                 for ev in fn["Properties"].get("Events", {}).values() if ev["Type"] == "Schedule"]
    assert ("ArchiveScheduler", CRON) in schedules
    assert all(expr == CRON for _, expr in schedules), schedules


def test_sqs_mappings_report_batch_failures_and_queues_have_dlqs(packaged) -> None:
    t = packaged["template"]
    queues = _resources(t, "AWS::SQS::Queue")
    dlqs = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    work_queues = set(queues) - dlqs
    assert {"WorkQueue", "RetrievalQueue"} <= work_queues
    for name in work_queues:
        redrive = queues[name]["Properties"].get("RedrivePolicy")
        assert redrive, f"{name} has no dead-letter queue"
        assert redrive["deadLetterTargetArn"]["Fn::GetAtt"][0] in queues
        assert 1 <= redrive["maxReceiveCount"] <= 10
    for name in dlqs:
        assert "RedrivePolicy" not in queues[name]["Properties"]
    mappings = [(fname, ev["Properties"]) for fname, fn in _functions(t).items()
                for ev in fn["Properties"].get("Events", {}).values() if ev["Type"] == "SQS"]
    for fname, props in mappings:
        assert props.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], fname
        # Chalice names the queue (Fn::Sub of its name); it must be one of the template's.
        name = props["Queue"]["Fn::Sub"].rsplit(":", 1)[-1]
        [queue] = [q for q in work_queues if queues[q]["Properties"]["QueueName"] == name] or [None]
        assert queue, f"{fname} reads queue {name}, which is not a template queue with a dead-letter queue"
        assert queue in t["Resources"][fname]["DependsOn"]
        timeout = t["Resources"][fname]["Properties"]["Timeout"]
        assert queues[queue]["Properties"]["VisibilityTimeout"] >= timeout
        # /tmp must hold a sealed 2 GB object (Lambda's default is 512 MB).
        assert t["Resources"][fname]["Properties"]["EphemeralStorage"]["Size"] >= 2048 + 512
    expected = {"ArchiveWorker", "RetrievalWorker"} & set(_functions(t))
    assert {f for f, _ in mappings} == expected


def test_sqs_workers_concurrency_is_capped_per_stage(packaged) -> None:
    """MaximumConcurrency (docs/SCALING.md) comes from the stage's settings, not a constant."""
    t, stage = packaged["template"], packaged["stage"]
    res = deployment.stage_resources(packaged["config"], stage)
    want = {"ArchiveWorker": res.archive_max_concurrency, "RetrievalWorker": res.retrieval_max_concurrency}
    env = deployment.stage_env(packaged["config"], stage)
    assert want["ArchiveWorker"] == int(env["LOGARCHIVE_ARCHIVE_MAX_CONCURRENCY"])
    assert want["RetrievalWorker"] == int(env["LOGARCHIVE_RETRIEVAL_MAX_CONCURRENCY"])
    got = {fname: ev["Properties"].get("ScalingConfig") for fname, fn in _functions(t).items()
           for ev in fn["Properties"].get("Events", {}).values() if ev["Type"] == "SQS"}
    assert got == {f: {"MaximumConcurrency": n} for f, n in want.items() if f in got}
    assert set(got) == {"ArchiveWorker", "RetrievalWorker"} & set(_functions(t))


def test_dead_letter_queues_have_alarms(packaged) -> None:
    t = packaged["template"]
    # Queue alarms name their queue by GetAtt; the metric alarms (hosts, seals, runs) by strings.
    alarmed = {d["Value"]["Fn::GetAtt"][0]
               for a in _resources(t, "AWS::CloudWatch::Alarm").values()
               for d in a["Properties"].get("Dimensions", [])
               if isinstance(d.get("Value"), dict) and "Fn::GetAtt" in d["Value"]}
    queues = _resources(t, "AWS::SQS::Queue")
    dlqs = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    assert dlqs and dlqs <= alarmed


def _statements(t: dict[str, Any]):
    for name, role in _resources(t, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                yield name, st
    for name, policy in _resources(t, "AWS::IAM::Policy").items():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield name, st


def test_no_wildcard_actions_and_no_open_resources(packaged) -> None:
    statements = list(_statements(packaged["template"]))
    assert statements
    for role, st in statements:
        assert "NotAction" not in st and "NotResource" not in st, (role, st)
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in actions), (role, st)
        resources = st.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        if "*" in resources:  # only X-Ray, which has no resource-level permissions
            assert all(a.startswith("xray:") for a in actions), (role, st)


def test_every_route_but_health_uses_the_iam_authorizer(packaged) -> None:
    t = packaged["template"]
    body = t["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    iam_schemes = {name for name, d in body.get("securityDefinitions", {}).items()
                   if d.get("x-amazon-apigateway-authtype") == "awsSigv4"}
    routes = [(path, method, spec) for path, methods in body["paths"].items()
              for method, spec in methods.items() if method != "options"]  # CORS preflight
    assert ("/health", "get") in {(p, m) for p, m, _ in routes}
    for path, method, spec in routes:
        schemes = {name for entry in spec.get("security", []) for name in entry}
        if path == "/health":
            assert not schemes, "the health check must stay open"
        else:
            assert schemes and schemes <= iam_schemes, f"{method.upper()} {path} is not behind IAM auth"


def test_indexer_rule_is_scoped_to_the_archive_bucket(packaged) -> None:
    t = packaged["template"]
    indexer = _functions(t)["IndexArchive"]
    [event] = indexer["Properties"]["Events"].values()
    assert event["Type"] in ("CloudWatchEvent", "EventBridgeRule")
    pattern = event["Properties"]["Pattern"]
    archive = deployment.stage_resources(packaged["config"], packaged["stage"]).archive_bucket
    assert pattern["source"] == ["aws.s3"]
    # What app.py subscribes to: object changes for the index, completed restores for jobs.
    assert sorted(pattern["detail-type"]) == sorted(INDEXER_EVENTS) == [
        "Object Created", "Object Deleted", "Object Restore Completed", "Object Storage Class Changed"]
    assert pattern["detail"]["bucket"]["name"] == [archive]
    # Archive keys only (Docker's and Kubernetes'): digests (_logarchive/) are never indexed.
    stack = deployment.stage_resources(packaged["config"], packaged["stage"]).stack
    assert pattern["detail"]["object"]["key"] == [{"prefix": f"{stack}/shareable/"},
                                                  {"prefix": f"_k8s/{stack}/"}]


PREFLIGHT = """
import sys
from chalice.cli.factory import CLIFactory
from chalice.deploy.validate import validate_configuration
config = CLIFactory(sys.argv[1]).create_config_obj(chalice_stage_name=sys.argv[2])
validate_configuration(config)
for name in ("archive_worker", "api_handler"):
    print(name, config.scope(sys.argv[2], name).iam_policy_file)
"""


def test_chalice_deploy_preflight(packaged) -> None:
    """What ``chalice deploy`` validates before it calls AWS, for the same project and stage."""
    proc = subprocess.run([sys.executable, "-c", PREFLIGHT, str(packaged["project"]), packaged["stage"]],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stage = packaged["stage"]
    assert f"archive_worker policy-{stage}-archive_worker.json" in proc.stdout


# Chalice's own naming (chalice.deploy.appgraph, what `chalice deploy` creates): every
# function's name, role and policy file, read from the models Chalice builds for the stage.
DEPLOY_NAMES = """
import json, sys
from chalice.cli.factory import CLIFactory
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder
config = CLIFactory(sys.argv[1]).create_config_obj(chalice_stage_name=sys.argv[2])
graph = ApplicationGraphBuilder().build(config, sys.argv[2])
print(json.dumps({r.resource_name: {"function": r.function_name, "policy": r.role.policy.filename}
                  for r in DependencyBuilder().build_dependencies(graph)
                  if isinstance(r, models.LambdaFunction)}))
"""


def _log_grant(policy: dict[str, Any]) -> list[str]:
    """The log groups a policy lets its function write to, without the ``:*`` stream suffix."""
    groups = set()
    for st in policy["Statement"]:
        if "logs:PutLogEvents" in st["Action"]:
            for arn in st["Resource"]:
                groups.add(arn.removesuffix(":*").split(":log-group:", 1)[1])
    return sorted(groups)


def test_log_grants_match_the_function_names_chalice_deploy_creates(packaged) -> None:
    proc = subprocess.run([sys.executable, "-c", DEPLOY_NAMES, str(packaged["project"]), packaged["stage"]],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    deployed = json.loads(proc.stdout)
    assert sorted(deployed) == sorted(FUNCTIONS)
    for fn, names in deployed.items():
        policy = json.loads(Path(packaged["project"], names["policy"]).read_text())
        assert _log_grant(policy) == [f"/aws/lambda/{names['function']}"], fn


def test_log_grants_match_the_function_names_chalice_package_creates(packaged) -> None:
    t = packaged["template"]
    for name, fn in _functions(t).items():
        # Without a FunctionName, CloudFormation would make one up and no grant could match it.
        function_name = fn["Properties"].get("FunctionName")
        assert function_name, f"{name} has no FunctionName"
        role = t["Resources"][fn["Properties"]["Role"]["Fn::GetAtt"][0]]
        policy = role["Properties"]["Policies"][0]["PolicyDocument"]
        assert _log_grant(policy) == [f"/aws/lambda/{function_name}"], name

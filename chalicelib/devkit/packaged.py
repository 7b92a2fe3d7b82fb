"""The deployment package run as Lambda runs it, against the embedded AWS.

``build_task_root`` builds a stage's ``deployment.zip`` as ``make package`` does
(``setup/package.py``) and unzips it; ``stage_on_local_aws`` creates the stage's resources on
the embedded AWS under the names of ``.chalice/config.json`` (its infra template through
CloudFormation, the buckets, the master-key parameter); ``PackagedLambdas`` invokes a handler
of the unzipped package in a clean interpreter (``-I -S``: only the package and the standard
library on the path; the stage's environment plus what the Lambda runtime sets), one process
per invocation, so every call is a cold start. The event builders give the shapes AWS sends.
Used by ``tests/test_deployed_package.py`` and ``bench/bench_coldstart.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ..keyring import Keyring, MasterKey
from ..setup import deployment, package
from ..setup.resources import APP_NAME, StageResources, deployed_rule_name
from . import local_aws

ACCOUNT = "123456789012"  # the embedded AWS's account
REGION = local_aws.LOCAL_REGION

# Lambda's Python bootstrap, reduced: the task root first, then the interpreter's own path (the
# standard library alone under -I -S). The result goes to a file: Powertools logs (and EMF) go
# to stdout. It also reports the modules loaded from anywhere else, and its own timings.
BOOTSTRAP = r"""
import json, os, sys, time, uuid
started, started_cpu = time.perf_counter(), time.process_time()
stdlib = list(sys.path)
task = os.environ["LAMBDA_TASK_ROOT"]
sys.path.insert(0, task)
function, memory, timeout, result_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


class LambdaContext:
    def __init__(self):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        region = os.environ["AWS_REGION"]
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


event = json.load(sys.stdin)
import app
imported, imported_cpu = time.perf_counter(), time.process_time()
handler = app.app if function == "api_handler" else getattr(app, function)
result = handler(event, LambdaContext())
done, done_cpu = time.perf_counter(), time.process_time()
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith(tuple([task, *stdlib]))})
with open(result_path, "w") as f:
    json.dump({"result": result, "outside": outside, "modules": len(sys.modules),
               "import_s": imported - started, "import_cpu_s": imported_cpu - started_cpu,
               "invoke_s": done - imported, "invoke_cpu_s": done_cpu - imported_cpu}, f)
"""


def wheel_cache() -> Path:
    """Where Lambda's wheels are kept between runs (``$LOGARCHIVE_WHEELHOUSE_CACHE``)."""
    return Path(os.environ.get("LOGARCHIVE_WHEELHOUSE_CACHE") or Path.home() / ".cache" / "logarchive")


def build_task_root(project_root: Path, stage: str, base: Path) -> Path:
    """``make package``'s deployment.zip of ``stage``, built from a copy of the project, unzipped
    into ``base/task``."""
    project = base / "project"
    (project / ".chalice").mkdir(parents=True)
    for name in ("app.py", "requirements.txt"):
        shutil.copy(project_root / name, project / name)
    for f in (project_root / ".chalice").glob("*.json"):
        shutil.copy(f, project / ".chalice" / f.name)
    shutil.copytree(project_root / "chalicelib", project / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = package.wheelhouse(project_root / "requirements.txt", wheel_cache())
    zip_path = package.build(project, stage, base / "out", wheels=wheels,
                             merge_template=project / ".chalice" / f"merge-template-{stage}.json")
    task = base / "task"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(task)
    return task


@dataclass
class LocalStage:
    res: StageResources
    config: dict[str, Any]
    env: dict[str, str]
    keyring: Keyring
    queues: dict[str, str]
    endpoint: str


def stage_on_local_aws(project_root: Path, stage: str, endpoint: str) -> LocalStage:
    """The stage's resources on the embedded AWS (already ``use_endpoint``-ed), named as in its
    config.json: the infra template as a CloudFormation stack (queues, tables, alarms), the
    buckets (versioned but staging) and a master key in the stage's key parameter or secret."""
    config = deployment.load_config(project_root)
    res = deployment.stage_resources(config, stage)
    boto3.client("cloudformation").create_stack(
        StackName=f"logarchive-{stage}-infra", Capabilities=["CAPABILITY_NAMED_IAM"],
        TemplateBody=(project_root / ".chalice" / f"infra-{stage}.json").read_text())
    s3 = boto3.client("s3")
    for bucket in {res.staging_bucket, res.archive_bucket, res.results_bucket, *res.replicate_to}:
        s3.create_bucket(Bucket=bucket)
        if bucket != res.staging_bucket:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    master = MasterKey.generate()
    if res.keys_parameter:
        boto3.client("ssm").put_parameter(Name=res.keys_parameter, Type="SecureString",
                                          Value=master.to_base64())
    if res.keys_secret:
        boto3.client("secretsmanager").create_secret(Name=res.keys_secret, SecretString=master.to_base64())
    sqs = boto3.client("sqs")
    queues = {q: sqs.get_queue_url(QueueName=q)["QueueUrl"]
              for q in (res.work_queue.name, res.retrieval_queue.name)}
    env = {
        **deployment.stage_env(config, stage),
        # The embedded AWS's queue URLs (its account), in place of the stage's.
        "LOGARCHIVE_WORK_QUEUE_URL": queues[res.work_queue.name],
        "LOGARCHIVE_RETRIEVAL_QUEUE_URL": queues[res.retrieval_queue.name],
    }
    return LocalStage(res, config, env, Keyring([master]), queues, endpoint)


@dataclass
class Invocation:
    function: str
    payload: Any
    stdout: str
    stderr: str
    timings: dict[str, float]


@dataclass
class PackagedLambdas:
    """Invokes the unzipped package's handlers; also stands in for ``chalice.test.Client``'s
    ``lambda_`` where ``local_stack.drain`` plays the SQS event source."""

    task: Path
    stage: LocalStage
    tmp: Path
    # Extra interpreter flags (the benchmark's -B and -v).
    flags: tuple[str, ...] = ()
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def lambda_(self) -> PackagedLambdas:
        return self

    def env(self, function: str) -> dict[str, str]:
        settings = self.stage.config["lambda_functions"][function]
        return {
            **self.stage.env,
            # What the Lambda runtime sets, and credentials for the embedded AWS.
            "AWS_LAMBDA_FUNCTION_NAME": self.stage.res.function_name(function),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings["lambda_memory_size"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{package.this_runtime()}",
            "AWS_REGION": REGION,
            "LAMBDA_TASK_ROOT": str(self.task),
            "_HANDLER": "app.app" if function == "api_handler" else f"app.{function}",
            "_X_AMZN_TRACE_ID": f"Root=1-5759e988-{uuid.uuid4().hex[:24]};Parent=53995c3f42cd8ad8;Sampled=1",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": "/usr/bin:/bin",
            "AWS_ENDPOINT_URL": self.stage.endpoint,
            **local_aws.LOCAL_CREDENTIALS,
        }

    def run(self, function: str, event: dict[str, Any]) -> Invocation:
        """One cold invocation; raises with the interpreter's last lines if it fails."""
        settings = self.stage.config["lambda_functions"][function]
        result_path = self.tmp / f"result-{uuid.uuid4().hex}.json"
        proc = subprocess.run(
            [sys.executable, "-I", "-S", *self.flags, "-c", BOOTSTRAP, function,
             str(settings["lambda_memory_size"]), str(settings["lambda_timeout"]), str(result_path)],
            input=json.dumps(event), cwd=self.task, env=self.env(function), capture_output=True, text=True,
            timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{function} failed: {proc.stderr[-3000:]}")
        out = json.loads(result_path.read_text())
        if out["outside"]:
            raise RuntimeError(f"{function} imported modules from outside the package: {out['outside']}")
        timings = {k: v for k, v in out.items() if k.endswith("_s")}
        invocation = Invocation(function, out["result"], proc.stdout, proc.stderr, timings)
        self.invocations.append(invocation)
        return invocation

    def invoke(self, function: str, event: dict[str, Any]) -> Invocation:
        return self.run(function, event)


def scheduled_event(rule: str) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": "2026-01-01T00:30:00Z", "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"], "detail": {}}


def object_created_event(bucket: str, key: str, head: dict[str, Any]) -> dict[str, Any]:
    """The archive bucket's S3 "Object Created" event as EventBridge delivers it."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": ACCOUNT, "time": "2026-01-01T00:31:00Z", "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": head["ContentLength"], "etag": head["ETag"].strip('"'),
                              "version-id": head["VersionId"], "sequencer": "0065A1B2C3D4E5F601"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": ACCOUNT, "source-ip-address": "192.0.2.1",
                   "reason": "CompleteMultipartUpload"},
    }


def api_event(method: str, resource: str, path: str, *, body: dict | None = None,
              path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """A REST API proxy event (payload 1.0) of a SigV4-signed request that API Gateway let through."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json",
               "X-Amz-Date": "20260101T003200Z", "X-Forwarded-Proto": "https"}
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters, "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3", "resourcePath": resource, "httpMethod": method, "path": f"/api{path}",
            "stage": "api", "accountId": ACCOUNT, "apiId": "abc123", "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()), "requestTimeEpoch": 1767227520000,
            "identity": {"accountId": ACCOUNT, "caller": "AIDAEXAMPLE", "accessKey": "AKIAEXAMPLE",
                         "userArn": f"arn:aws:iam::{ACCOUNT}:user/operator", "user": "AIDAEXAMPLE",
                         "sourceIp": "192.0.2.1", "userAgent": "logarchive"},
        },
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


@dataclass
class Flow:
    """What each handler answered in ``run_every_handler``."""

    schedule_report: dict[str, Any]
    archive_key: str
    retrieval_created: dict[str, Any]
    retrieval_status: dict[str, Any]


def run_every_handler(lambdas: PackagedLambdas, question: dict[str, Any]) -> Flow:
    """Objects staged beforehand go the whole way, each handler invoked on what AWS would send:
    the schedule, the work queue's batches, the archive's "Object Created", then the retrieval
    ``question`` through the API, the retrieval queue's batches and the job's status."""
    from . import local_stack

    stage, s3 = lambdas.stage, boto3.client("s3")
    res = stage.res
    rule = deployed_rule_name(APP_NAME, res.stage, "archive_scheduler")
    report = lambdas.invoke("archive_scheduler", scheduled_event(rule)).payload
    local_stack.drain(lambdas, stage.queues[res.work_queue.name], function="archive_worker")
    listed = s3.list_objects_v2(Bucket=res.archive_bucket, Prefix=res.archive_prefix).get("Contents", [])
    if len(listed) != 1:
        raise RuntimeError(f"expected one archive in {res.archive_bucket}, found {len(listed)}")
    key = listed[0]["Key"]
    head = s3.head_object(Bucket=res.archive_bucket, Key=key)
    lambdas.invoke("index_archive", object_created_event(res.archive_bucket, key, head))
    created = lambdas.invoke("api_handler",
                             api_event("POST", "/retrievals", "/retrievals", body=question)).payload
    job_id = json.loads(created["body"]).get("id", "") if created.get("statusCode") == 202 else ""
    local_stack.drain(lambdas, stage.queues[res.retrieval_queue.name])
    status = lambdas.invoke("api_handler", api_event("GET", "/retrievals/{job_id}", f"/retrievals/{job_id}",
                                                     path_parameters={"job_id": job_id})).payload
    return Flow(report, key, created, status)

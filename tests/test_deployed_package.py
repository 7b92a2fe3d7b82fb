"""The deployment package as Lambda runs it: the real deployment.zip, not the source tree.

``make package``'s build (``chalicelib/setup/package.py``: ``chalice package`` with
requirements.txt, then bytecode) is unzipped, and each handler runs in a clean interpreter
(``-I -S``: no site-packages, no environment of ours; only the package and the standard
library on the path) with the dev stage's environment, against the embedded AWS, on the event
shapes AWS sends: an EventBridge scheduled event, SQS batches, an S3 "Object Created" event
through EventBridge and API Gateway proxy events. A runtime dependency missing from
requirements.txt, a dev-only import or a wheel of the wrong platform fails here.

pip needs PyPI once: the wheels are cached in ``~/.cache/logarchive`` (or
``$LOGARCHIVE_WHEELHOUSE_CACHE``) between runs.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from archiver_support import archived, docker_lines, stage

from chalicelib import layout
from chalicelib.devkit import local_aws, local_stack
from chalicelib.keyring import Keyring, MasterKey
from chalicelib.setup import deployment, package

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
ACCOUNT = "123456789012"  # the embedded AWS's account
REGION = local_aws.LOCAL_REGION

# Lambda's Python bootstrap, reduced: the task root first, then the interpreter's own path
# (the standard library alone under -I -S). One invocation per process: every call is a cold
# start. The result goes to a file, since Powertools logs (and EMF) go to stdout.
BOOTSTRAP = r"""
import json, os, sys, time, uuid
stdlib = list(sys.path)
task = os.environ["LAMBDA_TASK_ROOT"]
sys.path.insert(0, task)
function, memory, timeout, result_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


class LambdaContext:
    def __init__(self):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{os.environ['AWS_REGION']}:123456789012:function:{self.function_name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


import app
handler = app.app if function == "api_handler" else getattr(app, function)
result = handler(json.load(sys.stdin), LambdaContext())
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith(tuple([task, *stdlib]))})
with open(result_path, "w") as f:
    json.dump({"result": result, "outside": outside}, f)
"""


def _wheel_cache() -> Path:
    return Path(os.environ.get("LOGARCHIVE_WHEELHOUSE_CACHE") or Path.home() / ".cache" / "logarchive")


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    """The dev stage's deployment.zip, built as ``make package`` builds it, unzipped."""
    base = tmp_path_factory.mktemp("deployed")
    project = base / "project"
    project.mkdir()
    for name in ("app.py", "requirements.txt"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    (project / ".chalice").mkdir()
    for f in (ROOT / ".chalice").glob("*.json"):
        (project / ".chalice" / f.name).write_bytes(f.read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "chalicelib"), str(project)], check=True)
    wheels = package.wheelhouse(ROOT / "requirements.txt", _wheel_cache())
    zip_path = package.build(project, STAGE, base / "out", wheels=wheels,
                             merge_template=project / ".chalice" / f"merge-template-{STAGE}.json")
    task = base / "task"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(task)
    return task


@pytest.fixture
def dev_stack(aws_endpoint: str) -> SimpleNamespace:
    """The dev stage's resources on the embedded AWS: infra-dev.json as CloudFormation (queues,
    tables, alarms), the three buckets and the master-key parameter, named as in config.json."""
    config = deployment.load_config(ROOT)
    res = deployment.stage_resources(config, STAGE)
    boto3.client("cloudformation").create_stack(
        StackName=f"logarchive-{STAGE}-infra", Capabilities=["CAPABILITY_NAMED_IAM"],
        TemplateBody=(ROOT / ".chalice" / f"infra-{STAGE}.json").read_text())
    s3 = boto3.client("s3")
    for bucket in {res.staging_bucket, res.archive_bucket, res.results_bucket, *res.replicate_to}:
        s3.create_bucket(Bucket=bucket)
        if bucket != res.staging_bucket:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    master = MasterKey.generate()
    boto3.client("ssm").put_parameter(Name=res.keys_parameter, Type="SecureString", Value=master.to_base64())
    sqs = boto3.client("sqs")
    queues = {q: sqs.get_queue_url(QueueName=q)["QueueUrl"] for q in (res.work_queue.name, res.retrieval_queue.name)}
    env = {
        **deployment.stage_env(config, STAGE),
        # The embedded AWS's queue URLs (its account), in place of the stage's.
        "LOGARCHIVE_WORK_QUEUE_URL": queues[res.work_queue.name],
        "LOGARCHIVE_RETRIEVAL_QUEUE_URL": queues[res.retrieval_queue.name],
    }
    return SimpleNamespace(res=res, config=config, env=env, keyring=Keyring([master]), queues=queues,
                           endpoint=aws_endpoint)


class PackagedLambdas:
    """Invokes the unzipped package's handlers; also stands in for ``chalice.test.Client``'s
    ``lambda_`` where ``local_stack.drain`` plays the SQS event source."""

    def __init__(self, task: Path, stack: SimpleNamespace, tmp: Path) -> None:
        self.task, self.stack, self.tmp = task, stack, tmp
        self.lambda_ = self
        self.outputs: list[str] = []

    def env(self, function: str) -> dict[str, str]:
        settings = self.stack.config["lambda_functions"][function]
        return {
            **self.stack.env,
            # What the Lambda runtime sets, and credentials for the embedded AWS.
            "AWS_LAMBDA_FUNCTION_NAME": self.stack.res.function_name(function),
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
            "AWS_ENDPOINT_URL": self.stack.endpoint,
            **local_aws.LOCAL_CREDENTIALS,
        }

    def invoke(self, function: str, event: dict[str, Any]) -> SimpleNamespace:
        settings = self.stack.config["lambda_functions"][function]
        result_path = self.tmp / f"result-{uuid.uuid4().hex}.json"
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", BOOTSTRAP, function, str(settings["lambda_memory_size"]),
             str(settings["lambda_timeout"]), str(result_path)],
            input=json.dumps(event), cwd=self.task, env=self.env(function), capture_output=True, text=True,
            timeout=300)
        self.outputs.append(proc.stdout)
        assert proc.returncode == 0, f"{function}: {proc.stderr[-3000:]}"
        out = json.loads(result_path.read_text())
        assert out["outside"] == [], f"{function} imported modules from outside the package: {out['outside']}"
        return SimpleNamespace(payload=out["result"])


def scheduled_event(rule: str) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": "2026-01-01T00:30:00Z", "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"], "detail": {}}


def object_created_event(bucket: str, key: str, head: dict[str, Any]) -> dict[str, Any]:
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


def test_every_handler_runs_from_the_deployment_package(task_root, dev_stack, tmp_path) -> None:
    res, s3 = dev_stack.res, boto3.client("s3")
    lambdas = PackagedLambdas(task_root, dev_stack, tmp_path)
    data = docker_lines(50)
    cid = "c0" * 32
    staged = stage(s3, res.staging_bucket, "web", data, cid=cid,
                   key=f"{res.staging_prefix}{res.stack}/host-1/{cid}/00000001-0000000000000000.log",
                   **{"logarchive-stack": res.stack})

    report = lambdas.invoke("archive_scheduler", scheduled_event(res.rule_name("archive_scheduler"))).payload
    assert (report["listed"], report["scheduled"]) == (1, 1), report

    local_stack.drain(lambdas, dev_stack.queues[res.work_queue.name], function="archive_worker")
    for bucket in (res.archive_bucket, *res.replicate_to):
        assert list(archived(s3, bucket, dev_stack.keyring, stack=res.stack).values()) == [staged.data], lambdas.outputs[-1][-3000:]
    assert s3.list_objects_v2(Bucket=res.staging_bucket, Prefix=res.staging_prefix)["KeyCount"] == 0
    [key] = archived(s3, res.archive_bucket, dev_stack.keyring, stack=res.stack)

    head = s3.head_object(Bucket=res.archive_bucket, Key=key)
    lambdas.invoke("index_archive", object_created_event(res.archive_bucket, key, head))
    items = boto3.client("dynamodb").scan(TableName=res.index_table)["Items"]
    heads = [i for i in items if i["sk"]["S"] == "head"]
    assert [h["key"]["S"] for h in heads] == [key]

    parsed = layout.parse(key)
    question = {"app_id": parsed.resource_id, "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T13:00:00Z"}
    created = lambdas.invoke("api_handler", api_event("POST", "/retrievals", "/retrievals", body=question)).payload
    assert created["statusCode"] == 202, created
    job_id = json.loads(created["body"])["id"]
    local_stack.drain(lambdas, dev_stack.queues[res.retrieval_queue.name])
    answer = lambdas.invoke("api_handler", api_event("GET", "/retrievals/{job_id}", f"/retrievals/{job_id}",
                                                     path_parameters={"job_id": job_id})).payload
    assert answer["statusCode"] == 200, answer
    job = json.loads(answer["body"])
    assert job["status"] == "succeeded", job
    [result] = job["results"]
    with urllib.request.urlopen(result["url"], timeout=30) as resp:
        assert gzip.decompress(resp.read()) == data
    # The Lambdas published their metrics (EMF on stdout) as deployed.
    assert any('"ObjectsArchived"' in out for out in lambdas.outputs)

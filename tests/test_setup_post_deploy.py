"""``logarchive setup post-deploy``: after ``chalice deploy``, against the local AWS.

moto 5.2 stores ``EphemeralStorage`` given at creation but ignores it in
UpdateFunctionConfiguration, so that call is observed with a botocore event hook on the
real client the command uses.
"""

from __future__ import annotations

import io
import json
import zipfile

import boto3

from chalicelib import aws
from chalicelib.cli import main

TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def deploy_like_chalice(stage: str, ephemeral_mb: int = 512) -> dict[str, str]:
    """Functions and SQS mappings as ``chalice deploy`` leaves them (no response types)."""
    role = boto3.client("iam").create_role(RoleName=f"r-{stage}", AssumeRolePolicyDocument=json.dumps(TRUST))
    lam, sqs = boto3.client("lambda"), boto3.client("sqs")
    uuids = {}
    for fn in ("archive_worker", "retrieval_worker"):
        name = f"logarchive-{stage}-{fn}"
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role["Role"]["Arn"],
                            Handler="app.handler", Code={"ZipFile": _zip()},
                            EphemeralStorage={"Size": ephemeral_mb})
        url = sqs.create_queue(QueueName=f"{name}-q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        uuids[fn] = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1)["UUID"]
    return uuids


def test_raises_worker_tmp_only_when_smaller(aws_endpoint, capsys) -> None:
    deploy_like_chalice("dev")
    updates: list[dict] = []
    aws.client("lambda").meta.events.register(
        "before-parameter-build.lambda.UpdateFunctionConfiguration",
        lambda params, **_: updates.append(dict(params)))
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert sorted(u["FunctionName"] for u in updates) == ["logarchive-dev-archive_worker",
                                                         "logarchive-dev-retrieval_worker"]
    assert all(u["EphemeralStorage"] == {"Size": 3072} for u in updates)
    assert "/tmp raised to 3072 MB" in capsys.readouterr().out


def test_leaves_a_large_enough_tmp_alone(aws_endpoint, capsys) -> None:
    deploy_like_chalice("dev", ephemeral_mb=4096)
    updates: list[dict] = []
    aws.client("lambda").meta.events.register(
        "before-parameter-build.lambda.UpdateFunctionConfiguration",
        lambda params, **_: updates.append(dict(params)))
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert updates == []


def test_enables_report_batch_item_failures_idempotently(aws_endpoint, capsys) -> None:
    uuids = deploy_like_chalice("dev")
    lam = boto3.client("lambda")
    assert not lam.get_event_source_mapping(UUID=uuids["archive_worker"]).get("FunctionResponseTypes")
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert capsys.readouterr().out.count("ReportBatchItemFailures enabled") == 2
    for uuid in uuids.values():
        assert lam.get_event_source_mapping(UUID=uuid)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert capsys.readouterr().out.count("already enabled") == 2


def test_fails_when_a_function_has_no_queue(aws_endpoint, capsys) -> None:
    deploy_like_chalice("dev")
    assert main(["setup", "post-deploy", "--stage", "prod"]) == 1
    assert "logarchive-prod-archive_worker has no SQS event source" in capsys.readouterr().err

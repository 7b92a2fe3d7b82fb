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
from chalicelib.setup.resources import deployed_function_name

TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def deploy_like_chalice(stage: str, ephemeral_mb: int = 512) -> dict[str, str]:
    """Functions and SQS mappings as ``chalice deploy`` leaves them (no response types), and
    its REST API (``rest_api``: its id)."""
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
    # the REST API, named after the app, its routes invoking the stage's API function
    apigw = boto3.client("apigateway")
    api = apigw.create_rest_api(name="logarchive")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    health = apigw.create_resource(restApiId=api, parentId=root, pathPart="health")["id"]
    apigw.put_method(restApiId=api, resourceId=health, httpMethod="GET", authorizationType="NONE")
    fn_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{deployed_function_name('logarchive', stage, 'api_handler')}"
    apigw.put_integration(
        restApiId=api, resourceId=health, httpMethod="GET", type="AWS_PROXY", integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{fn_arn}/invocations")
    apigw.create_deployment(restApiId=api, stageName="api")
    uuids["rest_api"] = api
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
    for uuid in (uuids["archive_worker"], uuids["retrieval_worker"]):
        assert lam.get_event_source_mapping(UUID=uuid)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert capsys.readouterr().out.count("already enabled") == 2


def test_fails_when_a_function_has_no_queue(aws_endpoint, capsys) -> None:
    deploy_like_chalice("dev")
    assert main(["setup", "post-deploy", "--stage", "prod"]) == 1
    assert "logarchive-prod-archive_worker has no SQS event source" in capsys.readouterr().err


def test_puts_the_apis_gateway_responses_and_redeploys(aws_endpoint, capsys) -> None:
    """`chalice deploy` makes no GatewayResponses: API Gateway's own errors get the API's one
    error shape from post-deploy, as a packaged stage gets them from its template."""
    api = deploy_like_chalice("dev")["rest_api"]
    apigw = boto3.client("apigateway")
    before = len(apigw.get_deployments(restApiId=api)["items"])
    assert main(["setup", "post-deploy", "--stage", "dev"]) == 0
    assert f"rest api {api}: gateway responses DEFAULT_4XX, DEFAULT_5XX" in capsys.readouterr().out
    put = {r["responseType"]: r for r in apigw.get_gateway_responses(restApiId=api)["items"]
           if r.get("responseTemplates")}
    assert set(put) >= {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "UNSUPPORTED_MEDIA_TYPE"}
    template = put["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"]
    assert json.loads(template)["error"]["code"] == "Forbidden"
    assert put["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "403"
    assert len(apigw.get_deployments(restApiId=api)["items"]) == before + 1  # in effect on the stage

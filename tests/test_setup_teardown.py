"""``logarchive setup teardown``: what a failed ``chalice deploy`` left, against the embedded AWS.

The leftovers are created with boto3 the way ``chalice deploy`` creates them (names, the
``aws-chalice`` tag, roles with inline policies, SQS mappings, rules targeting the functions,
a REST API named after the app integrating ``<app>-<stage>``), next to another stage deployed
the same way, a CloudFormation stack that owns a function and a role under the stage's names,
and the stage's buckets, table, queues, secret and parameter, which must all survive.
"""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from retrieval_helpers import run_cli

ACCOUNT, REGION = "123456789012", "us-east-1"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
SQS_FUNCTIONS = {"archive_worker": "work", "retrieval_worker": "retrieval"}
RULE_FUNCTIONS = ("archive_scheduler", "index_archive")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "app = None\n")
    return buf.getvalue()


def function_name(stage: str, fn: str) -> str:
    return f"logarchive-{stage}" if fn == "api_handler" else f"logarchive-{stage}-{fn}"


def chalice_deploy(stage: str, functions: tuple[str, ...]) -> None:
    """What ``chalice deploy --stage <stage>`` creates for these of the app's functions."""
    iam, lam, sqs, events = (boto3.client(s) for s in ("iam", "lambda", "sqs", "events"))
    for fn in functions:
        role = f"logarchive-{stage}-{fn}"
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents",
                                                    "Resource": "*"}]}))
        name = function_name(stage, fn)
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=arn, Handler=f"app.{fn}",
                            Code={"ZipFile": _zip()},
                            Tags={"aws-chalice": f"version=1.34.0:stage={stage}:app=logarchive"})
        function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if fn in SQS_FUNCTIONS:
            url = sqs.create_queue(QueueName=f"logarchive-{stage}-{SQS_FUNCTIONS[fn]}")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, BatchSize=10)
        if fn in RULE_FUNCTIONS:
            rule = f"logarchive-{stage}-{fn}-event"
            if fn == "archive_scheduler":
                events.put_rule(Name=rule, ScheduleExpression="cron(30 * ? * * *)")
            else:
                events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"]}))
            events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": function_arn}])
        if fn == "api_handler":
            apigw = boto3.client("apigateway")
            api = apigw.create_rest_api(name="logarchive")["id"]
            root = apigw.get_resources(restApiId=api)["items"][0]["id"]
            health = apigw.create_resource(restApiId=api, parentId=root, pathPart="health")["id"]
            apigw.put_method(restApiId=api, resourceId=health, httpMethod="GET", authorizationType="NONE")
            apigw.put_integration(
                restApiId=api, resourceId=health, httpMethod="GET", type="AWS_PROXY", integrationHttpMethod="POST",
                uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations")
            apigw.create_deployment(restApiId=api, stageName="api")


def cloudformation_owned(stage: str, fn: str) -> None:
    """A stack holding a role and a function under the names chalice deploy would use."""
    role, name = f"logarchive-{stage}-{fn}", function_name(stage, fn)
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": role,
                                                          "AssumeRolePolicyDocument": json.loads(TRUST)}},
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": name, "Runtime": "python3.11", "Handler": "app.app",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Code": {"ZipFile": "app = None\n"},
            "Tags": [{"Key": "aws-chalice", "Value": f"version=1.34.0:stage={stage}:app=logarchive"}]}},
    }}
    boto3.client("cloudformation").create_stack(StackName=f"owned-{stage}", TemplateBody=json.dumps(template),
                                                Capabilities=["CAPABILITY_NAMED_IAM"])


def stage_data(stage: str) -> None:
    """What teardown must never touch: buckets, tables, secrets, parameters."""
    boto3.client("s3").create_bucket(Bucket=f"logarchive-{stage}-archive")
    boto3.client("dynamodb").create_table(
        TableName=f"logarchive-{stage}-index", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    boto3.client("secretsmanager").create_secret(Name=f"logarchive/{stage}/master-keys", SecretString="k")
    boto3.client("ssm").put_parameter(Name=f"/logarchive/{stage}/master-keys", Type="SecureString", Value="k")


def inventory() -> dict[str, set[str]]:
    lam, iam, events, apigw = (boto3.client(s) for s in ("lambda", "iam", "events", "apigateway"))
    return {
        "functions": {f["FunctionName"] for f in lam.list_functions()["Functions"]},
        "roles": {r["RoleName"] for r in iam.list_roles()["Roles"]},
        "rules": {r["Name"] for r in events.list_rules()["Rules"]},
        "mappings": {m["FunctionArn"].rsplit(":", 1)[-1] for m in lam.list_event_source_mappings()["EventSourceMappings"]},
        "apis": {i["id"] for i in apigw.get_rest_apis()["items"]},
        "buckets": {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]},
        "tables": set(boto3.client("dynamodb").list_tables()["TableNames"]),
        "queues": set(boto3.client("sqs").list_queues().get("QueueUrls", [])),
        "secrets": {s["Name"] for s in boto3.client("secretsmanager").list_secrets()["SecretList"]},
        "parameters": {p["Name"] for p in boto3.client("ssm").describe_parameters()["Parameters"]},
    }


ALL = ("archive_scheduler", "archive_worker", "index_archive", "retrieval_worker", "api_handler")


@pytest.fixture
def leftovers(aws_endpoint):
    """dev: a failed deploy (all but index_archive, whose names a CloudFormation stack holds);
    prod: a complete deploy; both stages' data."""
    chalice_deploy("dev", tuple(fn for fn in ALL if fn != "index_archive"))
    cloudformation_owned("dev", "index_archive")
    chalice_deploy("prod", ALL)
    for stage in ("dev", "prod"):
        stage_data(stage)
    return aws_endpoint


def test_dry_run_lists_the_stage_in_removal_order_and_removes_nothing(leftovers, capsys) -> None:
    before = inventory()
    code, out, err = run_cli(["setup", "teardown", "--stage", "dev", "--dry-run"], capsys)
    assert (code, err) == (0, "")
    listed = [(line[2:22].strip(), line[23:].split("  (")[0]) for line in out.splitlines() if line.startswith("  ")]
    kinds = [kind for kind, _ in listed]
    order = ["event source mapping", "rule", "rest api", "function", "role"]
    assert kinds == sorted(kinds, key=order.index)
    names = {name for _, name in listed}
    assert {"logarchive-dev", "logarchive-dev-archive_scheduler", "logarchive-dev-archive_worker",
            "logarchive-dev-retrieval_worker", "logarchive-dev-archive_scheduler-event",
            "logarchive-dev-api_handler"} <= names
    assert kinds.count("event source mapping") == 2 and kinds.count("rest api") == 1
    assert not any("prod" in n or "index_archive" in n for n in names), names
    assert "kept: function logarchive-dev-index_archive: owned by a CloudFormation stack" in out
    assert "kept: role logarchive-dev-index_archive: owned by a CloudFormation stack" in out
    assert inventory() == before


def test_teardown_removes_the_stage_and_nothing_else(leftovers, capsys) -> None:
    before = inventory()
    dev_api = [a["id"] for a in boto3.client("apigateway").get_rest_apis()["items"]][0]
    code, out, err = run_cli(["setup", "teardown", "--stage", "dev", "--yes"], capsys)
    assert (code, err) == (0, "")
    assert out.index("in removal order") < out.index("removed ")  # the list is shown first
    after = inventory()
    gone = {k: before[k] - after[k] for k in before}
    assert gone["functions"] == {"logarchive-dev", "logarchive-dev-archive_scheduler",
                                 "logarchive-dev-archive_worker", "logarchive-dev-retrieval_worker"}
    assert gone["roles"] == {f"logarchive-dev-{fn}" for fn in ALL if fn != "index_archive"}
    assert gone["rules"] == {"logarchive-dev-archive_scheduler-event"}
    assert gone["mappings"] == {"logarchive-dev-archive_worker", "logarchive-dev-retrieval_worker"}
    assert gone["apis"] == {dev_api}
    for kept in ("buckets", "tables", "queues", "secrets", "parameters"):
        assert gone[kept] == set(), kept
    # prod and the stack's function and role are all there
    assert {function_name("prod", fn) for fn in ALL} | {"logarchive-dev-index_archive"} <= after["functions"]
    assert {f"logarchive-prod-{fn}" for fn in ALL} | {"logarchive-dev-index_archive"} <= after["roles"]
    assert {"logarchive-prod-archive_scheduler-event", "logarchive-prod-index_archive-event"} <= after["rules"]
    # a second run finds nothing
    code, out, _ = run_cli(["setup", "teardown", "--stage", "dev", "--yes"], capsys)
    assert code == 0 and "nothing of logarchive stage dev to remove" in out


def test_a_function_without_chalice_tag_of_the_stage_stays(aws_endpoint, capsys) -> None:
    chalice_deploy("dev", ("archive_worker",))
    boto3.client("lambda").untag_resource(
        Resource=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:logarchive-dev-archive_worker", TagKeys=["aws-chalice"])
    code, out, _ = run_cli(["setup", "teardown", "--stage", "dev", "--yes"], capsys)
    assert code == 0
    assert "kept: function logarchive-dev-archive_worker: no aws-chalice tag for app logarchive, stage dev" in out
    assert "kept: role logarchive-dev-archive_worker: used by a function that stays" in out
    assert "logarchive-dev-archive_worker" in inventory()["functions"]


def test_without_yes_and_no_terminal_nothing_is_removed(leftovers, capsys) -> None:
    before = inventory()
    code, _, err = run_cli(["setup", "teardown", "--stage", "dev"], capsys)
    assert code == 1
    assert err == "logarchive: error: teardown: not removing without --yes (standard input is not a terminal)\n"
    assert inventory() == before


def test_a_failed_removal_names_the_resource_and_the_rest_still_go(leftovers) -> None:
    from chalicelib.setup import teardown

    clients = {s: boto3.client(s) for s in ("lambda", "iam", "events", "apigateway", "cloudformation")}
    inv = teardown.find(clients, "logarchive", "dev")
    # Gone between the listing and the removal (someone else removed it meanwhile).
    boto3.client("lambda").delete_function(FunctionName="logarchive-dev-archive_scheduler")
    results = list(teardown.remove_all(clients, inv.remove))
    failed = [(f.id, error) for f, error in results if error]
    assert [name for name, _ in failed] == ["logarchive-dev-archive_scheduler"]
    assert "\n" not in failed[0][1] and failed[0][1].startswith("ResourceNotFoundException")
    assert len(results) == len(inv.remove)
    left = inventory()
    assert not {"logarchive-dev", "logarchive-dev-archive_worker", "logarchive-dev-retrieval_worker"} & left["functions"]
    assert not {f"logarchive-dev-{fn}" for fn in ALL if fn != "index_archive"} & left["roles"]

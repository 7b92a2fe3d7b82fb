"""The local stand-ins for the first-deploy steps that need real Lambda (tests/test_first_deploy.py).

``deploy --stage S``: what ``chalice deploy`` does for IAM — a role ``logarchive-<stage>-<function>``
per function carrying its ``.chalice/policy-<stage>-<function>.json`` (as the local AWS can enforce
it: devkit/local_iam.py).

``cloudformation-deploy --template-file T --stack-name N``: what ``aws cloudformation deploy`` of
``make package``'s template does, as far as the local AWS can: the local AWS has no Lambda and no
Serverless transform, so the functions, the API and what hangs on them (:data:`NEED_LAMBDA`) are
left out; the rest of the same template (queues, tables, the alarm topic, the functions' roles, the
replication role: :data:`THROUGH_CLOUDFORMATION`) is deployed by the local AWS's CloudFormation as
stack ``N``, with the outputs that do not name a left-out resource (a resource the stack then
lacks fails); what its CloudFormation cannot create (:data:`CREATED_DIRECTLY`: the alarms, the API
token secret) is made with the service's own API from the template's properties, its ``Ref`` and
``Fn::GetAtt`` resolved against the stack. Each function's role, made by the stack, must carry
that function's generated policy file (checked), and gets it as the local AWS can enforce it; its
trust policy (Lambda) is replaced by one the administrator can assume, for ``invoke``. A resource
type of none of these sets, or an intrinsic it cannot resolve, is refused: the stand-in must be
taught it, not skip it.

``invoke FUNCTION --stage S [--stack-name N]``: what ``aws lambda invoke`` does — the function's real
handler from this project's app.py, with the stage's environment, under its role (with
``--stack-name``, the role that stack made for it); prints its answer.

Run from the project directory, with the local AWS's administrator's keys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

THROUGH_CLOUDFORMATION = {"AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::SNS::Topic", "AWS::IAM::Role"}
# The local AWS's CloudFormation skips these (moto 5.2.5: with a warning, or, for alarms — it knows
# only CloudWatch dashboards — without a word): created with the service's own API.
CREATED_DIRECTLY = {"AWS::SecretsManager::Secret", "AWS::CloudWatch::Alarm"}
NEED_LAMBDA = {"AWS::Serverless::Function", "AWS::Serverless::Api", "AWS::Lambda::Permission",
               "AWS::ApiGateway::GatewayResponse"}


def names(value: Any) -> set[str]:
    """The logical ids a template value refers to (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    if isinstance(value, dict):
        out: set[str] = set()
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".", 1)[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                out |= {m.split(".", 1)[0] for m in _subs(text)}
                if isinstance(v, list):
                    out |= names(v[1])
            else:
                out |= names(v)
        return out
    if isinstance(value, list):
        return set().union(*(names(v) for v in value)) if value else set()
    return set()


def _subs(text: str) -> list[str]:
    import re

    return [m for m in re.findall(r"\$\{([^}!]+)\}", text) if not m.startswith("AWS::")]


def resolve(value: Any, physical: dict[str, str], resources: dict[str, Any]) -> Any:
    """``value`` with the stack's ``Ref`` and the ``Fn::GetAtt`` this template uses (a queue's
    ``QueueName``) resolved; any other intrinsic is refused: the stand-in must be taught it."""
    if isinstance(value, list):
        return [resolve(v, physical, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return physical[value["Ref"]]  # a topic's ARN, a queue's URL: what Ref gives
    if set(value) == {"Fn::GetAtt"}:
        logical, attribute = value["Fn::GetAtt"]
        if resources[logical]["Type"] == "AWS::SQS::Queue" and attribute == "QueueName":
            return physical[logical].rsplit("/", 1)[1]
    if any(k == "Ref" or k.startswith("Fn::") for k in value):
        raise SystemExit(f"error: the local stand-in cannot resolve {json.dumps(value)}")
    return {k: resolve(v, physical, resources) for k, v in value.items()}


def local_template(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``template`` without :data:`NEED_LAMBDA` and :data:`CREATED_DIRECTLY` resources (the latter
    returned apart) nor the outputs naming them; and the logical ids left out for want of Lambda."""
    resources = template["Resources"]
    unknown = sorted({r["Type"] for r in resources.values()}
                     - THROUGH_CLOUDFORMATION - CREATED_DIRECTLY - NEED_LAMBDA)
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)}: the local stand-in does not know these resource "
                         "types (tests/first_deploy_local.py)")
    left_out = sorted(k for k, r in resources.items() if r["Type"] in NEED_LAMBDA)
    direct = {k: r for k, r in resources.items() if r["Type"] in CREATED_DIRECTLY}
    kept = {k: r for k, r in resources.items() if k not in left_out and k not in direct}
    for k, r in kept.items():
        missing = (names(r) | set(r.get("DependsOn") or [])) & (set(left_out) | set(direct))
        if missing:
            raise SystemExit(f"error: {k} refers to {', '.join(sorted(missing))}, which the local AWS "
                             "cannot deploy")
    outputs = {k: v for k, v in template.get("Outputs", {}).items()
               if not names(v) & (set(left_out) | set(direct))}
    local = {k: v for k, v in template.items() if k not in ("Transform", "Resources", "Outputs")}
    return {**local, "Resources": kept, "Outputs": outputs}, direct, left_out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["deploy", "cloudformation-deploy", "invoke"])
    p.add_argument("function", nargs="?")
    p.add_argument("--stage")
    p.add_argument("--stack-name")
    p.add_argument("--template-file", type=Path)
    args = p.parse_args(argv)
    project = Path.cwd()
    sys.path.insert(0, str(project))
    from chalicelib import aws
    from chalicelib.devkit import local_iam
    from chalicelib.setup import deployment
    from chalicelib.setup.resources import FUNCTIONS, deployed_role_name, role_cfn_name

    admin = aws.Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    config = deployment.load_config(project)

    def stage_policy(stage: str, fn: str) -> dict[str, Any]:
        return json.loads((project / ".chalice" / deployment.policy_file(stage, fn)).read_text())

    def stack_role(fn: str) -> str:
        with aws.credentials(admin):
            found = aws.client("cloudformation").describe_stack_resource(
                StackName=args.stack_name, LogicalResourceId=role_cfn_name(fn))
        return found["StackResourceDetail"]["PhysicalResourceId"]

    def role(fn: str) -> aws.Credentials:
        name = stack_role(fn) if args.stack_name else deployed_role_name("logarchive", args.stage, fn)
        return local_iam.role_credentials(name, local_iam.local_policy(stage_policy(args.stage, fn)),
                                          admin=admin)

    if args.what == "deploy":
        for fn in FUNCTIONS:
            role(fn)
            print(f"role logarchive-{args.stage}-{fn}: {deployment.policy_file(args.stage, fn)}")
        return 0
    if args.what == "cloudformation-deploy":
        return cloudformation_deploy(args, admin, stage_policy)
    os.environ.update(deployment.stage_env(config, args.stage))
    os.environ.update({"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"})
    creds = role(args.function)
    from chalice.local import LambdaContext

    import app

    event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
             "resources": [], "account": "", "region": os.environ["AWS_REGION"], "time": "", "id": "local"}
    with aws.credentials(creds):
        answer = app.app.handler_map[args.function](
            event, LambdaContext(args.function, memory_size=512, max_runtime_ms=300_000))
    print(json.dumps(answer, default=str))
    return 0


def cloudformation_deploy(args: argparse.Namespace, admin: Any, stage_policy: Any) -> int:
    from chalicelib import aws
    from chalicelib.devkit import local_iam
    from chalicelib.setup.resources import FUNCTIONS, cfn_name

    template = json.loads(args.template_file.read_text())
    local, direct, left_out = local_template(template)
    with aws.credentials(admin):
        cfn = aws.client("cloudformation")
        cfn.create_stack(StackName=args.stack_name, TemplateBody=json.dumps(local),
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
        status = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]["StackStatus"]
        if status != "CREATE_COMPLETE":
            raise SystemExit(f"error: stack {args.stack_name}: {status}")
        # The local AWS's CloudFormation skips a type it does not know with only a warning.
        made = {r.get("LogicalResourceId") for page in cfn.get_paginator("list_stack_resources").paginate(
            StackName=args.stack_name) for r in page["StackResourceSummaries"]}
        if set(local["Resources"]) - made:
            raise SystemExit(f"error: stack {args.stack_name} lacks "
                             f"{', '.join(sorted(set(local['Resources']) - made))}")
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for page in cfn.get_paginator(
            "list_stack_resources").paginate(StackName=args.stack_name) for r in page["StackResourceSummaries"]
            if r.get("LogicalResourceId")}
        for logical, resource in direct.items():
            props = resolve(resource["Properties"], physical, local["Resources"])
            if resource["Type"] == "AWS::SecretsManager::Secret":
                sm = aws.client("secretsmanager")
                generate = props["GenerateSecretString"]
                value = sm.get_random_password(PasswordLength=generate["PasswordLength"],
                                               ExcludePunctuation=generate["ExcludePunctuation"])["RandomPassword"]
                sm.create_secret(Name=props["Name"], Description=props.get("Description", ""), SecretString=value)
                print(f"{logical}: secret {props['Name']} (created directly)")
            else:  # the alarm's CloudFormation properties are PutMetricAlarm's parameters
                aws.client("cloudwatch").put_metric_alarm(**props)
                print(f"{logical}: alarm {props['AlarmName']} (created directly)")
        roles, role_logical_ids = {}, {}
        for fn in FUNCTIONS:
            function = template["Resources"][cfn_name(fn)]["Properties"]
            role_logical = role_logical_ids[fn] = function["Role"]["Fn::GetAtt"][0]
            [policy] = [p["PolicyDocument"] for p in template["Resources"][role_logical]["Properties"]["Policies"]]
            if policy != stage_policy(args.stage, fn):
                raise SystemExit(f"error: {role_logical}: its policy is not .chalice/policy-{args.stage}-{fn}.json")
            roles[fn] = cfn.describe_stack_resource(StackName=args.stack_name, LogicalResourceId=role_logical)[
                "StackResourceDetail"]["PhysicalResourceId"]
    for fn, name in roles.items():
        # Lambda assumes a function's role (its trust policy names lambda.amazonaws.com); here the
        # administrator does, in ``invoke``: the local AWS cannot evaluate a service principal.
        with aws.credentials(admin):
            iam = aws.client("iam")
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(local_iam.TRUST))
            # The local AWS's CloudFormation stores a role's inline policy as a Python repr, which its
            # own IAM checks cannot read (KeyError 'policy_document', a 500): the template's, again.
            for policy in template["Resources"][role_logical_ids[fn]]["Properties"]["Policies"]:
                iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                                    PolicyDocument=json.dumps(policy["PolicyDocument"]))
        local_iam.role_credentials(name, local_iam.local_policy(stage_policy(args.stage, fn)), admin=admin)
        print(f"role {name} ({fn}): .chalice/policy-{args.stage}-{fn}.json")
    print(f"left out (need Lambda): {', '.join(left_out)}")
    print(f"Successfully created/updated stack - {args.stack_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""IAM enforced on the local AWS, as far as moto 5.2 enforces it (``local up --iam``, the IAM tests).

moto checks IAM policies on requests signed with keys it issued (``sts:AssumeRole`` credentials
included) once ``/moto-api/reset-auth`` has set its free-request count to 0. It matches resource
ARNs for S3, SQS, IAM and STS only; for every other service it checks the action against
``"*"``, and it evaluates no condition (but ``sts:ExternalId``), no policy variable, no bucket
policy. So a function's local role carries its generated policy's S3 and SQS statements as they
are, and its other statements with the same actions on ``"*"``; what those name is checked by
recording each call (:class:`CallRecorder`) against the generated statements.
"""

from __future__ import annotations

import fnmatch
import json
import socket
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import boto3

from .. import aws
from .local_aws import LOCAL_CREDENTIALS, LOCAL_REGION

ADMIN_USER = "logarchive-local-admin"
ENFORCED = ("s3", "sqs")  # the services whose resource ARNs the local AWS matches
LOCAL_ACCOUNT = "123456789012"
# (The local AWS matches no account root principal in a trust policy, and fails on a service
# principal such as lambda.amazonaws.com: any principal here.)
TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}


def enforce(endpoint: str) -> aws.Credentials:
    """Turn on IAM at ``endpoint``: an administrator user for the operator's own calls, then no
    request goes unchecked (the throwaway ``testing`` keys stop working). Returns its keys."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=LOCAL_REGION,
                       aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="administrator", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10):
        pass
    return aws.Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def service_of(action: str) -> str:
    return action.split(":", 1)[0]


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Statement"])


def enforced_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements the local AWS checks resource by resource (S3, SQS)."""
    return [st for st in statements(policy) if all(service_of(a) in ENFORCED for a in st["Action"])]


# AWS authorises SQS's batch calls by the single message's action; the local AWS asks for the
# batch call's own name. The same grant, spelt both ways.
_SQS_BATCH = {"sqs:SendMessage": "sqs:SendMessageBatch", "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
              "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch"}


# DynamoDB too: AWS authorises a transaction by each item's action; the local AWS asks for the
# call's name. (BatchWriteItem and BatchGetItem are IAM actions of their own: granted as such.)
_DDB_MULTI = {"dynamodb:PutItem": ("dynamodb:TransactWriteItems",),
              "dynamodb:UpdateItem": ("dynamodb:TransactWriteItems",),
              "dynamodb:DeleteItem": ("dynamodb:TransactWriteItems",),
              "dynamodb:ConditionCheckItem": ("dynamodb:TransactWriteItems",),
              "dynamodb:GetItem": ("dynamodb:TransactGetItems",)}


def local_policy(policy: dict[str, Any], *, drop: str = "") -> dict[str, Any]:
    """``policy`` as the local AWS can enforce it: S3/SQS statements as generated (but ``drop``,
    a Sid; SQS batch calls spelt out), every other statement's actions on ``"*"`` (the local AWS
    checks them against ``"*"``)."""
    out = []
    for st in statements(policy):
        if st.get("Sid") == drop:
            continue
        if st in enforced_statements(policy):
            batch = [_SQS_BATCH[a] for a in st["Action"] if a in _SQS_BATCH]
            out.append({**st, "Action": [*st["Action"], *batch]})
        else:
            extra = sorted({spelt for a in st["Action"] for spelt in _DDB_MULTI.get(a, ())})
            out.append({**{k: v for k, v in st.items() if k != "Condition"},
                        "Action": [*st["Action"], *extra], "Resource": ["*"]})
    return {"Version": "2012-10-17", "Statement": out}


def role_credentials(name: str, policy: dict[str, Any], *, admin: aws.Credentials) -> aws.Credentials:
    """A role carrying ``policy`` (created, or its policy replaced), and credentials of a session
    of it. A replaced policy applies to sessions already open (the local AWS reads it per request)."""
    with aws.credentials(admin):
        iam = aws.client("iam")
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        iam.put_role_policy(RoleName=name, PolicyName="logarchive", PolicyDocument=json.dumps(policy))
        answer = aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{name}",
                                               RoleSessionName=f"{name[:50]}-local")
    return aws.Credentials.from_sts(answer)


# -- what a handler calls, outside S3 and SQS -----------------------------------------------------
_PREFIX = {"secretsmanager": "secretsmanager", "ssm": "ssm", "kms": "kms", "dynamodb": "dynamodb",
           "monitoring": "cloudwatch", "logs": "logs", "xray": "xray"}
# TransactWriteItems is authorised per item, by the item's own action.
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
             "ConditionCheck": "ConditionCheckItem"}


def _arns(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    region, account = LOCAL_REGION, LOCAL_ACCOUNT
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            out = []
            for item in params.get("TransactItems", []):
                for kind, body in item.items():
                    out.append((f"dynamodb:{_TRANSACT[kind]}",
                                f"arn:aws:dynamodb:{region}:{account}:table/{body['TableName']}"))
            return out
        if operation in ("BatchGetItem", "BatchWriteItem"):  # IAM actions of their own
            return [(f"dynamodb:{operation}", f"arn:aws:dynamodb:{region}:{account}:table/{t}")
                    for t in params.get("RequestItems", {})]
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{params.get('TableName', '')}"
        if params.get("IndexName"):
            arn += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", arn)]
    if service == "secretsmanager":
        name = params.get("SecretId", "")
        # Secrets Manager adds "-" and six random characters to a secret's ARN.
        arn = name if name.startswith("arn:") else (
            f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-abcdef")
        return [(f"secretsmanager:{operation}", arn)]
    if service == "ssm":
        names = params.get("Names") or [params.get("Name", "")]
        return [(f"ssm:{operation}", f"arn:aws:ssm:{region}:{account}:parameter/{n.lstrip('/')}")
                for n in names]
    if service == "kms":
        key = params.get("KeyId", "")
        return [(f"kms:{operation}", key if key.startswith("arn:") else
                 f"arn:aws:kms:{region}:{account}:key/{key}")]
    return [(f"{_PREFIX.get(service, service)}:{operation}", "*")]


@dataclass
class CallRecorder:
    """Every (action, resource ARN) made through :mod:`chalicelib.aws` outside S3 and SQS, by
    whoever :attr:`current` names (a botocore ``before-parameter-build`` hook on every client)."""

    current: str = ""
    calls: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        if service in ENFORCED or service in ("sts", "iam") or not self.current:
            return
        for call in _arns(service, model.name, params):
            self.calls.setdefault(self.current, set()).add(call)

    def observing(self) -> Any:
        return aws.observe("before-parameter-build", self)


def grants(statement: dict[str, Any], action: str, arn: str) -> bool:
    """``statement`` allows ``action`` on ``arn`` (exact action; ``*``/``?`` in its resources)."""
    return action in statement["Action"] and any(fnmatch.fnmatchcase(arn, r) for r in statement["Resource"])


_matches = grants


def uncovered(policy: dict[str, Any], calls: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls no statement of ``policy`` allows (action and resource)."""
    return sorted(c for c in calls if not any(_matches(st, *c) for st in statements(policy)))


def unused(policy: dict[str, Any], calls: set[tuple[str, str]], *, services: tuple[str, ...]) -> list[str]:
    """Sids of ``policy``'s statements on ``services`` that no call used."""
    out = []
    for st in statements(policy):
        if not all(service_of(a) in services for a in st["Action"]):
            continue
        if not any(_matches(st, *c) for c in calls):
            out.append(st.get("Sid", "?"))
    return out


# -- a whole local stage under its roles (``local up --iam``) -----------------------------------------
def deploy_env(env: dict[str, str], queues: dict[str, str]) -> dict[str, str]:
    """A local stage's environment as ``setup deployment-files`` sees a stage: queue names (not
    the local URLs), the local account and region, a key source (policies name one)."""
    out = {k: v for k, v in env.items() if not k.endswith("_QUEUE_URL")}
    out |= {"LOGARCHIVE_ACCOUNT_ID": LOCAL_ACCOUNT, "LOGARCHIVE_REGION": LOCAL_REGION,
            "LOGARCHIVE_WORK_QUEUE": queues["work"], "LOGARCHIVE_RETRIEVAL_QUEUE": queues["retrieval"]}
    if not (out.get("LOGARCHIVE_KEYS_SECRET") or out.get("LOGARCHIVE_KEYS_PARAMETER")
            or out.get("LOGARCHIVE_KMS_KEY_ID")):
        out["LOGARCHIVE_KEYS_SECRET"] = f"{env.get('LOGARCHIVE_STACK', 'local')}-logarchive-keys"
    return out


@dataclass
class StageRoles:
    admin: aws.Credentials
    functions: dict[str, aws.Credentials]  # function name -> its role's session
    host: aws.Credentials
    reader: aws.Credentials


def stage_roles(env: dict[str, str], queues: dict[str, str], admin: aws.Credentials) -> StageRoles:
    """A role per function from its generated policy (as :func:`local_policy`), the Docker hosts'
    and the customer's read-only one; their sessions."""
    from ..setup import iam
    from ..setup.resources import FUNCTIONS, StageResources

    res = StageResources.from_env("local", deploy_env(env, queues))
    stack = res.stack
    functions = {fn: role_credentials(f"{stack}-logarchive-{fn}", local_policy(iam.function_policy(res, fn)),
                                      admin=admin) for fn in FUNCTIONS}
    # One role per host (docs/SHIPPER.md): `local up --iam`'s is for a host named like this machine,
    # as `logarchive ship` names it by default.
    host_name = socket.gethostname().split(".")[0]
    host = role_credentials(f"{stack}-logarchive-host", iam.host_policy(res, host_name), admin=admin)
    customer = res.replicate_to[0] if res.replicate_to else res.archive_bucket
    reader = role_credentials(f"{stack}-logarchive-reader", iam.customer_reader_policy(customer, stack),
                              admin=admin)
    return StageRoles(admin, functions, host, reader)

"""Find and remove what ``chalice deploy`` made for one stage, when Chalice itself cannot.

A ``chalice deploy`` that fails midway records nothing in ``.chalice/deployed/``, so
``chalice delete`` then deletes nothing and the functions, roles, rules, event source mappings
and the REST API stay behind. This finds them by the names Chalice gives (``resources.py``)
*and* by what ties each one to the stage, never by a name alone:

- a function must carry Chalice's ``aws-chalice`` tag with this app and stage;
- an event source mapping belongs to such a function;
- a rule's every target is one of the stage's functions;
- the REST API (Chalice names it after the app, whatever the stage) must integrate the stage's
  API function;
- a role is used by no function that stays.

Whatever a CloudFormation stack owns (``chalice package`` deploys under the same function
names) is left alone, and buckets, tables, queues, secrets, parameters and keys are never
looked at. Removal goes from the triggers inwards: mappings, rules, the API, functions, roles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..awserrors import error_code, error_label
from .resources import FUNCTIONS, deployed_function_name, deployed_role_name, deployed_rule_name

CHALICE_TAG = "aws-chalice"
STACK_TAG = "aws:cloudformation:stack-name"
# Removal order: what invokes a function before the function, the function before its role.
ORDER = ("event source mapping", "rule", "rest api", "function", "role")


@dataclass(frozen=True)
class Found:
    kind: str
    id: str  # the name, or the id for mappings and the REST API
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:20} {self.id}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class Inventory:
    remove: list[Found] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (resource, why it stays)


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in ("ResourceNotFoundException", "NoSuchEntity", "NotFoundException")


def stack_owned(cloudformation: Any) -> set[str]:
    """Physical ids of every resource of every live CloudFormation stack."""
    owned = set()
    for page in cloudformation.get_paginator("list_stacks").paginate():
        for stack in page["StackSummaries"]:
            if stack["StackStatus"] == "DELETE_COMPLETE":
                continue
            pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack["StackId"])
            for rpage in pages:
                owned.update(r.get("PhysicalResourceId", "") for r in rpage["StackResourceSummaries"])
    owned.discard("")
    return owned


def chalice_tag(app: str, stage: str, tags: dict[str, str]) -> bool:
    fields = dict(part.split("=", 1) for part in tags.get(CHALICE_TAG, "").split(":") if "=" in part)
    return fields.get("app") == app and fields.get("stage") == stage


def find(clients: dict[str, Any], app: str, stage: str) -> Inventory:
    """What ``chalice deploy`` made for ``stage`` of ``app``, and what stays, with the reason."""
    lam, iam, events, apigw = clients["lambda"], clients["iam"], clients["events"], clients["apigateway"]
    owned = stack_owned(clients["cloudformation"])
    inv = Inventory()
    functions: dict[str, str] = {}  # name -> ARN, of the functions to remove
    roles_in_use: set[str] = set()  # role ARNs of functions that stay
    for fn in FUNCTIONS:
        name = deployed_function_name(app, stage, fn)
        try:
            got = lam.get_function(FunctionName=name)
        except ClientError as exc:
            if _missing(exc):
                continue
            raise
        tags = got.get("Tags") or {}
        why = ("owned by a CloudFormation stack" if name in owned or STACK_TAG in tags
               else "" if chalice_tag(app, stage, tags)
               else f"no {CHALICE_TAG} tag for app {app}, stage {stage}")
        if why:
            inv.kept.append((f"function {name}", why))
            roles_in_use.add(got["Configuration"]["Role"])
            continue
        functions[name] = got["Configuration"]["FunctionArn"]
        inv.remove.append(Found("function", name, got["Configuration"].get("Runtime", "")))
    for name in functions:
        for page in lam.get_paginator("list_event_source_mappings").paginate(FunctionName=name):
            for m in page["EventSourceMappings"]:
                source = f"{m['EventSourceArn']} -> {name}"
                inv.remove.append(Found("event source mapping", m["UUID"], source))
    stage_functions = {deployed_function_name(app, stage, fn) for fn in FUNCTIONS}
    for fn in FUNCTIONS:
        rule = deployed_rule_name(app, stage, fn)
        try:
            events.describe_rule(Name=rule)
        except ClientError as exc:
            if _missing(exc):
                continue
            raise
        targets = [t["Arn"] for page in events.get_paginator("list_targets_by_rule").paginate(Rule=rule)
                   for t in page["Targets"]]
        foreign = [t for t in targets if t.rsplit(":function:", 1)[-1] not in stage_functions]
        if rule in owned:
            inv.kept.append((f"rule {rule}", "owned by a CloudFormation stack"))
        elif foreign:
            inv.kept.append((f"rule {rule}", f"targets {', '.join(foreign)}, not this stage's functions"))
        else:
            inv.remove.append(Found("rule", rule, f"{len(targets)} target(s)"))
    api_function = deployed_function_name(app, stage, "api_handler")
    for page in apigw.get_paginator("get_rest_apis").paginate():
        for api in page["items"]:
            if api["name"] != app:
                continue
            if api["id"] in owned or STACK_TAG in (api.get("tags") or {}):
                inv.kept.append((f"rest api {api['id']}", "owned by a CloudFormation stack"))
            elif _integrates(apigw, api["id"], api_function):
                inv.remove.append(Found("rest api", api["id"], f"{app}, integrates {api_function}"))
    for fn in FUNCTIONS:
        role = deployed_role_name(app, stage, fn)
        try:
            arn = iam.get_role(RoleName=role)["Role"]["Arn"]
        except ClientError as exc:
            if _missing(exc):
                continue
            raise
        if role in owned:
            inv.kept.append((f"role {role}", "owned by a CloudFormation stack"))
        elif arn in roles_in_use:
            inv.kept.append((f"role {role}", "used by a function that stays"))
        else:
            inv.remove.append(Found("role", role))
    inv.remove.sort(key=lambda f: ORDER.index(f.kind))
    return inv


def _integrates(apigw: Any, api_id: str, function: str) -> bool:
    """Whether a method of the REST API invokes ``function`` (by name, any account/region)."""
    needle = f":function:{function}/invocations"
    for page in apigw.get_paginator("get_resources").paginate(restApiId=api_id, embed=["methods"]):
        for resource in page["items"]:
            for method, spec in (resource.get("resourceMethods") or {}).items():
                uri = (spec.get("methodIntegration") or {}).get("uri")
                if uri is None:
                    try:
                        uri = apigw.get_integration(restApiId=api_id, resourceId=resource["id"],
                                                    httpMethod=method).get("uri", "")
                    except ClientError as exc:
                        if not _missing(exc):
                            raise
                        uri = ""
                if uri.endswith(needle):
                    return True
    return False


def remove(clients: dict[str, Any], found: Found) -> None:
    """Remove one resource (its inline policies and rule targets first); raises ClientError."""
    if found.kind == "event source mapping":
        clients["lambda"].delete_event_source_mapping(UUID=found.id)
    elif found.kind == "rule":
        events = clients["events"]
        ids = [t["Id"] for page in events.get_paginator("list_targets_by_rule").paginate(Rule=found.id)
               for t in page["Targets"]]
        if ids:
            events.remove_targets(Rule=found.id, Ids=ids)
        events.delete_rule(Name=found.id)
    elif found.kind == "rest api":
        clients["apigateway"].delete_rest_api(restApiId=found.id)
    elif found.kind == "function":
        clients["lambda"].delete_function(FunctionName=found.id)
    elif found.kind == "role":
        iam = clients["iam"]
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=found.id):
            for policy in page["PolicyNames"]:
                iam.delete_role_policy(RoleName=found.id, PolicyName=policy)
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=found.id):
            for policy in page["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=found.id, PolicyArn=policy["PolicyArn"])
        iam.delete_role(RoleName=found.id)
    else:
        raise ValueError(found.kind)


def remove_all(clients: dict[str, Any], found: list[Found]) -> Iterator[tuple[Found, str]]:
    """Remove each in turn; yields (resource, "" or one line of why it failed) and goes on."""
    for item in found:
        try:
            remove(clients, item)
        except ClientError as exc:
            message = (exc.response.get("Error") or {}).get("Message", "")
            yield item, f"{error_label(exc)}: {message}".strip()
            continue
        yield item, ""

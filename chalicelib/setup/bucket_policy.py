"""The customer bucket's policy (the seed's "Aptible log sync" policy) and how to read one.

The seed asks customers to apply a fixed policy granting the platform's replication role
what S3 Replication needs on their bucket. ``render`` fills in the bucket and our role;
``grants`` answers whether an existing policy gives a principal those actions.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

# What S3 Replication needs on the destination, exactly as the seed grants it.
OBJECT_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateDelete", "s3:ObjectOwnerOverrideToBucketOwner")
BUCKET_ACTIONS = ("s3:List*", "s3:GetBucketVersioning", "s3:PutBucketVersioning")
# ``s3:List*`` is a grant pattern; to test that a policy covers it we check the list
# actions replication actually calls.
BUCKET_ACTIONS_TO_VERIFY = ("s3:ListBucket", "s3:GetBucketVersioning", "s3:PutBucketVersioning")
POLICY_ID = "logarchive log sync"


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def render(bucket: str, role_arn: str) -> dict[str, Any]:
    """The seed's policy with ``YOUR_BUCKET_NAME`` and the replication role filled in."""
    principal = {"AWS": role_arn}
    return {
        "Version": "2012-10-17",
        "Id": POLICY_ID,
        "Statement": [
            {
                "Sid": "dest_objects",
                "Effect": "Allow",
                "Principal": principal,
                "Action": list(OBJECT_ACTIONS),
                "Resource": f"{bucket_arn(bucket)}/*",
            },
            {
                "Sid": "dest_bucket",
                "Effect": "Allow",
                "Principal": principal,
                "Action": list(BUCKET_ACTIONS),
                "Resource": bucket_arn(bucket),
            },
        ],
    }


def dumps(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return [str(p) for p in _as_list(principal.get("AWS"))]
    return []


def _matches(patterns: list[Any], value: str) -> bool:
    # IAM matching is case-insensitive for actions; ARNs are case-sensitive.
    return any(fnmatch.fnmatchcase(value, str(p)) for p in patterns)


def _action_matches(patterns: list[Any], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in patterns)


def _account_of(role_arn: str) -> str:
    parts = role_arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _names(principals: list[str], principal: str) -> bool:
    # A policy naming the role's account (id or root ARN) delegates to that account's IAM.
    account = _account_of(principal)
    accepted = {"*", principal} | ({account, f"arn:aws:iam::{account}:root"} if account else set())
    return any(p in accepted for p in principals)


def _applies(statement: dict[str, Any], principal: str, action: str, resource: str) -> bool:
    return (
        _names(_principals(statement), principal)
        and _action_matches(_as_list(statement.get("Action")), action)
        and _matches(_as_list(statement.get("Resource")), resource)
    )


def grants(policy: dict[str, Any], principal: str, action: str, resource: str) -> bool:
    """True if ``policy`` allows ``principal`` ``action`` on ``resource`` unconditionally.

    A deliberately conservative reading: statements with a Condition, NotAction,
    NotResource or NotPrincipal do not count as grants, and any matching Deny wins.
    """
    allowed = False
    for st in _as_list(policy.get("Statement")):
        if not isinstance(st, dict):
            continue
        if st.get("Effect") == "Deny" and _applies(st, principal, action, resource):
            return False
        if st.get("Effect") != "Allow":
            continue
        if any(k in st for k in ("Condition", "NotAction", "NotResource", "NotPrincipal")):
            continue
        if _applies(st, principal, action, resource):
            allowed = True
    return allowed


def required_grants(bucket: str) -> list[tuple[str, str, str]]:
    """(action, resource to test, resource as written) the replication role needs on ``bucket``."""
    objects = f"{bucket_arn(bucket)}/*"
    # Any object key stands for ``bucket/*``; these have the archive layout's and a digest's shape
    # (a policy scoped to ``<stack>/*`` would let archives in but not their digests).
    samples = (f"{bucket_arn(bucket)}/stack/shareable/v3/key", f"{bucket_arn(bucket)}/_k8s/stack/v3/key",
               f"{bucket_arn(bucket)}/_logarchive/digests/stack/2026/01/01/0000000001-20260101T003000Z.json")
    return [(a, sample, objects) for a in OBJECT_ACTIONS for sample in samples] + [
        (a, bucket_arn(bucket), bucket_arn(bucket)) for a in BUCKET_ACTIONS_TO_VERIFY
    ]


def missing_grants(policy: dict[str, Any], bucket: str, principal: str) -> list[str]:
    """The required actions ``policy`` does not give ``principal``, as ``action on resource``."""
    missing = [
        f"{action} on {shown}"
        for action, tested, shown in required_grants(bucket)
        if not grants(policy, principal, action, tested)
    ]
    return list(dict.fromkeys(missing))  # one line per action, however many sample keys lack it


def candidate_principals(policy: dict[str, Any]) -> list[str]:
    """Principals named in Allow statements (to check a policy when no role is given)."""
    seen: list[str] = []
    for st in _as_list(policy.get("Statement")):
        if isinstance(st, dict) and st.get("Effect") == "Allow":
            for p in _principals(st):
                if p not in seen:
                    seen.append(p)
    return seen

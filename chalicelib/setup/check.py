"""``logarchive setup check``: is a customer's bucket ready to receive archives?

The seed's prerequisites, each checked against the live bucket: versioning enabled, the
stack's region, dedicated to the archive, and a bucket policy that lets the replication
role do what S3 Replication needs. Every failure carries its fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..awserrors import NOT_FOUND, error_code, error_label
from ..digest import DIGESTS_PREFIX, stack_digests_prefix
from ..layout import k8s_root
from . import bucket_policy, lifecycle, object_lock

SEED_VERSIONING_FIX = (
    "To enable S3 bucket versioning via the AWS Console, visit the Properties tab of your S3 "
    "bucket, click Edit under Bucket Versioning, choose Enable, and then Save Changes."
)
# Archive keys are ``<stack>/shareable/...`` (layout.py, v2 and v3), or ``_k8s/<stack>/...``.
_ARCHIVE_KEY = re.compile(r"^(?:[^/]+/shareable/|_k8s/[^/]+/)")
DEFAULT_SAMPLE = 1000


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warnings: tuple[str, ...] = ()


def _region_of(location: str | None) -> str:
    # GetBucketLocation: None means us-east-1; "EU" is the legacy name of eu-west-1.
    if not location:
        return "us-east-1"
    return "eu-west-1" if location == "EU" else location


def check_versioning(s3: Any, bucket: str) -> CheckResult:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status") or "never enabled"
    if status == "Enabled":
        return CheckResult("versioning", True, "enabled")
    return CheckResult(
        "versioning",
        False,
        f"versioning is {status}; your S3 bucket must have versioning enabled",
        f"{SEED_VERSIONING_FIX} Or: aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled",
    )


def check_region(s3: Any, bucket: str, stack_region: str) -> CheckResult:
    region = _region_of(s3.get_bucket_location(Bucket=bucket).get("LocationConstraint"))
    if region == stack_region:
        return CheckResult("region", True, f"{region}, the stack's region")
    return CheckResult(
        "region",
        False,
        f"bucket is in {region}, the stack is in {stack_region}; your S3 bucket must be in the "
        "same region as your Stack",
        f"A bucket cannot move: create a new versioned bucket in {stack_region} "
        f"(aws s3api create-bucket --bucket NAME --region {stack_region} "
        f"--create-bucket-configuration LocationConstraint={stack_region}; omit the "
        "configuration for us-east-1) and set it up instead.",
    )


def check_dedicated(s3: Any, bucket: str, stack: str = "", sample: int = DEFAULT_SAMPLE) -> CheckResult:
    """Only archive keys in the bucket, judged on the first ``sample`` keys and versions.

    Versions are listed too (not only current keys): a deleted foreign object still lies
    in a versioned bucket.
    """
    if stack:
        def prefix_ok(k: str) -> bool:  # the stack's archives and its signed digests
            return k.startswith((f"{stack}/shareable/", k8s_root(stack), stack_digests_prefix(stack)))
    else:
        def prefix_ok(k: str) -> bool:
            return bool(_ARCHIVE_KEY.match(k)) or k.startswith(DIGESTS_PREFIX)
    resp = s3.list_object_versions(Bucket=bucket, MaxKeys=max(1, min(sample, 1000)))
    keys = [v["Key"] for v in resp.get("Versions", [])] + [m["Key"] for m in resp.get("DeleteMarkers", [])]
    foreign = sorted({k for k in keys if not prefix_ok(k)})
    scope = (f"{stack}/shareable/, {k8s_root(stack)} and {stack_digests_prefix(stack)}" if stack
             else f"<stack>/shareable/, _k8s/<stack>/ and {DIGESTS_PREFIX}<stack>/")
    sampled = f"{len(keys)} sampled" + (" (first page only)" if resp.get("IsTruncated") else "")
    if not foreign:
        return CheckResult("dedicated", True, f"only archive keys under {scope} ({sampled})")
    shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
    return CheckResult(
        "dedicated",
        False,
        f"{len(foreign)} foreign key(s) outside {scope} ({sampled}): {shown}",
        "This must be the sole purpose of your S3 bucket (that is, do not add other content to "
        "this bucket): move that content elsewhere, or use a new dedicated bucket.",
    )


def check_policy(s3: Any, bucket: str, role_arn: str = "") -> CheckResult:
    fix = (
        "Apply the policy printed by `logarchive setup bucket-policy --bucket "
        f"{bucket}{' --role-arn ' + role_arn if role_arn else ''}` "
        f"(aws s3api put-bucket-policy --bucket {bucket} --policy file://policy.json)."
    )
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucketPolicy":
            return CheckResult("policy", False, "the bucket has no bucket policy", fix)
        raise
    named = [p for p in bucket_policy.candidate_principals(policy) if p != "*"]
    principals = [role_arn] if role_arn else named
    if not principals:
        return CheckResult("policy", False, "the policy names no replication role", fix)
    best: tuple[str, list[str]] | None = None
    for principal in principals:
        missing = bucket_policy.missing_grants(policy, bucket, principal)
        if not missing:
            return CheckResult("policy", True, f"grants {principal} what replication needs")
        if best is None or len(missing) < len(best[1]):
            best = (principal, missing)
    assert best is not None
    return CheckResult("policy", False, f"the policy does not give {best[0]}: {'; '.join(best[1])}", fix)


def check_object_lock(s3: Any, bucket: str, stack: str = "") -> CheckResult:
    """Lock mode and default retention, and what the newest object of the stack is held for.

    Reported, not required; it fails only when an object is held for less than the default.
    (GetObjectRetention is not used: HEAD answers the same, and the local AWS answers it 500.)"""
    lock = object_lock.state(s3, bucket)
    if not lock.enabled:
        return CheckResult("object lock", True, "not enabled (optional: logarchive setup object-lock "
                           f"--bucket {bucket} --mode governance --days N)")
    prefix = f"{stack}/shareable/" if stack else ""
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if newest is None or o["LastModified"] > newest["LastModified"]:
                newest = o
    if newest is None:
        return CheckResult("object lock", True, f"{lock.describe()}; no object to sample yet")
    h = s3.head_object(Bucket=bucket, Key=newest["Key"])
    mode, until = h.get("ObjectLockMode"), h.get("ObjectLockRetainUntilDate")
    held = f"{mode} until {until:%Y-%m-%d}" if mode and until else "no retention"
    why = object_lock.retention_short(h["LastModified"], mode, until, lock)
    detail = f"{lock.describe()}; newest object {newest['Key']}: {held}"
    if why:
        return CheckResult("object lock", False, f"{detail} ({why})",
                           "Objects written before the default retention was set keep theirs; set "
                           "retention on them (s3:PutObjectRetention) or wait for them to age out.")
    return CheckResult("object lock", True, detail)


def check_lifecycle(s3: Any, bucket: str, stack: str = "", retention_days: int | None = None) -> CheckResult:
    """The lifecycle rules that reach the stack's archives; their problems are warnings."""
    report = lifecycle.review(
        lifecycle.get_rules(s3, bucket), stack=stack, retention_days=retention_days,
        lock_days=lifecycle.object_lock_days(s3, bucket),
    )
    scope = f"{stack}/shareable/" if stack else "archives"
    detail = (f"rules reaching {scope}: " + "; ".join(report.touching) if report.touching
              else f"no rule reaches {scope}: archives stay in their storage class for ever")
    return CheckResult("lifecycle", True, detail, warnings=tuple(report.warnings))


def run_checks(
    s3: Any,
    bucket: str,
    *,
    stack_region: str,
    role_arn: str = "",
    stack: str = "",
    sample: int = DEFAULT_SAMPLE,
    retention_days: int | None = None,
) -> list[CheckResult]:
    """All checks; one that cannot run (access denied, no such bucket) fails with the cause."""
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("versioning", lambda: check_versioning(s3, bucket)),
        ("region", lambda: check_region(s3, bucket, stack_region)),
        ("dedicated", lambda: check_dedicated(s3, bucket, stack, sample)),
        ("policy", lambda: check_policy(s3, bucket, role_arn)),
        ("object lock", lambda: check_object_lock(s3, bucket, stack)),
        ("lifecycle", lambda: check_lifecycle(s3, bucket, stack, retention_days)),
    ]
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND | {"NoSuchBucket"}:
            return [CheckResult("exists", False, f"bucket {bucket} does not exist",
                                "Check the name, or create the bucket (versioned, in the stack's region).")]
    results = []
    for name, run in checks:
        try:
            results.append(run())
        except ClientError as exc:
            results.append(
                CheckResult(
                    name,
                    False,
                    f"cannot check: {error_label(exc)}",
                    "Run the check with credentials of the bucket's account that may read its "
                    "versioning, location, object list, policy, lifecycle and Object Lock settings.",
                )
            )
    return results

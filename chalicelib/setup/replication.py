"""S3 Replication from the archive bucket to a customer's bucket (the seed's delivery path).

One V2-schema rule per destination, identified by ``rule_id(dest)``, so that re-running
replaces our rule and leaves every other rule of the bucket alone. With a stack, a second rule
(``digests_rule_id(dest)``) replicates the stack's signed digests (``_logarchive/digests/<stack>/``,
docs/AUDIT.md) beside its archives, and nothing else of the reserved ``_logarchive/`` prefix; a
third (``k8s_rule_id(dest)``) its Kubernetes archives (``_k8s/<stack>/``).
Deletions are not replicated (``DeleteMarkerReplication`` disabled): the customer's copy is a compliance
archive, and a delete in ours must never remove theirs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..awserrors import error_code, error_label
from ..digest import stack_digests_prefix
from ..errors import LogarchiveError
from ..layout import k8s_root
from .bucket_policy import bucket_arn

RULE_PREFIX = "logarchive-"


class ReplicationSetupError(LogarchiveError):
    """The replication cannot be configured as asked (one line, with the fix)."""


@dataclass(frozen=True)
class ReplicationTarget:
    source_bucket: str
    dest_bucket: str
    role_arn: str
    dest_account: str = ""
    prefix: str = ""
    rule: str = ""  # the rule's id (default: rule_id(dest_bucket))

    @property
    def id(self) -> str:
        return self.rule or rule_id(self.dest_bucket)


def rule_id(dest_bucket: str) -> str:
    # S3 rule ids are at most 255 characters; bucket names at most 63.
    return f"{RULE_PREFIX}{dest_bucket}"


def digests_rule_id(dest_bucket: str) -> str:
    return f"{RULE_PREFIX}digests-{dest_bucket}"


def digests_target(target: ReplicationTarget, stack: str) -> ReplicationTarget:
    """The second rule: the stack's digests, to the same destination, as its archives."""
    return ReplicationTarget(target.source_bucket, target.dest_bucket, target.role_arn, target.dest_account,
                             prefix=stack_digests_prefix(stack), rule=digests_rule_id(target.dest_bucket))


def k8s_rule_id(dest_bucket: str) -> str:
    return f"{RULE_PREFIX}k8s-{dest_bucket}"


def k8s_target(target: ReplicationTarget, stack: str) -> ReplicationTarget:
    """The third rule: the stack's Kubernetes archives (``_k8s/<stack>/``, layout.py)."""
    return ReplicationTarget(target.source_bucket, target.dest_bucket, target.role_arn, target.dest_account,
                             prefix=k8s_root(stack), rule=k8s_rule_id(target.dest_bucket))


def build_rule(target: ReplicationTarget, priority: int) -> dict[str, Any]:
    destination: dict[str, Any] = {"Bucket": bucket_arn(target.dest_bucket)}
    if target.dest_account:
        # Owner override: the customer's account owns the replicas (seed:
        # s3:ObjectOwnerOverrideToBucketOwner in their bucket policy).
        destination["Account"] = target.dest_account
        destination["AccessControlTranslation"] = {"Owner": "Destination"}
    return {
        "ID": target.id,
        "Priority": priority,
        "Status": "Enabled",
        "Filter": {"Prefix": target.prefix},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "Destination": destination,
    }


def merge_configuration(existing: dict[str, Any] | None, target: ReplicationTarget) -> dict[str, Any]:
    """The bucket's replication configuration with our rule for ``target`` added or replaced."""
    existing = copy.deepcopy(existing) if existing else {}
    rules: list[dict[str, Any]] = list(existing.get("Rules", []))
    ours = target.id
    others = [r for r in rules if r.get("ID") != ours]
    old = next((r for r in rules if r.get("ID") == ours), None)

    role = existing.get("Role")
    if role and role != target.role_arn and others:
        raise ReplicationSetupError(
            f"bucket {target.source_bucket} replicates with role {role}, not {target.role_arn}: "
            "a bucket has one replication role; pass --role-arn " + role
        )
    legacy = [r.get("ID", "?") for r in others if "Filter" not in r]
    if legacy:
        raise ReplicationSetupError(
            f"bucket {target.source_bucket} has V1-schema replication rules ({', '.join(legacy)}) "
            "which cannot be mixed with V2 rules: give them a Filter first"
        )
    taken = {int(r.get("Priority", 0)) for r in others}
    if old is not None and int(old.get("Priority", 0)) not in taken:
        priority = int(old.get("Priority", 0))
    else:
        priority = max(taken, default=0) + 1
    return {"Role": target.role_arn, "Rules": [*others, build_rule(target, priority)]}


def versioning_status(s3: Any, bucket: str) -> str:
    return s3.get_bucket_versioning(Bucket=bucket).get("Status", "") or "never enabled"


def get_configuration(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        return s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "ReplicationConfigurationNotFoundError":
            return None
        raise


def check_versioning(s3: Any, target: ReplicationTarget) -> tuple[list[str], list[str]]:
    """(problems, warnings): S3 Replication needs versioning enabled on both buckets.

    A destination in another account usually does not let us read its versioning (the
    seed's policy grants that to the replication role only): a warning, not a failure;
    the customer confirms with ``logarchive setup check``.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for bucket in (target.source_bucket, target.dest_bucket):
        try:
            status = versioning_status(s3, bucket)
        except ClientError as exc:
            code = error_label(exc)
            if bucket == target.dest_bucket and code in ("AccessDenied", "403"):
                warnings.append(
                    f"cannot read versioning of {bucket} ({code}): have its owner run "
                    f"`logarchive setup check --bucket {bucket}`"
                )
            else:
                problems.append(f"cannot read versioning of {bucket} ({code})")
            continue
        if status != "Enabled":
            problems.append(
                f"bucket {bucket} has versioning {status}: S3 Replication needs it enabled on both "
                f"buckets (aws s3api put-bucket-versioning --bucket {bucket} "
                "--versioning-configuration Status=Enabled)"
            )
    return problems, warnings


def configure(
    s3: Any, target: ReplicationTarget, *, dry_run: bool = False, also: tuple[ReplicationTarget, ...] = ()
) -> dict[str, Any]:
    """Put (or, with ``dry_run``, only compute) the merged replication configuration: ``target``'s
    rule and those of ``also`` (same source bucket), in one PUT."""
    config = merge_configuration(get_configuration(s3, target.source_bucket), target)
    for more in also:
        config = merge_configuration(config, more)
    if not dry_run:
        s3.put_bucket_replication(Bucket=target.source_bucket, ReplicationConfiguration=config)
    return config

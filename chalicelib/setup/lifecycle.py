"""Retention of archives: one S3 lifecycle rule per stack, and what ``setup check`` says of it.

``logarchive setup lifecycle`` writes one rule, ``logarchive-<stack>-retention``, filtered to
``<stack>/shareable/`` (the archive keys only: never the staging, results or digest prefixes),
and its twin ``logarchive-<stack>-k8s-retention`` for the stack's Kubernetes archives
(``_k8s/<stack>/``, layout.py), into the bucket's lifecycle configuration. Every other rule of
the bucket is kept, so a re-run replaces ours only. The same rules suit the customer's bucket
and our archive bucket.

Expiry of a versioned bucket's current version only adds a delete marker; the rule also
expires noncurrent versions ``NONCURRENT_DAYS`` after they became noncurrent, so archives
really go, while a version deleted by hand stays recoverable that long.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import LogarchiveError
from ..layout import k8s_root
from . import object_lock

STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "STANDARD_IA")
# Classes whose objects cannot be read without a restore.
COLD_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# S3 bills at least this many days of storage per object in each class (early deletion).
MINIMUM_DAYS = {"STANDARD_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}
# S3 refuses a transition to STANDARD_IA earlier than this.
STANDARD_IA_FIRST_DAY = 30
NONCURRENT_DAYS = 30
# Signed digests (the audit's input) live here in the archive and customer buckets.
DIGEST_PREFIX = "_logarchive/digests/"


class LifecycleSetupError(LogarchiveError):
    """The lifecycle rule cannot be set as asked (one line, with the fix)."""


@dataclass(frozen=True)
class RetentionPlan:
    stack: str
    transition_days: int
    storage_class: str
    expire_days: int | None = None


def rule_id(stack: str) -> str:
    return f"logarchive-{stack}-retention"


def k8s_rule_id(stack: str) -> str:
    return f"logarchive-{stack}-k8s-retention"


def archive_prefix(stack: str) -> str:
    return f"{stack}/shareable/"


def archive_prefixes(stack: str) -> tuple[str, str]:
    """Docker's archives and Kubernetes' (``_k8s/<stack>/``): one rule each, the same plan."""
    return (archive_prefix(stack), k8s_root(stack))


def build_rules(plan: RetentionPlan) -> list[dict[str, Any]]:
    """Our rules: the archives of ``archive_prefix`` and the same for the Kubernetes archives."""
    k8s = build_rule(plan)
    k8s["ID"], k8s["Filter"] = k8s_rule_id(plan.stack), {"Prefix": k8s_root(plan.stack)}
    return [build_rule(plan), k8s]


def build_rule(plan: RetentionPlan) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ID": rule_id(plan.stack),
        "Status": "Enabled",
        "Filter": {"Prefix": archive_prefix(plan.stack)},
        "Transitions": [{"Days": plan.transition_days, "StorageClass": plan.storage_class}],
    }
    if plan.expire_days is not None:
        rule["Expiration"] = {"Days": plan.expire_days}
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": NONCURRENT_DAYS}
    return rule


def validate(plan: RetentionPlan, retention_days: int | None, retention_source: str) -> list[str]:
    """Refusals (S3 would reject the rule, or it would expire archives too early) as
    one-line errors; empty when the plan may be applied."""
    problems = []
    if plan.storage_class not in STORAGE_CLASSES:
        problems.append(f"--storage-class {plan.storage_class}: one of {', '.join(STORAGE_CLASSES)}")
    if plan.transition_days < 0:
        problems.append("--transition-days must be 0 or more")
    if plan.storage_class == "STANDARD_IA" and plan.transition_days < STANDARD_IA_FIRST_DAY:
        problems.append(f"--transition-days {plan.transition_days}: S3 moves objects to STANDARD_IA "
                        f"after {STANDARD_IA_FIRST_DAY} days at the earliest")
    if plan.expire_days is not None:
        if plan.expire_days <= plan.transition_days:
            problems.append(f"--expire-days {plan.expire_days} must be later than --transition-days "
                            f"{plan.transition_days}")
        if retention_days is not None and plan.expire_days < retention_days:
            problems.append(f"--expire-days {plan.expire_days} comes before the retention of "
                            f"{retention_days} days ({retention_source})")
    return problems


def early_deletion_warning(plan: RetentionPlan) -> str | None:
    if plan.expire_days is None:
        return None
    held = plan.expire_days - plan.transition_days
    minimum = MINIMUM_DAYS.get(plan.storage_class, 0)
    if held >= minimum:
        return None
    return (f"archives leave {plan.storage_class} after {held} days, but S3 bills {minimum} days "
            "there (early deletion fee): transition later or expire later")


def get_rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise


def merge_rules(existing: list[dict[str, Any]], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """``existing`` with ``rule`` in place of the rule of the same id (or added last)."""
    rules = [copy.deepcopy(r) for r in existing]
    for i, r in enumerate(rules):
        if r.get("ID") == rule["ID"]:
            rules[i] = rule
            return rules
    return [*rules, rule]


def configure(s3: Any, bucket: str, plan: RetentionPlan, *, dry_run: bool = False) -> dict[str, Any]:
    """Put (or, with ``dry_run``, only compute) the bucket's lifecycle with our rule merged in."""
    rules = get_rules(s3, bucket)
    for rule in build_rules(plan):
        rules = merge_rules(rules, rule)
    config = {"Rules": rules}
    if not dry_run:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=config)
    return config


def object_lock_days(s3: Any, bucket: str) -> int | None:
    """The bucket's Object Lock default retention in days; None without one."""
    return object_lock.state(s3, bucket).days or None


# ---------------------------------------------------------------------------------------
# Reading rules (setup check)
# ---------------------------------------------------------------------------------------


def rule_prefix(rule: dict[str, Any]) -> str | None:
    """The key prefix a rule is limited to: "" for the whole bucket; None when only tags or
    object sizes limit it (it may reach any key)."""
    f = rule.get("Filter")
    if f is None:  # the V1 schema: a top-level Prefix
        return rule.get("Prefix") or ""
    if "Prefix" in f:
        return f["Prefix"] or ""
    if "And" in f:
        return f["And"].get("Prefix") or None
    if "Tag" in f or "ObjectSizeGreaterThan" in f or "ObjectSizeLessThan" in f:
        return None
    return ""


def reaches(rule: dict[str, Any], prefix: str) -> bool:
    """Whether the rule may act on some key under ``prefix``."""
    p = rule_prefix(rule)
    return p is None or p.startswith(prefix) or prefix.startswith(p)


def _days(action: dict[str, Any] | None) -> int | None:
    if not action or action.get("Days") is None:
        return None
    return int(action["Days"])


def expiry_days(rule: dict[str, Any]) -> int | None:
    return _days(rule.get("Expiration"))


def cold_transitions(rule: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(_days(t), t.get("StorageClass", "")) for t in rule.get("Transitions", [])
            if t.get("StorageClass") in COLD_CLASSES]


def describe(rule: dict[str, Any]) -> str:
    p = rule_prefix(rule)
    scope = "tag/size-filtered" if p is None else (f"{p}*" if p else "whole bucket")
    parts = []
    for t in rule.get("Transitions", []):
        when = f"{t['Days']} days" if t.get("Days") is not None else t.get("Date", "?")
        parts.append(f"{t.get('StorageClass')} after {when}")
    exp = rule.get("Expiration") or {}
    if exp.get("Days") is not None:
        parts.append(f"expire after {exp['Days']} days")
    elif exp.get("Date"):
        parts.append(f"expire on {exp['Date']}")
    if rule.get("NoncurrentVersionExpiration"):
        noncurrent = rule["NoncurrentVersionExpiration"].get("NoncurrentDays")
        parts.append(f"noncurrent expire after {noncurrent} days")
    if rule.get("AbortIncompleteMultipartUpload"):
        parts.append("abort incomplete uploads")
    status = "" if rule.get("Status") == "Enabled" else f" [{rule.get('Status')}]"
    return f"{rule.get('ID', '(no id)')} ({scope}: {', '.join(parts) or 'no action'}){status}"


@dataclass(frozen=True)
class LifecycleReport:
    touching: list[str]
    warnings: list[str]


def review(
    rules: list[dict[str, Any]],
    *,
    stack: str = "",
    retention_days: int | None = None,
    lock_days: int | None = None,
) -> LifecycleReport:
    """The rules that reach the stack's archives, and what is wrong with them."""
    scopes = archive_prefixes(stack) if stack else ("",)
    enabled = [r for r in rules if r.get("Status") == "Enabled"]
    touching = [r for r in rules if any(reaches(r, scope) for scope in scopes)]
    warnings: list[str] = []
    retention, source = retention_days, "--retention-days"
    if retention is None and lock_days is not None:
        retention, source = lock_days, "the Object Lock default"
    if retention_days is not None and lock_days is not None and lock_days < retention_days:
        warnings.append(f"Object Lock keeps versions {lock_days} days, less than the stated retention of "
                        f"{retention_days} days: archives can be deleted before it ends")
    for r in touching:
        if r not in enabled:
            continue
        m = expiry_days(r)
        if m is None:
            continue
        if retention is not None and m < retention:
            warnings.append(f"rule {r.get('ID')} expires archives after {m} days, before the retention of "
                            f"{retention} days ({source})")
        elif lock_days is not None and m < lock_days:
            warnings.append(f"rule {r.get('ID')} expires archives after {m} days but Object Lock keeps each "
                            f"version {lock_days} days: until then the expiry only hides them behind a "
                            "delete marker, and they stay billed")
    for r in enabled:
        if not reaches(r, DIGEST_PREFIX):
            continue
        for days, cls in cold_transitions(r):
            what = "has no prefix filter" if not rule_prefix(r) else f"reaches {DIGEST_PREFIX}"
            warnings.append(f"rule {r.get('ID')} {what}: it moves the digests under {DIGEST_PREFIX} to {cls}"
                            f"{f' after {days} days' if days is not None else ''}, and the audit must read "
                            "them; filter it to <stack>/shareable/ (logarchive setup lifecycle does)")
    return LifecycleReport([describe(r) for r in touching], warnings)

"""S3 Object Lock on an existing versioned bucket: default retention for archives and digests.

Every object written afterwards (archives, their copies, digests) inherits the default retention,
so neither the archiver nor replication needs a grant of its own. ``compliance`` cannot be undone
or shortened by anyone, the account's root user included, until each object's date has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from ..awserrors import error_code, error_label
from ..errors import LogarchiveError

MODES = ("governance", "compliance")
_NOT_CONFIGURED = ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration")


@dataclass(frozen=True)
class LockState:
    enabled: bool
    mode: str = ""  # GOVERNANCE | COMPLIANCE, "" without a default rule
    days: int = 0  # default retention (Years counted as 365 days)

    def describe(self) -> str:
        if not self.enabled:
            return "Object Lock not enabled"
        if not self.mode:
            return "Object Lock enabled, no default retention"
        return f"Object Lock {self.mode}, default retention {self.days} days"


def configuration(mode: str, days: int) -> dict[str, Any]:
    if mode not in MODES:
        raise LogarchiveError(f"--mode {mode!r}: expected governance or compliance")
    if days < 1:
        raise LogarchiveError(f"--days {days}: must be at least 1")
    return {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode.upper(), "Days": days}}}


def state(s3: Any, bucket: str) -> LockState:
    try:
        conf = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as exc:
        if error_code(exc) in _NOT_CONFIGURED:
            return LockState(False)
        raise
    if conf.get("ObjectLockEnabled") != "Enabled":
        return LockState(False)
    default = (conf.get("Rule") or {}).get("DefaultRetention") or {}
    days = int(default.get("Days") or 0) + 365 * int(default.get("Years") or 0)
    return LockState(True, str(default.get("Mode") or ""), days)


def plan(s3: Any, bucket: str, mode: str, days: int) -> tuple[dict[str, Any], list[str]]:
    """The configuration to set, and why it cannot be set (empty: it can)."""
    config = configuration(mode, days)
    problems = []
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except ClientError as exc:
        raise LogarchiveError(f"s3://{bucket}: cannot read versioning ({error_label(exc)})") from None
    if status != "Enabled":
        problems.append(f"s3://{bucket}: versioning is {status or 'never enabled'}; Object Lock needs "
                        "versioning enabled (aws s3api put-bucket-versioning --bucket "
                        f"{bucket} --versioning-configuration Status=Enabled)")
    current = state(s3, bucket)
    if current.mode == "COMPLIANCE" and (mode != "compliance" or days < current.days):
        # AWS accepts it (the default applies to new objects only), but it weakens what was promised.
        problems.append(f"s3://{bucket}: already COMPLIANCE {current.days} days; refusing to set a "
                        f"weaker default ({mode} {days} days)")
    return config, problems


def apply(s3: Any, bucket: str, config: dict[str, Any]) -> None:
    try:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config)
    except ClientError as exc:
        raise LogarchiveError(f"s3://{bucket}: PutObjectLockConfiguration failed "
                              f"({error_label(exc)})") from None


def retention_short(last_modified: datetime, mode: str | None, until: datetime | None,
                    lock: LockState, slack: timedelta = timedelta(minutes=5)) -> str:
    """Why an object is held for less than the default retention ("" if it is not)."""
    if not lock.mode or lock.days <= 0:
        return ""
    need = last_modified.astimezone(UTC) + timedelta(days=lock.days) - slack
    if not mode or until is None:
        return "no retention"
    if until < need:
        return f"{mode} until {until:%Y-%m-%dT%H:%M:%SZ}, less than {lock.days} days"
    if lock.mode == "COMPLIANCE" and mode != "COMPLIANCE":
        return f"{mode}, not COMPLIANCE"
    return ""

"""S3 storage classes and restores: which objects need one, asking for it, S3's refusals.

S3 serves GLACIER and DEEP_ARCHIVE objects, and INTELLIGENT_TIERING objects in an archive
tier, only after a restore (``RestoreObject``) made a temporary copy; a GET before that
answers ``InvalidObjectState``. GLACIER_IR, STANDARD_IA and the other classes read like
STANDARD. A HEAD gives the restore state (``Restore``: ``ongoing-request="true"`` while S3
works, ``"false"`` with an expiry date once the copy is there) and Intelligent-Tiering's tier
(``ArchiveStatus``). Shared by ``logs-from-archive`` (``download/coldstore.py``) and the
retrieval worker (``jobs/scan_step.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .awserrors import error_code, error_label
from .errors import LogarchiveError

COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
TIERS = ("Bulk", "Standard", "Expedited")
DEFAULT_TIER = "Bulk"

READABLE = "readable"  # never cold: read it now
COLD = "cold"  # archived, no restore asked (or the last one expired)
RESTORING = "restoring"  # a restore is under way
RESTORED = "restored"  # the temporary copy is there: read it now

_ONGOING = re.compile(r'ongoing-request="(true|false)"')
_EXPIRY = re.compile(r'expiry-date="([^"]*)"')


@dataclass(frozen=True)
class ColdState:
    """Where one archive stands: its class (and Intelligent-Tiering tier) and restore state."""

    storage_class: str
    state: str
    archive_tier: str | None = None  # ARCHIVE_ACCESS | DEEP_ARCHIVE_ACCESS
    restore_expiry: str | None = None

    @property
    def readable(self) -> bool:
        return self.state in (READABLE, RESTORED)

    @property
    def label(self) -> str:
        """``GLACIER``, ``DEEP_ARCHIVE``, ``INTELLIGENT_TIERING/DEEP_ARCHIVE_ACCESS``…"""
        return f"{self.storage_class}/{self.archive_tier}" if self.archive_tier else self.storage_class

    @property
    def price_class(self) -> str:
        """The class whose restore prices and times apply."""
        if self.archive_tier == "DEEP_ARCHIVE_ACCESS":
            return "DEEP_ARCHIVE"
        if self.archive_tier == "ARCHIVE_ACCESS":
            return "GLACIER"
        return self.storage_class


def may_be_cold(storage_class: str | None) -> bool:
    """Whether an object of this (listed) class may need a restore: a HEAD tells."""
    return storage_class in COLD_CLASSES or storage_class == INTELLIGENT_TIERING


def state_of(storage_class: str | None, head: dict[str, Any]) -> ColdState:
    """The state of an object from its listed class and a HEAD response."""
    cls = head.get("StorageClass") or storage_class or "STANDARD"
    tier = head.get("ArchiveStatus") or None
    restore = head.get("Restore") or ""
    ongoing = _ONGOING.search(restore)
    expiry = _EXPIRY.search(restore)
    if cls not in COLD_CLASSES and not (cls == INTELLIGENT_TIERING and tier):
        return ColdState(cls, READABLE)
    if ongoing is None:
        return ColdState(cls, COLD, tier)
    if ongoing.group(1) == "true":
        return ColdState(cls, RESTORING, tier)
    return ColdState(cls, RESTORED, tier, expiry.group(1) if expiry else None)


# ---------------------------------------------------------------------------------------
# Restores
# ---------------------------------------------------------------------------------------


def restore_request(state: ColdState, tier: str, days: int) -> dict[str, Any]:
    """``RestoreRequest`` for one archive. Intelligent-Tiering's archive tiers take neither
    days (S3 answers InvalidArgument: the restored object stays until it cools again) nor a tier
    here (Standard, its free default)."""
    if state.storage_class == INTELLIGENT_TIERING:
        return {}
    return {"Days": days, "GlacierJobParameters": {"Tier": tier}}


def check_tier(key: str, state: ColdState, tier: str) -> None:
    """Refuse before asking S3 what S3 refuses for this class."""
    if tier == "Expedited" and state.price_class == "DEEP_ARCHIVE":
        raise LogarchiveError(f"{key}: restore refused: {state.label} has no Expedited retrieval: use "
                              "--restore-tier Standard or Bulk")


def restore_error(key: str, exc: BaseException, state: ColdState, tier: str) -> LogarchiveError:
    """One line per refused restore, by S3's error code."""
    code = error_label(exc)
    if code == "InvalidObjectState":
        why = f"S3 says it is not archived (InvalidObjectState; listed as {state.label}): nothing to restore"
    elif code == "GlacierExpeditedRetrievalNotAvailable":
        why = ("no Expedited capacity now (GlacierExpeditedRetrievalNotAvailable): retry later, or use "
               "--restore-tier Standard")
    elif code == "InvalidArgument" and tier == "Expedited":
        why = f"S3 refused an Expedited restore of {state.label} (InvalidArgument): use Standard or Bulk"
    elif code in ("AccessDenied", "403"):
        why = "access denied (AccessDenied): restoring needs s3:RestoreObject on the bucket's objects"
    else:
        why = f"S3 error {code}"
    return LogarchiveError(f"{key}: restore refused: {why}")


def request_restore(
    s3: Any, bucket: str, key: str, state: ColdState, tier: str, days: int, *, version_id: str = "",
    name: str = "",
) -> str:
    """Ask S3 to restore one cold archive (``version_id``: that version). Returns ``requested``,
    or ``in progress`` when S3 already works on it (asked again after a HEAD said so, by another
    run, or concurrently). ``name`` (default: the key) is how errors call the object."""
    name = name or key
    check_tier(name, state, tier)
    kwargs = {"VersionId": version_id} if version_id else {}
    try:
        s3.restore_object(Bucket=bucket, Key=key, RestoreRequest=restore_request(state, tier, days), **kwargs)
    except Exception as exc:
        if error_code(exc) == "RestoreAlreadyInProgress":
            return "in progress"
        raise restore_error(name, exc, state, tier) from None
    return "requested"

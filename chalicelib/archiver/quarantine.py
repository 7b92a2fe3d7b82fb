"""Moving a staged object that cannot be archived aside, with its reason, never dropping it.

The object is copied to ``quarantine/<staged key>`` in the staging bucket with its original
metadata plus ``logarchive-quarantine-reason`` (and a tag for lifecycle rules and alarms),
verified by HEAD, and only then is the staged version deleted. Repeating it is harmless: the
copy overwrites the same bytes, the delete names the exact version.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..errors import LogarchiveError
from ..staged import QUARANTINE_PREFIX
from . import s3io
from .messages import Job

log = logging.getLogger(__name__)
COPY_LIMIT = 5 * 1024**3  # CopyObject's single-request limit


def _tag_value(reason: str) -> str:
    """The cause without details, in the characters S3 tag values allow."""
    return re.sub(r"[^A-Za-z0-9 _.:/=+@-]", "", reason.split(":")[0].split("(")[0]).strip()[:200]


def quarantine(s3: Any, job: Job, metadata: Mapping[str, str], reason: str) -> str:
    """Returns the quarantine key. Raises (for a retry) if the move cannot be completed."""
    dest = QUARANTINE_PREFIX + job.key
    reason = reason.encode("ascii", "replace").decode()[:512]
    meta = {
        **{k: v for k, v in metadata.items() if not k.startswith("logarchive-quarantine")},
        "logarchive-quarantine-reason": reason,
        "logarchive-quarantined-at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    source: dict[str, str] = {"Bucket": job.bucket, "Key": job.key}
    if job.version_id:
        source["VersionId"] = job.version_id
    extra = {
        "Metadata": meta,
        "MetadataDirective": "REPLACE",
        "Tagging": f"logarchive-quarantine={quote(_tag_value(reason))}",
        "TaggingDirective": "REPLACE",
    }
    if job.size > COPY_LIMIT:
        s3.copy(source, job.bucket, dest, ExtraArgs=extra)
    else:
        s3.copy_object(Bucket=job.bucket, Key=dest, CopySource=source, **extra)
    head = s3.head_object(Bucket=job.bucket, Key=dest)
    if head["ContentLength"] != job.size:
        raise LogarchiveError(f"s3://{job.bucket}/{dest}: quarantine copy has {head['ContentLength']} bytes, "
                              f"expected {job.size}")
    s3io.delete_exact(s3, job.bucket, job.key, version_id=job.version_id, etag=job.etag)
    log.error("%s: quarantined to s3://%s/%s: %s", job.name, job.bucket, dest, reason)
    return dest

"""The IAM policy of one Docker host's shipper: its own staging path and markers, nothing else.

The archiver trusts a staged key's path for host, container and segment (``staged.parse_staged_key``),
so the path must be the boundary IAM enforces: host ``H`` of stack ``S`` may write only
``<prefix>/S/H/*`` and read only its own ``archived/<prefix>/S/H/*`` markers. One role per host
with these literal ARNs (docs/SHIPPER.md, "IAM": why not one role with session tags). No
``Condition``: every statement holds by its resource alone, which any IAM evaluator (the local
AWS's too) checks the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..errors import UsageError
from ..layout import STACK_RE
from ..staged import ARCHIVED_PREFIX
from .iam import host_history_read

# A host name becomes part of an ARN: IAM's wildcards (* ?) and policy variables (${…}) would
# widen the grant to other hosts' paths, so a host name may hold none of them.
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}\Z", re.ASCII)
ROLE_NAME_MAX = 64


def _check(stack: str, host: str) -> None:
    if not STACK_RE.match(stack):
        raise UsageError(f"--stack {stack[:70]!r}: not a stack name ({STACK_RE.pattern})")
    if not HOST_RE.match(host):
        raise UsageError(f"--host {host[:70]!r}: a host name of letters, digits, '.', '_' and '-' only "
                         "(IAM would read * ? $ as patterns)")


def host_prefix(staging_prefix: str, stack: str, host: str) -> str:
    """``<prefix>/<stack>/<host>/``: where the host's segments, explanations and heartbeat go."""
    return "/".join(p for p in (staging_prefix.strip("/"), stack, host) if p) + "/"


def role_name(stack: str, host: str) -> str:
    """``<stack>-logarchive-ship-<host>``, shortened with a hash of the host when IAM's 64
    characters do not hold it (two hosts never share a role)."""
    _check(stack, host)
    name = f"{stack}-logarchive-ship-{host}"
    if len(name) <= ROLE_NAME_MAX:
        return name
    digest = hashlib.sha256(host.encode()).hexdigest()[:12]
    return f"{name[:ROLE_NAME_MAX - 13]}-{digest}"


def policy(*, stack: str, host: str, staging_bucket: str, staging_prefix: str,
           archive_bucket: str = "") -> dict[str, Any]:
    """The identity policy of host ``host``'s role: what it writes, and what it reads of its own
    history (``iam.host_history_read``: the state's start check, ``--rebuild-state``; with
    ``archive_bucket`` the stack's archive metadata, whose listing alone carries a condition)."""
    _check(stack, host)
    own = host_prefix(staging_prefix, stack, host)
    objects = f"arn:aws:s3:::{staging_bucket}/"
    return {"Version": "2012-10-17", "Statement": [
        # Segments, explanations, the heartbeat: create (PUT, multipart), HEAD, abort stale uploads.
        {"Sid": "StageUnderItsOwnPath", "Effect": "Allow",
         "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
         "Resource": [f"{objects}{own}*"]},
        # The archiver's "archived" markers of its own segments (HEAD after a crash).
        {"Sid": "ReadItsOwnArchivedMarkers", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{objects}{ARCHIVED_PREFIX}{own}*"]},
        # Without ListBucket a HEAD of a missing key answers 403, not 404; a HEAD has no prefix
        # to condition on. Listing shows other hosts' key names, never their bytes.
        {"Sid": "TellMissingFromForbidden", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
         "Resource": [f"arn:aws:s3:::{staging_bucket}"]},
        *host_history_read(staging_bucket, staging_prefix, stack, host, archive_bucket),
    ]}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)

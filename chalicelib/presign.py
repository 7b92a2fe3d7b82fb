"""Presigned GET URLs that live as long as they say (the API's archives and job results).

- Signature Version 4 on the bucket's regional virtual-hosted endpoint
  (``https://<bucket>.s3.<region>.amazonaws.com/…``; ``aws.client(..., presign=True)``): S3
  buckets created since June 2020 refuse Signature Version 2, and a global or other-region host
  answers a redirect a presigned GET cannot follow. The bucket's region is the stage's
  (``Settings.region``; ``setup check`` confirms each bucket is there).
- A presigned URL dies with the credentials that signed it, whatever ``X-Amz-Expires`` says. Its
  lifetime is the asked-for one cut to the signing credentials' remaining life, less a margin for
  clock skew, when botocore knows their expiry (assumed roles, SSO, container and instance
  credentials, ``$AWS_CREDENTIAL_EXPIRATION``, :func:`aws.credentials` with an expiration).
  Temporary credentials whose expiry nobody tells (a session token without an expiry: Lambda's
  environment) get ``UNKNOWN_EXPIRY_SECONDS`` at most — a cap, not knowledge. Long-term keys sign
  for the asked-for time (SigV4's own limit is seven days).
- The caller is told when each URL expires (:class:`Presigned`, RFC 3339 UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import aws
from .errors import LogarchiveError

SKEW_SECONDS = 30  # signer's and S3's clocks may differ this much
UNKNOWN_EXPIRY_SECONDS = 300
MIN_SECONDS = 1
SIGV4_MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Presigned:
    url: str
    expires_in: int  # seconds from signing
    expires_at: datetime

    @property
    def expires_at_text(self) -> str:
        return self.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expiry_of(client: Any) -> tuple[datetime | None, bool]:
    """(expiry of the credentials this client signs with, whether they are temporary)."""
    explicit = aws.current_credentials()
    if explicit is not None:
        return explicit.expiration, bool(explicit.token)
    creds = client._request_signer._credentials  # what botocore signs with (no public accessor)
    if creds is None:
        raise LogarchiveError("no AWS credentials to sign a download URL with")
    expiry = getattr(creds, "_expiry_time", None)  # RefreshableCredentials
    frozen = creds.get_frozen_credentials()  # refreshes credentials about to expire first
    expiry = getattr(creds, "_expiry_time", None) or expiry
    return expiry, bool(frozen.token)


def lifetime(asked: int, expiry: datetime | None, temporary: bool, now: datetime) -> int:
    """Seconds a URL signed now may live: never past the credentials' expiry."""
    limit = min(asked, SIGV4_MAX_SECONDS)
    if expiry is not None:
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        limit = min(limit, int((expiry - now).total_seconds()) - SKEW_SECONDS)
    elif temporary:
        limit = min(limit, UNKNOWN_EXPIRY_SECONDS)
    if limit < MIN_SECONDS:
        raise LogarchiveError("the signing credentials expire too soon to sign a download URL")
    return limit


def get_url(bucket: str, key: str, *, region: str, seconds: int, version_id: str = "",
            now: datetime | None = None) -> Presigned:
    """A presigned GET of ``bucket``/``key`` (that version), SigV4 on ``region``'s endpoint."""
    if not region:
        raise LogarchiveError("LOGARCHIVE_REGION is not set: no regional endpoint to presign on")
    client = aws.client("s3", region=region, presign=True)
    now = now or datetime.now(UTC)
    expiry, temporary = _expiry_of(client)
    expires_in = lifetime(seconds, expiry, temporary, now)
    params = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
    return Presigned(url, expires_in, now + timedelta(seconds=expires_in))

"""boto3 clients, created lazily and cached, honouring ``AWS_ENDPOINT_URL``.

boto3 reads ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) natively; an explicit
``endpoint_url`` (the CLI's ``--endpoint-url``) wins over it. Retries use botocore's
``standard`` mode, which backs off on throttling, 5xx and connection errors: 8 attempts, or
``$AWS_MAX_ATTEMPTS`` as the AWS CLI reads it.

A client is cached per service, endpoint, region *and credentials*: the credentials in effect
are those of :func:`credentials` (a context-local override: several functions, each with its own
role, in one process — the local IAM-enforced stack and its tests), else the environment's
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``). Without
them in the key every handler of a process would silently sign with the first one's.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config


def _retry_config() -> Config:
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return Config(
        retries={"max_attempts": int(attempts) if attempts.isdigit() and int(attempts) > 0 else 8,
                 "mode": "standard"},
        max_pool_connections=32,
    )


# Presigned URLs: Signature Version 4 (S3 refuses SigV2 on buckets made since June 2020) on the
# bucket's regional virtual-hosted endpoint (``<bucket>.s3.<region>.amazonaws.com``; us-east-1's
# regional one too, not the global ``s3.amazonaws.com``).
_PRESIGN_CONFIG = Config(
    signature_version="s3v4",
    s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
)


@dataclass(frozen=True)
class Credentials:
    """Explicit credentials (an assumed role's), with their expiry when known."""

    access_key: str
    secret_key: str = ""
    token: str | None = None
    expiration: datetime | None = None

    def __repr__(self) -> str:  # never the secret or the token
        return f"Credentials(access_key={self.access_key!r})"

    @classmethod
    def from_sts(cls, answer: dict[str, Any]) -> Credentials:
        """From an ``sts:AssumeRole`` answer's ``Credentials``."""
        c = answer.get("Credentials", answer)
        return cls(c["AccessKeyId"], c["SecretAccessKey"], c.get("SessionToken"), c.get("Expiration"))


_override: ContextVar[Credentials | None] = ContextVar("logarchive_aws_credentials", default=None)
_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


@contextmanager
def credentials(creds: Credentials | None) -> Iterator[None]:
    """Every :func:`client` made in this block (this thread or task) signs with ``creds``."""
    token = _override.set(creds)
    try:
        yield
    finally:
        _override.reset(token)


def current_credentials() -> Credentials | None:
    """The explicit credentials in effect (``None``: boto3's own chain)."""
    return _override.get()


def _digest(*parts: str | None) -> str:
    # The cache key names the credentials without holding the secret in clear.
    return hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()


def _credentials_key() -> tuple[str, ...]:
    creds = _override.get()
    if creds is not None:
        return ("explicit", creds.access_key, _digest(creds.secret_key, creds.token))
    env = os.environ
    return ("environment", env.get("AWS_PROFILE", ""), env.get("AWS_ACCESS_KEY_ID", ""),
            _digest(env.get("AWS_SECRET_ACCESS_KEY"), env.get("AWS_SESSION_TOKEN")))


def client(service: str, *, endpoint_url: str | None = None, region: str | None = None,
           presign: bool = False) -> Any:
    """A cached boto3 client for ``service`` (thread-safe once created).

    ``presign``: an S3 client for presigned URLs (SigV4, virtual-hosted regional endpoint);
    give it the bucket's ``region``.
    """
    cache_key = (service, endpoint_url, region, presign, _credentials_key(),
                 os.environ.get("AWS_MAX_ATTEMPTS", ""))
    with _lock:
        found = _cache.get(cache_key)
        if found is None:
            creds = _override.get()
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key if creds else None,
                aws_secret_access_key=creds.secret_key if creds else None,
                aws_session_token=creds.token if creds else None,
            )
            found = session.client(
                service, endpoint_url=endpoint_url, region_name=region,
                config=_retry_config().merge(_PRESIGN_CONFIG) if presign else _retry_config(),
            )
            for event, handler in _observers:
                found.meta.events.register(event, handler)
            if service == "s3" and not presign:
                # Every call into a bucket of the stage pins its owner (a presigned URL would make
                # the header a condition of its download: none there).
                found.meta.events.register("before-parameter-build.s3", _pin_bucket_owner)
            _cache[cache_key] = found
        return found


_OWNER_SETTINGS = ("LOGARCHIVE_ACCOUNT_ID", "LOGARCHIVE_REGION", "LOGARCHIVE_STACK",
                   "LOGARCHIVE_BUCKET_OWNERS", "LOGARCHIVE_STAGING_BUCKET", "LOGARCHIVE_ARCHIVE_BUCKET",
                   "LOGARCHIVE_RESULTS_BUCKET", "LOGARCHIVE_REPLICATE_TO")
_owners_cache: dict[tuple[str, ...], dict[str, str]] = {}


def expected_owners() -> dict[str, str]:
    """Bucket -> account of this process's stage (``Settings.expected_owners``; none when the
    stage names no account, as local runs)."""
    snapshot = tuple(os.environ.get(k, "") for k in _OWNER_SETTINGS)
    found = _owners_cache.get(snapshot)
    if found is None:
        from .errors import LogarchiveError
        from .settings import Settings  # settings imports keyring, which imports this module

        try:
            found = Settings.from_env().expected_owners() if snapshot[0] else {}
        except LogarchiveError:  # a malformed setting is reported by whoever reads it, not here
            found = {}
        _owners_cache[snapshot] = found
    return found


_pinned: dict[str, str] = {}  # bucket -> account: pinned_owner (the CLI's --expected-owner)


@contextmanager
def pinned_owner(bucket: str, account: str) -> Iterator[None]:
    """While it lasts, every S3 call into ``bucket`` through :func:`client` (any thread) sends
    ``ExpectedBucketOwner=account``: the CLI's ``--expected-owner`` for a customer's bucket."""
    with _lock:
        saved = _pinned.get(bucket)
        _pinned[bucket] = account
    try:
        yield
    finally:
        with _lock:
            if saved is None:
                _pinned.pop(bucket, None)
            else:
                _pinned[bucket] = saved


def _owner_of(bucket: Any) -> str | None:
    """The account expected to own ``bucket``: pinned (:func:`pinned_owner`) or the stage's."""
    return _pinned.get(bucket) or expected_owners().get(bucket)


def _pin_bucket_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
    """``ExpectedBucketOwner`` on each S3 call into a bucket of the stage (or one
    :func:`pinned_owner` names): S3 refuses (403) a bucket someone else holds under the name,
    instead of writing archives into it or serving another account's objects."""
    members = model.input_shape.members if model.input_shape else {}
    bucket = params.get("Bucket")
    owner = _owner_of(bucket)
    if owner and "ExpectedBucketOwner" in members:
        params.setdefault("ExpectedBucketOwner", owner)
    source = params.get("CopySource")
    source = source.get("Bucket") if isinstance(source, dict) else str(source or "").lstrip("/").split("/")[0]
    owner = _owner_of(source)
    if owner and "ExpectedSourceBucketOwner" in members:
        params.setdefault("ExpectedSourceBucketOwner", owner)


_providers: dict[tuple, Any] = {}
_observers: list[tuple[str, Any]] = []


@contextmanager
def observe(event: str, handler: Any) -> Iterator[None]:
    """``handler`` on botocore ``event`` of every client :func:`client` has made or makes in this
    block (the local IAM checks record each call a handler makes: devkit/local_iam.py)."""
    with _lock:
        _observers.append((event, handler))
        made = list(_cache.values())
    for c in made:
        c.meta.events.register(event, handler)
    try:
        yield
    finally:
        with _lock:
            _observers.remove((event, handler))
            made = list(_cache.values())
        for c in made:
            c.meta.events.unregister(event, handler)


def get_secret(name: str, *, max_age: int) -> Any:
    """A Secrets Manager value through Powertools Parameters (cached ``max_age`` seconds), read
    with :func:`client`'s credentials: Powertools' default provider would keep the first
    caller's client, and with it the first function's role, for the whole process."""
    return _provider("secretsmanager").get(name, max_age=max_age)


def get_parameter(name: str, *, max_age: int, decrypt: bool = True) -> Any:
    """An SSM parameter value, as :func:`get_secret`."""
    return _provider("ssm").get(name, max_age=max_age, decrypt=decrypt)


def _provider(service: str) -> Any:
    from aws_lambda_powertools.utilities import parameters

    found = client(service)
    key = (service, id(found))
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            kind = parameters.SecretsProvider if service == "secretsmanager" else parameters.SSMProvider
            provider = _providers[key] = kind(boto3_client=found)
        return provider


def clear_parameter_caches() -> None:
    """Forget every cached secret and parameter value (a cold start does the same)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    with _lock:
        for provider in _providers.values():
            provider.clear_cache()


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints, forked workers)."""
    with _lock:
        _cache.clear()
        _providers.clear()

"""boto3 clients, created lazily and cached, honouring ``AWS_ENDPOINT_URL``.

boto3 reads ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) natively; an explicit
``endpoint_url`` (the CLI's ``--endpoint-url``) wins over it. Retries use botocore's
``standard`` mode, which backs off on throttling, 5xx and connection errors: 8 attempts, or
``$AWS_MAX_ATTEMPTS`` as the AWS CLI reads it.
"""

from __future__ import annotations

import os
import threading
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


_cache: dict[tuple[str, str | None, str | None], Any] = {}
_lock = threading.Lock()


def client(service: str, *, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A cached boto3 client for ``service`` (thread-safe once created)."""
    cache_key = (service, endpoint_url, region)
    with _lock:
        found = _cache.get(cache_key)
        if found is None:
            session = boto3.session.Session()
            found = session.client(
                service, endpoint_url=endpoint_url, region_name=region, config=_retry_config()
            )
            _cache[cache_key] = found
        return found


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints, forked workers)."""
    with _lock:
        _cache.clear()



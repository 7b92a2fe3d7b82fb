"""Pagination tokens that cannot be forged into other queries.

A token is ``base64url(payload).base64url(HMAC-SHA256(secret, scope | payload))``. The
payload holds the position and an expiry; ``scope`` is a fingerprint of the normalised query
the token was issued for (never sent, so a token is useless with any other query). The server
also rebuilds every DynamoDB key from the validated query, so even a valid token only moves
within the query that issued it.

The secret is ``$LOGARCHIVE_API_TOKEN_SECRET`` (set it per stage, e.g. from Secrets Manager).
Without it a secret is derived from the table and stack names: tokens stay bound to their query
but are no longer unforgeable, and a warning says so once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from ..settings import Settings

log = logging.getLogger(__name__)
SECRET_ENV = "LOGARCHIVE_API_TOKEN_SECRET"
TTL_SECONDS = 3600
_warned = False


class TokenError(ValueError):
    """The token is malformed, expired, or was issued for another query."""


def _secret() -> bytes:
    global _warned
    s = Settings.from_env()
    value = s.api_token_secret
    if value:
        return value.encode()
    if not _warned:
        log.warning("%s is not set: pagination tokens are bound to their query but not secret", SECRET_ENV)
        _warned = True
    seed = f"{s.index_table}|{s.stack}"
    return hashlib.sha256(f"logarchive-token|{seed}".encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scope_of(params: dict[str, Any]) -> str:
    """A fingerprint of the query a token belongs to (every parameter except the token)."""
    norm = {k: v for k, v in sorted(params.items()) if k != "next_token" and v is not None}
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()


def _mac(scope: str, payload: bytes) -> bytes:
    return hmac.new(_secret(), scope.encode() + b"|" + payload, hashlib.sha256).digest()


def issue(scope: str, position: dict[str, Any], *, now: float | None = None) -> str:
    body = {"p": position, "x": int((now or time.time()) + TTL_SECONDS)}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(payload)}.{_b64(_mac(scope, payload))}"


def verify(scope: str, token: str, *, now: float | None = None) -> dict[str, Any]:
    """The position in ``token``; raises TokenError unless it was issued for ``scope``."""
    if not isinstance(token, str) or len(token) > 2048 or token.count(".") != 1:
        raise TokenError("next_token is malformed")
    p64, m64 = token.split(".")
    try:
        payload, mac = _unb64(p64), _unb64(m64)
    except (ValueError, TypeError):
        raise TokenError("next_token is malformed") from None
    if not hmac.compare_digest(mac, _mac(scope, payload)):
        raise TokenError("next_token does not belong to this query")
    body = json.loads(payload)
    if body.get("x", 0) < (now or time.time()):
        raise TokenError("next_token has expired")
    if not isinstance(body.get("p"), dict):
        raise TokenError("next_token is malformed")
    return body["p"]

"""Lambda settings, read once from environment variables (set per stage in .chalice/config.json).

``Settings.from_env`` is the one reader of the ``LOGARCHIVE_*`` variables: every Lambda
handler and the local ``logarchive archive`` command read their configuration through it, and
``setup``'s deploy-time checks (``setup/resources.py``) build on what it read from a stage's
``environment_variables``, so all of them use the same names, defaults and parsing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .codec import DEFAULT_COMPRESSION, preset
from .errors import LogarchiveError
from .keyring import Keyring, gather_keys, keys_from_parameter_store

Env = Mapping[str, object]  # os.environ, or a stage's environment_variables (JSON values)


def _env(env: Env, name: str, default: str = "") -> str:
    return str(env.get(name, default)).strip()


def _number(env: Env, name: str, default: float) -> float:
    text = _env(env, name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise LogarchiveError(f"${name} must be a number, not {text!r}") from None


def _list(env: Env, name: str) -> tuple[str, ...]:
    return tuple(x for x in (p.strip() for p in _env(env, name).split(",")) if x)


class ReplicationMode(StrEnum):
    """How archive objects reach the customer's buckets (``$LOGARCHIVE_REPLICATION_MODE``)."""

    DIRECT = "direct"  # the worker PUTs each copy itself
    S3_REPLICATION = "s3-replication"  # S3 Replication copies; the scheduler confirms

    @classmethod
    def parse(cls, text: str, name: str = "LOGARCHIVE_REPLICATION_MODE") -> ReplicationMode:
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise LogarchiveError(f"${name} must be one of {choices}, not {text[:40]!r}") from None


# Lambda's cap on concurrent invocations of each SQS worker (event source ``ScalingConfig``):
# about twice the peak hour's need, docs/SCALING.md. Per stage in .chalice/config.json.
MAX_CONCURRENCY = {
    "archive_worker": ("LOGARCHIVE_ARCHIVE_MAX_CONCURRENCY", 25),
    "retrieval_worker": ("LOGARCHIVE_RETRIEVAL_MAX_CONCURRENCY", 25),
}
MAX_CONCURRENCY_RANGE = (2, 1000)  # what Lambda accepts


def max_concurrency(function: str, env: Env | None = None) -> int:
    """The ``MaximumConcurrency`` of ``function``'s SQS event source, from ``env`` (default: os.environ).

    app.py reads it when Chalice imports it for ``deploy`` or ``package`` (the stage's
    environment is loaded first); ``setup deployment-files`` validates the same value.
    """
    name, default = MAX_CONCURRENCY[function]
    text = _env(os.environ if env is None else env, name)
    if not text:
        return default
    low, high = MAX_CONCURRENCY_RANGE
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise LogarchiveError(f"${name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _compression(env: Env, name: str) -> str:
    try:
        return preset(_env(env, name)).name
    except LogarchiveError as exc:
        raise LogarchiveError(f"${name}: {exc}") from None


def require(value: str, name: str) -> str:
    """``value``, or one line naming the unset setting ``name``."""
    if not value:
        raise LogarchiveError(f"{name} is not set")
    return value


@dataclass(frozen=True)
class Settings:
    stack: str = ""
    staging_bucket: str = ""
    staging_prefix: str = ""
    archive_bucket: str = ""
    replicate_to: tuple[str, ...] = ()
    replication_mode: ReplicationMode = ReplicationMode.DIRECT
    work_queue_url: str = ""
    idempotency_table: str = ""
    index_table: str = ""
    retrieval_queue_url: str = ""
    jobs_table: str = ""
    results_bucket: str = ""
    results_prefix: str = "retrievals/"
    kms_key_id: str = ""
    keys_secret: str = ""  # Secrets Manager secret holding base64 keys, one a line
    keys_parameter: str = ""  # SSM SecureString parameter holding the same
    api_token_secret: str = ""  # Secrets Manager secret (name or ARN): the HMAC key of page tokens
    # archiver tuning
    schedule_lease_seconds: int = 10800  # a scheduled staged object is not re-sent for this long
    worker_reserve_ms: int = 20000  # stop taking records when less than this (+ size estimate) remains
    worker_min_mb_per_s: float = 20.0  # pessimistic per-object throughput for that estimate
    part_size_mb: int = 16  # multipart part size of archive uploads (S3 minimum 5), 4 in flight
    replication_pending_seconds: int = 21600  # s3-replication: PENDING longer than this is re-driven
    host_silent_seconds: int = 21600  # a host whose last heartbeat is older is silent (HostsSilent)
    # digest signing (the scheduler seals; docs/AUDIT.md): a KMS key, else an Ed25519 PEM key
    signing_kms_key_id: str = ""
    signing_key_secret: str = ""
    signing_key_parameter: str = ""
    signing_key_file: str = ""  # local runs (``archive --once --signing-key-file``)
    compression: str = DEFAULT_COMPRESSION  # the worker's codec.PRESETS name
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        """The settings in ``env`` (default: ``os.environ``); one line naming a malformed one."""
        e: Env = os.environ if env is None else env
        return cls(
            stack=_env(e, "LOGARCHIVE_STACK"),
            staging_bucket=_env(e, "LOGARCHIVE_STAGING_BUCKET"),
            staging_prefix=_env(e, "LOGARCHIVE_STAGING_PREFIX"),
            archive_bucket=_env(e, "LOGARCHIVE_ARCHIVE_BUCKET"),
            replicate_to=_list(e, "LOGARCHIVE_REPLICATE_TO"),
            replication_mode=ReplicationMode.parse(_env(e, "LOGARCHIVE_REPLICATION_MODE", "direct")),
            work_queue_url=_env(e, "LOGARCHIVE_WORK_QUEUE_URL"),
            idempotency_table=_env(e, "LOGARCHIVE_IDEMPOTENCY_TABLE"),
            index_table=_env(e, "LOGARCHIVE_INDEX_TABLE"),
            retrieval_queue_url=_env(e, "LOGARCHIVE_RETRIEVAL_QUEUE_URL"),
            jobs_table=_env(e, "LOGARCHIVE_JOBS_TABLE"),
            results_bucket=_env(e, "LOGARCHIVE_RESULTS_BUCKET"),
            results_prefix=_env(e, "LOGARCHIVE_RESULTS_PREFIX", "retrievals/"),
            kms_key_id=_env(e, "LOGARCHIVE_KMS_KEY_ID"),
            keys_secret=_env(e, "LOGARCHIVE_KEYS_SECRET"),
            keys_parameter=_env(e, "LOGARCHIVE_KEYS_PARAMETER"),
            api_token_secret=_env(e, "LOGARCHIVE_API_TOKEN_SECRET"),
            schedule_lease_seconds=int(_number(e, "LOGARCHIVE_SCHEDULE_LEASE_SECONDS", 10800)),
            worker_reserve_ms=int(_number(e, "LOGARCHIVE_WORKER_RESERVE_MS", 20000)),
            worker_min_mb_per_s=_number(e, "LOGARCHIVE_WORKER_MIN_MB_PER_S", 20.0),
            part_size_mb=int(_number(e, "LOGARCHIVE_PART_SIZE_MB", 16)),
            replication_pending_seconds=int(_number(e, "LOGARCHIVE_REPLICATION_PENDING_SECONDS", 21600)),
            host_silent_seconds=int(_number(e, "LOGARCHIVE_HOST_SILENT_SECONDS", 21600)),
            compression=_compression(e, "LOGARCHIVE_COMPRESSION"),
            signing_kms_key_id=_env(e, "LOGARCHIVE_SIGNING_KMS_KEY_ID"),
            signing_key_secret=_env(e, "LOGARCHIVE_SIGNING_KEY_SECRET"),
            signing_key_parameter=_env(e, "LOGARCHIVE_SIGNING_KEY_PARAMETER"),
        )

    @property
    def digests(self) -> bool:
        """Digests are on when a signing key is named: workers then leave records to seal."""
        return bool(self.signing_kms_key_id or self.signing_key_secret or self.signing_key_parameter
                    or self.signing_key_file)

    @property
    def direct_destinations(self) -> tuple[str, ...]:
        """The buckets the worker copies to itself (none when S3 Replication copies)."""
        return self.replicate_to if self.replication_mode == ReplicationMode.DIRECT else ()

    def keyring(self) -> Keyring:
        """The key ring from KMS, Secrets Manager, SSM or ``$LOGARCHIVE_KEYS``, in that order."""
        keys = []
        if self.keys_secret:
            keys = keys_from_parameter_store(self.keys_secret, source="secrets")
        elif self.keys_parameter:
            keys = keys_from_parameter_store(self.keys_parameter, source="ssm")
        else:
            keys = gather_keys()
        ring = Keyring(keys, kms_key_id=self.kms_key_id or None)
        if not ring.can_encrypt:
            raise LogarchiveError(
                "no master key: set LOGARCHIVE_KMS_KEY_ID, LOGARCHIVE_KEYS_SECRET, "
                "LOGARCHIVE_KEYS_PARAMETER or LOGARCHIVE_KEYS"
            )
        return ring

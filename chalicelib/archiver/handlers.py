"""The Lambda entry points app.py wires up: settings from the environment, then the logic."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import aws
from ..settings import Settings
from . import scheduler, sealing
from .batch import handle_batch
from .lease import Leases
from .worker import Worker


def run_scheduler(context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    leases = None
    if settings.idempotency_table:
        leases = Leases(aws.client("dynamodb"), settings.idempotency_table, settings.schedule_lease_seconds)

    def keep_going() -> bool:
        return context is None or context.get_remaining_time_in_millis() > settings.worker_reserve_ms

    s3 = aws.client("s3")
    report = scheduler.run(
        settings, scheduler.SqsSender(aws.client("sqs"), settings.work_queue_url),
        s3=s3, leases=leases, keep_going=keep_going,
    )
    # The one sealer of the stack's digests: what workers finished since the last digest.
    sealed = sealing.seal_digest(settings, s3, leases=leases)
    return {**asdict(report), "digest": asdict(sealed) if sealed else None}


def run_worker(records: list[dict], context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    worker = Worker(settings, settings.keyring())
    return handle_batch(records, context, worker)

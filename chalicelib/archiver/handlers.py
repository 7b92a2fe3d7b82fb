"""The Lambda entry points app.py wires up: settings from the environment, then the logic."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from .. import telemetry
from ..awserrors import error_label
from ..errors import LogarchiveError
from ..settings import Settings
from .service import build

log = logging.getLogger(__name__)


def run_scheduler(context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()

    def keep_going() -> bool:
        return context is None or context.get_remaining_time_in_millis() > settings.worker_reserve_ms

    archiver = build(settings)
    report = archiver.schedule(keep_going=keep_going)
    hosts = archiver.hosts()
    # The one sealer of the stack's digests: what workers finished since the last digest.
    try:
        sealed = archiver.seal(hosts=hosts)
    except Exception as exc:  # the records stay; the next hour's run seals them (and completes this one)
        if isinstance(exc, LogarchiveError):  # a refusal (the chain disagrees with the bucket), no table…
            log.error("%s", str(exc)[:500])
        else:
            log.error("digest of %s not sealed (%s: %s)", settings.stack, type(exc).__name__, str(exc)[:300])
        telemetry.count("DigestSealFailures")
        sealed = None
    host_report = None
    if hosts is not None:
        try:  # HostsReporting, HostsSilent, OldestWaitingAge (the silent-host alarm's metric)
            host_report = hosts.publish(silent_after=timedelta(seconds=settings.host_silent_seconds))
        except Exception as exc:  # noqa: BLE001 - the archive run itself went well
            log.error("hosts of %s not read (%s)", settings.stack, error_label(exc))
    telemetry.count("ArchiveRuns")  # the "no archive run in 2 h" alarm's metric
    return {**asdict(report), "digest": asdict(sealed) if sealed else None,
            "hosts": asdict(host_report) if host_report else None}


def run_worker(records: list[dict], context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return build(settings, settings.keyring()).handle(records, context)

"""The Lambda entry points app.py wires up: settings from the environment, then the logic."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..settings import Settings
from .service import build


def run_scheduler(context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()

    def keep_going() -> bool:
        return context is None or context.get_remaining_time_in_millis() > settings.worker_reserve_ms

    return asdict(build(settings).schedule(keep_going=keep_going))


def run_worker(records: list[dict], context: Any, settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return build(settings, settings.keyring()).handle(records, context)

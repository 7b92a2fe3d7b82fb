"""Moved to :mod:`chalicelib.telemetry` (it serves every Lambda, not only the archiver).

Kept so that ``from . import telemetry`` in archiver modules still works; new code imports
``chalicelib.telemetry``.
"""

from ..telemetry import add_bytes, add_seconds, count, logger, metrics, tracer

__all__ = ["add_bytes", "add_seconds", "count", "logger", "metrics", "tracer"]

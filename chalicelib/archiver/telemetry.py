"""Powertools Logger, Metrics (EMF) and Tracer for the archiver, and the Chalice middleware
that applies them.

Powertools' decorators expect ``handler(event, context)``; Chalice event handlers take one
wrapped event, so the decorators are applied through ``ConvertToMiddleware``, which hands
them the original event and the Lambda context.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "logarchive"
NAMESPACE = "Logarchive"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def lambda_wrappers() -> list[Any]:
    """Powertools handler decorators, outermost first, for ``ConvertToMiddleware``."""
    return [
        logger.inject_lambda_context(clear_state=True),
        metrics.log_metrics(capture_cold_start_metric=True),
        tracer.capture_lambda_handler(capture_response=False),
    ]


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def add_bytes(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Bytes, value=value)


def add_seconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)


def adopt_package_logs() -> None:
    """Route ``chalicelib.*`` stdlib loggers through the Powertools formatter (JSON, Lambda context)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("chalicelib")  # register the parent: children propagate to it
    copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})

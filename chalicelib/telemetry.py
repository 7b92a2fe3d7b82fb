"""Powertools Logger, Metrics (EMF) and Tracer for every Lambda of the app, and the Chalice
middleware that applies them.

Powertools' decorators expect ``handler(event, context)``; Chalice event handlers take one
wrapped event, so the decorators are applied through ``ConvertToMiddleware``, which hands
them the original event and the Lambda context.

Every invocation publishes at least one metric of its own (docs/ARCHITECTURE.md, "Metrics"):
the archiver's counts, the indexer's outcomes, the retrieval worker's messages, and
``ApiRequests`` by route and status (:func:`count_request`); a handler that raises publishes
``UnhandledErrors`` (:func:`count_errors`). Powertools warns when a flush has nothing to send,
so that warning means a handler path without a metric.

``POWERTOOLS_METRICS_DISABLED=true`` (the local demos, which share stdout with their output)
turns metrics off entirely: nothing is collected and nothing flushed. Powertools alone would
stop printing at the flush but keep collecting, and still print when a metric reaches 100 values.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from . import logsetup

# The stage's POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (.chalice/config.json) win;
# the defaults are the committed values, so local runs publish where a deployed stage does.
DEFAULT_SERVICE = "logarchive"
DEFAULT_NAMESPACE = "logarchive"
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "").strip() or DEFAULT_SERVICE
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or DEFAULT_NAMESPACE

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def log_metrics(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Powertools ``log_metrics`` (flush after each invocation, cold-start metric), unless
    metrics are disabled when the handler runs."""
    flushing = metrics.log_metrics(handler, capture_cold_start_metric=True)

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        return handler(event, context) if is_metrics_disabled() else flushing(event, context)

    return run


def lambda_wrappers() -> list[Any]:
    """Powertools handler decorators, outermost first, for ``ConvertToMiddleware``."""
    return [
        logger.inject_lambda_context(clear_state=True),
        log_metrics,
        tracer.capture_lambda_handler(capture_response=False),
    ]


def _add(name: str, unit: MetricUnit, value: float) -> None:
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def count(name: str, value: float = 1) -> None:
    _add(name, MetricUnit.Count, value)


def add_bytes(name: str, value: float) -> None:
    _add(name, MetricUnit.Bytes, value)


def add_seconds(name: str, value: float) -> None:
    _add(name, MetricUnit.Seconds, value)


def count_errors(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware (``"all"``, inside ``log_metrics``): whatever escapes a handler
    (Lambda then retries the event) counts ``UnhandledErrors``, so the failed run still publishes."""
    try:
        return get_response(event)
    except BaseException:  # SystemExit and the like too: log_metrics flushes on those as well
        count("UnhandledErrors")
        raise


def count_request(request: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice ``"http"`` middleware: ``ApiRequests`` with dimensions ``route`` (method and
    route pattern, never the raw path: bounded cardinality) and ``status``.

    One API Gateway invocation is one request, so the dimensions apply to this flush only
    (Powertools resets them to the defaults after each flush).
    """
    status = 500  # what Chalice answers if the view (or a middleware below) raises
    try:
        response = get_response(request)
        status = response.status_code
        return response
    finally:
        if not is_metrics_disabled():
            metrics.add_dimension(name="route", value=f"{request.method} {request.path}")
            metrics.add_dimension(name="status", value=str(status))
            count("ApiRequests")


def adopt_package_logs() -> None:
    """Route ``chalicelib.*`` stdlib loggers through the Powertools formatter (JSON, Lambda context)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("chalicelib")  # register the parent: children propagate to it
    copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})
    # botocore's DEBUG is the wire (KMS data keys, the keys' secret): never, at any log level.
    logsetup.protect(*logger.handlers)

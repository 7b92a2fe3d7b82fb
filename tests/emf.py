"""Read the CloudWatch EMF documents Powertools prints (one JSON line each) from captured stdout."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


def documents(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def totals(out: str, **dimensions: str) -> Counter:
    """Sum of every metric's values over the documents whose dimensions include ``dimensions``."""
    sums: Counter = Counter()
    for doc in documents(out):
        if any(doc.get(k) != v for k, v in dimensions.items()):
            continue
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                values = doc[metric["Name"]]
                sums[metric["Name"]] += sum(values) if isinstance(values, list) else values
    return sums


def namespaces(out: str) -> set[str]:
    return {d["Namespace"] for doc in documents(out) for d in doc["_aws"]["CloudWatchMetrics"]}

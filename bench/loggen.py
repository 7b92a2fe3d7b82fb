"""Deterministic, realistic Docker json-file log generator for the benchmarks.

The mix imitates what a web app's container writes: access-log lines, leveled app logs
with request ids, structured JSON logs (escaped quotes inside ``log``), SQL, and Python
tracebacks on stderr spread over several lines. Timestamps advance by a few ms with
nanosecond digits as Docker writes them (RFC 3339 nano, trailing zeros trimmed). Random
ids and numbers keep it from compressing unrealistically well.

Same ``seed`` and ``size`` -> the same bytes, so results are comparable run to run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

PATHS = [
    "/", "/api/v1/users", "/api/v1/users/{id}", "/api/v1/orders", "/api/v1/orders/{id}/items",
    "/health", "/login", "/logout", "/static/app.{hex}.js", "/static/style.{hex}.css",
    "/api/v1/search?q={word}&page={n}", "/webhooks/stripe", "/admin/reports/{id}.csv",
]
METHODS = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE", "PATCH"]
STATUSES = [200] * 30 + [201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 422, 500, 502, 503]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 13_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15",
    "curl/8.4.0", "python-requests/2.31.0", "kube-probe/1.27", "Go-http-client/1.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
WORDS = (
    "invoice account payment refund shipment customer widget report export import token session "
    "cache queue worker retry timeout upstream database replica primary index migration tenant"
).split()
LEVELS = ["INFO"] * 12 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"]
LOGGERS = ["app.web", "app.jobs", "app.billing", "sqlalchemy.engine", "celery.worker", "app.auth"]
APP_MESSAGES = [
    "Processing {word} {id} for tenant {tenant}",
    "Completed {word} {id} in {ms}ms",
    "Cache miss for key {word}:{id}",
    "Retrying {word} job {hex} (attempt {n} of 5)",
    "User {id} logged in from {ip}",
    "Enqueued {word} task {hex} on queue {word2}",
    "Slow query detected: {ms}ms",
    "Connection pool: {n} in use, {n2} idle",
]
SQL = [
    "SELECT users.id, users.email, users.created_at FROM users WHERE users.id = {id}",
    "UPDATE orders SET status='{word}', updated_at=now() WHERE id = {id}",
    "INSERT INTO events (tenant_id, kind, payload) VALUES ({tenant}, '{word}', '{{\"n\": {n}}}')",
    "SELECT count(*) FROM {word}s WHERE tenant_id = {tenant} AND deleted_at IS NULL",
]
TRACE = [
    "Traceback (most recent call last):",
    '  File "/app/{word}/views.py", line {n}, in handle',
    "    result = service.{word}(request.{word2}_id)",
    '  File "/app/{word}/service.py", line {n2}, in {word}',
    "    raise {exc}(f\"{word} {{id}} not found\")",
    "{exc}: {word} {id} not found",
]
EXCEPTIONS = ["KeyError", "ValueError", "LookupError", "TimeoutError", "PermissionError"]


class _Fields(dict):
    """Random values for message templates, fixed for one request (so its lines share them)."""

    def __init__(self, rng: random.Random, clients: list[str]) -> None:
        super().__init__()
        self.rng = rng
        # Zipf-like popularity: a few tenants, users and clients make most of the traffic.
        self["tenant"] = str(int(rng.paretovariate(1.2)) % 400 + 1)
        self["id"] = str(int(rng.paretovariate(0.8) * 1000) % 2_000_000)
        self["ip"] = clients[int(rng.paretovariate(1.0)) % len(clients)]
        self["req"] = f"{rng.getrandbits(64):016x}"

    def __missing__(self, key: str) -> str:
        r = self.rng
        if key in ("n", "n2"):
            return str(r.randrange(1, 200))
        if key == "ms":
            return str(int(r.expovariate(1 / 40)) + 1)
        if key == "hex":
            return f"{r.getrandbits(48):012x}"
        if key in ("word", "word2"):
            return r.choice(WORDS)
        if key == "exc":
            return r.choice(EXCEPTIONS)
        raise KeyError(key)


def _rfc3339nano(t: datetime, nanos: int) -> str:
    frac = f"{t.microsecond * 1000 + nanos:09d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _messages(rng: random.Random) -> Iterator[tuple[str, str]]:
    """(stream, log text without newline) forever, request by request."""
    clients = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(300)]
    while True:
        f = _Fields(rng, clients)
        req = f["req"]
        logger = rng.choice(LOGGERS)
        for _ in range(int(rng.expovariate(1 / 1.5))):
            kind = rng.random()
            if kind < 0.55:
                msg = rng.choice(APP_MESSAGES).format_map(f)
                yield "stdout", f"[{rng.choice(LEVELS)}] {logger} request_id={req} {msg}"
            elif kind < 0.80:
                doc = {
                    "level": rng.choice(LEVELS).lower(),
                    "logger": logger,
                    "msg": rng.choice(APP_MESSAGES).format_map(f),
                    "tenant": int(f["tenant"]),
                    "request_id": req,
                    "duration_ms": round(rng.expovariate(1 / 30), 3),
                }
                yield "stdout", json.dumps(doc)
            else:
                yield "stdout", f"[DEBUG] sqlalchemy.engine {rng.choice(SQL).format_map(f)}"
        status = rng.choice(STATUSES)
        if status >= 500 and rng.random() < 0.5:
            for line in TRACE:
                yield "stderr", line.format_map(f)
        path = rng.choice(PATHS).format_map(f)
        yield "stdout", (
            f'{f["ip"]} - - "{rng.choice(METHODS)} {path} HTTP/1.1" {status} '
            f'{rng.randrange(0, 60000)} "-" "{rng.choice(AGENTS)}" rt={rng.random() * 0.5:.3f} '
            f"request_id={req}"
        )


def generate(size: int, *, seed: int = 2, block: int = 1 << 20) -> Iterator[bytes]:
    """Blocks of about ``block`` bytes of json-file lines, ``size`` bytes in all (whole lines)."""
    rng = random.Random(seed)
    t = datetime(2022, 8, 24, 21, 12, 33, tzinfo=UTC)
    step = timedelta(microseconds=1)
    written = 0
    parts: list[bytes] = []
    pending = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for stream, text in _messages(rng):
        t += step * int(rng.expovariate(1 / 3000))
        line = (
            '{"log":' + dumps(text + "\n") + ',"stream":"' + stream
            + '","time":"' + _rfc3339nano(t, rng.randrange(1000)) + '"}\n'
        ).encode()
        if written + pending + len(line) > size:
            break
        parts.append(line)
        pending += len(line)
        if pending >= block:
            yield b"".join(parts)
            written += pending
            parts, pending = [], 0
    if parts:
        yield b"".join(parts)


def write_log(path: str, size: int, *, seed: int = 2) -> int:
    """Write a generated log of (just under) ``size`` bytes to ``path``; returns its length."""
    n = 0
    with open(path, "wb") as fh:
        for blk in generate(size, seed=seed):
            fh.write(blk)
            n += len(blk)
    return n

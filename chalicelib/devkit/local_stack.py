"""A whole stage on the embedded local AWS, the retrieval API included.

``logarchive local up`` and ``make demo`` use :func:`running_stage`: :func:`provision` creates
what a stage has (:class:`LocalStage` names it), :class:`LambdaPump` plays EventBridge and
Lambda's SQS event sources for ``index_archive`` and ``retrieval_worker``, and
:func:`api_server` serves the REST API on chalice's local server (no IAM authorization).

``python -m chalicelib.devkit.local_stack`` asks the API the issue's question end to end on a fresh
local AWS: sample archives are sealed into the archive bucket, indexed by the ``index_archive``
Lambda, a retrieval is posted to ``POST /retrievals``, the ``retrieval_worker`` Lambda drains
the queue (this module plays Lambda's SQS event source), and the lines come back from the
presigned result URLs. Handlers run through ``chalice.test.Client`` (a dev dependency), over
the same HTTP endpoints the tests use.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from .. import aws
from ..sqs_pump import pump
from .local_aws import StackBuckets

INDEX_TABLE = "logarchive-index"
JOBS_TABLE = "logarchive-jobs"
QUEUE = "logarchive-retrieval"


def create_table(name: str, keys: tuple[str, ...] = ("pk", "sk")) -> None:
    """A table with string keys: ``pk``/``sk`` (the index and the jobs tables), or ``id`` (leases)."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": k, "KeyType": kind} for k, kind in zip(keys, ("HASH", "RANGE"), strict=False)
        ],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
    )


def create_queue(name: str = QUEUE) -> str:
    return boto3.client("sqs").create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]


def create_token_secret(name: str) -> str:
    """The secret that signs the API's page tokens, as a stage's template generates it."""
    import secrets

    boto3.client("secretsmanager").create_secret(Name=name, SecretString=secrets.token_urlsafe(48))
    return name


def write_stage(root: str | Path, env: dict[str, str], stage: str = "local") -> str:
    """Make ``root`` a project dir whose ``.chalice/config.json`` has one stage carrying ``env``."""
    root = Path(root)
    (root / ".chalice").mkdir(exist_ok=True)
    (root / ".chalice" / "config.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "app_name": "logarchive",
                "stages": {stage: {"api_gateway_stage": "api", "environment_variables": env}},
            }
        )
    )
    return str(root)


def drain(
    client: Any, queue_url: str, *, function: str = "retrieval_worker", max_rounds: int = 200
) -> list[dict]:
    """Play Lambda's SQS event source (``sqs_pump``) for ``function``; its response payloads."""
    payloads = []

    def invoke(records: list[dict]) -> list[str]:
        payload = client.lambda_.invoke(function, {"Records": records}).payload
        payloads.append(payload)
        return [f["itemIdentifier"] for f in payload.get("batchItemFailures", [])]

    if pump(boto3.client("sqs"), queue_url, invoke, attempts=max_rounds, visibility_timeout=60).failed:
        raise RuntimeError(f"queue {queue_url} did not drain in {max_rounds} rounds")
    return payloads


def ask(client: Any, queue_url: str, question: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """POST the question, run the workers, and return the final status and the matched lines."""
    r = client.http.post(
        "/retrievals", headers={"Content-Type": "application/json"}, body=json.dumps(question).encode()
    )
    if r.status_code != 202:
        raise RuntimeError(f"POST /retrievals answered {r.status_code}: {r.body.decode()}")
    job_id = json.loads(r.body)["id"]
    drain(client, queue_url)
    status = json.loads(client.http.get(f"/retrievals/{job_id}?limit=1000").body)
    return status, result_lines(status)


def chalice_app() -> Any:
    """The Chalice app of ``app.py`` at the project root (the Lambdas' own code), from any cwd."""
    root = Path(__file__).resolve().parents[2]
    if (root / "app.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import app

    return app.app


log = logging.getLogger("logarchive.local")
LOCAL_ACCOUNT = "123456789012"  # moto's default account
LOCAL_TIMEOUT_MS = 900_000  # the remaining time local Lambda invocations start with (Lambda's maximum)


@dataclass(frozen=True)
class LocalStage:
    """Everything one stage has, on the local AWS: names derived from the stack only."""

    stack: str

    @property
    def buckets(self) -> StackBuckets:
        return StackBuckets.for_stack(self.stack)

    @property
    def results_bucket(self) -> str:
        return f"{self.stack}-logarchive-results"

    def table(self, what: str) -> str:
        return f"{self.stack}-logarchive-{what}"

    def queue(self, what: str) -> str:
        return f"{self.stack}-logarchive-{what}"

    @property
    def keys_secret(self) -> str:
        return f"{self.stack}-logarchive-keys"

    @property
    def token_secret(self) -> str:
        return f"{self.stack}-logarchive-api-token"

    TABLES = {"index": ("pk", "sk"), "jobs": ("pk", "sk"), "leases": ("id",)}
    # the archiver's work queue; retrieval jobs; the archive bucket's S3 notifications (what
    # EventBridge delivers to the indexer in AWS)
    QUEUES = ("work", "retrieval", "index-events")

    def describe(self, *, keys: bool = False) -> list[str]:
        """The names, one per line, as ``local up`` prints them."""
        b = self.buckets
        return [
            f"buckets (versioned): {b.staging} (staging), {b.archive} (archive), {b.customer} (customer), "
            f"{self.results_bucket} (retrieval results)",
            "tables: " + ", ".join(self.table(t) for t in self.TABLES)
            + f" (idempotency: leases and the digest chain; archive --once --table {self.table('leases')})",
            "queues: " + ", ".join(self.queue(q) for q in self.QUEUES),
            f"secrets: {self.token_secret} (API page tokens)"
            + (f", {self.keys_secret} (the --key-file keys)" if keys else ""),
        ]


def provision(
    endpoint: str, stage: LocalStage, *, keys_text: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Create the stage's buckets, tables, queues and secrets.

    Returns the Lambdas' environment (``LOGARCHIVE_*``) and the queue URLs by queue role.

    The archive bucket notifies the ``index-events`` queue of every object created or deleted.
    """
    from . import local_aws

    b = stage.buckets
    local_aws.create_buckets(endpoint, (*b.all(), stage.results_bucket))
    for what, keys in stage.TABLES.items():
        create_table(stage.table(what), keys)
    sqs = boto3.client("sqs")
    urls = {q: create_queue(stage.queue(q)) for q in stage.QUEUES}
    events_arn = f"arn:aws:sqs:{local_aws.LOCAL_REGION}:{LOCAL_ACCOUNT}:{stage.queue('index-events')}"
    boto3.client("s3").put_bucket_notification_configuration(
        Bucket=b.archive,
        NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": events_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        ]},
    )
    sqs.purge_queue(QueueUrl=urls["index-events"])  # moto's s3:TestEvent on configuration
    secrets = boto3.client("secretsmanager")
    token_secret = create_token_secret(stage.token_secret)
    env = {
        "LOGARCHIVE_STACK": stage.stack,
        "LOGARCHIVE_STAGING_BUCKET": b.staging,
        "LOGARCHIVE_ARCHIVE_BUCKET": b.archive,
        "LOGARCHIVE_REPLICATE_TO": b.customer,
        "LOGARCHIVE_WORK_QUEUE_URL": urls["work"],
        "LOGARCHIVE_IDEMPOTENCY_TABLE": stage.table("leases"),
        "LOGARCHIVE_INDEX_TABLE": stage.table("index"),
        "LOGARCHIVE_JOBS_TABLE": stage.table("jobs"),
        "LOGARCHIVE_RETRIEVAL_QUEUE_URL": urls["retrieval"],
        "LOGARCHIVE_RESULTS_BUCKET": stage.results_bucket,
        # The API signs page tokens with the value of the secret this names, as in AWS.
        "LOGARCHIVE_API_TOKEN_SECRET": token_secret,
    }
    if keys_text is not None:
        secrets.create_secret(Name=stage.keys_secret, SecretString=keys_text)
        env["LOGARCHIVE_KEYS_SECRET"] = stage.keys_secret
    return env, urls


class LambdaPump:
    """Lambda's event sources, played in one thread: the archive bucket's notifications go to
    ``index_archive``, retrieval job messages to ``retrieval_worker``.

    Every invocation (and every API request, see :func:`api_server`) holds one lock: the
    handlers run one at a time, as separate Lambda instances would not share this process.
    A message failing ``max_receives`` times is dropped with one line on stderr (the dead-letter
    queue's job in AWS).
    """

    def __init__(self, chalice_app: Any, routes: dict[str, str], *, max_receives: int = 3,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.app = chalice_app
        self.routes = routes  # queue URL -> function name
        self.max_receives = max_receives
        self.lock = threading.RLock()
        self.on_error = on_error or (lambda line: print(line, file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lambda-pump", daemon=True)

    def invoke(self, function: str, event: dict) -> Any:
        from chalice.local import LambdaContext

        with self.lock:
            return self.app.handler_map[function](
                event, LambdaContext(function, memory_size=1024, max_runtime_ms=LOCAL_TIMEOUT_MS)
            )

    def _handler(self, function: str) -> Callable[[list[dict]], list[str]]:
        """``sqs_pump``'s handler for ``function``: the ids of the records to deliver again."""

        def handle(records: list[dict]) -> list[str]:
            failed: dict[str, Exception | None] = {}
            if function == "index_archive":
                # The indexer takes the S3 notification itself, not the SQS envelope around it.
                for record in records:
                    try:
                        self.invoke(function, json.loads(record["body"]))
                    except Exception as exc:  # the Lambda raised: SQS delivers the message again
                        failed[record["messageId"]] = exc
            else:
                try:
                    payload = self.invoke(function, {"Records": records}) or {}
                    failed = {f["itemIdentifier"]: None for f in payload.get("batchItemFailures", [])}
                except Exception as exc:  # the whole batch failed
                    failed = {r["messageId"]: exc for r in records}
            again = []
            for record in records:
                if record["messageId"] not in failed:
                    continue
                receives = int(record["attributes"]["ApproximateReceiveCount"])
                exhausted = receives >= self.max_receives
                exc = failed[record["messageId"]]
                self.on_error(f"logarchive local: {function} failed on message {record['messageId']} "
                              f"(delivery {receives}, {'dropped' if exhausted else 'will retry'})"
                              + (f": {type(exc).__name__}: {exc}" if exc else ""))
                if not exhausted:  # else deleted, as a redrive policy would move it to the DLQ
                    again.append(record["messageId"])
            return again

        return handle

    def poll_once(self, functions: tuple[str, ...] | None = None) -> int:
        """Deliver what waits in every queue (of ``functions``); returns the messages handed
        over. Holds the lock throughout, so a message received is also handled before anyone
        else (an API request) runs."""
        with self.lock:
            return self._poll(functions)

    def catch_up(self, functions: tuple[str, ...] = ("index_archive",)) -> None:
        """Handle everything waiting for ``functions`` now: an API request first indexes the
        archives that already landed, so it answers what a script just archived."""
        self.poll_once(functions)

    def _poll(self, functions: tuple[str, ...] | None) -> int:
        sqs = aws.client("sqs")
        handled = 0
        for url, function in self.routes.items():
            if functions is None or function in functions:
                handled += pump(sqs, url, self._handler(function),
                                visibility_timeout=LOCAL_TIMEOUT_MS // 1000).deliveries
        return handled

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception as exc:  # the local AWS went away (stopping) or a transient error
                if self._stop.is_set():
                    return
                self.on_error(f"logarchive local: queue pump: {type(exc).__name__}: {exc}")
                busy = 0
            if not busy:
                self._stop.wait(0.25)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextmanager
def api_server(
    chalice_app: Any, port: int = 0, *, pump: LambdaPump | None = None, handler_cls: Any = None
) -> Iterator[str]:
    """``chalice_app`` on chalice's local HTTP server (``chalice local``) in a thread; yields its URL.

    API Gateway's IAM authorization is not enforced by chalice's local server. With ``pump``,
    each request holds its lock and first lets it index what already landed.
    """
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    base = handler_cls or ChaliceRequestHandler

    class LocalHandler(base):
        def _generic_handle(self) -> None:
            with pump.lock if pump else nullcontext():
                if pump:
                    pump.catch_up()
                super()._generic_handle()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # the client hung up: no one to answer
                log.debug("api: %s hung up before the answer was written", self.client_address[0])

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            log.debug("api: " + format, *args)  # the access log, with -v

    # Said once here and in `local up`'s banner, not on every request.
    warnings.filterwarnings("ignore", "IAMAuthorizer is not a supported in local mode")
    server = LocalDevServer(chalice_app, Config.create(), "127.0.0.1", port, handler_cls=LocalHandler)
    bound = server.server.server_address[1]
    thread = threading.Thread(target=server.server.serve_forever, name="api-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


@contextmanager
def lambda_logs_to(path: str | os.PathLike[str]) -> Iterator[None]:
    """While it lasts, what the Lambdas log (Powertools JSON, bound to stdout as in AWS) is
    appended to ``path`` instead: a local command's stdout keeps only its own lines."""
    loggers = [logging.getLogger(), *(x for x in logging.Logger.manager.loggerDict.values()
                                      if isinstance(x, logging.Logger))]
    moved = {h for lg in loggers for h in lg.handlers
             if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.__stdout__)}
    with open(path, "a", encoding="utf-8") as fh:
        before = {h: h.setStream(fh) for h in moved}
        try:
            yield
        finally:
            for h, stream in before.items():
                h.setStream(stream)


@contextmanager
def running_stage(
    endpoint: str, stack: str, *, keys_text: str | None = None, api_port: int | None = None,
    lambda_log: str | os.PathLike[str] | None = None,
) -> Iterator[str | None]:
    """A provisioned stage on the local AWS at ``endpoint``, its Lambdas fed from their queues.

    Archives are indexed as they land; with ``api_port`` (0: any free port) the API is served
    and retrieval jobs run (their keys: ``keys_text``). The Lambdas' logs go to ``lambda_log``
    (default: stdout, as in AWS). Yields the API's URL (or None).
    """
    from . import local_aws

    local_aws.use_endpoint(endpoint)
    env, urls = provision(endpoint, LocalStage(stack), keys_text=keys_text)
    os.environ.update(env)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # no EMF lines on a terminal
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    app = chalice_app()
    routes = {urls["index-events"]: "index_archive"}
    if api_port is not None:
        routes[urls["retrieval"]] = "retrieval_worker"
    with lambda_logs_to(lambda_log) if lambda_log is not None else nullcontext():
        pump = LambdaPump(app, routes)
        pump.start()
        try:
            if api_port is None:
                yield None
            else:
                with api_server(app, api_port, pump=pump) as url:
                    yield url
        finally:
            pump.stop()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.load(resp)


def wait_indexed(api_url: str, query: str, n: int) -> list[dict]:
    """Until ``GET /archives?QUERY`` lists at least ``n`` archives (the indexer runs as they land)."""
    while True:
        archives = _get_json(f"{api_url}/archives?{query}")["archives"]
        if len(archives) >= n:
            return archives
        time.sleep(0.2)


def ask_over_http(api_url: str, question: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """``POST /retrievals``, wait until the job is done, return its final status and matched lines."""
    req = urllib.request.Request(f"{api_url}/retrievals", data=json.dumps(question).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        job_id = json.load(resp)["id"]
    while True:  # the retrieval worker runs from the queue, as the Lambda would
        status = _get_json(f"{api_url}/retrievals/{job_id}?limit=1000")
        if status["status"] not in ("planning", "running"):
            break
        time.sleep(0.2)
    return status, result_lines(status)


def _sample_archives(bucket: str, stack: str, master: Any) -> list[str]:
    """A few archives as the archiver writes them (v3 key, envelope, logarchive metadata)."""
    from .. import layout
    from ..archiver.metadata import archive_metadata
    from ..codec import seal
    from ..keyring import Keyring

    def line(t: str, stream: str, text: str) -> bytes:
        return json.dumps({"log": text + "\n", "stream": stream, "time": t}, separators=(",", ":")).encode()

    samples = [
        (
            "42",
            "a1" * 32,
            [
                line("2022-01-01T11:58:00Z", "stderr", "timeout before the window"),
                line("2022-01-01T12:00:00Z", "stderr", "upstream timeout (GET /orders)"),
                line("2022-01-01T12:01:00Z", "stdout", "timeout on stdout"),
                line("2022-01-01T12:03:30.25Z", "stderr", "db timeout after 30s"),
                line("2022-01-01T12:05:00Z", "stderr", "timeout at the exclusive end"),
            ],
        ),
        (
            "42",
            "b2" * 32,
            [
                line("2022-01-01T12:02:00Z", "stderr", "second container: redis timeout"),
                line("2022-01-01T12:02:01Z", "stderr", "retrying"),
            ],
        ),
        ("43", "c3" * 32, [line("2022-01-01T12:01:00Z", "stderr", "timeout in another app")]),
    ]
    s3, keys = boto3.client("s3"), []
    for rid, cid, lines in samples:
        body = b"".join(x + b"\n" for x in lines)
        out = io.BytesIO()
        res = seal(io.BytesIO(body), out, Keyring([master]))
        from ..dockerlog import line_time

        times = [t for t in (line_time(x) for x in lines) if t]
        key = layout.ArchiveKey(
            stack=stack,
            key_id=master.key_id,
            kind="apps",
            resource_id=rid,
            service_id="1",
            container_id=cid,
            start=min(times),
            end=max(times),
        ).key()
        meta = archive_metadata(
            res, key_id=master.key_id, first=min(times), last=max(times), lines=len(lines),
            host="demo-host", container_name=f"app-{rid}.{cid[:4]}",
        )
        s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue(), Metadata=meta)
        keys.append(key)
    return keys


def main() -> int:
    from chalice.test import Client

    from ..keyring import MasterKey
    from . import local_aws

    stack = "demo"
    buckets = local_aws.StackBuckets.for_stack(stack)
    master = MasterKey.generate()
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local_aws.create_buckets(endpoint, (*buckets.all(), f"{stack}-logarchive-results"))
        create_table(INDEX_TABLE)
        create_table(JOBS_TABLE)
        url = create_queue()
        env = {
            "LOGARCHIVE_STACK": stack,
            "LOGARCHIVE_ARCHIVE_BUCKET": buckets.archive,
            "LOGARCHIVE_INDEX_TABLE": INDEX_TABLE,
            "LOGARCHIVE_JOBS_TABLE": JOBS_TABLE,
            "LOGARCHIVE_RETRIEVAL_QUEUE_URL": url,
            "LOGARCHIVE_RESULTS_BUCKET": f"{stack}-logarchive-results",
            "LOGARCHIVE_KEYS": master.to_base64(),
            "LOGARCHIVE_API_TOKEN_SECRET": create_token_secret(f"logarchive-{stack}-api-token"),
        }
        keys = _sample_archives(buckets.archive, stack, master)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines in the output
        import app  # the Chalice app at the project root

        # chalice's local mode does not enforce IAM auth; API Gateway does (SigV4, execute-api).
        warnings.filterwarnings("ignore", "IAMAuthorizer is not a supported in local mode")
        with (
            tempfile.TemporaryDirectory() as tmp,
            Client(app.app, stage_name="local", project_dir=write_stage(tmp, env)) as client,
        ):
            for key in keys:  # what S3 would send on each upload
                client.lambda_.invoke(
                    "index_archive",
                    {
                        "Records": [
                            {
                                "s3": {
                                    "bucket": {"name": buckets.archive},
                                    "object": {"key": key, "sequencer": "01"},
                                }
                            }
                        ]
                    },
                )
            question = {
                "app_id": "42",
                "start": "2022-01-01T12:00:00Z",
                "end": "2022-01-01T12:05:00Z",
                "stream": "stderr",
                "grep": "timeout",
            }
            print(f"POST /retrievals {json.dumps(question)}")
            status, lines = ask(client, url, question)
            p = status["progress"]
            print(
                f"GET /retrievals/{status['id']}: {status['status']}, archives {p['archives_done']}/"
                f"{p['archives_total']}, {p['bytes_scanned']} bytes scanned, {p['lines_matched']} lines:"
            )
            for x in lines:
                print("  " + x.decode())
    return 0


def result_lines(status: dict[str, Any]) -> list[bytes]:
    """The matched lines of a finished job, fetched from its presigned result URLs."""
    lines: list[bytes] = []
    for res in status["results"]:
        if "url" in res:
            with urllib.request.urlopen(res["url"], timeout=60) as resp:
                lines += gzip.decompress(resp.read()).splitlines()
    return lines


if __name__ == "__main__":
    raise SystemExit(main())


"""The Chalice app: handlers wired to chalicelib, no logic here."""


from chalice import Chalice, ConvertToMiddleware, Cron

from chalicelib import settings, telemetry
from chalicelib.api import routes
from chalicelib.archiver import WORK_QUEUE_NAME, handlers
from chalicelib.index import handlers as index_handlers
from chalicelib.index.events import S3OrEventBridgeEvent
from chalicelib.index.indexer import INDEXER_EVENTS, RESTORE_COMPLETED
from chalicelib.jobs import handlers as job_handlers

app = Chalice(app_name="logarchive")
app.register_blueprint(routes.bp)

# Powertools Logger/Metrics/Tracer: decorators on Chalice handlers break (one wrapped event),
# so they run as middleware that hands them the original event and the Lambda context.
for _wrapper in telemetry.lambda_wrappers():
    app.register_middleware(ConvertToMiddleware(_wrapper), "all")
# Registered after (so inside) log_metrics: what they count is in the same flush.
app.register_middleware(telemetry.count_errors, "all")
app.register_middleware(telemetry.count_request, "http")
telemetry.adopt_package_logs()


# Chalice loads the stage's environment before importing app.py: each stage subscribes to its
# own queues (logarchive-<stage>-…); the bare names are the local defaults.
_stage = settings.Settings.from_env()


def _queue_name(url: str, default: str) -> str:
    return (url or default).rstrip("/").rsplit("/", 1)[-1]


@app.schedule(Cron(30, "*", "?", "*", "*", "*"), name="archive_scheduler")
def archive_scheduler(event):
    return handlers.run_scheduler(event.context)


@app.on_sqs_message(
    queue=_queue_name(_stage.work_queue_url, WORK_QUEUE_NAME), batch_size=10, name="archive_worker",
    maximum_concurrency=settings.max_concurrency("archive_worker"),
)
def archive_worker(event):
    return handlers.run_worker([record.to_dict() for record in event], event.context)


# S3 events of the archive bucket through EventBridge ("Object Created", "Object Deleted",
# "Object Storage Class Changed", "Object Restore Completed"): unlike on_s3_event, this both
# deploys and packages (CloudFormation cannot change an existing bucket's notifications). The
# rule is scoped to the archive bucket by the merge template. A completed restore resumes the
# retrieval jobs waiting for it; every other event updates the index.
@app.on_cw_event({"source": ["aws.s3"], "detail-type": list(INDEXER_EVENTS)})
def index_archive(event):
    body = event.to_dict()
    if body.get("detail-type") == RESTORE_COMPLETED:
        return job_handlers.restore_completed_event(body)
    return index_handlers.index_archive_event(body)


# The same function also reads plain S3 notifications (for example relayed through SQS).
index_archive.event_class = S3OrEventBridgeEvent


@app.on_sqs_message(
    queue=_queue_name(_stage.retrieval_queue_url, "logarchive-retrieval"), batch_size=10,
    maximum_concurrency=settings.max_concurrency("retrieval_worker"),
)
def retrieval_worker(event):
    return job_handlers.retrieval_batch(event.to_dict(), event.context)

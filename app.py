"""The Chalice app: handlers wired to chalicelib, no logic here."""

import os

from chalice import Chalice, ConvertToMiddleware, Cron

from chalicelib.archiver import WORK_QUEUE_NAME, handlers, telemetry

app = Chalice(app_name="logarchive")

# Powertools Logger/Metrics/Tracer: decorators on Chalice handlers break (one wrapped event),
# so they run as middleware that hands them the original event and the Lambda context.
for _wrapper in telemetry.lambda_wrappers():
    app.register_middleware(ConvertToMiddleware(_wrapper), "all")
telemetry.adopt_package_logs()


@app.route("/health", methods=["GET"])
def health() -> dict:
    return {"status": "ok"}


@app.schedule(Cron(30, "*", "?", "*", "*", "*"), name="archive_scheduler")
def archive_scheduler(event):
    return handlers.run_scheduler(event.context)


# Chalice loads the stage's environment before importing app.py: each stage subscribes to
# its own queue (logarchive-<stage>-work); the bare name is the local default.
WORK_QUEUE = os.environ.get("LOGARCHIVE_WORK_QUEUE_URL", WORK_QUEUE_NAME).rsplit("/", 1)[-1]


@app.on_sqs_message(queue=WORK_QUEUE, batch_size=10, name="archive_worker")
def archive_worker(event):
    return handlers.run_worker([record.to_dict() for record in event], event.context)

"""The Chalice app: handlers wired to chalicelib, no logic here."""

import os

from chalice import Chalice

from chalicelib import api, services
from chalicelib.index.events import S3OrEventBridgeEvent

app = Chalice(app_name="logarchive")
app.register_blueprint(api.bp)


@app.route("/health", methods=["GET"])
def health() -> dict:
    return {"status": "ok"}


# The archive bucket comes from the stage's environment (chalice loads app.py with it set).
@app.on_s3_event(
    bucket=os.environ.get("LOGARCHIVE_ARCHIVE_BUCKET", "logarchive-archive"),
    events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"],
)
def index_archive(event):
    return services.index_archive_event(event.to_dict())


# Also invoked by an EventBridge rule ("Object Created"/"Object Deleted") under `chalice package`.
index_archive.event_class = S3OrEventBridgeEvent


@app.on_sqs_message(
    queue=os.environ.get("LOGARCHIVE_RETRIEVAL_QUEUE_URL", "logarchive-retrieval").rstrip("/").split("/")[-1],
    batch_size=10,
)
def retrieval_worker(event):
    return services.retrieval_batch(event.to_dict(), event.context)

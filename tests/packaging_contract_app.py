"""Not the application: the decorator shapes app.py's handlers keep for the merge template.

tests/test_packaging.py packages this file in place of app.py (in a temporary copy) as
well as the real app.py, so the merge template is proven against every function even
while some handlers are still being written. Each handler here has the name, decorator
and event source the deployment expects (docs/OPERATIONS.md, "What app.py must keep"):
- ``archive_scheduler``: ``@app.schedule(Cron(30, '*', '?', '*', '*', '*'))``;
- ``archive_worker`` / ``retrieval_worker``: ``@app.on_sqs_message`` on the queue named by
  the last part of ``$LOGARCHIVE_WORK_QUEUE_URL`` / ``$LOGARCHIVE_RETRIEVAL_QUEUE_URL``
  (Chalice sets the stage's environment before it imports app.py), capped by
  ``maximum_concurrency=settings.max_concurrency(<function>)`` (the stage's setting);
- ``index_archive``: ``@app.on_cw_event`` on S3 "Object Created" events (``on_s3_event``
  cannot be packaged: CloudFormation cannot change an existing bucket's notifications);
- routes: every one but ``/health`` with ``authorizer=IAMAuthorizer()``.
"""

import os

from chalice import Chalice, Cron, IAMAuthorizer

from chalicelib.settings import max_concurrency

app = Chalice(app_name="logarchive")
iam = IAMAuthorizer()


def _queue_name(variable: str) -> str:
    return os.environ.get(variable, "unset").rsplit("/", 1)[-1]


@app.route("/health")
def health() -> dict:
    return {"status": "ok"}


@app.route("/archives", authorizer=iam)
def list_archives() -> dict:
    return {}


@app.route("/retrievals", methods=["POST"], authorizer=iam, cors=True)
def start_retrieval() -> dict:
    return {}


@app.schedule(Cron(30, "*", "?", "*", "*", "*"))
def archive_scheduler(event) -> None:
    return None


@app.on_sqs_message(queue=_queue_name("LOGARCHIVE_WORK_QUEUE_URL"), batch_size=1,
                    maximum_concurrency=max_concurrency("archive_worker"))
def archive_worker(event) -> None:
    return None


@app.on_sqs_message(queue=_queue_name("LOGARCHIVE_RETRIEVAL_QUEUE_URL"), batch_size=1,
                    maximum_concurrency=max_concurrency("retrieval_worker"))
def retrieval_worker(event) -> None:
    return None


@app.on_cw_event({"source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"]})
def index_archive(event) -> None:
    return None

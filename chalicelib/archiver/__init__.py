"""The hourly archiving: scheduler and worker Lambdas, and their local twin.

Modules: ``messages`` (work items), ``scheduler`` (list and fan out), ``lease`` (in-flight
marks), ``worker`` (one staged object → verified archive object), ``batch`` (SQS batches,
remaining time), ``metadata`` (the archive object's metadata), ``s3io`` (repeatable S3
operations), ``quarantine``, ``replication`` (direct / s3-replication), ``prefetch``
(read-ahead), ``service`` (``build``: the archiver wired, for the Lambdas and ``logarchive
archive``), ``handlers`` (what app.py calls). The shipper's contract is ``chalicelib.staged``;
Powertools telemetry is app-wide: ``chalicelib.telemetry``.

Exactly once, and why conditional writes rather than Powertools Idempotency
--------------------------------------------------------------------------
The archive key is a function of the bytes (container, segment, first and last line time), and
every write of it is a conditional create (``If-None-Match: *``; for multipart uploads on the
completion). A retry, a duplicate SQS delivery or an overlapping run either creates the only
version of that key or finds it, compares ``logarchive-sha256`` and byte count, and carries on
to the delete. The staged version is deleted only after the archive object (and, in direct
mode, every copy) passed a HEAD check, and after the ``archived/<staged key>`` marker was left
(for a shipper that staged the object but crashed before recording it). So the guarantee lives
where the bytes live.

Powertools Idempotency (a DynamoDB record per payload) was considered and not used in the worker:
it cannot make the S3 side effect atomic with its record — a crash after the upload and before
the record is saved re-runs the upload anyway, so the conditional create is needed regardless;
while a record is INPROGRESS, a redelivery fails until the record expires, delaying
convergence; and the local ``logarchive archive --once`` must run the identical code path with
no table. The table is used where it adds something: the scheduler's in-flight leases
(``lease.py``), which stop overlapping runs from fanning out the same object twice.
"""

WORK_QUEUE_NAME = "logarchive-work"  # the SQS queue archive_worker is subscribed to

"""The scan step: one archive of a job through ``scanner.scan_archive`` into a result object,
its task finished together with the job's counters (a replayed ``Scan`` counts nothing).

Results: ``<results_prefix><job_id>/<archive_id>.jsonl.gz`` (a deterministic key: a replay
rewrites the same object).

An archive in cold storage (S3 answers ``InvalidObjectState``) is not an error: its task is
parked as ``restoring`` (``table.park_task``), the restore requested with the job's tier, and
the message is done. S3's "Object Restore Completed" event resumes the task (``service``)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable

from botocore.exceptions import ClientError

from .. import aws, restores, telemetry
from ..archive_object import open_archive
from ..awserrors import error_code, is_not_found
from ..crilog import CRI
from ..errors import LogarchiveError
from ..index.schema import K8S, Entry
from ..index.store import IndexStore
from ..keyring import Keyring
from .messages import Scan
from .request import RetrievalRequest
from .scanner import ScanStats, make_filter, scan_archive
from .table import FINISHED, NOT_WAITING, JobsTable, job_expiry

log = logging.getLogger(__name__)
# Days S3 keeps a job's restored copy: the scan runs as soon as the restore completes; the
# spare days cover the retries of a failing scan.
RESTORE_DAYS = 3


class ScanStep:
    def __init__(
        self, table: JobsTable, index: IndexStore, *, results_bucket: str, results_prefix: str
    ) -> None:
        self.table, self.index = table, index
        self.results_bucket, self.results_prefix = results_bucket, results_prefix

    def result_key(self, job_id: str, archive_id: str) -> str:
        return f"{self.results_prefix}{job_id}/{archive_id}.jsonl.gz"

    def scan(self, msg: Scan, keyring_factory: Callable[[], Keyring]) -> str:
        job_id, archive_id = msg.job_id, msg.archive_id
        job, task = self.table.get_job(job_id), self.table.get_task(job_id, archive_id)
        if job is None or task is None:
            log.warning("scan: job %s / task %s not found", job_id, archive_id)
            telemetry.count("RetrievalJobsMissing")
            return "missing"
        if task.status != "pending":
            telemetry.count("RetrievalScansRepeated")  # a duplicate delivery of a finished task
            return "already " + task.status
        if job.get("cancelled"):
            return "cancelled"  # no scan starts once the job is cancelled; the task stays pending
        req = RetrievalRequest.from_attrs(job)
        entry = self.index.get(req.selector.stack, archive_id)
        if entry is None or entry.state == "removed":
            self._failed(job_id, archive_id, f"archive {archive_id} is no longer in the archive bucket")
            return "failed"
        name = f"s3://{entry.bucket}/{entry.key}"
        s3 = aws.client("s3")
        try:
            try:
                obj = open_archive(s3, entry.bucket, entry.key, version_id=entry.version_id, name=name)
            except ClientError as exc:
                if is_not_found(exc):
                    raise LogarchiveError(
                        f"{name}: the indexed version is gone ({error_code(exc)})"
                    ) from None
                if error_code(exc) == "InvalidObjectState":
                    cls = (exc.response.get("Error") or {}).get("StorageClass") or entry.storage_class
                    return self._await_restore(msg, req, entry, str(cls), name)
                raise  # throttling, access, network: the message comes back and is retried
            keyring: Keyring = keyring_factory()
            flt = make_filter(req.start, req.end, req.stream, req.grep)
            with obj.body, tempfile.TemporaryFile() as tmp:
                stats = scan_archive(
                    obj.body.iter_chunks(1 << 20),
                    obj.envelope,
                    keyring,
                    flt,
                    tmp,
                    name=name,
                    key_id=entry.key_id,
                    source=CRI if entry.kind == K8S else entry.source_format,
                )
                result_key = None
                if stats.lines_matched:
                    # Only now, with the GCM tag verified, does any plaintext leave this function.
                    result_key = self.result_key(job_id, archive_id)
                    tmp.seek(0)
                    s3.put_object(
                        Bucket=self.results_bucket, Key=result_key, Body=tmp, ContentType="application/gzip"
                    )
        except LogarchiveError as exc:
            log.error("%s", exc)
            self._failed(job_id, archive_id, str(exc))
            return "failed"
        self._done(job_id, archive_id, stats, result_key)
        return "done"

    def _await_restore(self, msg: Scan, req: RetrievalRequest, entry: Entry, cls: str, name: str) -> str:
        """Park the task, then ask for the restore of the indexed version (parked first: a
        completion announced before the task waits would resume nothing). A restore S3 refuses
        (or that cannot be asked) fails the task with its one line."""
        job_id, archive_id = msg.job_id, msg.archive_id
        if self.table.park_task(job_id, archive_id, job_expiry()) == NOT_WAITING:
            telemetry.count("RetrievalScansRepeated")
            return "already finished"
        state = restores.ColdState(cls, restores.COLD)
        try:
            asked = restores.request_restore(
                aws.client("s3"), entry.bucket, entry.key, state, req.restore_tier, RESTORE_DAYS,
                version_id=entry.version_id, name=name,
            )
        except LogarchiveError as exc:
            log.error("%s", exc)
            self.table.resume_task(job_id, archive_id)
            self._failed(job_id, archive_id, str(exc))
            return "failed"
        log.info("%s: in %s, restore %s (%s); job %s waits", name, cls, asked, req.restore_tier, job_id)
        telemetry.count("RetrievalRestoresRequested")
        return "restoring"

    def _done(self, job_id: str, archive_id: str, stats: ScanStats, result_key: str | None) -> None:
        counts = {
            "archives_done": 1,
            "bytes_scanned": stats.ciphertext_bytes,
            "plaintext_bytes": stats.plaintext_bytes,
            "lines_matched": stats.lines_matched,
        }
        outcome = self.table.finish_task(
            job_id, archive_id, "done", counts, result_key=result_key, lines_matched=stats.lines_matched
        )
        if outcome == FINISHED:  # counted with the job's counters: a replayed scan adds nothing
            telemetry.count("RetrievalArchivesScanned")
            telemetry.add_bytes("RetrievalBytesScanned", stats.ciphertext_bytes)
            telemetry.add_bytes("RetrievalPlaintextBytes", stats.plaintext_bytes)
            telemetry.count("RetrievalLinesMatched", stats.lines_matched)
        else:
            telemetry.count("RetrievalScansRepeated")

    def _failed(self, job_id: str, archive_id: str, error: str) -> None:
        counts = {"archives_done": 1, "archives_failed": 1}
        if self.table.finish_task(job_id, archive_id, "failed", counts, error=error) == FINISHED:
            telemetry.count("RetrievalArchivesFailed")
        else:
            telemetry.count("RetrievalScansRepeated")

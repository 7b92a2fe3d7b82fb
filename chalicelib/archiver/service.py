"""The archiver, wired once: ``build(settings, keyring)`` is what every runner of it calls.

The scheduler and worker Lambdas (``handlers``) and ``logarchive archive --once`` get the
same clients, leases and worker from here, so a local run is the deployed code path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import aws
from ..keyring import Keyring
from ..settings import Settings
from . import scheduler
from .batch import handle_batch
from .heartbeats import HostView
from .lease import Leases
from .sealing import SealReport, seal_digest
from .worker import Outcome, Worker


@dataclass(frozen=True)
class Archiver:
    settings: Settings
    s3: Any
    sqs: Any
    leases: Leases | None  # the scheduler's in-flight marks (with an idempotency table)
    worker: Worker | None  # None when built without a key ring (the scheduler alone)

    def schedule(self, sender: scheduler.Sender | None = None, *,
                 keep_going: Callable[[], bool] | None = None) -> scheduler.ScheduleReport:
        """One scheduler run; work goes to ``sender`` (default: the work queue of the settings)."""
        if sender is None:
            sender = scheduler.SqsSender(self.sqs, self.settings.work_queue_url)
        return scheduler.run(self.settings, sender, s3=self.s3, leases=self.leases, keep_going=keep_going)

    def seal(self, signer: Any = None, hosts: HostView | None = None) -> SealReport | None:
        """Seal the stack's next digest under the seal lease (None: no signing key is set)."""
        return seal_digest(self.settings, self.s3, leases=self.leases, signer=signer, hosts=hosts)

    def hosts(self) -> HostView | None:
        """The stack's hosts in the staging bucket (heartbeats, retirement requests)."""
        return HostView.of(self.settings, self.s3)

    def handle(self, records: Iterable[Mapping[str, Any]], context: Any = None,
               outcomes: list[Outcome] | None = None) -> dict[str, list[dict[str, str]]]:
        """One batch of work records, as the worker Lambda gets them; ``batchItemFailures``."""
        if self.worker is None:
            raise ValueError("this archiver was built without a key ring: it cannot archive")
        return handle_batch(records, context, self.worker, outcomes)


def build(settings: Settings, keyring: Keyring | None = None) -> Archiver:
    """The archiver of ``settings``: the worker only with a key ring, leases only with a table."""
    leases = None
    if settings.idempotency_table:
        leases = Leases(aws.client("dynamodb"), settings.idempotency_table, settings.schedule_lease_seconds)
    worker = Worker(settings, keyring) if keyring is not None else None
    return Archiver(settings, aws.client("s3"), aws.client("sqs"), leases, worker)

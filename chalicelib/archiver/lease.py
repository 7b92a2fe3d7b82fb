"""In-flight marks of the scheduler, in the idempotency table (DynamoDB).

An overlapping or repeated scheduler run must not fan the same staged version out twice:
before sending a work item the scheduler takes a lease ``archive-schedule#<bucket>/<key>#<etag>``
with a conditional put (``attribute_not_exists(id) OR expiration <= now``). The table has
Powertools Idempotency's schema (partition key ``id``, TTL attribute ``expiration``), so one
table serves both. A lease is never released on success: the staged object is gone by then.
If a message dies in the DLQ, the lease expires and a later run sends the object again.

Without a table (``logarchive archive --once`` by default) there is no lease: the worker is
idempotent on its own (conditional create + checksum), so a duplicate costs only work.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from ..awserrors import is_conditional_check_failed
from .messages import Job


def lease_id(job: Job) -> str:
    return f"archive-schedule#{job.bucket}/{job.key}#{job.etag.strip(chr(34))}"


class Leases:
    def __init__(self, dynamodb: Any, table: str, seconds: int):
        self.ddb = dynamodb
        self.table = table
        self.seconds = seconds

    def acquire(self, job: Job, *, now: float | None = None) -> bool:
        return self.acquire_id(lease_id(job), now=now)

    def acquire_id(self, item_id: str, *, now: float | None = None, seconds: int | None = None) -> bool:
        """Take the lease ``item_id`` unless another holder's has not expired."""
        now = int(now if now is not None else time.time())
        seconds = self.seconds if seconds is None else seconds
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"id": {"S": item_id}, "expiration": {"N": str(now + seconds)}},
                ConditionExpression="attribute_not_exists(id) OR expiration <= :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def release(self, job: Job) -> None:
        self.release_id(lease_id(job))

    def release_id(self, item_id: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key={"id": {"S": item_id}})

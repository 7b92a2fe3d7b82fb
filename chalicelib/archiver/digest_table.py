"""The digests' state in the idempotency table: the chain head and the pending records.

Both live in the table named by ``LOGARCHIVE_IDEMPOTENCY_TABLE`` (partition key ``id``, TTL
attribute ``expiration``), which only the archiver's roles can write: no writer of a bucket can
move the chain or plant a record (docs/AUDIT.md, threat model).

* ``digest-chain#<stack>``: the newest digest's ``sequence``, ``digest_key`` and
  ``digest_sha256`` (of its body). Never given ``expiration``. The sealer's one commit point is a
  conditional write of this item that names the state it read (``attribute_not_exists(id)`` for
  the first digest), so two sealers cannot both extend the chain, and a bucket writer who deletes,
  rewinds or replaces digests cannot make the sealer extend anything but the digest it sealed.
* ``digest-record#<stack>#a#<40 hex>`` / ``…#e#<40 hex>``: a worker's record of one finished
  archive (named by the SHA-256 of its key) or one explained event (by type and source), the
  document in ``record`` (canonical JSON: ``{"archive": {…entry…}}`` or ``{"event": {…}}``) and
  ``recorded_at``. Created once (``attribute_not_exists(id)``): a retried or slow worker cannot
  record an archive again. Once sealed, a record keeps its item with ``sealed_in`` (the digest
  key) and an ``expiration`` ``SEALED_RECORD_DAYS`` later, so a record that arrives after its
  archive was sealed (a slow duplicate delivery) finds it there and is not listed twice.

Pending records are found with a filtered, parallel ``Scan`` of the table (its other items are
the scheduler's short-lived leases and Powertools' idempotency records), once per seal.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..awserrors import is_conditional_check_failed
from ..digest import ArchiveEntry, ExplainedEvent, canonical_json
from ..errors import LogarchiveError

CHAIN_PREFIX = "digest-chain#"
RECORD_PREFIX = "digest-record#"
SEALED_RECORD_DAYS = 35  # longer than any SQS retention (14 days) plus a DLQ redrive
SCAN_SEGMENTS = 4


def chain_id(stack: str) -> str:
    return f"{CHAIN_PREFIX}{stack}"


def records_prefix(stack: str) -> str:
    return f"{RECORD_PREFIX}{stack}#"


def archive_record_id(stack: str, archive_key: str) -> str:
    return f"{records_prefix(stack)}a#{hashlib.sha256(archive_key.encode()).hexdigest()[:40]}"


def event_record_id(stack: str, event: ExplainedEvent) -> str:
    identity = f"{event.type}\n{event.source}"
    return f"{records_prefix(stack)}e#{hashlib.sha256(identity.encode()).hexdigest()[:40]}"


class TableMissing(LogarchiveError):
    """Digests are on, but no idempotency table is named."""


def require_table(settings: Any) -> str:
    if not settings.idempotency_table:
        raise TableMissing("digests need the idempotency table (LOGARCHIVE_IDEMPOTENCY_TABLE, or --table): "
                           "the chain's state and the pending records live there")
    return settings.idempotency_table


@dataclass(frozen=True)
class ChainState:
    """What the table says the newest digest of a stack is."""

    sequence: int
    key: str
    sha256: str


@dataclass(frozen=True)
class Record:
    id: str
    document: dict  # {"archive": {…}} or {"event": {…}}, or {"unreadable": "<why>"}
    recorded_at: str

    @property
    def archive(self) -> ArchiveEntry | None:
        return ArchiveEntry.from_dict(self.document["archive"]) if "archive" in self.document else None

    @property
    def event(self) -> ExplainedEvent | None:
        return ExplainedEvent.from_dict(self.document["event"]) if "event" in self.document else None


class DigestTable:
    def __init__(self, dynamodb: Any, table: str, stack: str):
        self.ddb = dynamodb
        self.table = table
        self.stack = stack

    # -- the chain head -----------------------------------------------------------------------
    def state(self) -> ChainState | None:
        item = self.ddb.get_item(TableName=self.table, Key={"id": {"S": chain_id(self.stack)}},
                                 ConsistentRead=True).get("Item")
        if item is None:
            return None
        try:
            return ChainState(int(item["sequence"]["N"]), item["digest_key"]["S"], item["digest_sha256"]["S"])
        except (KeyError, ValueError):
            raise LogarchiveError(f"table {self.table}: item {chain_id(self.stack)} is malformed") from None

    def commit(self, previous: ChainState | None, new: ChainState, *, now: float | None = None) -> None:
        """Move the chain from ``previous`` to ``new``; ``ConditionalCheckFailedException`` when the
        item is not ``previous`` any more."""
        item = {
            "id": {"S": chain_id(self.stack)}, "sequence": {"N": str(new.sequence)},
            "digest_key": {"S": new.key}, "digest_sha256": {"S": new.sha256},
            "committed_at": {"N": str(int(now if now is not None else time.time()))},
        }
        if previous is None:
            cond: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(id)"}
        else:
            cond = {"ConditionExpression": "#s = :s AND digest_key = :k AND digest_sha256 = :h",
                    "ExpressionAttributeNames": {"#s": "sequence"},
                    "ExpressionAttributeValues": {":s": {"N": str(previous.sequence)},
                                                  ":k": {"S": previous.key}, ":h": {"S": previous.sha256}}}
        self.ddb.put_item(TableName=self.table, Item=item, **cond)

    # -- records ------------------------------------------------------------------------------
    def _put_record(self, record_id: str, document: dict, recorded_at: str) -> bool:
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"id": {"S": record_id}, "record": {"S": canonical_json(document).decode()},
                      "recorded_at": {"S": recorded_at}},
                ConditionExpression="attribute_not_exists(id)")
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False  # recorded already (pending or sealed): first write wins
            raise
        return True

    def record_archive(self, entry: ArchiveEntry, recorded_at: str) -> bool:
        """Leave the record of a finished archive; False when it was recorded before."""
        record_id = archive_record_id(self.stack, entry.key)
        return self._put_record(record_id, {"archive": entry.to_dict()}, recorded_at)

    def record_event(self, event: ExplainedEvent) -> bool:
        return self._put_record(event_record_id(self.stack, event), {"event": event.to_dict()}, event.at)

    def pending(self) -> list[Record]:
        """Every record of the stack not yet sealed (a parallel, filtered scan)."""

        def segment(n: int) -> list[Record]:
            out: list[Record] = []
            kwargs: dict[str, Any] = {
                "TableName": self.table, "Segment": n, "TotalSegments": SCAN_SEGMENTS, "ConsistentRead": True,
                "FilterExpression": "begins_with(id, :p) AND attribute_not_exists(sealed_in)",
                "ExpressionAttributeValues": {":p": {"S": records_prefix(self.stack)}},
            }
            while True:
                page = self.ddb.scan(**kwargs)
                out += [_record(item) for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    return out
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        with ThreadPoolExecutor(SCAN_SEGMENTS, thread_name_prefix="digest-scan") as pool:
            found = [r for part in pool.map(segment, range(SCAN_SEGMENTS)) for r in part]
        return sorted(found, key=lambda r: (r.recorded_at, r.id))

    def mark_sealed(self, records: Sequence[Record], digest_key: str, *, now: float | None = None) -> None:
        """Keep each record as sealed in ``digest_key`` until it expires (a late duplicate finds it)."""
        expires = str(int((now if now is not None else time.time()) + SEALED_RECORD_DAYS * 86400))
        items = [{"PutRequest": {"Item": {
            "id": {"S": r.id}, "record": {"S": canonical_json(r.document).decode()},
            "recorded_at": {"S": r.recorded_at}, "sealed_in": {"S": digest_key}, "expiration": {"N": expires},
        }}} for r in records]
        for chunk in _chunks(items, 25):
            pending: dict[str, Any] = {self.table: chunk}
            for _ in range(8):
                pending = self.ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise LogarchiveError(f"table {self.table}: records of {digest_key} not marked sealed "
                                      "(throttled); the next seal drops them as repeats")


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _record(item: dict) -> Record:
    text = item.get("record", {}).get("S", "")
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or not ({"archive", "event"} & set(document)):
            raise ValueError("neither an archive nor an event")
    except ValueError as exc:
        document = {"unreadable": str(exc)[:120]}
    return Record(item["id"]["S"], document, item.get("recorded_at", {}).get("S", ""))

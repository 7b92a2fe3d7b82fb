"""The DynamoDB archive index: key schema, store (writes/queries) and the S3-event indexer."""

from .indexer import Indexer, parse_event
from .schema import ARCHIVE_ID_RE, Entry, archive_id_of
from .store import IndexStore, Page, Position, Selector

__all__ = [
    "ARCHIVE_ID_RE",
    "Entry",
    "IndexStore",
    "Indexer",
    "Page",
    "Position",
    "Selector",
    "archive_id_of",
    "parse_event",
]

"""The event class of the ``index_archive`` handler: S3 notifications *and* EventBridge events.

Chalice's ``S3Event`` reads ``Records[0]`` when the event arrives, so an EventBridge
``aws.s3`` event would fail before the handler runs; this subclass accepts both shapes and
leaves the parsing of every record to :func:`chalicelib.index.indexer.parse_event`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from chalice.app import S3Event


class S3OrEventBridgeEvent(S3Event):
    def _extract_attributes(self, event_dict: dict[str, Any]) -> None:
        if event_dict.get("Records"):
            super()._extract_attributes(event_dict)
            return
        detail = event_dict.get("detail") or {}
        self.bucket = (detail.get("bucket") or {}).get("name", "")
        self.key = unquote_plus((detail.get("object") or {}).get("key", ""))

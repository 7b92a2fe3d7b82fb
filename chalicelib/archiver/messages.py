"""The work item the scheduler sends and the worker takes: one staged object version."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..errors import LogarchiveError


class BadMessage(LogarchiveError):
    """An SQS body that is not a work item (never retried into success: goes to the DLQ)."""


@dataclass(frozen=True)
class Job:
    bucket: str
    key: str
    etag: str  # with its quotes, as S3 returns it
    size: int
    version_id: str | None = None

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_body(self) -> str:
        return json.dumps({"v": 1, **asdict(self)}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_body(cls, text: str) -> Job:
        try:
            data = json.loads(text)
            return cls(
                bucket=str(data["bucket"]), key=str(data["key"]), etag=str(data["etag"]),
                size=int(data["size"]), version_id=data.get("version_id") or None,
            )
        except (ValueError, KeyError, TypeError):
            raise BadMessage(f"not an archive work item: {text[:80]!r}") from None

"""What an audit finds: findings by kind, each naming one object, and the result as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# Findings: each fails the audit (exit 1).
ARCHIVE_MISSING = "archive missing"
ARCHIVE_CHANGED = "archive changed"
ARCHIVE_IN_NO_DIGEST = "archive in no digest"
DIGEST_MISSING = "digest missing"
DIGEST_EDITED = "digest edited"
BROKEN_CHAIN = "broken chain"
BAD_SIGNATURE = "bad signature"
SEGMENT_GAP = "segment gap"
SEGMENT_TWICE = "segment archived twice"  # a number, or a source file's bytes, archived again
SHIPPED_NOT_ARCHIVED = "shipped but never archived"
RETENTION_SHORT = "retention shorter than the bucket's policy"
UNKNOWN_OBJECT = "unknown object"
CHAIN_STOPS = "chain stops"  # the newest digest is older than --max-digest-age
NOTHING_TO_PROVE = "nothing to prove"  # no digest and no archive of the stack
HOST_SILENT = "host silent"  # its last signed heartbeat is older than --silent-after, not retired
FAILING = (ARCHIVE_MISSING, ARCHIVE_CHANGED, ARCHIVE_IN_NO_DIGEST, DIGEST_MISSING, DIGEST_EDITED,
           BROKEN_CHAIN, BAD_SIGNATURE, SEGMENT_GAP, SEGMENT_TWICE, SHIPPED_NOT_ARCHIVED, RETENTION_SHORT,
           UNKNOWN_OBJECT, CHAIN_STOPS, NOTHING_TO_PROVE, HOST_SILENT)


@dataclass(frozen=True)
class Finding:
    kind: str  # one of FAILING
    object: str  # s3://bucket/key, or a host's segment
    detail: str
    container_id: str = ""
    resource: str = ""  # "<kind>-<id>" of the archive key, for the report's grid
    day: date | None = None

    def line(self) -> str:
        return f"{self.kind}: {self.object}: {self.detail}"

    def to_dict(self) -> dict:
        return {"finding": self.kind, "object": self.object, "detail": self.detail,
                "container_id": self.container_id, "resource": self.resource,
                "day": self.day.isoformat() if self.day else None}


@dataclass
class DigestRow:
    """One digest as the report shows it in the chain."""

    key: str
    sequence: int | None
    end_time: str
    archives: int
    events: int
    signing_key_id: str
    status: str  # "verified" or the finding's kind


@dataclass
class Cell:
    """One (resource, day) of the coverage grid."""

    verified: int = 0
    pending: int = 0
    explained: int = 0
    findings: int = 0

    @property
    def colour(self) -> str:
        if self.findings:
            return "red"
        if self.pending or self.explained:
            return "amber"
        return "green"


@dataclass
class AuditResult:
    bucket: str
    stack: str
    findings: list[Finding] = field(default_factory=list)
    digests: list[DigestRow] = field(default_factory=list)
    archives: int = 0  # archives in range, as listed
    verified: int = 0  # archives a verified digest proves and S3 still holds unchanged
    pending: list[str] = field(default_factory=list)  # keys newer than the last digest
    before_digests: list[str] = field(default_factory=list)  # keys older than the first digest
    explained: list[str] = field(default_factory=list)  # one line per explained gap
    size_only: list[str] = field(default_factory=list)  # keys whose digest entry has no S3 checksum
    envelope_unproven: list[str] = field(default_factory=list)  # keys sealed by version-1 digests
    containers: int = 0
    containers_contiguous: int = 0
    shipped_pending: int = 0  # shipped within the grace period, not archived yet
    grid: dict[tuple[str, date], Cell] = field(default_factory=dict)
    lock: str = ""  # the bucket's Object Lock default, as one phrase

    @property
    def ok(self) -> bool:
        return not self.findings

    def cell(self, resource: str, day: date) -> Cell:
        return self.grid.setdefault((resource, day), Cell())

    def counts(self) -> str:
        s = (f"{_n(len(self.digests), 'digest')}, {_n(self.archives, 'archive')}, "
             f"{_n(self.containers_contiguous, 'container')} contiguous, {len(self.pending)} pending")
        if self.before_digests:
            s += f", {len(self.before_digests)} before digests began"
        if self.explained:
            s += f", {len(self.explained)} explained"
        if self.size_only:
            s += f", {len(self.size_only)} size-checked only (no S3 checksum recorded; --deep proves them)"
        if self.envelope_unproven:
            s += (f", {len(self.envelope_unproven)} with the envelope not proven (sealed by version-1 "
                  "digests, which hold no envelope hash)")
        if self.shipped_pending:
            s += f", {self.shipped_pending} shipped within the grace period"
        return s

    def summary(self) -> str:
        if self.ok:
            return self.counts()
        failed = f"audit of s3://{self.bucket} stack {self.stack} FAILED: {_n(len(self.findings), 'finding')}"
        return f"{failed}; {self.counts()}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

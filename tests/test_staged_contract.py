"""The staged-object contract: what the shipper's builder writes, the archiver's parser reads."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.staged import (
    GZIP,
    IDENTITY,
    StagedMeta,
    archived_as,
    archived_marker,
    archived_marker_metadata,
    is_reserved,
    staged_key,
    staged_metadata,
)

CID = "ab" * 32
T1 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
T2 = datetime(2024, 5, 1, 10, 59, 59, 999999, tzinfo=UTC)


def _meta(**over: object) -> dict[str, str]:
    fields: dict = dict(stack="st", host="h1", container_id=CID, container_name="web.1", kind="apps",
                        resource_id="42", service_id="7", segment=3, rotation=1, byte_start=10, byte_end=99,
                        first=T1, last=T2, lines=5, sha256="cd" * 32, encoding=GZIP)
    fields.update(over)
    return staged_metadata(**fields)


def test_what_the_builder_writes_the_parser_reads() -> None:
    # as S3 returns it: header names, any case
    parsed = StagedMeta.parse({f"X-Amz-Meta-{k}": v for k, v in _meta().items()})
    assert parsed.problem is None
    assert (parsed.stack, parsed.host, parsed.container_id, parsed.container_name) == ("st", "h1", CID, "web.1")
    assert (parsed.kind, parsed.resource_id, parsed.service_id, parsed.segment) == ("apps", "42", "7", 3)
    assert (parsed.first_time, parsed.last_time, parsed.lines) == (T1, T2, 5)
    assert (parsed.sha256, parsed.encoding) == ("cd" * 32, GZIP)


def test_the_metadata_names_on_the_wire() -> None:
    meta = _meta(first=None, last=None, kind="unlabeled", resource_id="", service_id="", encoding=IDENTITY)
    assert meta == {
        "logarchive-stack": "st", "logarchive-host": "h1", "logarchive-container-id": CID,
        "logarchive-container-name": "web.1", "logarchive-kind": "unlabeled", "logarchive-resource-id": "",
        "logarchive-service-id": "", "logarchive-segment": "3", "logarchive-rotation": "1",
        "logarchive-byte-start": "10", "logarchive-byte-end": "99", "logarchive-first-time": "",
        "logarchive-last-time": "", "logarchive-lines": "5", "logarchive-sha256": "cd" * 32,
        "logarchive-encoding": "identity",
    }
    assert _meta()["logarchive-first-time"] == "2024-05-01T10:00:00.123456Z"
    assert StagedMeta.parse(meta).problem is None


def test_the_parser_names_what_is_wrong() -> None:
    bad = StagedMeta.parse(_meta(container_id="zz", segment=3, encoding="brotli"))
    assert bad.problem == "container-id 'zz' is not hex; unknown encoding 'brotli'"


def test_keys_and_markers() -> None:
    assert staged_key("p/q", "st", "h", CID, 3, "ab" * 32, GZIP) == f"p/q/st/h/{CID}/00000003-abababababababab.log.gz"
    assert staged_key("", "st", "h", CID, 1, "f" * 64, IDENTITY) == f"st/h/{CID}/00000001-ffffffffffffffff.log"
    key = staged_key("", "st", "h", CID, 1, "f" * 64, IDENTITY)
    assert is_reserved(archived_marker(key)) and not is_reserved(key)
    assert is_reserved("quarantine/x") and is_reserved("replication-pending/x")
    marker = archived_marker_metadata("archive/key", "f" * 64)
    assert archived_as(marker, "f" * 64) == "archive/key"
    assert archived_as(marker, "0" * 64) is None  # a marker of other bytes under the same key
    assert archived_as(archived_marker_metadata("archive/key", None), "0" * 64) == "archive/key"

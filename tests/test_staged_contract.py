"""The staged-object contract: what the shipper's builder writes, the archiver's parser reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.staged import (
    GZIP,
    IDENTITY,
    StagedMeta,
    StagedPath,
    archived_as,
    archived_marker,
    archived_marker_metadata,
    event_key,
    is_reserved,
    parse_staged_key,
    path_disagreement,
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


POD = "0f3c2b1a-9d8e-4c7b-a6f5-e4d3c2b1a098"
K8S = f"{POD}_web_2"


def test_the_staged_keys_path_parses_back() -> None:
    """The path is the trust boundary: what the builder writes, parse_staged_key reads."""
    key = staged_key("p/q", "st", "h1", CID, 3, "ab" * 32, GZIP)
    assert parse_staged_key(key, "p/q/") == StagedPath("p/q", "st", "h1", CID, 3, "ab" * 8, GZIP)
    assert parse_staged_key(key, "p/q") == parse_staged_key(key) == parse_staged_key(key, "/p/q/")
    assert parse_staged_key(key).source_format == "docker" and parse_staged_key(key).k8s is None
    root = staged_key("", "st", "h1", CID, 12345678, "f" * 64, IDENTITY)
    assert parse_staged_key(root, "") == StagedPath("", "st", "h1", CID, 12345678, "f" * 16, IDENTITY)
    event = event_key("staged", "st", "h1", CID, 4, "abandoned")
    assert event == f"staged/st/h1/{CID}/00000004-abandoned.event"
    assert parse_staged_key(event, "staged") == StagedPath("staged", "st", "h1", CID, 4, None, IDENTITY, "abandoned")


def test_a_kubernetes_container_component_parses() -> None:
    key = staged_key("staged", "st", "node-1", K8S, 1, "ab" * 32, IDENTITY)
    path = parse_staged_key(key, "staged")
    assert path is not None and path.container == K8S and path.source_format == "cri"
    assert path.k8s == (POD, "web", 2)
    static_pod = f"{'a' * 32}_kube-apiserver_0"  # a static pod's uid is its config hash
    assert parse_staged_key(f"staged/st/n/{static_pod}/00000001-{'a' * 16}.log", "staged").k8s == (
        "a" * 32, "kube-apiserver", 0)


@pytest.mark.parametrize("key", [
    f"staged/st/h1/{CID}/00000001-{'a' * 16}.log.bz2",  # not a segment's name
    f"staged/st/h1/{CID}/1-{'a' * 16}.log",  # not 8 digits
    f"staged/st/h1/{CID[:12]}/00000001-{'a' * 16}.log",  # a short id is not a staged container
    f"staged/st/h1/{CID.upper()}/00000001-{'a' * 16}.log",
    f"staged/st/h1/{POD}_Web_1/00000001-{'a' * 16}.log",  # a DNS label is lower case
    f"staged/st/h1/{POD}_web_01/00000001-{'a' * 16}.log",
    f"staged/st/h1/{POD}_web/00000001-{'a' * 16}.log",
    f"staged/st//{CID}/00000001-{'a' * 16}.log",  # no host
    f"staged/st/../{CID}/00000001-{'a' * 16}.log",
    f"staged/st/h1/x/{CID}/00000001-{'a' * 16}.log",  # one level too deep under the prefix
    f"staged/st/h1/{CID}",
    "staged/st/h1/_heartbeat.json",  # reserved for heartbeats (contract 3)
    f"other/st/h1/{CID}/00000001-{'a' * 16}.log",  # not under the prefix
    f"archived/staged/st/h1/{CID}/00000001-{'a' * 16}.log",  # the archiver's own prefixes
    f"staged/bad stack/h1/{CID}/00000001-{'a' * 16}.log",
])
def test_what_is_not_a_staged_path(key: str) -> None:
    assert parse_staged_key(key, "staged") is None


def test_with_no_prefix_the_last_four_components_are_read() -> None:
    """For records whose staging prefix is unknown (not a trust decision: the archiver passes its own)."""
    nested = f"staged/st/h2/st/h1/{CID}/00000001-{'a' * 16}.log"
    assert parse_staged_key(nested, "staged") is None
    assert parse_staged_key(nested).host == "h1"
    assert parse_staged_key(f"h1/{CID}/00000001-{'a' * 16}.log") is None


def test_metadata_that_contradicts_the_path() -> None:
    key = staged_key("staged", "st", "h1", CID, 3, "cd" * 32, GZIP)
    path = parse_staged_key(key, "staged")
    assert path_disagreement(path, StagedMeta.parse(_meta())) is None
    assert path_disagreement(path, StagedMeta.parse(_meta(host=""))) is None  # the path names the host
    assert path_disagreement(path, StagedMeta.parse(_meta(stack=""))) is None
    assert path_disagreement(path, StagedMeta.parse(_meta(host="h2", segment=4))) == (
        "metadata host 'h2' but path host 'h1'; metadata segment 4 but path segment 3")
    other = "ef" * 32
    assert path_disagreement(path, StagedMeta.parse(_meta(container_id=other, stack="s2"))) == (
        f"metadata stack 's2' but path stack 'st'; metadata container-id '{other}' but path container '{CID}'")
    assert path_disagreement(path, StagedMeta.parse(_meta(encoding=IDENTITY))) == (
        "metadata encoding 'identity' but the key's name says 'gzip'")
    # a host name the shipper percent-encodes in metadata matches its raw form in the key
    accented = parse_staged_key(staged_key("staged", "st", "hôte", CID, 3, "cd" * 32, GZIP), "staged")
    assert path_disagreement(accented, StagedMeta.parse(_meta(host="h%C3%B4te"))) is None

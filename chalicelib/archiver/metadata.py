"""The archive object's user metadata: the one definition of that contract.

docs/ARCHITECTURE.md ("Archive object") lists the names. The worker writes them from a seal
result; the indexer reads them from a HEAD, so it never opens the body. Anything else that
writes archive objects as the archiver does (``devkit.local_stack``'s sample archives, test helpers)
builds the metadata here too, so the names cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime

from ..codec import SealResult
from ..staged import (
    CRI,
    FORMAT_META,
    K8sIdentity,
    fmt_time,  # the staged and the archive object's times share one format
)

# What the body is, for whoever fetches the object without logarchive (``aws s3 cp``): the
# ``.gz`` name notwithstanding, it is ciphertext.
CONTENT = "gzip, then S3EC v2 AES-GCM"


def ascii_value(text: str, limit: int = 256) -> str:
    """S3 user metadata must be ASCII; the staged values already are (the shipper encodes)."""
    return text.encode("ascii", "replace").decode()[:limit]


def archive_metadata(
    sealed: SealResult,
    *,
    key_id: str,
    first: datetime,
    last: datetime,
    lines: int,
    host: str = "",
    container_name: str = "",
    segment: int | None = None,
    source: str = "",
    cut_from: int | None = None,
    byte_start: int | None = None,
    byte_end: int | None = None,
    source_head: str = "",
    k8s: K8sIdentity | None = None,
) -> dict[str, str]:
    """The envelope fields plus the ``logarchive-*`` fields of one archive object.

    ``first``/``last`` are the first and last line times, ``lines`` the line count and
    ``source`` the staged key; ``cut_from`` the shipper's note that the source file was cut
    back after bytes up to that offset had shipped (the segment starts at the cut); bytes and
    SHA-256 are the raw log's, from ``sealed``. ``byte_start``/``byte_end`` (the range of the
    source file) and ``source_head`` (its content identity) come from the staged object, when it
    had them: with them a host can rebuild a lost shipper state from the archive
    (``logarchive ship --rebuild-state``, docs/SHIPPER.md). ``k8s``: a CRI source's names
    (``logarchive-format: cri`` and the ``logarchive-k8s-*`` fields, as staged).
    """
    meta = {
        **sealed.envelope.to_fields(),
        "logarchive-content": CONTENT,
        "logarchive-key-id": key_id,
        "logarchive-first-time": fmt_time(first),
        "logarchive-last-time": fmt_time(last),
        "logarchive-lines": str(lines),
        "logarchive-bytes": str(sealed.plaintext_bytes),
        "logarchive-sha256": sealed.plaintext_sha256,
        "logarchive-host": ascii_value(host),
        "logarchive-container-name": ascii_value(container_name),
        "logarchive-compression": sealed.compression,
    }
    if segment is not None:
        meta["logarchive-segment"] = str(segment)
    if cut_from is not None:
        meta["logarchive-cut-from"] = str(cut_from)
    if byte_start is not None and byte_end is not None:
        meta["logarchive-byte-start"] = str(byte_start)
        meta["logarchive-byte-end"] = str(byte_end)
    if source_head:
        meta["logarchive-source-head"] = ascii_value(source_head)
    if k8s is not None:
        meta[FORMAT_META] = CRI
        meta.update(k8s.metadata())
    meta["logarchive-source"] = ascii_value(source, 1024)
    return meta

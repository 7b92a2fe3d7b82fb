"""Units of the archiver: dockerlog.TimeSpan's block scanner (key times) against the per-line
definition (``line_time`` of each line), for any block size; the worker's streaming gunzip."""

from __future__ import annotations

import pytest
from archiver_support import docker_lines

from chalicelib.dockerlog import TimeSpan, line_time


def per_line(data: bytes):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    times = [t for t in map(line_time, lines) if t is not None]
    return (min(times, default=None), max(times, default=None), len(lines), len(lines) - len(times))


CASES = {
    "docker": docker_lines(300, seed=3),
    "fraction-lengths": (b'{"log":"a","time":"2022-01-01T00:00:01.5Z"}\n{"log":"b","time":"2022-01-01T00:00:01.50001Z"}\n'
                         b'{"log":"c","time":"2022-01-01T00:00:01Z"}\n{"log":"d","time":"2022-01-01T00:00:00.999999999Z"}\n'),
    "offsets-garbage-no-newline": (b'garbage\n{"log":"x","time":"2022-01-01T00:00:05.1+02:00"}\n'
                                   b'{"time":"2021-12-31T23:00:00Z"}\nno newline'),
    "out-of-order": docker_lines(20, seed=1)[::-1].replace(b"\n", b"") + b"\n" + docker_lines(5, seed=2),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("block", [1, 7, 100, 1 << 20])
def test_block_scan_equals_per_line(name, block):
    data = CASES[name]
    span = TimeSpan()
    for i in range(0, len(data), block):
        span.feed(data[i:i + block])
    span.close()
    assert (span.first, span.last, span.lines, span.untimed_lines) == per_line(data)


def test_gunzip_members_bounds_and_truncation():
    import gzip

    from chalicelib.codec import CHUNK, gunzip
    from chalicelib.errors import IntegrityError

    a, b = docker_lines(100, seed=1), b"\0" * (8 * CHUNK)  # the second member: ratio ~1000x
    blob = gzip.compress(a) + gzip.compress(b)
    for step in (1, 1000, len(blob)):
        pieces = list(gunzip((blob[i:i + step] for i in range(0, len(blob), step)), "x"))
        assert b"".join(pieces) == a + b
        assert max(map(len, pieces)) <= CHUNK
    with pytest.raises(IntegrityError):
        list(gunzip([blob[:-5]], "x"))


def test_archive_metadata_is_what_the_indexer_reads():
    """The one builder of the archive object's metadata and the indexer's reader agree."""
    import io
    from datetime import UTC, datetime

    from chalicelib.archiver.metadata import archive_metadata
    from chalicelib.codec import seal
    from chalicelib.index.indexer import entry_from_head
    from chalicelib.keyring import Keyring, MasterKey
    from chalicelib.layout import ArchiveKey

    data = docker_lines(50, seed=4)
    master = MasterKey.generate()
    sealed = seal(io.BytesIO(data), io.BytesIO(), Keyring([master]))
    first = datetime(2022, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    last = datetime(2022, 1, 1, 13, 30, tzinfo=UTC)
    meta = archive_metadata(sealed, key_id=master.key_id, first=first, last=last, lines=50, host="hôst",
                            container_name="web.1", segment=3, source="staged/x")
    assert meta["logarchive-host"] == "h?st"  # S3 metadata is ASCII
    assert meta["logarchive-segment"] == "3" and meta["x-amz-key-v2"] == sealed.envelope.to_fields()["x-amz-key-v2"]
    assert "logarchive-segment" not in archive_metadata(sealed, key_id="k", first=first, last=last, lines=1)
    key = ArchiveKey(stack="s", key_id=master.key_id, kind="apps", resource_id="1", service_id="2",
                     container_id="ab" * 32, rotation=3, start=first, end=last)
    entry = entry_from_head("b", key.key(), key, {"Metadata": meta, "ContentLength": sealed.ciphertext_bytes},
                            state="live", seq="0")
    assert (entry.first, entry.last, entry.lines) == (first, last, 50)
    assert (entry.raw_bytes, entry.sha256) == (len(data), sealed.plaintext_sha256)
    assert (entry.host, entry.container_name) == ("h?st", "web.1")

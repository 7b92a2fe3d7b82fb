"""The retrieval filter: the raw-bytes pre-check never drops a line the exact filter keeps."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime

import pytest

from chalicelib.codec import seal
from chalicelib.dockerlog import LogLine
from chalicelib.errors import IntegrityError
from chalicelib.jobs.scanner import make_filter, scan_archive
from chalicelib.keyring import Keyring, MasterKey
from chalicelib.linefilter import matching_lines, quick_reject


def go_json(obj: dict) -> bytes:
    """As Docker (Go's encoding/json) writes it: compact, with <, > and & escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


LOGS = ["a timeout here\n", "TIMEOUT\n", "x<y & z>w timeout\n", 'quoted "timeout"\n', "back\\slash\n",
        "naïve timeout ü\n", "stderr in text\n", '"stream":"stderr" in text\n', "time out\n", ""]
TIMES = ["2022-01-01T11:59:59.999999999Z", "2022-01-01T12:00:00Z", "2022-01-01T12:04:59.999999Z",
         "2022-01-01T12:05:00Z", "2022-01-01T14:00:00+02:00"]
LINES = [go_json({"log": log, "stream": s, "time": t}) for log, s, t in itertools.product(LOGS, ("stdout", "stderr"), TIMES)]
LINES += [b"not json at all timeout", b'{"log":"no time timeout\\n","stream":"stderr"}', b"[1,2]",
          b'{"log":"truncated timeout', go_json({"log": "x", "stream": "stderr", "time": "garbage"})]


@pytest.mark.parametrize("grep", [None, "timeout", "x<y", 'quoted "timeout"', "back\\slash", "naïve", "stderr", "a.b"])
@pytest.mark.parametrize("stream", [None, "stderr"])
@pytest.mark.parametrize("ranged", [False, True])
def test_quick_reject_is_only_a_shortcut(grep, stream, ranged) -> None:
    start, end = (datetime(2022, 1, 1, 12, tzinfo=UTC), datetime(2022, 1, 1, 12, 5, tzinfo=UTC)) if ranged else (None, None)
    flt = make_filter(start, end, stream, grep)
    reject = quick_reject(flt)
    exact = [raw for raw in LINES if flt.matches(LogLine.parse(raw))]
    assert not [raw for raw in exact if reject(raw)]
    assert list(matching_lines(LINES, flt)) == exact


def test_scan_archive_writes_only_matches_and_refuses_tampering() -> None:
    import gzip

    ring = Keyring([MasterKey.generate()])
    data = b"".join(x + b"\n" for x in LINES)
    sealed = io.BytesIO()
    env = seal(io.BytesIO(data), sealed, ring).envelope
    flt = make_filter(datetime(2022, 1, 1, 12, tzinfo=UTC), datetime(2022, 1, 1, 12, 5, tzinfo=UTC), "stderr", "timeout")
    out = io.BytesIO()
    stats = scan_archive(io.BytesIO(sealed.getvalue()), env, ring, flt, out, name="obj")
    want = [raw for raw in LINES if flt.matches(LogLine.parse(raw))]
    assert gzip.decompress(out.getvalue()).splitlines() == want and stats.lines_matched == len(want) > 0
    assert stats.plaintext_bytes == len(data) and stats.lines_seen == len(LINES)
    bad = bytearray(sealed.getvalue())
    bad[10] ^= 0x40
    with pytest.raises(IntegrityError):
        scan_archive(io.BytesIO(bytes(bad)), env, ring, flt, io.BytesIO(), name="obj")


@pytest.mark.parametrize("grep", [None, "timeout", "x<y", "stderr", "naïve"])
@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_match_writer_equals_the_exact_filter_for_any_block_size(grep, block) -> None:
    import gzip

    from chalicelib.jobs.scanner import MatchWriter

    flt = make_filter(datetime(2022, 1, 1, 12, tzinfo=UTC), datetime(2022, 1, 1, 12, 5, tzinfo=UTC), None, grep)
    data = b"\n".join(LINES) + b"\n\n" + LINES[3]  # an empty line, and a last line without newline
    out = io.BytesIO()
    w = MatchWriter(out, flt)
    for i in range(0, len(data), block):
        w.write(data[i:i + block])
    w.close()
    want = [raw for raw in LINES + [LINES[3]] if flt.matches(LogLine.parse(raw))]
    assert gzip.decompress(out.getvalue()).splitlines() == want
    assert w.lines_matched == len(want) and w.lines_seen == len(LINES) + 2


def test_scan_archive_reports_a_broken_gzip_header_as_failed_authentication() -> None:
    """Damage at the gzip magic breaks gunzip long before the tag: still one IntegrityError
    saying "authentication failed" (codec.unseal holds the gzip error back), nothing written."""
    ring = Keyring([MasterKey.generate()])
    sealed = io.BytesIO()
    env = seal(io.BytesIO(b"".join(x + b"\n" for x in LINES) * 50), sealed, ring).envelope
    bad = bytearray(sealed.getvalue())
    bad[0] ^= 0x40
    out = io.BytesIO()
    with pytest.raises(IntegrityError, match="authentication failed"):
        scan_archive(io.BytesIO(bytes(bad)), env, ring, make_filter(grep="timeout"), out, name="obj")
    assert out.getvalue() == b""

"""The benchmark's log generator makes deterministic, valid Docker json-file lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chalicelib.dockerlog import LogLine, parse_docker_time

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
import loggen  # noqa: E402


def test_loggen_is_deterministic_and_valid() -> None:
    a = b"".join(loggen.generate(300_000, block=50_000))
    assert a == b"".join(loggen.generate(300_000, block=70_000))
    assert a != b"".join(loggen.generate(300_000, seed=3))
    assert 290_000 < len(a) <= 300_000 and a.endswith(b"\n")
    streams, times = set(), []
    for raw in a.splitlines():
        obj = json.loads(raw)
        assert set(obj) == {"log", "stream", "time"} and obj["log"].endswith("\n")
        line = LogLine.parse(raw)
        streams.add(line.stream)
        times.append(parse_docker_time(obj["time"]))
    assert streams == {"stdout", "stderr"}
    assert times == sorted(times)

"""Hostile and careless changes to the logs ``logarchive ship`` reads: a closed log cut back
and grown again loses nothing and ships nothing twice; the cut is reported and recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dockerfake import FakeDockerRoot
from test_ship import joined, ship, staged


@pytest.fixture
def fake(tmp_path: Path) -> FakeDockerRoot:
    return FakeDockerRoot(tmp_path / "docker")


def test_a_cut_then_grown_log_ships_every_new_line_once(buckets, fake, tmp_path, capsys):
    db = fake.add("db-cut", labels={"logarchive.database_id": "9"})
    for i in range(100):
        db.log(f"old line {i:03d} " + "x" * 60)
    db.stop()
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and "shipped: 1 segment," in out, out
    old = bytes(db.written)

    keep = 6000  # beyond the head that identifies the file, not on a line boundary
    os.truncate(db.log_path, keep)
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "shorter than what was already staged" in out, out

    new = b"".join(db.log(f"new line {i:03d} " + "y" * 40) for i in range(100))
    assert db.log_path.stat().st_size > len(old)  # grown past the old end
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 0 and "problems: none" in out, out
    segs = staged(buckets.staging, db.id)
    assert [m["logarchive-byte-start"] for m, _ in segs] == ["0", str(keep)]
    assert joined(buckets.staging, db.id) == old + new  # every new line, once; nothing before re-sent
    assert segs[1][0]["logarchive-cut-from"] == str(len(old))
    assert "logarchive-cut-from" not in segs[0][0]

    rc, out = ship(tmp_path, buckets.staging, capsys)  # the cut is reported once
    assert rc == 0 and "shipped: 0 segments" in out, out

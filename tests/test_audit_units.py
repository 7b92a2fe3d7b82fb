"""Pure parts of the audit that the end-to-end tests cannot reach in seconds."""

from __future__ import annotations

from chalicelib.audit.checks import is_variant, parse_grace


def test_collision_variants_are_told_from_a_long_containers_real_segments() -> None:
    # The archiver writes a collision of segment N as key number N*1000+k.
    small = {1, 2, 3, 5, 5001, 5002}
    assert is_variant(5001, small) and is_variant(5002, small)
    assert not is_variant(3, small)
    # A container past segment 1,000 has real numbers there: 1001 is not a variant of 1.
    long = set(range(1, 1003))
    assert not is_variant(1001, long) and not is_variant(1002, long)
    assert not is_variant(2000, {2, 2000})


def test_grace() -> None:
    assert [parse_grace(t).total_seconds() for t in ("2h", "90m", "30s", "1d", "45")] == [7200, 5400, 30, 86400, 45]

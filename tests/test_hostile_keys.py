"""Hostile input to the archiver: every key it writes parses back through ``layout``; what
cannot be represented is quarantined with its segment, never archived unreadable; loose
parsing (a final newline, non-ASCII digits) is refused; ``archive --once`` needs a stack."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from archiver_support import STAGING_PREFIX, archived, archiver_env, docker_lines, stage

from chalicelib import cli, layout
from chalicelib.archiver.messages import Job
from chalicelib.archiver.worker import Status, Worker
from chalicelib.dockerlog import TimeSpan, line_time
from chalicelib.errors import LayoutError, LogarchiveError
from chalicelib.settings import Settings
from chalicelib.staged import StagedMeta

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
EXTREME_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9, 9, 9, 9, 9, 9, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1000, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def _random_key(rnd: random.Random) -> layout.ArchiveKey:
    kind = rnd.choice([*layout.KINDS, layout.UNLABELED])

    def ident() -> str:
        return "".join(rnd.choice(ID_CHARS) for _ in range(rnd.choice([1, 2, 17, 64])))

    times = sorted(rnd.choice([*EXTREME_TIMES, datetime(1, 1, 1, tzinfo=UTC)
                               + timedelta(seconds=rnd.randrange(315_537_897_600))]) for _ in range(2))
    stack = rnd.choice("abcXYZ019") + "".join(rnd.choice(ID_CHARS + ".-") for _ in range(rnd.randrange(63)))
    return layout.ArchiveKey(
        stack=stack, key_id=f"{rnd.getrandbits(256):064x}", kind=kind,
        resource_id=ident() if kind != layout.UNLABELED else None,
        service_id=ident() if kind == "apps" else None,
        container_id="".join(rnd.choice("0123456789abcdef") for _ in range(rnd.randrange(12, 65))),
        rotation=rnd.choice([None, 1, 9, 10, 1000, 99_999_999, 10**15 + 7]), start=times[0], end=times[1],
    )


def test_every_written_key_parses_back_to_its_fields():
    rnd = random.Random(9)
    for _ in range(3000):
        k = _random_key(rnd)
        back = layout.parse(k.key())
        assert back == replace(k, start=k.start.replace(microsecond=0), end=k.end.replace(microsecond=0)), k.key()


def test_years_before_1000_are_four_digits():
    k = replace(_random_key(random.Random(1)), start=EXTREME_TIMES[2], end=EXTREME_TIMES[2])
    assert ".0999-12-31T23:59:59.0999-12-31T23:59:59.archived.gz" in k.key()
    assert layout.format_time(datetime(5, 1, 2, tzinfo=UTC)) == "0005-01-02T00:00:00"


def test_a_key_that_would_not_parse_back_is_refused():
    k = replace(_random_key(random.Random(2)), rotation=0)  # no ".N": it would read back as None
    with pytest.raises(LayoutError):
        k.key()


@pytest.mark.parametrize("bad", ["abc\n", "a" * 12 + "\n", "a\u0663"])
def test_ids_with_a_final_newline_or_non_ascii_digits_are_refused(bad):
    for pattern in (layout.ID_RE, layout.STACK_RE, layout.CONTAINER_RE):
        assert not pattern.match(bad)


def test_staged_numbers_are_ascii_digits():
    meta = StagedMeta.parse({"logarchive-container-id": "a" * 64, "logarchive-segment": "１２",
                             "logarchive-lines": "\u0663"})
    assert meta.problem and "segment" in meta.problem and meta.lines is None


def test_key_parsing_refuses_a_final_newline_and_fullwidth_digits():
    good = _random_key(random.Random(3)).key()
    layout.parse(good)
    for bad in (good + "\n", good.replace(".archived.gz", ".archived.gz\n"),
                good.replace("-json.log.", "-json.log.１", 1) if ".archived" in good else good + "x"):
        with pytest.raises(LayoutError):
            layout.parse(bad)


def test_times_out_of_range_are_untimed_lines_not_crashes():
    lines = (b'{"log":"a","time":"0000-01-01T00:00:00Z"}\n'
             b'{"log":"b","time":"2022-13-01T00:00:00Z"}\n'
             b'{"log":"c","time":"0001-01-01T00:00:00+01:00"}\n'
             b'{"log":"d","time":"0999-06-01T00:00:00.5Z"}\n')
    assert line_time(lines.split(b"\n")[2]) is None
    zulu_only = b"".join(line + b"\n" for line in lines.split(b"\n") if b"+01:00" not in line and line)
    for data, lines_total in ((lines, 4), (zulu_only, 3)):
        span = TimeSpan()
        span.feed(data)
        span.close()
        assert (span.first, span.last, span.lines, span.untimed_lines) == (
            datetime(999, 6, 1, 0, 0, 0, 500000, tzinfo=UTC), datetime(999, 6, 1, 0, 0, 0, 500000, tzinfo=UTC),
            lines_total, lines_total - 1)


# -- the worker ---------------------------------------------------------------------------
@pytest.fixture
def env(monkeypatch, buckets):
    return archiver_env(monkeypatch, buckets)


def _archive(buckets, env, staged, **settings):
    s3 = boto3.client("s3")
    worker = Worker(replace(Settings.from_env(), **settings), env["keyring"])
    head = s3.head_object(Bucket=buckets.staging, Key=staged.key)
    return worker.archive(Job(buckets.staging, staged.key, head["ETag"], head["ContentLength"]))


def test_a_log_from_before_year_1000_is_archived_readable(buckets, env):
    s3 = boto3.client("s3")
    data = docker_lines(5, start=datetime(999, 12, 31, 23, 59, 58, tzinfo=UTC))
    staged = stage(s3, buckets.staging, "old", data, segment=3)
    out = _archive(buckets, env, staged)
    assert out.status is Status.ARCHIVED, out.reason
    k = layout.parse(out.archive_key)
    assert (k.rotation, k.start, k.end) == (3, datetime(999, 12, 31, 23, 59, 58, tzinfo=UTC),
                                             datetime(1000, 1, 1, 0, 0, 2, tzinfo=UTC))
    assert archived(s3, buckets.archive, env["keyring"]) == {out.archive_key: data}
    meta = s3.head_object(Bucket=buckets.archive, Key=out.archive_key)["Metadata"]
    assert meta["logarchive-first-time"] == "0999-12-31T23:59:58.000000Z"


def test_a_json_field_named_time_with_a_tiny_year_is_readable(buckets, env):
    s3 = boto3.client("s3")
    data = json.dumps({"log": "x\n", "stream": "stdout", "time": "0042-01-01T00:00:00Z"},
                      separators=(",", ":")).encode() + b"\n"
    out = _archive(buckets, env, stage(s3, buckets.staging, "tiny", data, segment=1))
    assert out.status is Status.ARCHIVED and layout.parse(out.archive_key).start.year == 42


def _quarantined(s3, bucket, key):
    return s3.head_object(Bucket=bucket, Key="quarantine/" + key)["Metadata"]


def test_an_unrepresentable_segment_is_quarantined_with_its_number(buckets, env):
    s3 = boto3.client("s3")
    staged = stage(s3, buckets.staging, "zero", docker_lines(3), segment=0)
    out = _archive(buckets, env, staged)
    assert out.status is Status.QUARANTINED and "segment 0" in out.reason
    meta = _quarantined(s3, buckets.staging, staged.key)
    assert meta["logarchive-segment"] == "0" and "segment 0" in meta["logarchive-quarantine-reason"]
    assert not s3.list_objects_v2(Bucket=buckets.archive).get("Contents")


def test_a_staged_stack_that_is_no_key_component_is_quarantined(buckets, env):
    s3 = boto3.client("s3")
    staged = stage(s3, buckets.staging, "evil", docker_lines(3), **{"logarchive-stack": "../evil"})
    out = _archive(buckets, env, staged, stack="")  # a stage without LOGARCHIVE_STACK
    assert out.status is Status.QUARANTINED and "../evil" in out.reason
    assert not s3.list_objects_v2(Bucket=buckets.archive).get("Contents")


def test_archive_once_without_a_stack_is_refused(buckets, env, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("LOGARCHIVE_STACK")
    s3 = boto3.client("s3")
    stage(s3, buckets.staging, "a", docker_lines(3))
    key_file = tmp_path / "keys"
    key_file.write_text(env["key"].to_base64() + "\n")
    argv = ["archive", "--once", "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}",
            "--archive-bucket", buckets.archive, "--key-file", str(key_file)]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stack" in err[0]
    assert not s3.list_objects_v2(Bucket=buckets.archive).get("Contents")
    assert cli.main([*argv, "--stack", "bad\n"]) != 0
    assert "--stack" in capsys.readouterr().err


def test_a_cut_recorded_by_the_shipper_reaches_the_archive_metadata(buckets, env):
    s3 = boto3.client("s3")
    staged = stage(s3, buckets.staging, "cut", docker_lines(3), segment=2, **{"logarchive-cut-from": "14400"})
    out = _archive(buckets, env, staged)
    assert out.status is Status.ARCHIVED
    assert s3.head_object(Bucket=buckets.archive, Key=out.archive_key)["Metadata"]["logarchive-cut-from"] == "14400"


def test_shipper_durations_and_sizes_are_ascii_digits():
    from chalicelib.shipper.config import parse_duration, parse_size

    assert (parse_duration("90s"), parse_size("8MiB")) == (90.0, 8 << 20)
    for bad in ("９０s", "\u0663s"):
        with pytest.raises(LogarchiveError):
            parse_duration(bad)
    with pytest.raises(LogarchiveError):
        parse_size("８MiB")

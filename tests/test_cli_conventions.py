"""One tool's conventions, checked over every `logarchive` command the parser knows."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from retrieval_helpers import run_cli

from chalicelib import cli, times
from chalicelib.api import params
from chalicelib.options import deprecated_aliases

ROOT = Path(__file__).resolve().parents[1]


def leaf_parsers() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every runnable command: its argv prefix and its parser."""
    def walk(prefix: list[str], p: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix, p
            return
        seen = set()
        for name, child in subs[0].choices.items():
            if id(child) not in seen:  # aliases share a parser
                seen.add(id(child))
                yield from walk([*prefix, name], child)

    yield from walk([], cli.build_parser())


COMMANDS = list(leaf_parsers())


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options a command shows (its old spellings, hidden, are checked apart)."""
    hidden = set(map(id, deprecated_aliases(p)))
    return [a for a in p._actions if a.option_strings and id(a) not in hidden
            and not isinstance(a, argparse._HelpAction | argparse._VersionAction)]


@pytest.mark.parametrize("prefix, parser", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_every_option_has_help_with_its_default(prefix, parser) -> None:
    for action in _options(parser):
        name = "/".join(action.option_strings)
        assert action.help, f"logarchive {' '.join(prefix)} {name}: no help text"
        flag = action.nargs == 0  # store_true, store_const: absent is the default
        if not action.required and not flag:
            # "required" where argparse cannot enforce it (one of two options, or a config file)
            assert "default" in action.help or "required" in action.help, (
                f"logarchive {' '.join(prefix)} {name}: help states no default")


def _required(parser: argparse.ArgumentParser) -> tuple[list[str], list]:
    required = [a.option_strings[0] for a in _options(parser) if a.required]
    required += [a.metavar or a.dest for a in parser._actions if not a.option_strings and a.required
                 and a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)]
    return required, [g for g in parser._mutually_exclusive_groups if g.required]


# Commands with something argparse requires: the others have no missing-option error to check.
WITH_REQUIRED = [c for c in COMMANDS if any(_required(c[1]))]


@pytest.mark.parametrize("prefix, parser", WITH_REQUIRED, ids=[" ".join(c[0]) for c in WITH_REQUIRED])
def test_usage_error_names_every_missing_option_and_exits_2(prefix, parser, capsys) -> None:
    required, groups = _required(parser)
    capsys.readouterr()
    rc = cli.main(prefix)
    err = capsys.readouterr().err
    assert rc == 2
    for name in required:
        assert name.lstrip("-") in err, f"{name} not named in: {err}"
    for g in groups:
        assert all(a.option_strings[0] in err for a in g._group_actions), err


def test_options_required_outside_argparse_are_usage_errors_too(capsys, monkeypatch) -> None:
    monkeypatch.delenv("LOGARCHIVE_REPLICATION_ROLE_ARN", raising=False)
    for argv, names in ((["ship"], ["--staging", "--stack", "one of --once --interval"]),
                        (["setup", "bucket-policy", "--bucket", "b"], ["--role-arn"]),
                        (["local", "up", "--api-port", "1"], ["--key-file"])):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 2 and err.count("\n") == 1, (argv, err)
        assert all(n in err for n in names), err


def test_botocore_info_lines_only_with_verbose(moto_endpoint) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint}
    argv = [sys.executable, "-m", "chalicelib.cli", "logs-from-archive", "--bucket", "no-such-bucket",
            "--stack", "s", "--app-id", "1"]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1 and "no-such-bucket" in quiet.stderr
    loud = subprocess.run(argv[:3] + ["-v"] + argv[3:], capture_output=True, text=True, env=env, cwd=ROOT)
    assert "Found credentials" in loud.stderr


# -- one time syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2022-01-01", datetime(2022, 1, 1, tzinfo=UTC)),
    ("2022-01-01T12:00:00Z", datetime(2022, 1, 1, 12, tzinfo=UTC)),
    ("2022-01-01T12:00:00", datetime(2022, 1, 1, 12, tzinfo=UTC)),
    ("2022-01-01T12:00:00+02:00", datetime(2022, 1, 1, 10, tzinfo=UTC)),
])
def test_one_time_syntax_reads_dates_and_rfc3339(text, expected) -> None:
    assert times.parse_time(text) == expected
    assert params.parse_instant("start", text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2022-01-01T12:00", "2022-01-01T12:00:00.5Z", "2022-1-1T00:00:00Z",
                                  "2022-01-01x", "2022-02-30", "9999-01-01", "2022-01-01\n", "２０２２-01-01"])
def test_one_time_syntax_refuses_the_rest(text) -> None:
    with pytest.raises(times.TimeSyntaxError):
        times.parse_time(text)
    with pytest.raises(params.ParamError):
        params.parse_instant("start", text)


def test_index_query_and_logs_from_archive_take_the_same_times(aws_endpoint, capsys) -> None:
    from chalicelib.devkit import local_stack

    local_stack.create_table("t-index")
    rc, out, err = run_cli(["index", "query", "--table", "t-index", "--stack", "s", "--app-id", "1",
                            "--start", "2022-01-01", "--end", "2022-01-02T00:00:00+01:00"], capsys)
    assert rc == 0, err
    assert "0 archives" in err
    boto3.client("s3").create_bucket(Bucket="bkt")
    for start in ("2022-01-01", "2022-01-01T00:00:00Z"):
        rc, out, err = run_cli(["logs-from-archive", "--bucket", "bkt", "--stack", "s", "--app-id", "1",
                                "--start", start], capsys)
        assert rc == 1 and "No files found" in err
    rc, out, err = run_cli(["index", "query", "--table", "t-index", "--stack", "s", "--app-id", "1",
                            "--start", "01/01/2022", "--end", "2022-01-02"], capsys)
    assert rc == 2 and "--start" in err and "YYYY-MM-DD" in err and err.count("\n") == 1


# -- setup check, archive --kms-key-id --------------------------------------------------------


def test_setup_check_says_the_bucket_does_not_exist_and_uses_the_session_region(aws_endpoint, capsys) -> None:
    rc, out, err = run_cli(["setup", "check", "--bucket", "no-such"], capsys)
    assert rc == 1
    assert "FAIL exists: bucket no-such does not exist" in out
    assert "cannot check" not in out
    boto3.client("s3").create_bucket(Bucket="there")
    rc, out, err = run_cli(["setup", "check", "--bucket", "there"], capsys)
    assert "region: us-east-1, the stack's region" in out  # the session's region, no --stack-region


def test_archive_takes_kms_key_id_like_seal(aws_endpoint, buckets, capsys, tmp_path, monkeypatch) -> None:
    from chalicelib.keyring import KEYS_ENV, key_id_of_kms

    monkeypatch.delenv(KEYS_ENV, raising=False)
    arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    line = b'{"log":"hello\\n","stream":"stdout","time":"2022-01-01T00:00:00.000000001Z"}\n'
    staged = f"staged/teststack/h/{'ab' * 32}/00000001-0000000000000000.log"
    meta = {"logarchive-stack": "teststack", "logarchive-host": "h", "logarchive-container-id": "ab" * 32,
            "logarchive-container-name": "web", "logarchive-kind": "apps", "logarchive-resource-id": "5",
            "logarchive-service-id": "1", "logarchive-segment": "1", "logarchive-rotation": "0",
            "logarchive-byte-start": "0", "logarchive-byte-end": str(len(line)),
            "logarchive-first-time": "2022-01-01T00:00:00.000000Z",
            "logarchive-last-time": "2022-01-01T00:00:00.000000Z", "logarchive-lines": "1",
            "logarchive-encoding": "identity"}
    boto3.client("s3").put_object(Bucket=buckets.staging, Key=staged, Body=line, Metadata=meta)
    rc, out, err = run_cli(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged",
                            "--archive-bucket", buckets.archive, "--stack", "teststack", "--kms-key-id", arn], capsys)
    assert rc == 0, out + err
    assert f"/{key_id_of_kms(arn)}/apps-5/" in out
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.archive, "--stack", "teststack",
                            "--app-id", "5", "--download-location", str(tmp_path), "--format", "jsonl"], capsys)
    assert rc == 0, err
    assert [p.read_bytes() for p in tmp_path.rglob("*.jsonl")] == [line]

"""One tool's conventions, checked over every `logarchive` command the parser knows."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from retrieval_helpers import cli_logging, run_cli

from chalicelib import cli, times
from chalicelib.api import params
from chalicelib.options import deprecated_aliases, positive_int

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


# -- one vocabulary (docs/CLI.md), checked over every command ----------------------------------

def _all_parsers() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every parser, the groups (``digest``, ``setup``…) included."""
    def walk(prefix: list[str], p: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
        yield prefix, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, child in dict(zip(map(id, a.choices.values()), a.choices.items(), strict=True)).values():
                    yield from walk([*prefix, name], child)

    yield from walk([], cli.build_parser())


GROUPS = [(prefix, p) for prefix, p in _all_parsers()
          if prefix and any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
INTERNAL = {a.dest for _, p in _all_parsers() for a in p._actions
            if isinstance(a, argparse._SubParsersAction) and a.dest != "command"}
AWS_COMMANDS = [c for c in COMMANDS if "--endpoint-url" in c[1]._option_string_actions]


def _visible(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in _options(parser) for s in a.option_strings}


def test_the_groups_and_aws_commands_are_found() -> None:
    # The checks below cannot pass for want of commands to check.
    assert {" ".join(g[0]) for g in GROUPS} >= {"digest", "index", "keys", "setup", "local"}
    assert INTERNAL >= {"digest_command", "index_command", "keys_command", "setup_command"}
    assert len(AWS_COMMANDS) >= 15 and set(NO_AWS_SAMPLE) < {" ".join(c[0]) for c in AWS_COMMANDS}


@pytest.mark.parametrize("prefix, parser", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_usage_error_shows_the_subcommands_own_usage_line(prefix, parser, capsys) -> None:
    rc, out, err = run_cli([*prefix, "-v", "--no-such-option"], capsys)
    assert rc == 2 and out == ""
    assert err.startswith(f"usage: logarchive {' '.join(prefix)} "), err  # -v after the command is no error
    assert f"logarchive {' '.join(prefix)}: error: " in err
    assert not INTERNAL & set(re.findall(r"\w+", err)), err


@pytest.mark.parametrize("prefix, parser", GROUPS, ids=[" ".join(g[0]) for g in GROUPS])
def test_no_internal_name_in_a_groups_usage_or_error(prefix, parser, capsys) -> None:
    rc, out, err = run_cli(prefix, capsys)
    assert rc == 2
    assert err.startswith(f"usage: logarchive {' '.join(prefix)} ")
    words = set(re.findall(r"\w+", err + parser.format_help()))
    assert not INTERNAL & words, err


def test_no_internal_name_in_any_help() -> None:
    for prefix, parser in _all_parsers():
        assert not INTERNAL & set(re.findall(r"\w+", parser.format_help())), prefix


# Old spellings are hidden aliases that warn; no command shows them, and Aptible's stay on
# logs-from-archive only.
OLD = {"--json", "--threads", "--concurrency", "--part-size-mb", "--decryption-keys", "--decryption-keys-file"}
APTIBLE = {"--decryption-keys", "--decryption-keys-file"}


@pytest.mark.parametrize("prefix, parser", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_one_name_per_idea(prefix, parser) -> None:
    shown = _visible(parser)
    allowed = APTIBLE if prefix == ["logs-from-archive"] else set()
    assert not (shown & OLD) - allowed, f"old spellings shown: {(shown & OLD) - allowed}"
    if "--endpoint-url" in shown:  # every command that reaches AWS takes the AWS CLI's three
        assert {"--profile", "--region"} <= shown
    for a in _options(parser):
        if "--format" in a.option_strings:
            assert set(a.choices) <= {"text", "json", "jsonl"}, a.choices
        if "--jobs" in a.option_strings:
            assert a.type is positive_int
        if {"--progress", "--no-progress"} & set(a.option_strings):
            assert set(a.option_strings) == {"--progress", "--no-progress"}
    if any(a.dest == "key_files" for a in _options(parser)):
        assert "--key-file" in shown


ALIASES = [(prefix, parser, a) for prefix, parser in COMMANDS for a in deprecated_aliases(parser)]


def test_the_old_spellings_are_found() -> None:
    found = {(" ".join(p), s) for p, _, a in ALIASES for s in a.option_strings}
    assert found >= {("index query", "--json"), ("seal", "--threads"), ("ship", "--concurrency"),
                     ("digest backfill", "--part-size-mb"), ("seal", "--decryption-keys"),
                     ("archive", "--decryption-keys"), ("archive", "--decryption-keys-file"),
                     ("local up", "--decryption-keys-file"), ("keys id", "--decryption-keys-file")}


def _sample(action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        return []
    if action.type is int or action.type is positive_int:
        return ["16"]
    return ["/dev/null" if "FILE" in str(action.metavar) or action.metavar == "K" else "x"]


@pytest.mark.parametrize("prefix, parser, alias", ALIASES,
                         ids=[f"{' '.join(p)} {a.option_strings[0]}" for p, _, a in ALIASES])
def test_an_old_spelling_works_with_one_deprecation_line(prefix, parser, alias, samples, capsys) -> None:
    old = alias.option_strings[0]
    value = _sample(alias)
    base = argv_for(prefix, parser, samples)[len(prefix):]
    capsys.readouterr()
    with_old = vars(parser.parse_known_args([*base, old, *value])[0])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"logarchive: warning: {old} is deprecated"), err
    assert alias.new.split()[0] in err
    new = alias.new.split(" (")[0].split()
    if len(new) == 1 or new[1].startswith("-"):  # the same value under the new name
        new = [new[0], *value]
    if new[0].startswith("--") and "(" not in alias.new:
        with_new = vars(parser.parse_known_args([*base, *new])[0])
        assert with_old[alias.dest] == with_new[alias.dest], (with_old, with_new)
    assert capsys.readouterr().err == ""


def test_the_shippers_old_spellings_still_apply_from_the_environment_and_the_config_file(tmp_path, capsys) -> None:
    from chalicelib.shipper.config import ShipConfig

    base = {"staging": "s3://b/p", "stack": "s", "once": True}
    capsys.readouterr()
    cfg = ShipConfig.resolve(base, env={"LOGARCHIVE_SHIP_CONCURRENCY": "3"})
    assert cfg.jobs == 3
    assert "LOGARCHIVE_SHIP_CONCURRENCY is deprecated" in capsys.readouterr().err
    toml = tmp_path / "ship.toml"
    toml.write_text("[ship]\nconcurrency = 4\n")
    cfg = ShipConfig.resolve(base, env={}, config_path=str(toml))
    assert cfg.jobs == 4  # a config file never silently stops applying
    err = capsys.readouterr().err
    assert "'concurrency' in config file" in err and "use 'jobs'" in err
    assert ShipConfig.resolve(base, env={"LOGARCHIVE_SHIP_CONCURRENCY": "3", "LOGARCHIVE_SHIP_JOBS": "5"}).jobs == 5
    toml.write_text("[ship]\njobs = 2\n")
    capsys.readouterr()
    assert ShipConfig.resolve(base, env={}, config_path=str(toml)).jobs == 2
    assert capsys.readouterr().err == ""


def test_one_size_syntax() -> None:
    from chalicelib.options import SizeSyntaxError, parse_size

    assert [parse_size(x) for x in ("8MiB", "8M", "8MB", "512KiB", "1GiB", "100")] == [
        8 << 20, 8 << 20, 8 << 20, 512 << 10, 1 << 30, 100]
    for bad in ("8 MiBs", "eight", "-1MiB", "８MiB"):
        with pytest.raises(SizeSyntaxError):
            parse_size(bad)


def test_one_progress_rule() -> None:
    import io

    from chalicelib.options import progress_enabled

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for given, stream, shown in ((None, Tty(), True), (None, io.StringIO(), False), (True, io.StringIO(), True),
                                 (False, Tty(), False)):
        assert progress_enabled(argparse.Namespace(progress=given), stream=stream) is shown


# -- argv that reaches each command's work ------------------------------------------------------

@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, str]:
    from chalicelib.keyring import MasterKey

    d = tmp_path_factory.mktemp("samples")
    (d / "keys").write_text(MasterKey.generate().to_base64() + "\n")
    assert cli.main(["keys", "signing-generate", "--private-key-file", str(d / "sign.pem"),
                     "--public-key-file", str(d / "sign.pub")]) == 0
    (d / "in.log").write_bytes(b"x\n")
    from chalicelib.devkit.fakedocker import sample_host

    sample_host(d / "docker")
    return {"dir": str(d), "keys": str(d / "keys"), "pem": str(d / "sign.pem"), "pub": str(d / "sign.pub"),
            "in": str(d / "in.log"), "docker": str(d / "docker")}


# What each command needs beyond what argparse requires, to get to its work (a new command
# that requires more than argparse knows adds its line here).
EXTRA = {
    "archive": ["--stack", "s", "--key-file", "{keys}"],
    "logs-from-archive": ["--app-id", "1", "--key-file", "{keys}"],
    "ship": ["--staging", "s3://b/p", "--stack", "s", "--once", "--docker-root", "{docker}", "--state",
             "{dir}/ship-{n}.db"],
    "seal": ["--kms-key-id", "arn:aws:kms:us-east-1:123456789012:key/0000"],
    "setup bucket-policy": ["--role-arn", "arn:aws:iam::123456789012:role/r"],
    "keys generate": ["--output", "{dir}/new-{n}.key"],
    "local up": ["--port", "1"],
    "setup check": ["--bucket", "b"],
    "hosts retire": ["--staging", "s3://b/p"],
}
VALUES = {  # argparse-required options and positionals
    "--bucket": "b", "--stack": "s", "--staging": "s3://b/p", "--archive-bucket": "b", "--table": "t",
    "--public-key-file": "{pub}", "--signing-key-file": "{pem}", "--start": "2022-01-01", "--end": "2022-01-02",
    "--source-bucket": "a", "--dest-bucket": "b", "--role-arn": "arn:aws:iam::123456789012:role/r",
    "--mode": "governance", "--days": "1", "--transition-days": "30", "--storage-class": "GLACIER",
    "--stage": "dev", "--private-key-file": "{dir}/p-{n}.pem", "--root": "{dir}/docker-{n}", "IN": "{in}",
    "OUT": "{dir}/out-{n}", "--app-id": "1", "HOST": "h1",
}
_n = iter(range(10**6))


def argv_for(prefix: list[str], parser: argparse.ArgumentParser, samples: dict[str, str]) -> list[str]:
    """A command line that passes argparse and reaches the command's work."""
    argv = list(prefix)
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or not a.required:
            continue
        name = a.option_strings[0] if a.option_strings else a.metavar
        assert name in VALUES or a.nargs == 0, f"logarchive {' '.join(prefix)}: add a sample {name} to VALUES"
        argv += ([name] if a.option_strings else []) + ([] if a.nargs == 0 else [VALUES[name]])
    for g in parser._mutually_exclusive_groups:
        if g.required:
            first = g._group_actions[0].option_strings[0]
            argv += [first, VALUES[first]]
    argv += EXTRA.get(" ".join(prefix), [])
    if "--key-file" in parser._option_string_actions and "--key-file" not in argv and prefix != ["keys", "id"]:
        argv += ["--key-file", "{keys}"]
    n = next(_n)
    return [x.format(n=n, **samples) for x in argv]


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No credentials anywhere, an endpoint nothing listens on, one attempt a request."""
    from chalicelib import aws

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # also restored after `archive` sets it
    # An earlier in-process command (archive) loaded the Lambdas' Powertools logger, bound to that
    # test's captured stdout, now closed; the shipper's loggers are its children (not in a real run).
    for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for h in getattr(lg, "handlers", []):
            if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
                monkeypatch.setattr(h, "stream", io.StringIO())
    aws.reset_clients()
    yield monkeypatch
    aws.reset_clients()


def _error_lines(err: str) -> list[str]:
    return [x for x in err.splitlines() if not x.startswith(("INFO ", "DEBUG "))]


# Commands with --endpoint-url whose sample line reaches no AWS service, and why.
NO_AWS_SAMPLE = {
    "unseal": "reaches AWS (KMS) only for a KMS-wrapped file",
}
AWS_SAMPLED = [c for c in AWS_COMMANDS if " ".join(c[0]) not in NO_AWS_SAMPLE]


@pytest.mark.parametrize("prefix, parser", AWS_SAMPLED, ids=[" ".join(c[0]) for c in AWS_SAMPLED])
@pytest.mark.parametrize("failure, hint", [("no credentials", "--profile"), ("unreachable", "--endpoint-url")])
def test_a_setup_failure_is_one_line_saying_what_to_do(prefix, parser, failure, hint, samples, no_aws,
                                                       capsys) -> None:
    if failure == "unreachable":
        no_aws.setenv("AWS_ACCESS_KEY_ID", "testing")
        no_aws.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    argv = argv_for(prefix, parser, samples)
    if prefix == ["ship"]:  # its lines are log records: as a process writes them (no test's log capture)
        p = subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], capture_output=True, text=True,
                           env=dict(os.environ), cwd=ROOT, timeout=120)
        rc, err = p.returncode, p.stderr
    else:
        rc, out, err = run_cli(argv, capsys)
    assert "Traceback" not in err
    lines = _error_lines(err)
    assert rc == 1, (argv, err)
    if prefix == ["ship"] and failure == "unreachable":  # one line per segment, each retried next pass
        assert lines and all(hint in x for x in lines), err
        return
    assert len(lines) == 1 and hint in lines[0], (argv, err)


KEYED = [c for c in COMMANDS if "--key-file" in c[1]._option_string_actions]


@pytest.mark.parametrize("prefix, parser", KEYED, ids=[" ".join(c[0]) for c in KEYED])
def test_a_bad_key_file_is_one_line_before_any_listing(prefix, parser, samples, no_aws, capsys, tmp_path) -> None:
    # The endpoint is unreachable: had the command listed anything first, that would be its error.
    no_aws.setenv("AWS_ACCESS_KEY_ID", "testing")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    missing = str(tmp_path / "no-such.key")
    argv = [x if x != samples["keys"] else missing for x in argv_for(prefix, parser, samples)]
    if missing not in argv:
        argv += ["--key-file", missing]
    if prefix == ["local", "up"]:
        argv += ["--api-port", "2"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 1, (argv, err)
    assert _error_lines(err) == [f"logarchive: error: key file {missing}: No such file or directory"], err


# Phrases by which a help text calls a combination invalid (docs/CLI.md, "Help"):
#   "with --X: ..."          the option means something only with --X
#   "(required with --X ..." --X needs this option
#   "VALUE: ... (needs --X)" this value of the option needs --X
#   "later than --X"         a number that must exceed --X's
def invalid_combinations() -> Iterator[tuple[list[str], argparse.ArgumentParser, list[str], list[str]]]:
    """(prefix, parser, options to add, options to leave out) of each combination a help calls invalid."""
    for prefix, parser in COMMANDS:
        for a in _options(parser):
            own, h = a.option_strings[0], " ".join((a.help or "").split())
            value = [] if a.nargs == 0 else [VALUES.get(own, "2022-01-01" if "date" in own else "x")]
            for x in re.findall(r"(?:^|, )with (--[\w-]+):", h):
                yield prefix, parser, [own, *value], [x]
            for x in re.findall(r"\(required with (--[\w-]+)", h):
                other = parser._option_string_actions[x]
                yield prefix, parser, [x, *([] if other.nargs == 0 else ["1"])], [own]
            for choice, x in re.findall(r"(?:^|; )([\w-]+): [^;]*\(needs (--[\w-]+)\)", h):
                yield prefix, parser, [own, choice], [x]
            for x in re.findall(r"later than (--[\w-]+)", h):
                yield prefix, parser, [own, "1", x, "30"], []


INVALID = list(invalid_combinations())


def test_the_invalid_combinations_are_found() -> None:
    found = {(" ".join(p), *add) for p, _, add, _ in INVALID}
    assert found >= {("keys generate", "--append"), ("logs-from-archive", "--wait"),
                     ("setup object-lock", "--mode", "compliance"), ("local up", "--api-port", "1"),
                     ("setup lifecycle", "--expire-days", "1", "--transition-days", "30"),
                     ("audit", "--start-date", "2022-01-01"), ("logs-from-archive", "--start-date", "2022-01-01")}


@pytest.mark.parametrize("prefix, parser, add, leave_out", INVALID,
                         ids=[f"{' '.join(p)} {' '.join(a)} without {' '.join(o)}" for p, _, a, o in INVALID])
def test_every_combination_the_help_calls_invalid_exits_2(prefix, parser, add, leave_out, samples, no_aws,
                                                         capsys) -> None:
    argv = argv_for(prefix, parser, samples)
    for opt in [*leave_out, *(a for a in add if a.startswith("--"))]:  # as given here, not as sampled
        while opt in argv:
            i = argv.index(opt)
            takes = parser._option_string_actions[opt].nargs != 0
            del argv[i:i + 1 + takes]
    rc, out, err = run_cli([*argv, *add], capsys)
    assert rc == 2, ([*argv, *add], err)
    assert len(_error_lines(err)) <= 2 and "Traceback" not in err  # a usage line, then the error


def test_profile_is_the_credentials_of_every_client_the_command_makes(aws_endpoint, capsys, monkeypatch,
                                                                    tmp_path) -> None:
    from chalicelib import aws
    from chalicelib.devkit import local_stack

    local_stack.create_table("t-profile")
    (tmp_path / "credentials").write_text("[reader]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    (tmp_path / "config").write_text("[profile reader]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-the-profile")  # as the AWS CLI's: --profile wins
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    query = ["index", "query", "--table", "t-profile", "--stack", "s", "--app-id", "1", "--start", "2022-01-01",
             "--end", "2022-01-02"]
    aws.reset_clients()
    try:
        rc, out, err = run_cli([*query, "--profile", "reader"], capsys)
        assert rc == 0 and "0 archives" in err, err
        assert os.environ["AWS_ACCESS_KEY_ID"] == "not-the-profile"  # the command's, not the process's
        rc, out, err = run_cli([*query, "--profile", "nobody"], capsys)
        assert rc == 1 and err.count("\n") == 1 and "check --profile" in err, err
    finally:
        aws.reset_clients()


def test_a_grep_that_matches_nothing_writes_nothing_and_says_so(buckets, capsys, tmp_path, caplog,
                                                               monkeypatch) -> None:
    from retrieval_helpers import STACK, archive_key, docker_lines, put_archive, t

    from chalicelib.keyring import Keyring, MasterKey

    cli_logging(monkeypatch)
    caplog.set_level("INFO")
    k = MasterKey.generate()
    (tmp_path / "k").write_text(k.to_base64() + "\n")
    for cid in ("ab", "cd"):
        key = archive_key("apps", "77", cid * 32, t("2022-01-01T00:00:00"), t("2022-01-01T00:10:00"), k.key_id)
        put_archive(boto3.client("s3"), buckets.customer, key, docker_lines(t("2022-01-01T00:00:00"),
                    t("2022-01-01T00:10:00")), Keyring([k]))
    base = ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "77", "--key-file",
            str(tmp_path / "k"), "--grep", "NO SUCH TEXT"]
    for where in ("-", str(tmp_path / "out")):
        caplog.clear()
        capsys.readouterr()
        rc = cli.main([*base, "--download-location", where])
        out = capsys.readouterr().out
        assert rc == 0 and out == ""  # not even an empty gzip member on stdout
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.gz"))
        summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrieved")]
        assert summary == ["retrieved 2 of 2 archives; 0 lines matched: nothing written"], caplog.text
        assert cli.main([*base, "--download-location", where, "--fail-on-empty"]) == 1
    capsys.readouterr()
    assert cli.main([*base[:-2], "--grep", "line", "--download-location", "-", "--format", "jsonl",
                     "--fail-on-empty"]) == 0
    assert capsys.readouterr().out

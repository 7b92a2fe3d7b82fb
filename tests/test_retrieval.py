"""End to end: archives sealed under the v3 layout in a versioned bucket on the local S3 (over
HTTP), found and fetched by ``logarchive logs-from-archive`` and the retrieval library."""

from __future__ import annotations

import gzip
import json
import logging
import os

import boto3
import pytest
from retrieval_helpers import (
    STACK,
    archive_key,
    cli_logging,
    docker_lines,
    files_under,
    leftovers,
    on_terminal,
    put_archive,
    run_cli,
    t,
)

from chalicelib.download import logoutput, retrieval
from chalicelib.keyring import Keyring, MasterKey

K1, K2 = MasterKey.generate(), MasterKey.generate()
CID_A, CID_B, CID_C, CID_D, CID_E = ("a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32, "e5" * 32)


class Scenario:
    def __init__(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.data: dict[str, bytes] = {}
        r1, r2 = Keyring([K1]), Keyring([K2])

        def add(name, kind, rid, cid, start, end, ring, key_id, **kw):
            s, e = t(start), t(end)
            key = archive_key(kind, rid, cid, s, e, key_id, **kw)
            self.data[name] = docker_lines(s, e, tag=f"{name} ")
            put_archive(s3, bucket, key, self.data[name], ring)
            setattr(self, name, key)

        add("A1", "apps", "42", CID_A, "2022-08-24T21:00:00", "2022-08-24T23:59:30", r1, K1.key_id, rotation=1)
        add("A2", "apps", "42", CID_A, "2022-08-25T00:00:05", "2022-08-25T01:00:00", r1, K1.key_id)
        add("B", "databases", "9", CID_B, "2022-08-26T10:00:00", "2022-08-26T11:00:00", r1, K1.key_id)
        add("C", "proxy", "5", CID_C, "2022-08-27T08:00:00", "2022-08-27T09:00:00", r1, K1.key_id)
        add("D", "apps", "42", CID_D, "2022-08-28T12:00:00", "2022-08-28T13:00:00", r2, K2.key_id, service="8")
        add("E", "apps", "43", CID_E, "2022-08-24T10:00:00", "2022-08-24T11:00:00", r1, K1.key_id)
        # The older v2 schema: only the upload time in the name.
        self.V2 = f"{STACK}/shareable/v2/{K1.key_id}/apps-42/{CID_A}-json.log.2022-08-20T05:00:00Z.bck.gz"
        self.data["V2"] = docker_lines(t("2022-08-19T00:00:00"), t("2022-08-20T04:00:00"), tag="V2 ")
        put_archive(s3, bucket, self.V2, self.data["V2"], r1)
        # Foreign objects: a stray file inside a resource folder, one beside the archive tree.
        self.foreign = f"{STACK}/shareable/v3/{K1.key_id}/apps-42/service-7/notes.txt"
        s3.put_object(Bucket=bucket, Key=self.foreign, Body=b"not an archive")
        s3.put_object(Bucket=bucket, Key=f"{STACK}/readme.txt", Body=b"hello")
        s3.put_object(Bucket=bucket, Key=f"{STACK}/shareable/v4/{K1.key_id}/apps-42/x", Body=b"future schema")
        s3.put_object(Bucket=bucket, Key=f"{STACK}/shareable/v3/not-a-key-id/apps-42/x", Body=b"stray folder")

    def rel(self, name: str) -> str:
        return "/".join(getattr(self, name).split("/")[4:])


@pytest.fixture
def sc(buckets) -> Scenario:
    return Scenario(boto3.client("s3"), buckets.customer)


def base(sc: Scenario, *extra: str) -> list[str]:
    return ["logs-from-archive", "--bucket", sc.bucket, "--stack", STACK, *extra]


def listed(out: str) -> set[str]:
    return {line for line in out.splitlines() if line}


# -- listing and selection -------------------------------------------------------------------


def test_list_by_app_id_lists_only_its_prefixes_and_skips_foreign_keys(sc, capsys, caplog, monkeypatch) -> None:
    cli_logging(monkeypatch)
    calls: list[dict] = []
    s3 = boto3.client("s3")
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: calls.append(params))
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING):
        matches = retrieval.find_archives(s3, sc.bucket, retrieval.Selection(STACK, kind="apps", resource_id="42"),
                                          on_skip=skipped.append)
    assert {m.key for m in matches} == {sc.A1, sc.A2, sc.D, sc.V2}
    assert "notes.txt" in caplog.text and "skipped" in caplog.text
    assert f"{STACK}/shareable/v4/: unknown archive schema folder, skipped" in caplog.text
    assert f"{STACK}/shareable/v3/not-a-key-id/: not a key id folder, skipped" in caplog.text
    assert sorted(skipped) == sorted([
        f"{STACK}/shareable/v4/: unknown archive schema folder, skipped",
        f"{STACK}/shareable/v3/not-a-key-id/: not a key id folder, skipped",
        f"{sc.foreign}: file name does not match the v3 pattern (skipped)",
    ])
    full = sorted(c["Prefix"] for c in calls if "Delimiter" not in c)
    assert full == sorted([
        f"{STACK}/shareable/v2/{K1.key_id}/apps-42/",
        f"{STACK}/shareable/v3/{K1.key_id}/apps-42/",
        f"{STACK}/shareable/v3/{K2.key_id}/apps-42/",
    ])
    rc, out, err = run_cli(base(sc, "--app-id", "42"), capsys)
    assert rc == 0
    assert listed(out) == {sc.rel("A1"), sc.rel("A2"), sc.rel("D"), sc.rel("V2")}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--database-id", "9"], {"B"}),
        (["--endpoint-id", "5"], {"C"}),
        (["--app-id", "43"], {"E"}),
        (["--container-id", CID_A[:12]], {"A1", "A2", "V2"}),
        (["--container-id", CID_D], {"D"}),
        (["--string-matches", "databases-9", "2022-08-26"], {"B"}),
        (["--string-matches", "apps-4"], {"A1", "A2", "D", "E", "V2"}),
        # Regular expressions searched in the full key, as the reference CLI applies them.
        (["--string-matches", f"^{STACK}/shareable/v3/"], {"A1", "A2", "B", "C", "D", "E"}),
        (["--string-matches", r"apps-4[23]/service-\d+/", r"\.2022-08-2[45]T"], {"A1", "A2", "E"}),
        # Numeric ids read as numbers: 042 is app 42.
        (["--app-id", "042"], {"A1", "A2", "D", "V2"}),
        # Dates as the reference CLI reads real dates.
        (["--app-id", "42", "--start-date", "2022-8-24", "--end-date", "2022-8-24"], {"A1"}),
        (["--app-id", "42", "--start-date", "2022-08-25", "--end-date", "2022-08-25"], {"A2"}),
        # The end date counts whole: A1 starts at 21:00 on the 24th (the reference CLI
        # stops at the end date's midnight and would miss it).
        (["--app-id", "42", "--start-date", "2022-08-23", "--end-date", "2022-08-24"], {"A1"}),
        # v2: kept unless uploaded before the range (all its lines precede its upload).
        (["--app-id", "42", "--start-date", "2022-08-01", "--end-date", "2022-08-19"], {"V2"}),
        (["--app-id", "42", "--start-date", "2022-08-21", "--end-date", "2022-08-31"], {"A1", "A2", "D"}),
        (["--container-id", CID_A[:16], "--start-date", "2022-08-24", "--end-date", "2022-08-24"], {"A1"}),
        # Second precision: the key times are truncated, so A1 (last line 23:59:30.x) overlaps
        # a window starting at 23:59:30, and A2 (first line 00:00:05) does not overlap one
        # ending at 00:00:05.
        (["--app-id", "42", "--start", "2022-08-24T23:59:30Z", "--end", "2022-08-25T00:00:05Z"], {"A1"}),
    ],
)
def test_selection(sc, capsys, args, expected) -> None:
    rc, out, err = run_cli(base(sc, *args), capsys)
    assert rc == 0, err
    assert listed(out) == {sc.rel(n) for n in expected}


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "You must specify an option to identify the logs"),
        (["--app-id", "42", "--container-id", CID_A], "only one of"),
        (["--app-id", "42", "--database-id", "9"], "only one of"),
        (["--string-matches", "x", "--app-id", "42"], "when using --string-matches"),
        (["--string-matches", "x", "--start-date", "2022-01-01", "--end-date", "2022-01-02"], "searching by string"),
        (["--app-id", "42", "--start-date", "2022-01-01"], "both --start-date and --end-date"),
        (["--app-id", "42", "--start-date", "2022-01-02", "--end-date", "2022-01-01"], "End date must be after"),
        (["--app-id", "42", "--start-date", "01/02/2022", "--end-date", "2022-01-03"], "YYYY-MM-DD"),
        (["--container-id", CID_A[:11]], "at least the first 12 characters"),
        (["--app-id", "42", "--start", "yesterday"], "RFC 3339"),
        (["--app-id", "42", "--start-date", "2022-08-25x", "--end-date", "2022-08-26"], "YYYY-MM-DD"),
        (["--string-matches", "(a+)+b"], "exponential time"),
        (["--string-matches", "(apps"], "not a valid regular expression"),
        (["--app-id", "42", "--grep", "("], "not a valid regular expression"),
    ],
)
def test_bad_selection_is_one_line_and_exit_2(sc, capsys, args, message) -> None:
    # Options that contradict each other are usage errors (status 2), in the reference CLI's words.
    rc, out, err = run_cli(base(sc, *args), capsys)
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [["--app-id", "999"], ["--string-matches", "readme"]])
def test_nothing_found_is_one_line_and_exit_1(sc, capsys, args) -> None:
    rc, out, err = run_cli(base(sc, *args), capsys)
    assert rc == 1
    assert "No files found that matched all criteria" in err and err.count("\n") == 1


def test_missing_bucket_is_one_line(buckets, capsys) -> None:
    rc, out, err = run_cli(["logs-from-archive", "--bucket", "no-such-bucket", "--stack", STACK,
                            "--app-id", "1"], capsys)
    assert rc == 1 and "no-such-bucket" in err and "NoSuchBucket" in err and err.count("\n") == 1


# -- downloads ------------------------------------------------------------------------------


def test_download_lands_where_the_reference_cli_puts_it_still_gzip(sc, capsys, tmp_path) -> None:
    dest = tmp_path / "dl"
    rc, out, err = run_cli(base(sc, "--app-id", "42", "--download-location", str(dest),
                                "--decryption-keys", K1.to_base64(), K2.to_base64()), capsys)
    assert rc == 0, err
    want = {sc.rel(n): n for n in ("A1", "A2", "D", "V2")}
    assert files_under(dest) == sorted(want)
    for rel, name in want.items():
        raw = (dest / rel).read_bytes()
        assert raw[:2] == b"\x1f\x8b"
        assert gzip.decompress(raw) == sc.data[name]
    assert listed(out) == {str(dest / r) for r in want}
    assert leftovers(str(tmp_path)) == []
    # The bucket is versioned, the archive untouched.
    assert sc.s3.get_bucket_versioning(Bucket=sc.bucket)["Status"] == "Enabled"


def test_decompress_and_formats(sc, capsys, tmp_path) -> None:
    keys = ["--decryption-keys", K1.to_base64()]
    name = sc.rel("B")[: -len(".gz")]
    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "d"),
                              "--decompress", *keys), capsys)
    assert rc == 0, err
    assert (tmp_path / "d" / (name + ".jsonl")).read_bytes() == sc.data["B"]

    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "j"),
                              "--format", "jsonl", *keys), capsys)
    assert rc == 0, err
    assert (tmp_path / "j" / (name + ".jsonl")).read_bytes() == sc.data["B"]

    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "t"),
                              "--format", "text", *keys), capsys)
    assert rc == 0, err
    logs = [json.loads(x)["log"] for x in sc.data["B"].splitlines()]
    assert (tmp_path / "t" / (name + ".txt")).read_text() == "".join(logs)
    assert leftovers(str(tmp_path)) == []


def _lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.splitlines()]


def test_line_filters(sc, capsys, tmp_path) -> None:
    keys = ["--decryption-keys", K1.to_base64()]
    lines = sc.data["B"].splitlines(keepends=True)
    name = sc.rel("B")[: -len(".gz")]

    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "s"),
                              "--stream", "stderr", "--format", "jsonl", *keys), capsys)
    assert rc == 0, err
    got = (tmp_path / "s" / (name + ".jsonl")).read_bytes()
    assert got == b"".join(x for x in lines if b'"stderr"' in x) and got

    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "g"),
                              "--grep", r"line [13] ", "--decompress", *keys), capsys)
    assert rc == 0, err
    got = (tmp_path / "g" / (name + ".jsonl")).read_bytes()
    assert [d["log"].split(" ")[2] for d in _lines(got)] == ["1", "3"]

    # Second-precision window on the lines themselves: 10:12:00 <= time < 10:36:00 keeps
    # lines 1 (10:12:00.x) and 2 (10:24:00.x), not line 3 (10:36:00.x).
    rc, _, err = run_cli(base(sc, "--database-id", "9", "--download-location", str(tmp_path / "w"),
                              "--start", "2022-08-26T10:12:00", "--end", "2022-08-26T12:36:00+02:00",
                              *keys), capsys)
    assert rc == 0, err
    got = (tmp_path / "w" / sc.rel("B")).read_bytes()  # still gzip: the kept lines, recompressed
    assert gzip.decompress(got) == b"".join(lines[1:3])
    assert leftovers(str(tmp_path)) == []


def test_stdout_after_verification_in_order(sc, capsys) -> None:
    rc, out, err = run_cli(base(sc, "--container-id", CID_A[:12], "--download-location", "-",
                                "--format", "text", "--jobs", "3",
                                "--decryption-keys", K1.to_base64()), capsys)
    assert rc == 0, err
    # v2 (uploaded 08-20), then the rotated segment, then the live one: by time.
    expected = "".join(d["log"] for n in ("V2", "A1", "A2") for d in _lines(sc.data[n]))
    assert out == expected


def test_stdout_default_is_a_gzip_stream(sc, capsysbinary) -> None:
    from chalicelib import cli

    rc = cli.main(base(sc, "--database-id", "9", "--download-location", "-",
                       "--decryption-keys", K1.to_base64()))
    out, _ = capsysbinary.readouterr()
    assert rc == 0 and gzip.decompress(out) == sc.data["B"]


def test_verify_only_writes_nothing(sc, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(base(sc, "--app-id", "42", "--verify-only", "--download-location", str(tmp_path / "x"),
                                "--decryption-keys", K1.to_base64(), K2.to_base64()), capsys)
    assert rc == 0, err
    assert listed(out) == {f"verified {getattr(sc, n)}" for n in ("A1", "A2", "D", "V2")}
    assert list(tmp_path.iterdir()) == []


def test_verify_only_reports_each_failure(sc, capsys) -> None:
    # Only K1 given: D (under K2) cannot be checked; the others are.
    rc, out, err = run_cli(base(sc, "--app-id", "42", "--verify-only", "--decryption-keys", K1.to_base64()), capsys)
    assert rc == 1
    assert listed(out) == {f"verified {getattr(sc, n)}" for n in ("A1", "A2", "V2")}
    assert err.splitlines() == [f"logarchive: error: {sc.D}: needs the key with id {K2.key_id}; "
                                f"keys given: {K1.key_id[:12]}"]


def test_parallel_downloads(buckets, capsys, tmp_path) -> None:
    s3 = boto3.client("s3")
    ring = Keyring([K1])
    data = {}
    for i in range(12):
        s, e = t(f"2022-09-01T{i:02d}:00:00"), t(f"2022-09-01T{i:02d}:30:00")
        key = archive_key("apps", "50", f"{i:02x}" * 32, s, e, K1.key_id)
        data[key] = docker_lines(s, e, n=50, tag=f"{i} ")
        put_archive(s3, buckets.customer, key, data[key], ring)
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK,
                            "--app-id", "50", "--download-location", str(tmp_path), "--jobs", "6",
                            "--decompress", "--decryption-keys", K1.to_base64()], capsys)
    assert rc == 0, err
    assert len(listed(out)) == 12
    for key, raw in data.items():
        rel = "/".join(key.split("/")[4:])[: -len(".gz")] + ".jsonl"
        assert (tmp_path / rel).read_bytes() == raw
    assert leftovers(str(tmp_path)) == []


def test_library_outcomes_and_progress_callback(sc, tmp_path) -> None:
    s3 = boto3.client("s3")
    matches = retrieval.find_archives(s3, sc.bucket, retrieval.Selection(STACK, kind="apps", resource_id="42"))
    seen = []
    r = retrieval.Retriever(s3, sc.bucket, Keyring([K1, K2]))
    outcomes = retrieval.download_all(r, matches, str(tmp_path), jobs=3, on_done=seen.append)
    assert [o.key for o in outcomes] == [m.key for m in matches]
    assert sorted(o.key for o in seen) == sorted(m.key for m in matches)
    assert all(o.ok and os.path.exists(o.path) for o in outcomes)


def _run_process(argv: list[str], endpoint: str, *, tty: bool) -> tuple[int, str, str]:
    import subprocess
    import sys

    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    cmd = [sys.executable, "-m", "chalicelib.cli", *argv]
    if not tty:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr
    rc, seen, out = on_terminal(cmd, env, stdout=False, stderr=True)  # the bar's rule: stderr a terminal
    return rc, out, seen


def test_progress_bar_only_on_a_terminal(sc, aws_endpoint, tmp_path) -> None:
    argv = base(sc, "--app-id", "42", "--decryption-keys", K1.to_base64(), K2.to_base64(), "--download-location")
    rc, out, err = _run_process([*argv, str(tmp_path / "a")], aws_endpoint, tty=True)
    assert rc == 0, err
    assert "4/4" in err and "file" in err  # tqdm's bar, on stderr
    assert out.count(str(tmp_path / "a")) == 4
    rc, out, err = _run_process([*argv, str(tmp_path / "b")], aws_endpoint, tty=False)
    assert rc == 0, err
    assert "4/4" not in err and "%|" not in err
    assert len(out.splitlines()) == 4
    assert sorted(err.splitlines()) == sorted([
        f"WARNING {STACK}/shareable/v3/not-a-key-id/: not a key id folder, skipped",
        f"WARNING {STACK}/shareable/v4/: unknown archive schema folder, skipped",
        f"WARNING {sc.foreign}: file name does not match the v3 pattern (skipped)",
        "INFO Found 4 matching files...",
        "INFO retrieved 4 of 4 archives",
    ])


def test_fast_line_prefilters_agree_with_the_exact_filter() -> None:
    """The byte-level shortcuts in the renderer never change which lines are kept."""
    import itertools
    import re

    from chalicelib.dockerlog import LineFilter, LogLine

    lines = [
        b'{"log":"stderr mentioned on stdout\\n","stream":"stdout","time":"2022-01-01T10:00:00.5Z"}',
        b'{"log":"real error \\u003cb\\u003e\\n","stream":"stderr","time":"2022-01-01T10:00:01.000000001Z"}',
        b'{"log":"no time\\n","stream":"stderr"}',
        b'not json at all, stderr, time 2022-01-01T10:00:02Z',
        b'{"log":"partial line","stream":"stdout","time":"2022-01-01T10:00:03+02:00"}',
        b'{"log":"late\\n","stream":"stderr","time":"2022-01-01T10:00:04Z"}',
        b'',
        b'{"log":"exactly at end\\n","stream":"stdout","time":"2022-01-01T10:00:04Z"}',
    ]
    starts = [None, t("2022-01-01T10:00:01")]
    ends = [None, t("2022-01-01T10:00:04")]
    for start, end, stream, grep, fmt in itertools.product(
        starts, ends, [None, "stdout", "stderr"], [None, re.compile("<b>|time"), re.compile("stderr")],
        [None, "jsonl", "text"],
    ):
        filt = LineFilter(start=start, end=end, stream=stream, grep=grep)
        opts = retrieval.OutputOptions(fmt=fmt, line_filter=filt)
        got = b"".join(logoutput._render(iter(lines), opts))
        want = []
        for raw in lines:
            line = LogLine.parse(raw)
            if filt.matches(line):
                want.append(line.log.encode() if fmt == "text" and line.log is not None else raw + b"\n")
        assert got == b"".join(want), (start, end, stream, grep, fmt)


def test_reference_cli_spelling_of_the_command(sc, capsys) -> None:
    rc, out, err = run_cli(["logs_from_archive", "--bucket", sc.bucket, "--stack", STACK, "--region", "us-east-1",
                            "--endpoint-id", "5"], capsys)
    assert rc == 0 and listed(out) == {sc.rel("C")}

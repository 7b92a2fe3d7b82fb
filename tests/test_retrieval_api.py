"""``logs-from-archive --api-url``: the index answers the search and presigned URLs serve the
bytes; what the CLI lists, downloads and prints is exactly what the bucket path gives.

The API runs on chalice's local HTTP server against the local S3 and DynamoDB (moto server);
archives are indexed by invoking the indexer Lambda through ``chalice.test.Client``. The runs
with ``--api-url`` point the CLI's own S3 endpoint at a closed port and name no bucket, so
they prove the CLI reads nothing from S3 itself.
"""

from __future__ import annotations

import os

import boto3
import pytest
from chalice.local import ChaliceRequestHandler
from helpers_index import STACK, docker_line, http_server, put_archive, s3_event, setup_stack
from retrieval_helpers import cli_logging, files_under, leftovers, run_cli

from chalicelib.download import api_client, selection
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x05" * 32)
DEAD = "http://127.0.0.1:9"  # nothing listens here
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")

C1, C2, C3 = "ab" * 32, "cd" * 32, "ef" * 32


def lines(*spec: tuple[str, str, str]) -> list[bytes]:
    return [docker_line(*x) for x in spec]


ARCHIVES = [  # (lines, put_archive options)
    (lines(("2022-01-01T12:01:00Z", "stderr", "a timeout"), ("2022-01-01T12:02:00Z", "stdout", "ok")),
     {"cid": C1}),
    (lines(("2022-01-01T10:00:00.5Z", "stdout", "earlier"), ("2022-01-01T11:00:00Z", "stderr", "timeout 2")),
     {"cid": C1, "rotation": 1}),
    (lines(("2022-01-01T23:30:00Z", "stderr", "late timeout"), ("2022-01-02T01:10:00Z", "stdout", "next day")),
     {"cid": C2}),
    (lines(("2022-01-01T12:00:00Z", "stderr", "other app timeout"),), {"cid": C3, "rid": "43"}),
    (lines(("2022-01-05T08:00:00Z", "stderr", "outside the days"),), {"cid": C1}),
    (lines(("2022-01-01T09:00:00Z", "stderr", "db timeout"),), {"cid": C3, "kind": "databases", "rid": "9"}),
]


@pytest.fixture
def stack(monkeypatch, buckets, tmp_path):
    """The API served over HTTP, every archive indexed; yields (url, paths requested, keys, key file)."""
    from chalice.test import Client

    setup_stack(monkeypatch, buckets, MASTER, tmp_path)
    # The API's EMF lines would land on this process's stdout, which the CLI output shares
    # (tests/test_api.py asserts the API's metrics).
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    import app

    requested: list[str] = []
    faults: dict[str, int] = {}  # path prefix -> how many requests still get API Gateway's 503

    class Recording(ChaliceRequestHandler):
        def parse_request(self):  # type: ignore[override]
            ok = super().parse_request()
            requested.append(self.path)
            for prefix, n in faults.items():
                if ok and n > 0 and self.path.startswith(prefix):
                    faults[prefix] = n - 1
                    body = b'{"message":"Service Unavailable"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return False
            return ok

    keys = [put_archive(buckets.archive, body, master=MASTER, **opts)[0] for body, opts in ARCHIVES]
    key_file = tmp_path / "keys.txt"
    key_file.write_text(MASTER.to_base64() + "\n")
    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        for key in keys:
            client.lambda_.invoke("index_archive", s3_event(buckets.archive, key))
    # The Lambdas' Powertools loggers (adopting the chalicelib loggers) write to the stdout of
    # when they were set up, a capture that may be closed by now: the API's error lines then
    # came out as "--- Logging error ---" (after tests/test_k8s_hostile.py, in the suite's order).
    cli_logging(monkeypatch)
    with http_server(app.app, Recording) as base:
        yield base, requested, keys, str(key_file), buckets.archive, faults


SEARCHES = [
    ["--app-id", "42", "--start-date", "2022-01-01", "--end-date", "2022-01-02"],
    ["--app-id", "42", "--start-date", "2022-01-02", "--end-date", "2022-01-02"],  # found from its 2nd day
    ["--container-id", C1[:12], "--start", "2022-01-01T11:00:00Z", "--end", "2022-01-01T12:01:30Z"],
    ["--database-id", "9", "--start-date", "2022-01-01", "--end-date", "2022-01-01"],
    ["--endpoint-id", "5", "--start-date", "2022-01-01", "--end-date", "2022-01-01"],  # nothing
]


def both(capsys, base: str, bucket: str, argv: list[str]) -> tuple[tuple, tuple]:
    """(rc, out, error lines) of the bucket path and of the API path."""
    common = ["logs-from-archive", "--stack", STACK] + argv
    rc1, out1, err1 = run_cli(common + ["--bucket", bucket], capsys)
    rc2, out2, err2 = run_cli(common + ["--api-url", base, "--endpoint-url", DEAD], capsys)
    errors = [[x for x in (e if isinstance(e, str) else e.decode()).splitlines() if "error" in x]
              for e in (err1, err2)]
    return (rc1, out1, errors[0]), (rc2, out2, errors[1])


@pytest.mark.parametrize("search", SEARCHES)
def test_lists_the_same_archives_as_the_bucket(stack, capsys, monkeypatch, search) -> None:
    base, requested, keys, _, bucket, _ = stack
    monkeypatch.setattr(selection, "API_PAGE", 1)  # one archive a page: every next_token is followed
    listed, via_api = both(capsys, base, bucket, search)
    assert via_api == listed
    n = len(listed[1].splitlines())
    assert search[:2] == ["--endpoint-id", "5"] or n > 0
    assert sum(p.startswith("/archives?") for p in requested) >= n  # one page per archive (and an empty last)


@pytest.mark.parametrize("output, n", [([], 3), (["--format", "text", "--stream", "stderr", "--grep", "time.ut"], 3),
                                       (["--decompress", "--start", "2022-01-01T12:00:00Z"], 2)])
def test_downloads_the_same_bytes_as_the_bucket(stack, capsysbinary, tmp_path, output, n) -> None:
    capsys = capsysbinary  # gzip on stdout
    base, requested, keys, key_file, bucket, _ = stack
    search = ["--app-id", "42", "--start-date", "2022-01-01", "--end-date", "2022-01-02",
              "--decryption-keys-file", key_file] + output
    d1, d2 = tmp_path / "bucket", tmp_path / "api"
    common = ["logs-from-archive", "--stack", STACK] + search
    rc1, _, _ = run_cli(common + ["--bucket", bucket, "--download-location", str(d1)], capsys)
    rc2, _, err2 = run_cli(common + ["--api-url", base, "--endpoint-url", DEAD, "--download-location", str(d2)],
                           capsys)
    assert rc1 == rc2 == 0, err2
    assert files_under(str(d1)) == files_under(str(d2)) and len(files_under(str(d1))) == n
    for rel in files_under(str(d1)):
        assert (d1 / rel).read_bytes() == (d2 / rel).read_bytes()
    assert sum(p.startswith("/archives/") for p in requested) == n  # one presigned URL per archive
    # To stdout (in order): the same bytes. --verify-only: the same lines (in completion order).
    a, b = both(capsys, base, bucket, search + ["--download-location", "-"])
    assert a == b and a[0] == 0 and a[1]
    a, b = both(capsys, base, bucket, search + ["--verify-only"])
    assert a[0] == b[0] == 0 and sorted(a[1].splitlines()) == sorted(b[1].splitlines()) and a[2] == b[2] == []
    assert len(a[1].splitlines()) == n


def test_api_errors_are_one_line_and_a_failed_exit(stack, capsys, monkeypatch, tmp_path) -> None:
    base, _, keys, key_file, bucket, _ = stack
    argv = ["logs-from-archive", "--stack", STACK, "--app-id", "42", "--start-date", "2022-01-01",
            "--end-date", "2022-01-02", "--decryption-keys-file", key_file, "--endpoint-url", DEAD]
    # The service misconfigured: the API answers 500; nothing else happens.
    monkeypatch.delenv("LOGARCHIVE_INDEX_TABLE")
    rc, out, err = run_cli(argv + ["--api-url", base, "--download-location", str(tmp_path / "a")], capsys)
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 1 and out == "" and not (tmp_path / "a").exists()
    assert errors == [f"logarchive: error: {base}: cannot search the index "
                      "(API answered 500: LOGARCHIVE_INDEX_TABLE is not set)"]
    monkeypatch.setenv("LOGARCHIVE_INDEX_TABLE", "logarchive-index")
    # The API unreachable.
    rc, out, err = run_cli(argv + ["--api-url", DEAD], capsys)
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 1 and len(errors) == 1
    assert errors[0].startswith(f"logarchive: error: {DEAD}: cannot search the index (API at {DEAD} unreachable")
    # One archive's bytes gone behind the index's back: its presigned URL fails (404); that
    # object gets one line, the others are still downloaded, nothing partial is left.
    s3 = boto3.client("s3")
    gone = keys[2]
    for v in s3.list_object_versions(Bucket=bucket, Prefix=gone)["Versions"]:
        s3.delete_object(Bucket=bucket, Key=gone, VersionId=v["VersionId"])
    dest = tmp_path / "b"
    rc, out, err = run_cli(argv + ["--api-url", base, "--download-location", str(dest)], capsys)
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 1 and errors == [f"logarchive: error: {gone}: download failed (HTTP 404)"]
    assert len(files_under(str(dest))) == 2 and not leftovers(str(dest))
    assert not any(gone.split("/")[-1] in f for f in files_under(str(dest)))


def test_what_the_index_cannot_answer_is_one_clear_line(stack, capsys) -> None:
    base, *_ = stack
    common = ["logs-from-archive", "--stack", STACK, "--api-url", base]
    rc, _, err = run_cli(common + ["--string-matches", "apps-42"], capsys)
    assert rc == 2 and "--api-url searches the index by resource" in err
    rc, _, err = run_cli(common + ["--app-id", "42"], capsys)
    assert rc == 2 and "--api-url needs a time range" in err
    # --string-matches narrows the index's answer on the keys.
    rc, out, _ = run_cli(common + ["--app-id", "42", "--start-date", "2022-01-01", "--end-date", "2022-01-02",
                                   "--string-matches", f"{C2}-json"], capsys)
    assert rc == 0 and len(out.splitlines()) == 1 and C2 in out
    # Without --api-url (and without a bucket) nothing has changed: the bucket is required.
    rc, _, err = run_cli(["logs-from-archive", "--stack", STACK, "--app-id", "42"], capsys)
    assert rc == 2 and "one of the arguments --bucket --api-url is required" in err


def test_without_api_url_no_service_is_needed(stack, capsys, monkeypatch) -> None:
    """The bucket path never touches the API or its tables."""
    base, requested, _, key_file, bucket, _ = stack
    for name in [k for k in os.environ if k.startswith("LOGARCHIVE_")]:
        monkeypatch.delenv(name)
    rc, out, _ = run_cli(["logs-from-archive", "--stack", STACK, "--bucket", bucket, "--app-id", "42",
                          "--decryption-keys-file", key_file, "--verify-only"], capsys)
    assert rc == 0 and len(out.splitlines()) == 4 and requested == []


def test_transient_api_errors_are_retried_and_persistent_ones_reported(stack, capsys, monkeypatch, tmp_path) -> None:
    base, requested, _, key_file, bucket, faults = stack
    monkeypatch.setattr(api_client, "BACKOFF_SECONDS", 0.0)
    search = ["--app-id", "42", "--start-date", "2022-01-01", "--end-date", "2022-01-02",
              "--decryption-keys-file", key_file]
    faults.update({"/archives?": 2, "/archives/": 2})  # two 503s on the search, two on the downloads
    a, b = both(capsys, base, bucket, search + ["--download-location", "-", "--format", "jsonl"])
    assert a == b and a[0] == 0 and len(a[1].splitlines()) == 6
    assert faults == {"/archives?": 0, "/archives/": 0} and len(requested) == 2 + 1 + 2 + 3
    faults["/archives?"] = 99  # API Gateway keeps failing: one line, exit 1, after ATTEMPTS tries
    rc, out, err = run_cli(["logs-from-archive", "--stack", STACK, "--api-url", base] + search, capsys)
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 1 and out == "" and faults["/archives?"] == 99 - api_client.ATTEMPTS
    assert errors == [f"logarchive: error: {base}: cannot search the index (API answered 503: Service Unavailable)"]


def test_a_cold_archive_is_named_with_its_class_and_how_to_restore_it(stack, capsys, tmp_path) -> None:
    """S3 refuses the presigned GET of an archive in GLACIER (InvalidObjectState): one line
    naming it and its class, the others downloaded, and the command that restores it."""
    from chalice.test import Client

    import app

    base, _, keys, key_file, bucket, _ = stack
    cold = keys[0]
    s3 = boto3.client("s3")
    version = s3.copy_object(Bucket=bucket, Key=cold, CopySource={"Bucket": bucket, "Key": cold},
                             StorageClass="GLACIER", MetadataDirective="COPY")["VersionId"]
    with Client(app.app, stage_name="test", project_dir=str(tmp_path)) as client:
        client.lambda_.invoke("index_archive", s3_event(bucket, cold, sequencer="0B", version_id=version))
    dest = tmp_path / "cold"
    rc, _, err = run_cli(["logs-from-archive", "--stack", STACK, "--app-id", "42", "--start-date", "2022-01-01",
                          "--end-date", "2022-01-02", "--decryption-keys-file", key_file, "--api-url", base,
                          "--endpoint-url", DEAD, "--download-location", str(dest)], capsys)
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 1
    assert errors == [f"logarchive: error: {cold}: in cold storage (GLACIER), not restored: restore it with "
                      "`logarchive logs-from-archive --bucket BUCKET ... --restore --wait` (needs "
                      "s3:RestoreObject on the bucket)"]
    [advice] = [x for x in err.splitlines() if "were not downloaded" in x]
    assert "1 archive(s) in cold storage (GLACIER: 1)" in advice
    assert ("a retrieval job restores them and finishes on its own: logarchive retrievals start --api-url "
            f"{base} --stack teststack --app-id 42 --start-date 2022-01-01 --end-date 2022-01-02 --wait;") in advice
    assert advice.endswith(f"--decryption-keys-file {key_file} --restore --wait")
    assert "logs-from-archive --bucket BUCKET --stack teststack --endpoint-url" in advice
    assert len(files_under(str(dest))) == 2 and not leftovers(str(dest))

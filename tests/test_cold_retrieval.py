"""``logs-from-archive`` and archives in cold storage, on the local AWS.

Archives are moved to GLACIER / DEEP_ARCHIVE by a copy in place with a storage class. The
local S3 refuses a GET of them (``InvalidObjectState``) until a restore; a restore completes
at once unless its state manager slows it down (``local_aws.slow_restores``), and then the
object answers ``ongoing-request="true"`` for that many reads.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers_index import STACK, docker_line, put_archive
from retrieval_helpers import cli_logging, files_under, leftovers, run_cli

from chalicelib import aws, restores
from chalicelib.devkit import local_aws
from chalicelib.download import coldstore
from chalicelib.errors import LogarchiveError
from chalicelib.keyring import MasterKey

MASTER = MasterKey(b"\x07" * 32)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = {"hot": None, "instant": "GLACIER_IR", "glacier": "GLACIER", "deep": "DEEP_ARCHIVE"}


class Cold:
    """Four archives of app 42, one per class; their raw bytes by name."""

    def __init__(self, bucket: str, tmp_path) -> None:
        self.bucket = bucket
        self.s3 = boto3.client("s3")
        self.keys: dict[str, str] = {}
        self.raw: dict[str, bytes] = {}
        for i, (name, cls) in enumerate(CLASSES.items()):
            lines = [docker_line(f"2022-03-0{i + 1}T10:00:0{j}Z", "stdout", f"{name} line {j}") for j in range(5)]
            key, _ = put_archive(bucket, lines, master=MASTER, cid=f"{i + 1:02d}" * 32)
            if cls:
                self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                                    StorageClass=cls, MetadataDirective="COPY")
            self.keys[name] = key
            self.raw[name] = b"".join(x + b"\n" for x in lines)
        self.key_file = tmp_path / "keys.txt"
        self.key_file.write_text(MASTER.to_base64() + "\n")
        self.dest = tmp_path / "out"

    def argv(self, *extra: str) -> list[str]:
        return ["logs-from-archive", "--bucket", self.bucket, "--stack", STACK, "--app-id", "42",
                "--decryption-keys-file", str(self.key_file), "--download-location", str(self.dest),
                "--poll-interval", "0", *extra]

    def path(self, name: str):
        return self.dest / "/".join(self.keys[name].split("/")[4:])

    def written(self) -> dict[str, bytes]:
        """Name → raw bytes of each archive written under the download location."""
        by_cid = {f"{i + 1:02d}" * 32: name for i, name in enumerate(CLASSES)}
        out = {}
        for rel in files_under(str(self.dest)):
            cid = rel.split("/")[-1].split("-json")[0]
            out[by_cid[cid]] = gzip.decompress((self.dest / rel).read_bytes())
        return out


@pytest.fixture
def cold(buckets, tmp_path, moto_endpoint):
    yield Cold(buckets.customer, tmp_path)
    local_aws.slow_restores(moto_endpoint, None)


@pytest.fixture
def restore_calls() -> list[dict]:
    """RestoreObject requests the CLI sends, seen on the real (cached) client."""
    calls: list[dict] = []
    aws.client("s3").meta.events.register(
        "before-parameter-build.s3.RestoreObject", lambda params, **_: calls.append(dict(params)))
    return calls


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("logarchive: error:")]


def test_without_restore_the_readable_are_downloaded_and_the_cold_named_with_what_to_run(cold, capsys,
                                                                                       caplog, monkeypatch) -> None:
    cli_logging(monkeypatch)
    caplog.set_level("INFO")
    rc, out, err = run_cli(cold.argv(), capsys)
    assert rc == 1
    # No restore was asked: none is "still being restored".
    assert "retrieved 2 of 4 archives; 2 in cold storage, not restored" in caplog.text
    assert "being restored" not in caplog.text
    assert cold.written() == {"hot": cold.raw["hot"], "instant": cold.raw["instant"]}  # GLACIER_IR reads now
    assert sorted(errors(err)) == sorted([
        f"logarchive: error: {cold.keys['glacier']}: in GLACIER, not restored",
        f"logarchive: error: {cold.keys['deep']}: in DEEP_ARCHIVE, not restored",
    ])
    [advice] = [x for x in err.splitlines() if "were not downloaded" in x]
    assert "2 archive(s) in cold storage (DEEP_ARCHIVE: 1, GLACIER: 1)" in advice
    command = advice.split("run: ", 1)[1]
    assert command == (f"logarchive logs-from-archive --bucket {cold.bucket} --stack {STACK} --app-id 42 "
                       f"--download-location {cold.dest} --decryption-keys-file {cold.key_file} --restore --wait")
    [estimate] = [x for x in err.splitlines() if "estimated cost" in x]
    assert "2 archive(s)" in estimate and "Bulk, kept 7 days" in estimate and "May 2026" in estimate
    assert "within 48 hours" in estimate and "5-12 hours" in estimate
    assert MASTER.to_base64() not in out + err and "Traceback" not in err
    assert not leftovers(str(cold.dest))


def test_listing_names_the_cold_ones_without_a_download(cold, capsys, caplog, monkeypatch) -> None:
    cli_logging(monkeypatch)
    argv = [a for a in cold.argv() if a not in ("--download-location", str(cold.dest))]
    rc, out, _ = run_cli(argv, capsys)
    assert rc == 0 and len(out.splitlines()) == 4
    assert "2 of these archives are in cold storage (DEEP_ARCHIVE: 1, GLACIER: 1)" in caplog.text


def test_restore_requests_then_a_rerun_downloads_and_skips_what_is_written(cold, capsys, restore_calls) -> None:
    rc, _, err = run_cli(cold.argv("--restore", "--restore-tier", "Standard", "--restore-days", "2"), capsys)
    # The local S3 restores at once, but this run saw them cold: it asked and did not wait.
    assert rc == 1
    assert {(r["Key"], r["RestoreRequest"]["Days"], r["RestoreRequest"]["GlacierJobParameters"]["Tier"])
            for r in restore_calls} == {(cold.keys["glacier"], 2, "Standard"), (cold.keys["deep"], 2, "Standard")}
    assert ("cold archives: 2 (DEEP_ARCHIVE: 1, GLACIER: 1); restore requested: 2, in progress: 0, ready: 0"
            in err)
    [estimate] = [x for x in err.splitlines() if "estimated cost" in x]
    assert "Standard, kept 2 days" in estimate and "within 12 hours" in estimate and "3-5 hours" in estimate
    assert any("2 archive(s) not downloaded yet: their restore is under way" in x for x in err.splitlines())
    assert set(cold.written()) == {"hot", "instant"}
    inode = cold.path("hot").stat().st_ino

    restore_calls.clear()
    rc, out, err = run_cli(cold.argv("--restore"), capsys)
    assert rc == 0, err
    assert restore_calls == []  # restored copies are there: nothing asked again
    assert ("cold archives: 2 (DEEP_ARCHIVE: 1, GLACIER: 1); restore requested: 0, in progress: 0, ready: 2"
            in err)  # the restored ones named by class too (was "cold archives: 2 ();")
    assert cold.written() == cold.raw
    assert cold.path("hot").stat().st_ino == inode  # written and verified before: not fetched again
    assert str(cold.path("hot")) in out.splitlines()


def test_restore_wait_downloads_each_as_its_restore_completes(cold, capsys, restore_calls, moto_endpoint) -> None:
    # Each restore reports ongoing-request="true" to three reads, then completes.
    local_aws.slow_restores(moto_endpoint, 3)
    answers: list[str] = []  # the Restore header of every HEAD answer the CLI got
    aws.client("s3").meta.events.register(
        "after-call.s3.HeadObject", lambda parsed, **_: answers.append(parsed.get("Restore", "")))
    rc, _, err = run_cli(cold.argv("--restore", "--wait"), capsys)
    assert rc == 0, err
    assert "restore requested: 2, in progress: 0, ready: 0" in err
    assert len(restore_calls) == 2
    # Polls saw both restores under way before they completed: the CLI waited.
    assert answers.count('ongoing-request="true"') >= 2
    assert answers[-1].startswith('ongoing-request="false"')
    assert cold.written() == cold.raw
    assert not leftovers(str(cold.dest))


def test_a_restore_under_way_is_not_requested_again(cold, capsys, restore_calls, moto_endpoint) -> None:
    local_aws.slow_restores(moto_endpoint, 3)
    assert run_cli(cold.argv("--restore"), capsys)[0] == 1
    assert len(restore_calls) == 2
    restore_calls.clear()
    rc, _, err = run_cli(cold.argv("--restore"), capsys)
    assert rc == 1 and restore_calls == []
    assert "restore requested: 0, in progress: 2, ready: 0" in err
    without = run_cli(cold.argv(), capsys)[2]
    assert f"logarchive: error: {cold.keys['glacier']}: in GLACIER, restore under way" in errors(without)


def test_a_rerun_fetches_again_a_file_that_does_not_verify(cold, capsys) -> None:
    assert run_cli(cold.argv(), capsys)[0] == 1
    cold.path("hot").write_bytes(gzip.compress(b"not what was archived\n"))
    cold.path("instant").write_bytes(cold.path("instant").read_bytes()[:-9])  # cut short
    run_cli(cold.argv(), capsys)
    written = cold.written()
    assert written["hot"] == cold.raw["hot"] and written["instant"] == cold.raw["instant"]


def test_expedited_is_refused_for_deep_archive_only(cold, capsys, restore_calls) -> None:
    rc, _, err = run_cli(cold.argv("--restore", "--restore-tier", "Expedited"), capsys)
    assert rc == 1
    assert [r["Key"] for r in restore_calls] == [cold.keys["glacier"]]
    assert f"logarchive: error: {cold.keys['deep']}: restore refused: DEEP_ARCHIVE has no Expedited retrieval: " \
           "use --restore-tier Standard or Bulk" in errors(err)
    assert "restore requested: 1, in progress: 0, ready: 0, refused: 1" in err


def test_restoring_a_standard_object_is_one_line(cold) -> None:
    state = restores.ColdState("GLACIER", restores.COLD)  # listed cold, copied back to STANDARD since
    with pytest.raises(LogarchiveError) as info:
        restores.request_restore(cold.s3, cold.bucket, cold.keys["hot"], state, "Bulk", 7)
    assert str(info.value) == (f"{cold.keys['hot']}: restore refused: S3 says it is not archived "
                               "(InvalidObjectState; listed as GLACIER): nothing to restore")


@pytest.mark.parametrize(("code", "tier", "message"), [
    ("GlacierExpeditedRetrievalNotAvailable", "Expedited", "no Expedited capacity now"),
    ("InvalidArgument", "Expedited", "S3 refused an Expedited restore of DEEP_ARCHIVE (InvalidArgument)"),
    ("AccessDenied", "Bulk", "restoring needs s3:RestoreObject"),
    ("SlowDown", "Bulk", "S3 error SlowDown"),
])
def test_refused_restores_are_one_line_by_error_code(code, tier, message) -> None:
    # AWS refuses these where the local S3 accepts: their messages by S3's error codes.
    exc = ClientError({"Error": {"Code": code, "Message": "x\ny"}}, "RestoreObject")
    err = restores.restore_error("s/shareable/v3/k", exc, restores.ColdState("DEEP_ARCHIVE", "cold"), tier)
    assert str(err).startswith("s/shareable/v3/k: restore refused: ") and message in str(err)
    assert "\n" not in str(err)


def test_wait_needs_restore_and_restore_needs_the_bucket(cold, capsys) -> None:
    # Options that do not go together are usage errors (status 2), as in every command.
    rc, _, err = run_cli(cold.argv("--wait"), capsys)
    assert rc == 2 and errors(err) == ["logarchive: error: --wait waits for restores: add --restore"]
    rc, _, err = run_cli(cold.argv("--restore", "--restore-days", "0"), capsys)
    assert rc == 2 and "--restore-days must be at least 1" in err


def test_states_from_head_answers() -> None:
    st = restores.state_of
    assert st("STANDARD", {}).state == restores.READABLE
    assert st("GLACIER_IR", {"StorageClass": "GLACIER_IR"}).readable
    assert st("GLACIER", {"StorageClass": "GLACIER"}).state == restores.COLD
    assert st("GLACIER", {"Restore": 'ongoing-request="true"'}).state == restores.RESTORING
    done = st("DEEP_ARCHIVE", {"Restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"'})
    assert done.state == restores.RESTORED and done.restore_expiry == "Fri, 21 Dec 2012 00:00:00 GMT"
    # Intelligent-Tiering: cold only in an archive tier, and then restored without days or tier.
    assert st("INTELLIGENT_TIERING", {}).readable
    it = st("INTELLIGENT_TIERING", {"ArchiveStatus": "DEEP_ARCHIVE_ACCESS"})
    assert it.state == restores.COLD and it.label == "INTELLIGENT_TIERING/DEEP_ARCHIVE_ACCESS"
    assert restores.restore_request(it, "Bulk", 7) == {}
    assert restores.restore_request(done, "Bulk", 3) == {"Days": 3, "GlacierJobParameters": {"Tier": "Bulk"}}


def test_estimates_use_the_dated_list_prices() -> None:
    gib = coldstore.GB
    deep = restores.ColdState("DEEP_ARCHIVE", restores.COLD)
    glacier = restores.ColdState("GLACIER", restores.COLD)
    e = coldstore.estimate([(deep, 100 * gib)], "Bulk", 30)
    assert e.cost == pytest.approx(100 * 0.0025 + 0.025 / 1000 + 100 * 0.023)
    assert e.times == ("within 48 hours",)
    assert coldstore.estimate([(glacier, 10 * gib)], "Bulk", 0).cost == 0.0  # Flexible Retrieval Bulk is free
    it = restores.ColdState("INTELLIGENT_TIERING", restores.COLD, "ARCHIVE_ACCESS")
    assert coldstore.estimate([(it, 10 * gib)], "Bulk", 7).cost == 0.0


def test_poll_intervals_back_off_to_a_ceiling() -> None:
    gaps = coldstore.poll_intervals(60, 900)
    assert [next(gaps) for _ in range(7)] == [60, 120, 240, 480, 900, 900, 900]


def test_restore_wait_to_stdout_streams_every_archive_in_order(cold, capsysbinary, moto_endpoint) -> None:
    local_aws.slow_restores(moto_endpoint, 3)
    argv = cold.argv("--restore", "--wait")
    argv[argv.index(str(cold.dest))] = "-"
    rc, out, err = run_cli(argv, capsysbinary)
    assert rc == 0, err
    assert gzip.decompress(out) == b"".join(cold.raw[name] for name in CLASSES)  # container order


def test_ctrl_c_while_waiting_then_a_rerun_skips_what_is_written_and_asks_nothing_again(
    cold, capsys, restore_calls, moto_endpoint,
) -> None:
    local_aws.slow_restores(moto_endpoint, 3)
    argv = [a if a != "0" else "3600" for a in cold.argv("--restore", "--wait")]  # waits an hour to poll
    child = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        # The readable archives are written while the restores are under way.
        written = [child.stdout.readline().strip() for _ in range(2)]
        assert sorted(written) == sorted([str(cold.path("hot")), str(cold.path("instant"))])
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 130
        err = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        child.stderr.close()
    assert "restore requested: 2, in progress: 0, ready: 0" in err and "Traceback" not in err
    inode = cold.path("hot").stat().st_ino

    rc, out, err = run_cli(cold.argv("--restore", "--wait"), capsys)
    assert rc == 0, err
    assert restore_calls == []  # both restores were under way: not asked again
    assert "restore requested: 0, in progress: 2, ready: 0" in err
    assert cold.written() == cold.raw
    assert cold.path("hot").stat().st_ino == inode  # written and verified before: skipped
    assert not leftovers(str(cold.dest))

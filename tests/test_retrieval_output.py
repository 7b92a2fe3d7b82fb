"""Output a person can trust: time order, no empty files, key problems found before downloading."""

from __future__ import annotations

import os

import boto3
import pytest
from retrieval_helpers import STACK, archive_key, cli_logging, docker_lines, put_archive, run_cli, t

from chalicelib import aws
from chalicelib.keyring import Keyring, MasterKey, key_id_of_kms

K1, K2 = MasterKey.generate(), MasterKey.generate()
CID = "ab" * 32


def _lines(start: str, end: str, tag: str, n: int = 4) -> bytes:
    return docker_lines(t(start), t(end), n=n, tag=tag)


@pytest.fixture
def segments(buckets):
    """Three segments of one container: 2 and 3 share their first and last second, and their
    keys sort 10 before 9 as text."""
    s3, ring = boto3.client("s3"), Keyring([K1])
    data = {}
    for seg, (start, end) in {9: ("2022-03-01T10:00:00", "2022-03-01T10:00:00"),
                              10: ("2022-03-01T10:00:00", "2022-03-01T10:00:00"),
                              2: ("2022-03-01T09:59:00", "2022-03-01T09:59:59")}.items():
        data[seg] = _lines(start, end, f"seg{seg} ")
        key = archive_key("apps", "42", CID, t(start), t(end), K1.key_id, rotation=seg)
        put_archive(s3, buckets.customer, key, data[seg], ring)
    return data


def _base(buckets, *extra: str) -> list[str]:
    return ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "42", *extra]


def test_jsonl_to_stdout_and_listing_follow_the_segment_sequence(buckets, segments, capsysbinary) -> None:
    from chalicelib import cli

    capsysbinary.readouterr()
    assert cli.main(_base(buckets)) == 0
    listed = capsysbinary.readouterr().out.decode().splitlines()
    assert [int(x.split("-json.log.")[1].split(".")[0]) for x in listed] == [2, 9, 10]
    rc = cli.main(_base(buckets, "--decryption-keys", K1.to_base64(), "--download-location", "-",
                        "--format", "jsonl"))
    assert rc == 0
    assert capsysbinary.readouterr().out == segments[2] + segments[9] + segments[10]


def test_grep_without_a_match_writes_no_file_and_the_summary_counts(buckets, segments, capsys, caplog,
                                                                    tmp_path, monkeypatch) -> None:
    cli_logging(monkeypatch)
    caplog.set_level("INFO")
    dest = tmp_path / "out"
    rc, out, err = run_cli(_base(buckets, "--decryption-keys", K1.to_base64(), "--download-location", str(dest),
                                 "--grep", "seg9 line [13]"), capsys)
    assert rc == 0, err
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(files) == 1 and ".9." in files[0].name
    assert out.splitlines() == [str(files[0])]
    assert ("retrieved 3 of 3 archives; 2 lines matched (2 archive(s) without a matching line: no file written)"
            in caplog.text)


def test_a_missing_raw_key_is_found_before_any_download(buckets, segments, capsys, tmp_path) -> None:
    other = archive_key("apps", "42", "cd" * 32, t("2022-03-01T11:00:00"), t("2022-03-01T11:00:00"), K2.key_id)
    put_archive(boto3.client("s3"), buckets.customer, other, _lines("2022-03-01T11:00:00", "2022-03-01T11:00:00",
                                                                     "k2 "), Keyring([K2]))
    # The command's S3 client is the cached one: watch its GETs, and what stderr held at each.
    err_seen: list[str] = []
    gets: list[tuple[str, bool]] = []

    def on_get(params, **_):
        err_seen.append(capsys.readouterr().err)
        gets.append((params["Key"], other in "".join(err_seen)))

    client = aws.client("s3")
    client.meta.events.register("before-parameter-build.s3.GetObject", on_get)
    try:
        dest = tmp_path / "out"
        rc, out, err = run_cli(_base(buckets, "--decryption-keys", K1.to_base64(), "--download-location",
                                     str(dest)), capsys)
    finally:
        client.meta.events.unregister("before-parameter-build.s3.GetObject", on_get)
    err = "".join(err_seen) + err
    assert rc == 1
    assert [x for x in err.splitlines() if x.startswith("logarchive: error:")] == [
        f"logarchive: error: {other}: needs the key with id {K2.key_id}; keys given: {K1.key_id[:12]}"]
    assert len(gets) == 3 and all(reported for _, reported in gets)  # said before the first download
    assert other not in {k for k, _ in gets}
    assert not any("cd" * 32 in str(p) for p in dest.rglob("*"))


def test_an_unusable_kms_key_is_found_before_any_download_and_leaves_no_directory(
        aws_endpoint, buckets, capsys, tmp_path) -> None:
    # A key the command cannot use: it lives in another region than the command's KMS client.
    kms = boto3.client("kms", region_name="eu-west-3")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    ring = Keyring([], kms_key_id=arn, kms_client_factory=lambda: kms)
    keys = []
    for i in range(3):
        key = archive_key("databases", "9", f"{i:02d}" * 32, t("2022-03-01T11:00:00"), t("2022-03-01T11:00:00"),
                          key_id_of_kms(arn))
        put_archive(boto3.client("s3"), buckets.customer, key, _lines("2022-03-01T11:00:00", "2022-03-01T11:00:00",
                                                                      "kms "), ring)
        keys.append(key)
    dest = tmp_path / "out"
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--database-id", "9",
                            "--download-location", str(dest)], capsys)
    assert rc == 1
    lines = err.splitlines()
    assert [x for x in lines if "error" in x] == [  # one line for the key, not one per archive
        f"logarchive: error: {keys[0]} and 2 more archive(s) under that key: KMS could not unwrap the data key "
        "(AccessDeniedException)"]
    assert not dest.exists()  # nothing started: no directory either


def test_failed_downloads_leave_no_empty_directories(buckets, capsys, tmp_path) -> None:
    key = archive_key("proxy", "5", CID, t("2022-03-01T11:00:00"), t("2022-03-01T11:00:00"), K1.key_id)
    body = put_archive(boto3.client("s3"), buckets.customer, key, _lines("2022-03-01T11:00:00",
                                                                           "2022-03-01T11:00:00", "x "), Keyring([K1]))
    head = boto3.client("s3").head_object(Bucket=buckets.customer, Key=key)
    boto3.client("s3").put_object(Bucket=buckets.customer, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]),
                                  Metadata=head["Metadata"])
    dest = tmp_path / "out"
    os.makedirs(dest)
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--endpoint-id",
                            "5", "--decryption-keys", K1.to_base64(), "--download-location", str(dest)], capsys)
    assert rc == 1
    assert [x for x in err.splitlines() if x.startswith("logarchive: error:")] == [
        x for x in err.splitlines() if key in x]
    assert list(dest.iterdir()) == []  # the user's directory stays; the folders made for the object do not

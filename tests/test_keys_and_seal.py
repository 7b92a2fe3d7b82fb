"""``keys generate|id``, ``seal``/``unseal`` on local files, and every key source of
``logs-from-archive`` (file, environment, inline, Secrets Manager and SSM via Powertools)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import stat
import uuid

import boto3
import pytest
from retrieval_helpers import (
    STACK,
    archive_key,
    docker_lines,
    leftovers,
    put_archive,
    run_cli,
    t,
    upload_sealed,
)

from chalicelib.download import retrieval
from chalicelib.keyring import KEYS_ENV, Keyring, MasterKey, keys_from_parameter_store, read_key_file

DATA = docker_lines(t("2022-12-01T00:00:00"), t("2022-12-01T00:10:00"), n=200, tag="seal ")


# -- keys -------------------------------------------------------------------------------------


def test_keys_generate_prints_one_key(capsys) -> None:
    rc, out, err = run_cli(["keys", "generate"], capsys)
    assert rc == 0 and len(out.splitlines()) == 1
    assert len(base64.b64decode(out.strip(), validate=True)) == 32


def test_keys_generate_output_file_mode_0600_newest_first(capsys, tmp_path) -> None:
    path = tmp_path / "keys"
    rc, out, err = run_cli(["keys", "generate", "--output", str(path)], capsys)
    first = read_key_file(str(path))
    assert rc == 0 and out == first[0].key_id + "\n"  # the data on stdout: the new key's id
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first[0].to_base64() not in out + err
    rc, out, err = run_cli(["keys", "generate", "--output", str(path)], capsys)
    second = read_key_file(str(path))
    assert len(second) == 2 and second[1] == first[0]  # the new key goes first: it encrypts
    rc, out, err = run_cli(["keys", "generate", "--output", str(path), "--append"], capsys)
    third = read_key_file(str(path))
    assert third[:2] == second and len(third) == 3
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert leftovers(str(tmp_path)) == []


def test_keys_id_from_file_env_and_stdin_never_prints_keys(capsys, tmp_path, monkeypatch) -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    text = f"{a.to_base64()}\n# old key\n{b.to_base64()}\n"
    (tmp_path / "k").write_text(text)
    want = f"{a.key_id}\n{b.key_id}\n"
    monkeypatch.delenv(KEYS_ENV, raising=False)
    assert run_cli(["keys", "id", "--key-file", str(tmp_path / "k")], capsys)[:2] == (0, want)
    monkeypatch.setenv(KEYS_ENV, f"{a.to_base64()},{b.to_base64()}")
    assert run_cli(["keys", "id"], capsys)[:2] == (0, want)
    monkeypatch.delenv(KEYS_ENV)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert run_cli(["keys", "id"], capsys)[:2] == (0, want)


def test_keys_id_bad_key_is_one_line_without_the_text(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    almost = MasterKey.generate().to_base64()[:-4] + "!!!="
    (tmp_path / "k").write_text(almost + "\n")
    rc, out, err = run_cli(["keys", "id", "--key-file", str(tmp_path / "k")], capsys)
    assert rc == 1 and err.count("\n") == 1 and "line 1" in err and almost not in err


# -- seal / unseal --------------------------------------------------------------------------


@pytest.fixture
def keyfile(tmp_path, monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    keys = [MasterKey.generate(), MasterKey.generate()]
    path = tmp_path / "keys"
    path.write_text("".join(k.to_base64() + "\n" for k in keys))
    return path, keys


def test_seal_unseal_round_trip(keyfile, capsys, tmp_path) -> None:
    path, keys = keyfile
    src = tmp_path / "in.log"
    src.write_bytes(DATA)
    rc, out, err = run_cli(["seal", "--key-file", str(path), str(src), str(tmp_path / "out")], capsys)
    assert rc == 0, err
    instr = json.loads((tmp_path / "out.instruction").read_text())
    assert instr["x-amz-wrap-alg"] == "AES/GCM" and instr["x-amz-cek-alg"] == "AES/GCM/NoPadding"
    assert DATA[:50] not in (tmp_path / "out").read_bytes()
    # Only the second key of another file: any key decrypts (rotation).
    (tmp_path / "old").write_text(keys[1].to_base64() + "\n" + keys[0].to_base64() + "\n")
    rc, _, err = run_cli(["unseal", "--key-file", str(tmp_path / "old"), str(tmp_path / "out"),
                          str(tmp_path / "back.gz")], capsys)
    assert rc == 0, err
    assert gzip.decompress((tmp_path / "back.gz").read_bytes()) == DATA
    rc, _, err = run_cli(["unseal", "--decompress", "--key-file", str(path), str(tmp_path / "out"),
                          str(tmp_path / "back.log")], capsys)
    assert rc == 0 and (tmp_path / "back.log").read_bytes() == DATA
    assert leftovers(str(tmp_path)) == []


def test_seal_from_stdin_unseal_to_stdout(keyfile, capsysbinary, tmp_path, monkeypatch) -> None:
    from chalicelib import cli

    path, _ = keyfile
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(DATA)))
    assert cli.main(["seal", "--key-file", str(path), "-", str(tmp_path / "out")]) == 0
    capsysbinary.readouterr()
    assert cli.main(["unseal", "--decompress", "--key-file", str(path), str(tmp_path / "out"), "-"]) == 0
    assert capsysbinary.readouterr().out == DATA


def test_seal_with_kms_unseal_through_kms(aws_endpoint, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    (tmp_path / "in.log").write_bytes(DATA)
    rc, out, err = run_cli(["seal", "--kms-key-id", arn, "--endpoint-url", aws_endpoint,
                            str(tmp_path / "in.log"), str(tmp_path / "out")], capsys)
    assert rc == 0, err
    instr = json.loads((tmp_path / "out.instruction").read_text())
    assert instr["x-amz-wrap-alg"] == "kms+context"
    assert json.loads(instr["x-amz-matdesc"]) == {"aws:x-amz-cek-alg": "AES/GCM/NoPadding"}
    rc, out, err = run_cli(["unseal", "--decompress", "--endpoint-url", aws_endpoint, str(tmp_path / "out"),
                            str(tmp_path / "back")], capsys)
    assert rc == 0, err
    assert (tmp_path / "back").read_bytes() == DATA


def test_seal_without_a_key_is_refused(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    (tmp_path / "in.log").write_bytes(DATA)
    rc, out, err = run_cli(["seal", str(tmp_path / "in.log"), str(tmp_path / "out")], capsys)
    assert rc == 2 and "seal needs a key" in err and not (tmp_path / "out").exists()


def test_seal_refuses_decryption_only_options(capsys, tmp_path, keyfile) -> None:
    (tmp_path / "in.log").write_bytes(DATA)
    rc, out, err = run_cli(["seal", str(tmp_path / "in.log"), str(tmp_path / "out"), "--key-file", str(keyfile[0]),
                            "--allow-legacy-cbc"], capsys)
    assert rc == 2 and "unrecognized arguments: --allow-legacy-cbc" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["tamper", "truncate", "wrong-key", "no-instruction", "bad-instruction"])
def test_unseal_failures_leave_nothing(keyfile, capsys, tmp_path, damage) -> None:
    path, _ = keyfile
    (tmp_path / "in.log").write_bytes(DATA)
    assert run_cli(["seal", "--key-file", str(path), str(tmp_path / "in.log"), str(tmp_path / "out")], capsys)[0] == 0
    sealed = tmp_path / "out"
    body = bytearray(sealed.read_bytes())
    keys = str(path)
    if damage == "tamper":
        body[100] ^= 0x80
        sealed.write_bytes(bytes(body))
        cause = "authentication failed"
    elif damage == "truncate":
        sealed.write_bytes(bytes(body[:-1]))
        cause = "authentication failed"
    elif damage == "wrong-key":
        (tmp_path / "other").write_text(MasterKey.generate().to_base64() + "\n")
        keys = str(tmp_path / "other")
        cause = "none of the keys given unwraps its data key"
    elif damage == "no-instruction":
        (tmp_path / "out.instruction").unlink()
        cause = "no instruction file"
    else:
        (tmp_path / "out.instruction").write_text('{"x-amz-key-v2": "AAAA"}')
        cause = "envelope lacks x-amz-iv"
    for extra in ([], ["--decompress"]):
        rc, out, err = run_cli(["unseal", *extra, "--key-file", keys, str(sealed), str(tmp_path / "back")], capsys)
        assert rc == 1 and err.count("\n") == 1 and cause in err and str(sealed) in err
        assert not (tmp_path / "back").exists()
    assert leftovers(str(tmp_path)) == []


def test_sealed_file_uploaded_with_its_instruction_is_an_archive(keyfile, buckets, capsys, tmp_path) -> None:
    path, keys = keyfile
    (tmp_path / "in.log").write_bytes(DATA)
    run_cli(["seal", "--key-file", str(path), str(tmp_path / "in.log"), str(tmp_path / "out")], capsys)
    key = archive_key("apps", "80", "8a" * 32, t("2022-12-01T00:00:00"), t("2022-12-01T00:10:00"), keys[0].key_id)
    upload_sealed(buckets.customer, key, str(tmp_path / "out"))
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "80",
                            "--decompress", "--download-location", str(tmp_path / "dl"),
                            "--decryption-keys-file", str(path)], capsys)
    assert rc == 0, err
    assert open(out.strip(), "rb").read() == DATA


# -- key sources for logs-from-archive -------------------------------------------------------


@pytest.mark.parametrize("source", ["inline", "file", "env"])
def test_logs_from_archive_key_sources(buckets, capsys, tmp_path, monkeypatch, source) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    k = MasterKey.generate()
    key = archive_key("apps", "81", "8b" * 32, t("2022-12-01T00:00:00"), t("2022-12-01T00:10:00"), k.key_id)
    put_archive(boto3.client("s3"), buckets.customer, key, DATA, Keyring([k]))
    argv = ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "81",
            "--download-location", str(tmp_path / "dl"), "--decompress"]
    if source == "inline":
        argv += ["--decryption-keys", MasterKey.generate().to_base64(), k.to_base64()]
    elif source == "file":
        (tmp_path / "keys").write_text(f"# rotated\n{MasterKey.generate().to_base64()}\n{k.to_base64()}\n")
        argv += ["--decryption-keys-file", str(tmp_path / "keys")]
    else:
        monkeypatch.setenv(KEYS_ENV, k.to_base64())
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert open(out.strip(), "rb").read() == DATA


@pytest.mark.parametrize("store", ["secrets", "ssm"])
def test_keys_from_secrets_manager_and_ssm(buckets, tmp_path, store) -> None:
    keys = [MasterKey.generate(), MasterKey.generate()]
    value = "\n".join(k.to_base64() for k in keys)
    name = f"/logarchive/test/{uuid.uuid4().hex}"
    if store == "secrets":
        boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)
    else:
        boto3.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    got = keys_from_parameter_store(name, source=store)
    assert [k.key_id for k in got] == [k.key_id for k in keys]

    key = archive_key("apps", "82", "8c" * 32, t("2022-12-01T00:00:00"), t("2022-12-01T00:10:00"), keys[1].key_id)
    s3 = boto3.client("s3")
    put_archive(s3, buckets.customer, key, DATA, Keyring([keys[1]]))
    matches = retrieval.find_archives(s3, buckets.customer, retrieval.Selection(STACK, kind="apps", resource_id="82"))
    r = retrieval.Retriever(s3, buckets.customer, Keyring(got), retrieval.OutputOptions(decompress=True))
    [outcome] = retrieval.download_all(r, matches, str(tmp_path))
    assert outcome.ok and open(outcome.path, "rb").read() == DATA

"""``--verbose`` never shows a secret (issue 18, finding 3).

``-v`` used to set every logger to DEBUG, botocore's too, whose wire log holds request and
response bodies: every KMS data key (``GenerateDataKey``, ``Decrypt``) and the master key inside
``local up --key-file``'s ``CreateSecret``. Here every command that handles a key runs with
``-v`` — the README's tour as written (raw keys, ``local up --key-file`` included) and a KMS
run — and all they print, and every file they write but the key files themselves, is searched
for the master key and for every data key KMS handed out, in hex and base64.
``--debug-aws`` shows the wire, with those values redacted.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from localup import clean_env
from test_docs_commands import ALL, RUN, SERVER, _script

from chalicelib import cli
from chalicelib.archive_object import read_envelope
from chalicelib.devkit import local_aws
from chalicelib.envelope import Envelope
from chalicelib.keyring import Keyring, MasterKey, read_key_file

ROOT = Path(__file__).resolve().parents[1]
KEY_FILES = ("master.key", "signing.pem")  # where a key is meant to be


def forms(secret: bytes) -> list[bytes]:
    """The ways a key's bytes show in text: hex (either case), base64 (padded or not, URL-safe)."""
    b64 = base64.b64encode(secret)
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), b64, b64.rstrip(b"="),
            base64.urlsafe_b64encode(secret).rstrip(b"=")]


def leaks(secrets: dict[str, bytes], texts: dict[str, bytes]) -> list[str]:
    return [f"{what} in {where}" for where, text in texts.items() for what, secret in secrets.items()
            if any(f in text for f in forms(secret))]


def files_written(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name not in KEY_FILES}


def _verbose_logarchive(bin_dir: Path) -> None:
    """``logarchive`` on PATH that is ``logarchive -v``."""
    bin_dir.mkdir()
    exe = bin_dir / "logarchive"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chalicelib.cli -v "$@"\n')
    exe.chmod(0o700)


def key_handling_commands() -> set[str]:
    """Every command with an option that names a key or a key file."""
    found = set()

    def walk(prefix: list[str], p: argparse.ArgumentParser) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, child in subs[0].choices.items():
                walk([*prefix, name], child)
            return
        options = {o for a in p._actions for o in a.option_strings}
        if any("key" in o for o in options):
            found.add(" ".join(prefix).replace("logs_from_archive", "logs-from-archive"))

    walk([], cli.build_parser())
    return found


RAN_WITH_RAW_KEYS = {"keys generate", "keys id", "keys signing-generate", "local up", "archive",
                     "logs-from-archive", "seal", "unseal", "digest backfill", "digest adopt", "audit", "status"}


def test_every_key_handling_command_is_run_here() -> None:
    assert key_handling_commands() <= RAN_WITH_RAW_KEYS


def test_the_tour_with_verbose_shows_no_master_key(tmp_path: Path) -> None:
    """README.md's runnable blocks as written, each ``logarchive`` being ``logarchive -v``."""
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    _verbose_logarchive(bin_dir)
    ports = {p: str(local_aws.free_port()) for p in ("5000", "8000")}
    env = {**clean_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "TMPDIR": str(work)}
    mine = [b for b in ALL if b.name == "README.md" and b.mark in (RUN, SERVER)]
    at = next(i for i, b in enumerate(mine) if b.mark == SERVER)
    texts: dict[str, bytes] = {}

    def bash(name: str, script: str) -> None:
        proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True)
        texts[f"{name} stdout"], texts[f"{name} stderr"] = proc.stdout, proc.stderr
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]

    bash("before local up", _script(mine[:at], ports))
    command = _script([mine[at]], ports).split("\n", 1)[1].strip()
    assert " -v " not in command and "--key-file master.key" in command
    server_err = tmp_path / "local-up.stderr"  # a file: a pipe nobody drains would stall the server
    with open(server_err, "wb") as fh:
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=fh)
    banner = []
    try:
        for line in server.stdout:
            banner.append(line)
            if line.startswith(b"Ctrl-C to stop."):
                break
        else:
            raise AssertionError(server_err.read_text(errors="replace")[-3000:])
        endpoint = f"http://127.0.0.1:{ports['5000']}"
        bash("the tour", _script(mine[at + 1:], ports) + f"""
export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
logarchive keys id --key-file master.key
logarchive audit --bucket prod-customer-logs --stack prod --public-key-file signing.pub.pem --deep || true
logarchive digest backfill --bucket prod-logarchive-archive --stack prod --signing-key-file signing.pem \
    --table prod-logarchive-leases || true
logarchive digest adopt --bucket prod-logarchive-archive --stack prod --table prod-logarchive-leases \
    --public-key-file signing.pub.pem || true
logarchive status --bucket prod-customer-logs --stack prod --public-key-file signing.pub.pem \
    --staging s3://prod-logarchive-staging/staged || true
logarchive index query --table prod-logarchive-index --stack prod --app-id 42 --start 2022-01-01 --end 2022-01-02 || true
logarchive setup check --bucket prod-customer-logs --stack prod || true
""")
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=120)
    texts["local up stdout"], texts["local up stderr"] = b"".join(banner) + out, server_err.read_bytes()
    texts.update(files_written(work))
    [master] = read_key_file(str(work / "master.key"))
    assert b"Found credentials" in texts["the tour stderr"]  # -v was on (botocore's INFO shows only then)
    assert leaks({"the master key": master.raw}, texts) == []


def _archive_envelopes(s3, bucket: str) -> list[tuple[str, Envelope]]:
    out = []
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        if obj["Key"].endswith(".archived.gz"):
            meta = s3.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
            out.append((obj["Key"], read_envelope(s3, bucket, obj["Key"], meta)))
    return out


@pytest.mark.parametrize("flag", ["-v", "--debug-aws"])
def test_kms_with_verbose_shows_no_data_key(buckets, aws_endpoint, tmp_path: Path, flag: str) -> None:
    """``archive``, ``logs-from-archive``, ``seal`` and ``unseal`` with a KMS key and ``flag``: no
    data key KMS returned shows; with ``--debug-aws`` the wire does, values redacted."""
    kms_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    raw = MasterKey.generate()  # a raw key beside KMS: decrypt-only for logs-from-archive
    (tmp_path / "master.key").write_text(raw.to_base64() + "\n")
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    texts: dict[str, bytes] = {}

    def run(*argv: str, ok: bool = True) -> None:
        proc = subprocess.run([sys.executable, "-m", "chalicelib.cli", flag, *argv], cwd=tmp_path, env=env,
                              capture_output=True)
        texts[f"{argv[0]} stdout"] = texts.get(f"{argv[0]} stdout", b"") + proc.stdout
        texts[f"{argv[0]} stderr"] = texts.get(f"{argv[0]} stderr", b"") + proc.stderr
        assert (proc.returncode == 0) == ok, proc.stderr.decode(errors="replace")[-3000:]

    run("local", "fake-docker", "--root", "docker")
    run("ship", "--docker-root", "docker", "--staging", f"s3://{buckets.staging}/staged", "--stack", "teststack",
        "--state", "ship.db", "--once")
    run("archive", "--once", "--staging", f"s3://{buckets.staging}/staged", "--archive-bucket", buckets.archive,
        "--replicate-to", buckets.customer, "--stack", "teststack", "--kms-key-id", kms_arn)
    run("logs-from-archive", "--bucket", buckets.customer, "--stack", "teststack", "--app-id", "42",
        "--key-file", "master.key", "--download-location", "logs")
    run("logs-from-archive", "--bucket", buckets.customer, "--stack", "teststack", "--app-id", "42",
        "--download-location", "-", "--format", "text")
    (tmp_path / "plain.log").write_bytes(b"some log line\n" * 100)
    run("seal", "--kms-key-id", kms_arn, "plain.log", "plain.log.enc")
    run("unseal", "--decompress", "plain.log.enc", "plain.log.again")
    assert (tmp_path / "plain.log.again").read_bytes() == (tmp_path / "plain.log").read_bytes()

    # The data keys KMS handed out, unwrapped here (this process logs nothing of them).
    s3, ring = boto3.client("s3"), Keyring([], kms_key_id=kms_arn)
    envelopes = _archive_envelopes(s3, buckets.archive)
    envelopes.append(("plain.log.enc", Envelope.from_instruction(
        (tmp_path / "plain.log.enc.instruction").read_bytes(), name="plain.log.enc")))
    assert len(envelopes) >= 3
    secrets = {f"the data key of {name}": ring.unwrap(e, name=name) for name, e in envelopes}
    secrets["the raw master key"] = raw.raw
    texts.update(files_written(tmp_path))
    assert leaks(secrets, texts) == []
    everything = b"".join(texts.values())
    if flag == "--debug-aws":  # the wire is there, its secrets are not
        assert b"GenerateDataKey" in everything and b"Response body" in everything
        assert b'"Plaintext": "<redacted>"' in everything
    else:
        assert b"Response body" not in everything and b"Found credentials" in everything


@pytest.mark.parametrize("text, shown", [
    ("""b'{"CiphertextBlob": "AQID", "Plaintext": "c2VjcmV0\\"x", "KeyId": "k"}'""",
     """b'{"CiphertextBlob": "AQID", "Plaintext": "<redacted>", "KeyId": "k"}'"""),
    ("""{'Plaintext': b'\\x01\\x02', 'KeyId': 'k'}""", """{'Plaintext': '<redacted>', 'KeyId': 'k'}"""),
    ("""{'SecretString': "it's"}""", """{'SecretString': "<redacted>"}"""),
    ("""{"Parameter": {"Name": "/k", "Type": "SecureString", "Value": "c2VjcmV0"}}""",
     """{"Parameter": {"Name": "/k", "Type": "SecureString", "Value": "<redacted>"}}"""),
    ("""{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab', 'X-Amz-Date': b'2'}""",
     """{'Authorization': '<redacted>', 'X-Amz-Date': b'2'}"""),
    ("host:s3\nx-amz-security-token:IQoJb3JpZ2\nx-amz-date:1", "host:s3\nx-amz-security-token:<redacted>\nx-amz-date:1"),
    ("<Credentials><SecretAccessKey>wJalr</SecretAccessKey><SessionToken>IQo</SessionToken></Credentials>",
     "<Credentials><SecretAccessKey><redacted></SecretAccessKey><SessionToken><redacted></SessionToken></Credentials>"),
    ("https://b.s3/k?X-Amz-Credential=AKIA%2F&X-Amz-Security-Token=IQo&X-Amz-Signature=ab12",
     "https://b.s3/k?X-Amz-Credential=AKIA%2F&X-Amz-Security-Token=<redacted>&X-Amz-Signature=<redacted>"),
])
def test_the_redactor_blanks_secret_values_only(text: str, shown: str) -> None:
    from chalicelib.logsetup import redact

    assert redact(text) == shown
    assert redact(shown) == shown


def test_a_lambda_at_debug_level_logs_no_wire() -> None:
    """A Lambda asked for DEBUG (``AWS_LAMBDA_LOG_LEVEL``) still never runs botocore's wire log."""
    import logging

    from chalicelib import telemetry

    root, saved = logging.getLogger(), logging.getLogger().level
    botocore = logging.getLogger("botocore")
    try:
        root.setLevel(logging.DEBUG)
        botocore.setLevel(logging.NOTSET)
        assert botocore.isEnabledFor(logging.DEBUG)
        telemetry.adopt_package_logs()
        assert not botocore.isEnabledFor(logging.DEBUG) and botocore.isEnabledFor(logging.INFO)
        assert not logging.getLogger("botocore.parsers").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved)
        botocore.setLevel(logging.NOTSET)

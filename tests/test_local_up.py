"""`logarchive local up`: a whole stage on one machine, the retrieval API included.

The end-to-end test is the issue's "done when": local up with the API, ship, archive, then the
same files through `--api-url` as through `--bucket`, and a `POST /retrievals` with a grep
answering exactly the matching lines of its window.
"""

from __future__ import annotations

import gzip
import json
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from localup import ROOT, clean_env, cli, local_up

from chalicelib.devkit import local_aws, local_stack
from chalicelib.devkit.fakedocker import FakeDockerRoot

STACK = "prod"
APP = "101"
T0 = int(datetime(2022, 1, 1, 12, 0, tzinfo=UTC).timestamp()) * 1_000_000_000


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _fake_host(root: Path) -> FakeDockerRoot:
    """Two stopped containers of app 101 (one rotated twice) and a database, one line a second from 12:00Z."""
    fake = FakeDockerRoot(root)
    web = fake.add("web-1", labels={"logarchive.app_id": APP, "logarchive.service_id": "7"},
                   max_size=6000, max_file=5)
    for i in range(240):
        stream = "stderr" if i % 7 == 3 else "stdout"
        text = f"upstream timeout #{i}" if stream == "stderr" and i % 2 else f"request {i} ok"
        web.log(text, stream, ns=T0 + i * 1_000_000_000)
    web.stop()
    job = fake.add("job-1", labels={"logarchive.app_id": APP, "logarchive.service_id": "8"})
    for i in range(0, 240, 10):
        job.log(f"job timeout {i}", "stderr", ns=T0 + i * 1_000_000_000 + 500)
    job.stop()
    db = fake.add("pg-1", labels={"logarchive.database_id": "202"})
    db.log("timeout of another resource", "stderr", ns=T0 + 90 * 1_000_000_000)
    db.stop()
    return fake


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ship_and_archive(tmp_path: Path, key_file: Path, env: dict[str, str]) -> str:
    """One shipper pass over ``tmp_path/docker`` into the stack's staging, then one archive pass:
    the archive pass's output."""
    cli("ship", "--docker-root", str(tmp_path / "docker"), "--staging", f"s3://{STACK}-logarchive-staging/staged",
        "--stack", STACK, "--host", "h1", "--state", str(tmp_path / "ship.db"), "--once", "--settle", "0", env=env)
    return cli("archive", "--once", "--staging", f"s3://{STACK}-logarchive-staging/staged",
               "--archive-bucket", f"{STACK}-logarchive-archive", "--replicate-to", f"{STACK}-customer-logs",
               "--stack", STACK, "--key-file", str(key_file), env=env).stdout


def test_local_up_api_answers_what_the_bucket_holds(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    cli("keys", "generate", "--output", str(key_file), env=clean_env())
    port, api_port = local_aws.free_port(), local_aws.free_port()
    lambda_log = tmp_path / "lambda.log"
    with local_up("--port", str(port), "--stack", STACK, "--api-port", str(api_port),
                  "--key-file", str(key_file), "--lambda-log", str(lambda_log)) as up:
        assert up.api_url == f"http://127.0.0.1:{api_port}"
        assert f"Lambda logs (Powertools JSON) go to {lambda_log}" in up.banner
        env = up.env()
        fake = _fake_host(tmp_path / "docker")
        out = _ship_and_archive(tmp_path, key_file, env)
        archived = [x for x in out.splitlines() if x.startswith("archived ")]
        some_key = archived[0].split(f"s3://{STACK}-logarchive-archive/", 1)[1]
        head = _s3(up.endpoint).head_object(Bucket=f"{STACK}-customer-logs", Key=some_key)
        assert head["Metadata"]["logarchive-content"] == "gzip, then S3EC v2 AES-GCM"
        app_archives = [x for x in archived if f"/apps-{APP}/" in x]
        assert len(app_archives) >= 3, out
        local_stack.wait_indexed(
            up.api_url, f"app_id={APP}&start=2022-01-01T00:00:00Z&end=2022-01-02T00:00:00Z", len(app_archives))

        common = ["--stack", STACK, "--app-id", APP, "--decryption-keys-file", str(key_file)]
        cli("logs-from-archive", "--bucket", f"{STACK}-customer-logs", *common,
            "--download-location", str(tmp_path / "by-bucket"), env=env)
        cli("logs-from-archive", "--api-url", up.api_url, *common, "--start-date", "2022-01-01",
            "--end-date", "2022-01-01", "--download-location", str(tmp_path / "by-api"), env=env)
        by_bucket, by_api = _tree(tmp_path / "by-bucket"), _tree(tmp_path / "by-api")
        assert by_bucket and by_api == by_bucket
        restored = b"".join(gzip.decompress(by_bucket[k]) for k in sorted(by_bucket))
        app_lines = [x for c in fake.containers if c.labels.get("logarchive.app_id") == APP
                     for x in bytes(c.written).splitlines()]
        assert sorted(restored.splitlines()) == sorted(app_lines)

        question = {"app_id": APP, "start": "2022-01-01T12:01:00Z", "end": "2022-01-01T12:03:00Z",
                    "stream": "stderr", "grep": "timeout"}
        status, lines = local_stack.ask_over_http(up.api_url, question)
        assert status["status"] == "succeeded", status
        lo, hi = T0 + 60 * 10**9, T0 + 180 * 10**9

        def wanted(raw: bytes) -> bool:
            obj = json.loads(raw)
            t = datetime.fromisoformat(obj["time"][:26] + "+00:00")  # microseconds: ample here
            ns = int(t.timestamp()) * 10**9 + int(obj["time"][20:29])
            return obj["stream"] == "stderr" and "timeout" in obj["log"] and lo <= ns < hi

        expected = [x for x in app_lines if wanted(x)]
        assert len(expected) > 10
        assert sorted(lines) == sorted(expected)

        _hang_up_mid_answer(api_port)
        up.proc.send_signal(signal.SIGTERM)
        out, err = up.proc.communicate(timeout=60)
    # local up printed only its own lines; the Lambdas' (the indexer's JSON) went to the file it named.
    assert out.splitlines() == ["stopping"], out[-2000:]
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]
    logged = [json.loads(x) for x in lambda_log.read_text().splitlines()]
    assert any(x["message"].startswith("indexed ") and x["function_name"] == "index_archive" for x in logged)


def _hang_up_mid_answer(api_port: int) -> None:
    """A client that asks and leaves at once (a reset, not a polite close): the server's write fails."""
    c = socket.create_connection(("127.0.0.1", api_port), timeout=30)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sendall(f"GET /archives?app_id={APP}&start=2022-01-01T00:00:00Z&end=2022-01-02T00:00:00Z HTTP/1.1\r\n"
              "Host: x\r\n\r\n".encode())
    c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_local_up_serves_versioned_stack_buckets_and_its_moto_child_ends_with_it(sig) -> None:
    port = local_aws.free_port()
    with local_up("--port", str(port), "--stack", "acme") as up:
        assert up.banner[0] == f"local AWS up at http://127.0.0.1:{port}"
        assert any("acme-logarchive-index" in x for x in up.banner)
        s3 = _s3(up.endpoint)
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert set(local_aws.StackBuckets.for_stack("acme").all()) <= names
        for name in names:
            assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
        up.proc.send_signal(sig)
        out, _ = up.proc.communicate(timeout=60)
        if sig != signal.SIGKILL:
            assert up.proc.returncode == 0
            assert "stopping" in out
        while True:  # the moto child goes with it (on SIGKILL, through the kernel's parent-death signal)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except OSError:
                break
            time.sleep(0.1)


def test_local_up_refuses_a_port_that_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "chalicelib.cli", "local", "up", "--port", str(port)],
                              capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == (f"logarchive: error: port {port} on 127.0.0.1 is taken "
                                   "(Address already in use)")


def test_local_up_api_port_needs_key_file() -> None:
    proc = subprocess.run([sys.executable, "-m", "chalicelib.cli", "local", "up", "--api-port", "5999"],
                          capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "--key-file" in proc.stderr


def test_local_up_help_states_options_defaults_and_names() -> None:
    out = subprocess.run([sys.executable, "-m", "chalicelib.cli", "local", "up", "--help"], capture_output=True,
                         text=True, env=clean_env(), cwd=ROOT, check=True).stdout
    out = " ".join(out.split())  # argparse wraps the help text
    for text in ("--port P", "(default: 5000)", "--stack S", "(default: demo)", "--api-port Q", "--key-file K",
                 "S-logarchive-staging", "S-logarchive-archive", "S-customer-logs", "S-logarchive-index",
                 "S-logarchive-jobs", "S-logarchive-retrieval", "IAM authorization is NOT enforced"):
        assert text in out


def test_local_up_iam_enforces_the_generated_policies(tmp_path: Path) -> None:
    """``--iam``: the throwaway keys stop working; the printed administrator's keys work; the
    indexer and the API answer under their own roles (the index fills as archives land)."""
    key_file = tmp_path / "master.key"
    cli("keys", "generate", "--output", str(key_file), env=clean_env())
    port, api_port = local_aws.free_port(), local_aws.free_port()
    with local_up("--port", str(port), "--stack", STACK, "--api-port", str(api_port),
                  "--key-file", str(key_file), "--iam") as up:
        assert "IAM enforced: each function runs under a role of its generated policy" in up.banner
        export = next(x for x in up.banner if x.strip().startswith("export "))
        admin = dict(kv.split("=", 1) for kv in export.split()[1:])
        assert admin["AWS_ACCESS_KEY_ID"] != "testing"
        with pytest.raises(ClientError, match="InvalidAccessKeyId"):
            _s3(up.endpoint).list_buckets()
        env = {**clean_env(), **admin}
        _fake_host(tmp_path / "docker")
        out = _ship_and_archive(tmp_path, key_file, env)
        app_archives = [x for x in out.splitlines() if x.startswith("archived ") and f"/apps-{APP}/" in x]
        assert app_archives
        local_stack.wait_indexed(
            up.api_url, f"app_id={APP}&start=2022-01-01T00:00:00Z&end=2022-01-02T00:00:00Z", len(app_archives))

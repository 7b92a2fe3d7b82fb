"""Archives whose gzip stream is several members (one per ``codec.MEMBER_BYTES`` of plaintext).

Every reader docs/FORMAT.md names must give back the plaintext byte-exact: ``gzip -d``,
``zcat``, Python's ``gzip``, our ``unseal`` / ``logs-from-archive``, AWS's S3 Encryption Client
for Python (test_format_interop.py's client; KMS) and Ruby's ``aws-sdk-s3`` EncryptionV2
client + ``Zlib::GzipReader.zcat``. Ruby's ``Zlib::GzipReader#read`` is shown stopping after
the first member: the trap FORMAT.md warns of.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import shutil
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from archiver_support import archiver_env, deliver, lambda_client, run_scheduler, stage
from retrieval_helpers import STACK, archive_key, leftovers, run_cli, t, upload_sealed
from test_format_interop import kms_key, official_client  # noqa: F401 (kms_key: a fixture)

from chalicelib import codec
from chalicelib.archiver.metadata import archive_metadata
from chalicelib.envelope import Envelope
from chalicelib.errors import LogarchiveError
from chalicelib.keyring import KEYS_ENV, Keyring, MasterKey
from chalicelib.settings import Settings

VECTORS = Path(__file__).parent / "vectors"
VECTOR = json.loads((VECTORS / "vector.json").read_text())
M = codec.MEMBER_BYTES


def json_lines(size: int, seed: int = 3) -> bytes:
    """Docker json-file lines, about ``size`` bytes, times one a millisecond, varied content."""
    rnd = random.Random(seed)
    start = t("2022-12-01T00:00:00")
    out, n, i = [], 0, 0
    while n < size:
        ts = (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        line = (f'{{"log":"GET /api/v1/orders/{rnd.randrange(10**6)} {rnd.choice((200, 200, 404, 500))} '
                f'{rnd.random():.4f}s req={rnd.getrandbits(48):012x}\\n","stream":"stdout","time":"{ts}123Z"}}\n')
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out).encode()


DATA = json_lines(2 * M + M // 2)  # three members


def members(gz: bytes) -> list[bytes]:
    """The plaintext of each gzip member, in order (an independent reading of RFC 1952)."""
    out = []
    while gz:
        d = zlib.decompressobj(31)
        out.append(d.decompress(gz))
        assert d.eof, "truncated member"
        gz = d.unused_data
    return out


def sealed(data: bytes, ring: Keyring, **kw) -> tuple[bytes, codec.SealResult]:
    out = io.BytesIO()
    result = codec.seal(io.BytesIO(data), out, ring, **kw)
    return out.getvalue(), result


def decrypted_gzip(body: bytes, env: Envelope, ring: Keyring) -> bytes:
    out = io.BytesIO()
    codec.unseal(io.BytesIO(body), out, env, ring, name="x")
    return out.getvalue()


# -- what seal writes --------------------------------------------------------------------------
@pytest.mark.parametrize("compression", list(codec.PRESETS))
@pytest.mark.parametrize("threads", [1, 3])
def test_seal_writes_one_member_per_member_bytes_in_order(compression: str, threads: int) -> None:
    ring = Keyring([MasterKey.generate()])
    body, result = sealed(DATA, ring, compression=compression, threads=threads)
    gz = decrypted_gzip(body, result.envelope, ring)
    assert result.compression == compression and result.gzip_bytes == len(gz)
    assert members(gz) == [DATA[:M], DATA[M:2 * M], DATA[2 * M:]]
    assert gzip.decompress(gz) == DATA
    out = io.BytesIO()
    codec.unseal(io.BytesIO(body), out, result.envelope, ring, name="x", decompress=True)
    assert out.getvalue() == DATA


def test_threads_do_not_change_the_bytes() -> None:
    """Members are independent and written in order: the gzip stream is the same for any thread count."""
    ring = Keyring([MasterKey.generate()])
    streams = set()
    for threads in (1, 2, 4):
        body, result = sealed(DATA, ring, threads=threads)
        streams.add(decrypted_gzip(body, result.envelope, ring))
    assert len(streams) == 1


def test_empty_input_is_one_valid_empty_member() -> None:
    ring = Keyring([MasterKey.generate()])
    body, result = sealed(b"", ring)
    assert gzip.decompress(decrypted_gzip(body, result.envelope, ring)) == b""


def test_default_preset_never_loses_to_gzip6_on_a_word_salad() -> None:
    """libdeflate 6 alone makes a dozen-word salad ~8% larger than zlib 6; the probe avoids it."""
    rnd = random.Random(5)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    salad = "".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 20))) + "\n"
                    for _ in range(40000)).encode()
    ring = Keyring([MasterKey.generate()])
    _, result = sealed(salad, ring, threads=1)
    baseline = len(gzip.compress(salad, 6))
    assert len(deflate_only := codec._libdeflate6(salad)) > 1.02 * baseline, len(deflate_only) / baseline
    assert result.gzip_bytes <= 1.02 * baseline, result.gzip_bytes / baseline


def test_unknown_preset_is_one_line() -> None:
    with pytest.raises(LogarchiveError, match="compression 'tiny' is not one of fast, default, small"):
        codec.preset("tiny")


def test_stage_setting_and_metadata(monkeypatch) -> None:
    monkeypatch.setenv("LOGARCHIVE_COMPRESSION", "small")
    assert Settings.from_env().compression == "small"
    monkeypatch.delenv("LOGARCHIVE_COMPRESSION")
    assert Settings.from_env().compression == "default"
    monkeypatch.setenv("LOGARCHIVE_COMPRESSION", "zstd")
    with pytest.raises(LogarchiveError) as err:
        Settings.from_env()
    assert str(err.value).startswith("$LOGARCHIVE_COMPRESSION: compression 'zstd'") and "\n" not in str(err.value)
    _, result = sealed(b"x\n", Keyring([MasterKey.generate()]), compression="fast")
    meta = archive_metadata(result, key_id="k", first=t("2022-12-01T00:00:00"), last=t("2022-12-01T00:00:01"), lines=1)
    assert meta["logarchive-compression"] == "fast"


# -- readers -----------------------------------------------------------------------------------
def _system_readers(path: Path) -> dict[str, bytes]:
    out = {}
    for name, argv in (("gzip -d", ["gzip", "-dc", str(path)]), ("zcat", ["zcat", str(path)])):
        if shutil.which(argv[0]) is None:
            pytest.skip(f"{argv[0]} not installed")
        out[name] = subprocess.run(argv, capture_output=True, check=True).stdout
    out["python gzip"] = gzip.decompress(path.read_bytes())
    with gzip.open(path, "rb") as fh:  # streaming, as GzipFile reads
        out["python GzipFile"] = fh.read()
    return out


def test_vector_reads_back_through_every_local_reader(tmp_path) -> None:
    plaintext = (VECTORS / "plaintext.log").read_bytes()
    gz_path = VECTORS / VECTOR["multi_member"]["gzip_file"]
    assert len(members(gz_path.read_bytes())) == 3
    for name, got in _system_readers(gz_path).items():
        assert got == plaintext, name
    env = Envelope.from_instruction((VECTORS / "multimember.bin.instruction").read_bytes(), name="multimember.bin")
    ring = Keyring([MasterKey(base64.b64decode(VECTOR["master_key_base64"]))])
    out = io.BytesIO()
    codec.unseal(io.BytesIO((VECTORS / "multimember.bin").read_bytes()), out, env, ring, name="multimember.bin",
                 decompress=True)
    assert out.getvalue() == plaintext


def test_sealed_archive_reads_back_through_every_local_reader(tmp_path) -> None:
    ring = Keyring([MasterKey.generate()])
    body, result = sealed(DATA, ring, threads=2)
    path = tmp_path / "archive.gz"
    path.write_bytes(decrypted_gzip(body, result.envelope, ring))
    for name, got in _system_readers(path).items():
        assert got == DATA, name


@pytest.fixture
def keyfile(tmp_path, monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    key = MasterKey.generate()
    path = tmp_path / "keys"
    path.write_text(key.to_base64() + "\n")
    return path, key


@pytest.mark.parametrize("compression", list(codec.PRESETS))
def test_cli_seal_presets_unseal_and_logs_from_archive(keyfile, buckets, capsys, tmp_path, compression) -> None:
    path, key = keyfile
    (tmp_path / "in.log").write_bytes(DATA)
    rc, _, err = run_cli(["seal", "--compression", compression, "--jobs", "2", "--key-file", str(path),
                          str(tmp_path / "in.log"), str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert f"compression {compression}" in err
    rc, _, err = run_cli(["unseal", "--decompress", "--key-file", str(path), str(tmp_path / "out"),
                          str(tmp_path / "back.log")], capsys)
    assert rc == 0 and (tmp_path / "back.log").read_bytes() == DATA, err
    akey = archive_key("apps", "90", "9a" * 32, t("2022-12-01T00:00:00"), t("2022-12-01T01:00:00"), key.key_id)
    upload_sealed(buckets.customer, akey, str(tmp_path / "out"))
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "90",
                            "--decompress", "--download-location", str(tmp_path / "dl"),
                            "--decryption-keys-file", str(path)], capsys)
    assert rc == 0, err
    assert open(out.strip(), "rb").read() == DATA
    assert leftovers(str(tmp_path)) == []


def test_cli_rejects_bad_presets_and_threads(keyfile, capsys, tmp_path) -> None:
    path, _ = keyfile
    (tmp_path / "in.log").write_bytes(b"x\n")
    for extra in (["--compression", "zstd"], ["--jobs", "0"]):
        rc, _, _ = run_cli(["seal", *extra, "--key-file", str(path), str(tmp_path / "in.log"), str(tmp_path / "out")],
                           capsys)
        assert rc == 2  # cli.main returns argparse's usage status
        assert not (tmp_path / "out").exists()


def test_official_python_client_reads_a_multi_member_archive(buckets, kms_key) -> None:  # noqa: F811
    ring = Keyring(kms_key_id=kms_key)
    body, result = sealed(DATA, ring, threads=2)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="multi.gz", Body=body, Metadata=result.envelope.to_fields())
    got = official_client(kms_key).get_object(Bucket=buckets.archive, Key="multi.gz")["Body"].read()
    assert len(members(got)) == 3
    assert gzip.decompress(got) == DATA
    assert subprocess.run(["gzip", "-dc"], input=got, capture_output=True, check=True).stdout == DATA


RUBY = r"""
require "aws-sdk-s3"
require "zlib"
require "stringio"
bucket, key, out_all, out_first = ARGV
client = Aws::S3::EncryptionV2::Client.new(
  client: Aws::S3::Client.new(endpoint: ENV["AWS_ENDPOINT_URL"], force_path_style: true, region: "us-east-1"),
  encryption_key: ENV["RAW_KEY_B64"].unpack1("m"),
  key_wrap_schema: :aes_gcm,
  content_encryption_schema: :aes_gcm_no_padding,
  security_profile: :v2)
gz = client.get_object(bucket: bucket, key: key).body.read
File.binwrite(out_all, Zlib::GzipReader.zcat(StringIO.new(gz)))
File.binwrite(out_first, Zlib::GzipReader.new(StringIO.new(gz)).read)
"""


def test_ruby_aws_sdk_s3_reads_a_multi_member_archive(buckets, tmp_path, monkeypatch) -> None:
    if shutil.which("ruby") is None or subprocess.run(["ruby", "-e", 'require "aws-sdk-s3"'],
                                                      capture_output=True).returncode:
        pytest.skip("ruby with aws-sdk-s3 not installed (Debian: apt-get install ruby-aws-sdk-s3)")
    key = MasterKey.generate()
    body, result = sealed(DATA, Keyring([key]), threads=2)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=buckets.archive, Key="multi.gz", Body=body, Metadata=result.envelope.to_fields())
    (tmp_path / "read.rb").write_text(RUBY)
    monkeypatch.setenv("RAW_KEY_B64", key.to_base64())  # the child's environment, never its argv
    proc = subprocess.run(["ruby", str(tmp_path / "read.rb"), buckets.archive, "multi.gz",
                           str(tmp_path / "all"), str(tmp_path / "first")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "all").read_bytes() == DATA  # Zlib::GzipReader.zcat: every member
    assert (tmp_path / "first").read_bytes() == DATA[:M]  # Zlib::GzipReader#read: the first member only


def test_worker_lambda_records_the_stage_preset(buckets, tmp_path, monkeypatch) -> None:
    env = archiver_env(monkeypatch, buckets)
    monkeypatch.setenv("LOGARCHIVE_COMPRESSION", "small")
    client = lambda_client(tmp_path)
    s3 = boto3.client("s3")
    stage(s3, buckets.staging, "big-json.log", DATA, segment=1)
    run_scheduler(client)
    assert deliver(client, env["queue_url"]) == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.archive, Prefix="teststack/")["Contents"]]
    assert len(keys) == 1
    got = s3.get_object(Bucket=buckets.archive, Key=keys[0])
    assert got["Metadata"]["logarchive-compression"] == "small"
    gz = decrypted_gzip(got["Body"].read(), Envelope.from_fields(got["Metadata"], name=keys[0]), env["keyring"])
    assert members(gz) == [DATA[:M], DATA[M:2 * M], DATA[2 * M:]]


def test_seal_starts_without_loading_boto3() -> None:
    """``logarchive seal`` registers only its own command module: no boto3 at start-up (~0.3 s)."""
    code = ("import sys; from chalicelib import cli; cli.build_parser(['seal', '--help']); "
            "print('boto3' in sys.modules, 'chalicelib.commands.archive' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    code = ("import sys; from chalicelib import cli; p = cli.build_parser(['--help']); "
            "print('chalicelib.commands.archive' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["True"]


def test_archive_command_compression_option_overrides_the_stage_setting(buckets, tmp_path, monkeypatch, capsys) -> None:
    from archiver_support import STAGING_PREFIX

    from chalicelib import cli

    env = archiver_env(monkeypatch, buckets)
    monkeypatch.delenv("LOGARCHIVE_KEYS")
    monkeypatch.setenv("LOGARCHIVE_COMPRESSION", "small")
    key_file = tmp_path / "keys"
    key_file.write_text(env["key"].to_base64() + "\n")
    s3 = boto3.client("s3")
    cut = DATA.rfind(b"\n", 0, M // 2) + 1  # two segments of whole lines
    stage(s3, buckets.staging, "a-json.log", DATA[:cut], segment=1)
    argv = ["archive", "--once", "--staging", f"s3://{buckets.staging}/{STAGING_PREFIX}",
            "--archive-bucket", buckets.archive, "--key-file", str(key_file), "--stack", "teststack"]
    assert cli.main([*argv, "--compression", "fast"]) == 0, capsys.readouterr()
    stage(s3, buckets.staging, "b-json.log", DATA[cut:M], segment=2)
    assert cli.main(argv) == 0, capsys.readouterr()  # no option: the stage setting
    heads = {o["Key"]: s3.head_object(Bucket=buckets.archive, Key=o["Key"])["Metadata"]
             for o in s3.list_objects_v2(Bucket=buckets.archive, Prefix="teststack/")["Contents"]}
    assert sorted((m["logarchive-segment"], m["logarchive-compression"]) for m in heads.values()) == [
        ("1", "fast"), ("2", "small")]

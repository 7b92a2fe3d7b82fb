"""Bad input: every failing object gets one line naming it and the cause, the others still
land, the exit status is 1, and no partial file is left behind."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import boto3
import pytest
from retrieval_helpers import (
    STACK,
    archive_key,
    docker_lines,
    files_under,
    leftovers,
    put_archive,
    put_legacy_cbc,
    run_cli,
    seal_bytes,
    t,
)

from chalicelib.keyring import Keyring, MasterKey

K1, K3, WRONG = MasterKey.generate(), MasterKey.generate(), MasterKey.generate()


def _key(i: int, key_id: str = "", app: str = "60") -> str:
    s, e = t(f"2022-10-01T{i:02d}:00:00"), t(f"2022-10-01T{i:02d}:30:00")
    return archive_key("apps", app, f"{i:02x}" * 32, s, e, key_id or K1.key_id)


class Bad:
    """Good and bad objects side by side under app 60."""

    def __init__(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        r1 = Keyring([K1])
        self.good: dict[str, bytes] = {}
        self.bad: dict[str, str] = {}  # key -> expected cause (substring of its one line)

        def good(i, **kw):
            key = _key(i)
            self.good[key] = docker_lines(t(f"2022-10-01T{i:02d}:00:00"), t(f"2022-10-01T{i:02d}:30:00"))
            put_archive(s3, bucket, key, self.good[key], r1, **kw)

        def raw(i, body, metadata, key_id=""):
            key = _key(i, key_id)
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
            return key

        data = docker_lines(t("2022-10-01T00:00:00"), t("2022-10-01T00:30:00"))
        body, env = seal_bytes(data, r1)
        fields = env.to_fields()

        good(1)
        good(2)
        good(3, instruction=True)
        # Wrong key: the path names K1, but the data key was wrapped with another key.
        wbody, wenv = seal_bytes(data, Keyring([WRONG]))
        self.bad[raw(4, wbody, wenv.to_fields())] = f"the key with id {K1.key_id} does not unwrap"
        # Missing key: sealed under K3, which is not given.
        mbody, menv = seal_bytes(data, Keyring([K3]))
        self.bad[raw(5, mbody, menv.to_fields(), key_id=K3.key_id)] = f"needs the key with id {K3.key_id}"
        tampered = bytearray(body)
        tampered[len(body) // 2] ^= 0x01
        self.bad[raw(6, bytes(tampered), fields)] = "authentication failed"
        self.bad[raw(7, body[:-5], fields)] = "authentication failed"
        self.bad[raw(8, body[:10], fields)] = "ciphertext is truncated"
        self.bad[raw(9, body, {k: v for k, v in fields.items() if k != "x-amz-iv"})] = "envelope lacks x-amz-iv"
        self.bad[raw(10, body, {**fields, "x-amz-key-v2": "!!not-base64!!"})] = "x-amz-key-v2 is not valid base64"
        self.bad[raw(11, body, {**fields, "x-amz-iv": "AAAA"})] = "x-amz-iv must be 12 bytes"
        self.bad[raw(12, body, {**fields, "x-amz-tag-len": "96"})] = "tag length 96 bits"
        self.bad[raw(13, body, {k: v for k, v in fields.items() if k != "x-amz-cek-alg"})] = "lacks x-amz-cek-alg"
        self.bad[raw(14, body, {})] = "no encryption envelope"
        self.bad[raw(15, body, {**fields, "x-amz-unencrypted-content-length": "7"})] = "envelope says 7"
        k16 = raw(16, body, {"x-amz-crypto-instr-file": ""})
        s3.put_object(Bucket=bucket, Key=k16 + ".instruction", Body=b"{not json")
        self.bad[k16] = "instruction file is not JSON"
        self.legacy = _key(17)
        self.legacy_data = docker_lines(t("2022-10-01T17:00:00"), t("2022-10-01T17:30:00"), tag="cbc ")
        put_legacy_cbc(s3, bucket, self.legacy, self.legacy_data, K1)
        # Foreign objects inside the selected prefix: warned about and skipped, not failures.
        s3.put_object(Bucket=bucket, Key=f"{STACK}/shareable/v3/{K1.key_id}/apps-60/service-7/x.gz", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"{STACK}/shareable/v3/{K1.key_id}/apps-60/junk", Body=b"x")

    def argv(self, dest: str, *extra: str) -> list[str]:
        return ["logs-from-archive", "--bucket", self.bucket, "--stack", STACK, "--app-id", "60",
                "--download-location", dest, "--decryption-keys", K1.to_base64(), *extra]


@pytest.fixture
def bad(buckets) -> Bad:
    return Bad(boto3.client("s3"), buckets.customer)


def rel(key: str) -> str:
    return "/".join(key.split("/")[4:])


def assert_one_line_each(err: str, expected: dict[str, str]) -> None:
    lines = [x for x in err.splitlines() if x.startswith("logarchive: error:")]
    assert len(lines) == len(expected), err
    for key, cause in expected.items():
        mine = [x for x in lines if key in x]
        assert len(mine) == 1, (key, err)
        assert cause in mine[0], (cause, mine[0])


@pytest.mark.parametrize("mode", [[], ["--decompress"], ["--format", "jsonl"], ["--stream", "stdout"]],
                         ids=["gzip", "decompress", "jsonl", "filtered-gzip"])
def test_each_bad_object_one_line_others_land(bad, capsys, tmp_path, mode) -> None:
    dest = tmp_path / "dl"
    rc, out, err = run_cli(bad.argv(str(dest), *mode), capsys)
    assert rc == 1
    expected = dict(bad.bad)
    expected[bad.legacy] = "legacy AES/CBC object (x-amz-key, no authentication tag); re-run with --allow-legacy-cbc"
    assert_one_line_each(err, expected)
    plain = bool(mode) and mode[0] != "--stream"
    name = (lambda r: r[: -len(".gz")] + ".jsonl") if plain else (lambda r: r)
    assert files_under(dest) == sorted(name(rel(k)) for k in bad.good)
    for key, data in bad.good.items():
        got = (dest / name(rel(key))).read_bytes()
        got = got if plain else gzip.decompress(got)
        if mode and mode[0] == "--stream":
            data = b"".join(x for x in data.splitlines(keepends=True) if b'"stdout"' in x)
        assert got == data
    assert leftovers(str(tmp_path)) == []
    assert "Traceback" not in err and K1.to_base64() not in err + out


def test_authentic_content_that_is_not_gzip(buckets, capsys, tmp_path) -> None:
    """Another tool's object that verifies but is not gzip: one clear line and nothing
    written, in every mode (a ``.gz`` that is not gzip is no verified archive)."""
    import os as _os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from chalicelib.envelope import Envelope

    ring = Keyring([K1])
    wrapped, data_key = ring.wrap(_os.urandom(32))
    iv, plain = _os.urandom(12), b"plain text, not gzip\n"
    env = Envelope(wrap_alg=wrapped.wrap_alg, encrypted_key=wrapped.encrypted_key, iv=iv,
                   matdesc=wrapped.matdesc, unencrypted_length=len(plain))
    key = _key(1)
    boto3.client("s3").put_object(Bucket=buckets.customer, Key=key, Body=AESGCM(data_key).encrypt(iv, plain, None),
                                  Metadata=env.to_fields())
    argv = ["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "60",
            "--decryption-keys", K1.to_base64(), "--download-location"]
    rc, out, err = run_cli([*argv, str(tmp_path / "a")], capsys)
    assert rc == 1 and len(err.splitlines()) == 1 and f"{key}: " in err and "gzip" in err, err
    assert files_under(tmp_path / "a") == []
    rc, out, err = run_cli([*argv, str(tmp_path / "v"), "--verify-only"], capsys)
    assert rc == 1 and len(err.splitlines()) == 1 and "gzip" in err and "verified" not in out, out + err
    rc, out, err = run_cli([*argv, str(tmp_path / "b"), "--decompress"], capsys)
    assert rc == 1 and err.splitlines() == [f"logarchive: error: {key}: decrypted content is not valid gzip (BadGzipFile)"]
    assert files_under(tmp_path / "b") == [] and leftovers(str(tmp_path)) == []


def test_foreign_objects_are_warnings_not_failures(bad, capsys, caplog, tmp_path) -> None:
    import logging

    with caplog.at_level(logging.WARNING):
        rc, out, err = run_cli(bad.argv(str(tmp_path), "--verify-only"), capsys)
    assert "apps-60/service-7/x.gz" in caplog.text and "apps-60/junk" in caplog.text
    assert not any("x.gz" in x or "junk" in x for x in err.splitlines() if x.startswith("logarchive: error"))


def test_legacy_cbc_read_only_when_allowed(bad, capsys, tmp_path) -> None:
    rc, out, err = run_cli(bad.argv(str(tmp_path), "--allow-legacy-cbc", "--decompress"), capsys)
    assert rc == 1  # the other bad objects still fail
    assert bad.legacy not in err
    assert (tmp_path / (rel(bad.legacy)[: -len(".gz")] + ".jsonl")).read_bytes() == bad.legacy_data


def test_filters_never_release_unverified_lines(bad, capsys, tmp_path) -> None:
    # The tampered/truncated objects decrypt almost entirely before the tag check fails;
    # with line filters and stdout nothing of them may appear.
    rc, out, err = run_cli(bad.argv("-", "--format", "text", "--grep", "line"), capsys)
    assert rc == 1
    assert out.count("line 0 at") == len(bad.good)  # one first line per good object, none from bad ones
    assert_one_line_each(err, {**bad.bad, bad.legacy: "legacy AES/CBC"})


def test_unwritable_download_location(bad, capsys, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"a regular file where a directory should be")
    rc, out, err = run_cli(bad.argv(str(blocker / "dl")), capsys)
    assert rc == 1
    fails = [x for x in err.splitlines() if x.startswith("logarchive: error:")]
    assert len(fails) == len(bad.good) + len(bad.bad) + 1
    for key in bad.good:
        assert any(key in x and "cannot write" in x and "Not a directory" in x for x in fails)
    assert leftovers(str(tmp_path)) == []


def test_partly_unwritable_download_location(buckets, capsys, tmp_path) -> None:
    s3, ring = boto3.client("s3"), Keyring([K1])
    ok = _key(1, app="60")
    blocked = _key(2, app="61")
    for k in (ok, blocked):
        put_archive(s3, buckets.customer, k, b'{"log":"x\\n","stream":"stdout","time":"2022-10-01T01:00:00Z"}\n', ring)
    (tmp_path / "apps-61").write_bytes(b"in the way")
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK,
                            "--string-matches", "2022-10-01", "--download-location", str(tmp_path),
                            "--decryption-keys", K1.to_base64()], capsys)
    assert rc == 1
    assert err.splitlines() == [f"logarchive: error: {blocked}: cannot write {tmp_path / rel(blocked)}: Not a directory"]
    assert (tmp_path / rel(ok)).exists()
    assert leftovers(str(tmp_path)) == []


def test_real_process_no_traceback_no_key_bytes(bad, aws_endpoint, tmp_path) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "LOGARCHIVE_KEYS": K1.to_base64()}
    argv = bad.argv(str(tmp_path / "dl"))
    argv = argv[: argv.index("--decryption-keys")]  # the key comes from $LOGARCHIVE_KEYS
    proc = subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert K1.to_base64() not in proc.stderr + proc.stdout and K1.raw.hex() not in proc.stderr
    assert_one_line_each(proc.stderr, {**bad.bad, bad.legacy: "legacy AES/CBC"})
    assert len(proc.stdout.splitlines()) == len(bad.good)
    assert leftovers(str(tmp_path)) == []


def test_connection_lost_mid_body_then_rerun(buckets, tmp_path) -> None:
    """Fault injection on a real client (botocore event hooks): one object's body breaks off
    halfway. It fails with one line and leaves nothing; the others land; a re-run fetches it
    and rewrites the rest atomically with the same bytes."""
    from botocore.exceptions import ReadTimeoutError

    from chalicelib.download import retrieval

    s3, ring = boto3.client("s3"), Keyring([K1])
    data = {}
    for i in range(6):
        key = _key(i, app="62")
        data[key] = docker_lines(t(f"2022-10-01T{i:02d}:00:00"), t(f"2022-10-01T{i:02d}:30:00"), n=2000)
        put_archive(s3, buckets.customer, key, data[key], ring)
    victim = _key(3, app="62")

    class Broken:
        def __init__(self, body) -> None:
            self.body = body

        def iter_chunks(self, size):
            raw = self.body.read()
            yield raw[: len(raw) // 2]
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1")

        def close(self) -> None:
            self.body.close()

    faulty = boto3.client("s3")

    def mark(params, context, **_):
        context["break"] = params.get("Key") == victim

    def breaks(parsed, context, **_):
        if context.get("break") and "Body" in parsed:
            parsed["Body"] = Broken(parsed["Body"])

    faulty.meta.events.register("before-parameter-build.s3.GetObject", mark)
    faulty.meta.events.register("after-call.s3.GetObject", breaks)

    sel = retrieval.Selection(STACK, kind="apps", resource_id="62")
    matches = retrieval.find_archives(faulty, buckets.customer, sel)
    opts = retrieval.OutputOptions(decompress=True)
    outcomes = retrieval.download_all(retrieval.Retriever(faulty, buckets.customer, ring, opts), matches,
                                      str(tmp_path), jobs=4)
    failed = [o for o in outcomes if not o.ok]
    assert [(o.key, o.error) for o in failed] == [(victim, f"{victim}: download failed (ReadTimeoutError)")]
    landed = files_under(tmp_path)
    assert len(landed) == 5 and leftovers(str(tmp_path)) == []
    assert not (tmp_path / (rel(victim)[:-3] + ".jsonl")).exists()

    outcomes = retrieval.download_all(retrieval.Retriever(s3, buckets.customer, ring, opts), matches,
                                      str(tmp_path), jobs=4)
    assert all(o.ok for o in outcomes)
    assert len(files_under(tmp_path)) == 6 and leftovers(str(tmp_path)) == []
    for key, raw in data.items():
        assert (tmp_path / (rel(key)[:-3] + ".jsonl")).read_bytes() == raw

"""Signed, chained digests on the local AWS: the scheduler Lambda seals under its lease, two
``archive --once --signing-key-file`` runs extend one chain, racing sealers never fork it, and
every entry describes the object S3 kept (checksums read back, not trusted from metadata)."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import replace

import boto3
import pytest
from archiver_support import (
    TABLE,
    Fault,
    archiver_env,
    create_idempotency_table,
    deliver,
    docker_lines,
    lambda_client,
    run_scheduler,
    stage,
)
from dockerfake import FakeDockerRoot, json_line
from emf import totals
from test_ship import lose_a_staged_segment, ship

from chalicelib import aws, cli
from chalicelib import digest as fmt
from chalicelib.archiver import sealing
from chalicelib.archiver.digest_table import DigestTable, chain_id
from chalicelib.archiver.lease import Leases
from chalicelib.archiver.messages import Job
from chalicelib.archiver.worker import Status, Worker
from chalicelib.digest import Ed25519Signer, load_public_key
from chalicelib.keyring import MasterKey
from chalicelib.settings import Settings


def digests_in(s3, bucket: str, stack: str = "teststack") -> list[fmt.SignedDigest]:
    """Every digest of ``stack`` in ``bucket``, parsed (not yet verified), in key order."""
    out = []
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=fmt.stack_digests_prefix(stack)).get("Contents", [])
    for obj in listing:
        got = s3.get_object(Bucket=bucket, Key=obj["Key"])
        out.append(fmt.from_object(got["Body"].read(), got["Metadata"], name=obj["Key"]))
    return out


def assert_chain(chain: list[fmt.SignedDigest], public_keys: list) -> None:
    for i, d in enumerate(chain):
        fmt.verify(d, public_keys)
        assert d.digest.sequence == i + 1
        if i:
            assert fmt.follows(d, chain[i - 1]) is None
        else:
            assert d.digest.previous_digest_key is None


def assert_entries_match_stored_objects(s3, bucket: str, entries) -> None:
    for e in entries:
        body = s3.get_object(Bucket=bucket, Key=e.key)["Body"].read()
        assert (e.stored_sha256, e.stored_size) == (hashlib.sha256(body).hexdigest(), len(body))
        held = s3.head_object(Bucket=bucket, Key=e.key, ChecksumMode="ENABLED").get("ChecksumSHA256")
        assert held and fmt.same_s3_checksum(e.s3_checksum_sha256, held)


def table(ddb=None) -> DigestTable:
    return DigestTable(ddb or boto3.client("dynamodb"), TABLE, "teststack")


def pending(s3=None, bucket: str = "") -> list[str]:
    """The ids of the stack's records not yet sealed (in the idempotency table, not the bucket)."""
    return [r.id for r in table().pending()]


# -- the Lambda path -------------------------------------------------------------------------


@pytest.fixture
def kms_signing(monkeypatch, buckets):
    env = archiver_env(monkeypatch, buckets)
    kms = boto3.client("kms")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("LOGARCHIVE_SIGNING_KMS_KEY_ID", key_id)
    public = load_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    return env, public


def test_scheduler_seals_what_workers_finished_under_its_lease(buckets, kms_signing, tmp_path):
    env, public = kms_signing
    client = lambda_client(tmp_path)
    s3 = boto3.client("s3")
    cid = "c" * 64
    good = [stage(s3, buckets.staging, f"seg{n}", docker_lines(40, seed=n), segment=n, cid=cid,
                  **{"logarchive-byte-start": str(1000 * n), "logarchive-byte-end": str(1000 * n + 999)})
            for n in (1, 2)]
    bad = stage(s3, buckets.staging, "bad", docker_lines(5, seed=9), segment=3, cid=cid,
                **{"logarchive-sha256": "0" * 64})
    first = run_scheduler(client)  # fans out; nothing finished yet: an empty first digest
    assert first["scheduled"] == 3 and first["digest"]["sequence"] == 1 and first["digest"]["archives"] == 0
    assert deliver(client, env["queue_url"]) == 3
    assert len(pending(s3, buckets.archive)) == 3  # two archives, one quarantined segment

    # Another run holds the seal lease: this run seals nothing and leaves the records alone.
    leases = Leases(boto3.client("dynamodb"), TABLE, 60)
    lease = sealing.seal_lease_id(buckets.archive, "teststack")
    assert leases.acquire_id(lease)
    held = run_scheduler(client)
    assert held["digest"]["lost_race"] and held["digest"]["key"] is None
    assert len(pending(s3, buckets.archive)) == 3
    leases.release_id(lease)

    second = run_scheduler(client)["digest"]
    assert (second["sequence"], second["archives"], second["events"]) == (2, 2, 1)
    assert pending(s3, buckets.archive) == []
    assert leases.acquire_id(lease)  # released after sealing
    chain = digests_in(s3, buckets.archive)
    assert_chain(chain, [public])
    assert chain[1].digest.signature_algorithm == fmt.ECDSA_SHA_256
    entries = chain[1].digest.archives
    assert sorted(e.source for e in entries) == sorted(g.key for g in good)
    for e in entries:
        seg = e.segment
        assert (e.container_id, e.byte_start, e.byte_end) == (cid, 1000 * seg, 1000 * seg + 999)
        assert e.raw_sha256 == hashlib.sha256(docker_lines(40, seed=seg)).hexdigest()
        assert e.key_id == env["key"].key_id and e.host == "host-1" and e.first_time < e.last_time
    assert_entries_match_stored_objects(s3, buckets.archive, entries)
    assert_entries_match_stored_objects(s3, buckets.customer, entries)
    (event,) = chain[1].digest.events
    assert (event.type, event.source, event.segment) == ("quarantined", bad.key, 3)
    assert "sha256 mismatch" in event.reason and event.location == "quarantine/" + bad.key
    # The customer's bucket holds the same digests, byte for byte (direct mode).
    copies = digests_in(s3, buckets.customer)
    assert [(c.key, c.body, c.signature) for c in copies] == [(d.key, d.body, d.signature) for d in chain]


def test_the_scheduler_refuses_a_chain_the_bucket_contradicts(buckets, kms_signing, tmp_path, capsys):
    """The newest digest deleted from the archive bucket: the scheduler Lambda seals nothing and
    counts DigestSealFailures, hour after hour, until it is back. (Its one log line is Powertools'
    logger's, bound to the stdout of import time; ``archive --once`` shows the same line on
    stderr: test_audit.py.)"""
    client = lambda_client(tmp_path)
    s3 = boto3.client("s3")
    assert run_scheduler(client)["digest"]["sequence"] == 1
    newest = run_scheduler(client)["digest"]["key"]
    held = s3.get_object(Bucket=buckets.archive, Key=newest)
    s3.delete_object(Bucket=buckets.archive, Key=newest)
    capsys.readouterr()
    for _ in range(2):
        assert run_scheduler(client)["digest"] is None
    out = capsys.readouterr().out
    assert totals(out)["DigestSealFailures"] == 2 and totals(out)["DigestsSealed"] == 0
    assert table().state().key == newest  # the chain did not move
    s3.put_object(Bucket=buckets.archive, Key=newest, Body=held["Body"].read(), Metadata=held["Metadata"])
    assert run_scheduler(client)["digest"]["sequence"] == 3


def test_racing_sealers_never_fork_the_chain(buckets):
    """B seals between A reading the chain state and A committing: A's commit is refused, A's
    digest is written nowhere."""
    create_idempotency_table()
    s3 = boto3.client("s3")
    signer = Ed25519Signer.from_pem(_pem())
    a_ddb = boto3.client("dynamodb")
    a = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=signer, table=table(a_ddb))
    b = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=signer, table=table())
    assert b.seal().sequence == 1
    raced = []

    def b_first(params, **_):
        if params.get("Item", {}).get("id", {}).get("S") == chain_id("teststack") and not raced:
            raced.append(b.seal())

    a_ddb.meta.events.register("before-parameter-build.dynamodb.PutItem", b_first)
    report = a.seal()
    assert raced[0].sequence == 2 and report.lost_race and report.key is None
    chain = digests_in(s3, buckets.archive)
    assert [d.digest.sequence for d in chain] == [1, 2]
    assert_chain(chain, [load_public_key(_public_pem())])
    assert s3.list_objects_v2(Bucket=buckets.archive, Prefix=sealing.STAGED_PREFIX).get("KeyCount") == 0
    # The next seal continues the one chain.
    assert a.seal().sequence == 3
    assert_chain(digests_in(s3, buckets.archive), [load_public_key(_public_pem())])


def archive_one(buckets, monkeypatch, tmp_path, segment: int = 1, *, seed: int = 0):
    """One staged segment archived by the worker with digests on: its record is in the table."""
    env = archiver_env(monkeypatch, buckets)
    signing = tmp_path / "signing.pem"
    signing.write_bytes(_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(signing))
    s3 = aws.client("s3")
    staged = stage(s3, buckets.staging, f"seg{segment}", docker_lines(10, seed=seed or segment), segment=segment,
                   cid="c" * 64)
    head = s3.head_object(Bucket=buckets.staging, Key=staged.key)
    worker = Worker(settings, settings.keyring())
    outcome = worker.archive(Job(bucket=buckets.staging, key=staged.key, etag=head["ETag"],
                                 size=head["ContentLength"]))
    assert outcome.status is Status.ARCHIVED
    return env, worker, outcome


def test_a_seal_that_crashed_after_its_commit_is_completed(buckets, monkeypatch, tmp_path):
    """The chain item moved, then the digest object's write and the records' marking were lost:
    the next seal writes the missing digest from its staged body and drops the records it already
    listed instead of listing them twice."""
    archive_one(buckets, monkeypatch, tmp_path)
    s3 = aws.client("s3")
    sealer = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=Ed25519Signer.from_pem(_pem()),
                            table=table())
    fault = Fault("s3", "PutObject", "crash", where=lambda p: p["Key"].startswith(fmt.DIGESTS_PREFIX)).install()
    try:
        with pytest.raises(BaseException, match="crash before PutObject"):
            sealer.seal()
    finally:
        fault.remove()
    assert digests_in(s3, buckets.archive) == [] and len(pending()) == 1
    assert table().state().sequence == 1  # committed before the crash
    report = sealer.seal()
    assert (report.sequence, report.archives, report.repeats_dropped) == (2, 0, 1)
    chain = digests_in(s3, buckets.archive)
    assert [len(d.digest.archives) for d in chain] == [1, 0]
    assert_chain(chain, [load_public_key(_public_pem())])
    assert pending() == []


def test_a_lost_commit_answer_is_not_blamed_on_another_sealer(buckets, monkeypatch, tmp_path):
    """The chain item's write lands but its answer is lost, and the retry fails its condition
    (the item moved: by this very write). The sealer reads the item back, finds its own digest
    there, and completes the seal (before: "another sealer extended the chain first")."""
    archive_one(buckets, monkeypatch, tmp_path)
    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    sealer = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=Ed25519Signer.from_pem(_pem()),
                            table=table(ddb))
    lost = []

    def answer_lost(http_response, parsed, model, **_):
        if not lost:
            lost.append(1)
            parsed.clear()
            parsed.update({"Error": {"Code": "ConditionalCheckFailedException", "Message": "retry"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}})
            http_response.status_code = 400

    ddb.meta.events.register("after-call.dynamodb.PutItem", answer_lost)
    try:
        report = sealer.seal()
    finally:
        ddb.meta.events.unregister("after-call.dynamodb.PutItem", answer_lost)
    assert lost and not report.lost_race and (report.sequence, report.archives) == (1, 1)
    (d,) = digests_in(s3, buckets.archive)
    assert table().state().key == d.key and pending() == []


def test_a_slow_workers_record_after_two_seals_is_not_listed_again(buckets, monkeypatch, tmp_path):
    """A duplicate delivery records the archive again after it was sealed, and after another,
    empty, seal: the record exists (sealed), so the late write adds nothing (before: the archive
    was listed in a second digest, the previous digest alone being checked for repeats)."""
    _, worker, outcome = archive_one(buckets, monkeypatch, tmp_path)
    s3 = aws.client("s3")
    sealer = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=Ed25519Signer.from_pem(_pem()),
                            table=table())
    assert sealer.seal().archives == 1
    assert sealer.seal().archives == 0
    (entry,) = digests_in(s3, buckets.archive)[0].digest.archives
    assert worker.digest_table("teststack").record_archive(entry, fmt.fmt_time(fmt.parse_time(entry.last_time))) \
        is False
    assert pending() == [] and sealer.seal().archives == 0
    listed = [a.key for d in digests_in(s3, buckets.archive) for a in d.digest.archives]
    assert listed == [outcome.archive_key]


# -- the command line ------------------------------------------------------------------------


def test_two_archive_once_runs_extend_one_chain(buckets, monkeypatch, tmp_path, capsys):
    env = archiver_env(monkeypatch, buckets)
    monkeypatch.delenv("LOGARCHIVE_KEYS")
    key_file = tmp_path / "keys"
    key_file.write_text(env["key"].to_base64() + "\n")
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    assert cli.main(["keys", "signing-generate", "--private-key-file", str(private),
                     "--public-key-file", str(public)]) == 0
    key_id = capsys.readouterr().out.strip()
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    pub = load_public_key(public.read_bytes())
    assert fmt.public_key_id(pub) == key_id
    assert cli.main(["keys", "signing-generate", "--private-key-file", str(private),
                     "--public-key-file", str(tmp_path / "other")]) == 1  # never overwritten
    assert "exists" in capsys.readouterr().err
    s3 = boto3.client("s3")
    argv = ["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/", "--archive-bucket",
            buckets.archive, "--replicate-to", buckets.customer, "--key-file", str(key_file), "--stack",
            "teststack", "--signing-key-file", str(private), "--table", TABLE]
    runs = []
    for run in (1, 2):
        for n in (1, 2):
            seg = 2 * (run - 1) + n
            stage(s3, buckets.staging, f"web{seg}", docker_lines(20, seed=seg), segment=seg, cid="d" * 64)
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "sealed digest" in out and "(2 archives, 0 explained events)" in out
        runs.append(out)
    assert str(private) not in "".join(runs)
    for bucket in (buckets.archive, buckets.customer):
        chain = digests_in(s3, bucket)
        assert [len(d.digest.archives) for d in chain] == [2, 2]
        assert_chain(chain, [pub])
        assert chain[0].digest.signing_key_id == key_id
        assert sorted(e.segment for d in chain for e in d.digest.archives) == [1, 2, 3, 4]
        assert_entries_match_stored_objects(s3, bucket, [e for d in chain for e in d.digest.archives])
    # Aptible's reader lists "<stack>" without a slash: the digests are not under it.
    listed = s3.list_objects_v2(Bucket=buckets.customer, Prefix="teststack")["Contents"]
    assert all(o["Key"].startswith("teststack/shareable/v3/") for o in listed)


def test_signing_key_problems_are_one_line(buckets, monkeypatch, tmp_path, capsys):
    env = archiver_env(monkeypatch, buckets)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    argv = ["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/", "--archive-bucket",
            buckets.archive, "--stack", "teststack", "--table", TABLE, "--signing-key-file"]
    for path, cause in ((bad, "not an unencrypted PEM private key"), (tmp_path / "none", "No such file")):
        assert cli.main([*argv, str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and cause in err[0] and str(path) in err[0]
    assert env  # the archive run itself never started: the key is checked first


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path) -> FakeDockerRoot:
    return FakeDockerRoot(tmp_path / "docker")


VECTORS = os.path.join(os.path.dirname(__file__), "vectors", "digest")


def _pem() -> bytes:
    with open(os.path.join(VECTORS, "ed25519-private.pem"), "rb") as fh:
        return fh.read()


def _public_pem() -> bytes:
    with open(os.path.join(VECTORS, "ed25519-public.pem"), "rb") as fh:
        return fh.read()


@pytest.fixture(autouse=True)
def _fresh_clients():
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_a_retry_records_the_object_s3_kept_not_its_own_seal(buckets, monkeypatch, tmp_path):
    """The first attempt stores a multipart archive, then fails; the retry's own seal (another
    data key and IV) differs from the kept object, so its record must come from reading it back."""
    env = archiver_env(monkeypatch, buckets)
    signing = tmp_path / "signing.pem"
    signing.write_bytes(_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(signing))
    s3 = aws.client("s3")
    staged = stage(s3, buckets.staging, "big", docker_lines(9000, seed=3, noisy=True), segment=1)
    head = s3.head_object(Bucket=buckets.staging, Key=staged.key)
    job = Job(bucket=buckets.staging, key=staged.key, etag=head["ETag"], size=head["ContentLength"])
    worker = Worker(settings, env["keyring"])
    fault = Fault("s3", "PutObject", "5xx", where=lambda p: p["Key"].startswith("archived/")).install()
    try:
        with pytest.raises(Exception, match="InternalError"):
            worker.archive(job)
    finally:
        fault.remove()
    outcome = worker.archive(job)
    assert outcome.status is Status.ALREADY_ARCHIVED
    (record,) = table().pending()
    entry = record.archive
    assert entry.key == outcome.archive_key and entry.stored_size > 5 * 1024 * 1024
    assert entry.s3_part_size == 5 * 1024 * 1024
    assert_entries_match_stored_objects(s3, buckets.archive, [entry])
    assert_entries_match_stored_objects(s3, buckets.customer, [entry])


def test_a_segment_the_shipper_abandoned_is_explained_in_the_digest(buckets, fake, tmp_path, capsys):
    """The shipper's S3 PUT succeeded but it was killed before recording it; the staged object then
    vanished (not archived: no marker) and Docker rotated the bytes away. The shipper abandons the
    segment and stages an explanation; the archiver puts it in the digest as an explained event."""
    c = lose_a_staged_segment(fake, tmp_path, buckets.staging)
    s3 = boto3.client("s3")
    rc, out = ship(tmp_path, buckets.staging, capsys)
    assert rc == 1 and "bytes deleted by Docker before they could be staged" in out, out
    events = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets.staging).get("Contents", [])
              if o["Key"].endswith(".event")]
    assert events == [f"staged/teststack/host-1/{c.id}/00000001-abandoned.event"]
    rc, out = ship(tmp_path, buckets.staging, capsys)  # staged once: the state says it is explained
    assert len([o for o in s3.list_objects_v2(Bucket=buckets.staging)["Contents"] if o["Key"].endswith(".event")]) == 1
    key_file, private = tmp_path / "master.key", tmp_path / "signing.pem"
    key_file.write_text(MasterKey.generate().to_base64())
    private.write_bytes(_pem())
    create_idempotency_table()
    assert cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/", "--archive-bucket",
                     buckets.archive, "--key-file", str(key_file), "--stack", "teststack",
                     "--signing-key-file", str(private), "--table", TABLE]) == 0
    out = capsys.readouterr().out
    assert "1 archived" in out and "1 explained" in out and "(1 archives, 1 explained events)" in out
    left = s3.list_objects_v2(Bucket=buckets.staging, Prefix="staged/").get("Contents", [])
    assert [o["Key"] for o in left] == ["staged/teststack/host-1/_heartbeat.json"]  # the host's, not a segment
    (d,) = digests_in(s3, buckets.archive)
    (event,) = d.digest.events
    assert (event.type, event.container_id, event.segment) == ("abandoned", c.id, 1)
    assert (event.byte_start, event.byte_end) == (0, len(json_line("only line")))
    assert "deleted by Docker" in event.reason and event.source == events[0]
    assert [e.segment for e in d.digest.archives] == [2]  # the gap at 1 is the explained one


def test_an_ed25519_key_from_secrets_manager_or_ssm_signs(aws_endpoint):
    """The Lambda's other key sources: the PEM in a secret or a SecureString parameter."""
    boto3.client("secretsmanager").create_secret(Name="logarchive/t/signing", SecretString=_pem().decode())
    boto3.client("ssm").put_parameter(Name="/logarchive/t/signing", Value=_pem().decode(), Type="SecureString")
    want = fmt.public_key_id(load_public_key(_public_pem()))
    for setting in ({"signing_key_secret": "logarchive/t/signing"}, {"signing_key_parameter": "/logarchive/t/signing"}):
        signer = sealing.signer_from_settings(replace(Settings(), **setting))
        assert (signer.algorithm, signer.key_id) == (fmt.ED25519, want)
    assert sealing.signer_from_settings(Settings()) is None and not Settings().digests


def test_a_segment_after_a_cut_back_source_explains_the_discontinuity(buckets, monkeypatch, tmp_path):
    """The shipper marks the first segment after it found a log cut back (``logarchive-cut-from``:
    what it had shipped up to); the digest carries that as a cut-back event beside the archive."""
    env = archiver_env(monkeypatch, buckets)
    signing = tmp_path / "signing.pem"
    signing.write_bytes(_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(signing))
    s3 = aws.client("s3")
    data = docker_lines(10, seed=4)
    staged = stage(s3, buckets.staging, "cut", data, segment=5, cid="e" * 64,
                   **{"logarchive-byte-start": "120", "logarchive-byte-end": str(120 + len(data)),
                      "logarchive-cut-from": "9000"})
    head = s3.head_object(Bucket=buckets.staging, Key=staged.key)
    outcome = Worker(settings, env["keyring"]).archive(
        Job(bucket=buckets.staging, key=staged.key, etag=head["ETag"], size=head["ContentLength"]))
    assert outcome.status is Status.ARCHIVED
    signer = sealing.signer_from_settings(settings)
    report = sealing.Sealer(s3, bucket=buckets.archive, stack="teststack", signer=signer, table=table()).seal()
    assert (report.archives, report.events) == (1, 1)
    (d,) = digests_in(s3, buckets.archive)
    (event,) = d.digest.events
    assert (event.type, event.segment, event.byte_start, event.byte_end) == ("cut-back", 5, 120, 9000)
    assert event.source == staged.key == d.digest.archives[0].source

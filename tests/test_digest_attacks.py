"""Issue 17: the proof against an insider who can write the buckets but holds no signing key and
cannot write the idempotency table. Each attack is made as that insider would, then the next
ordinary seal and the audit (both buckets) must refuse or name it.

A stage of six hourly digests, one archive each, is built in process (the worker and the sealer
of the Lambdas, on the local AWS) with seal times an hour apart ending now, so "the chain reaches
the present" is judged as on a real stage.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from archiver_support import TABLE, archiver_env, contract_metadata, docker_lines, stage

from chalicelib import aws, cli
from chalicelib import digest as fmt
from chalicelib.archiver import sealing
from chalicelib.archiver.digest_table import DigestTable
from chalicelib.archiver.messages import Job
from chalicelib.archiver.worker import Status, Worker
from chalicelib.audit import bucket as reads
from chalicelib.audit import checks, model
from chalicelib.digest import Ed25519Signer, load_public_key
from chalicelib.settings import Settings

VECTORS = Path(__file__).parent / "vectors" / "digest"
STACK = "teststack"
CID = "c" * 64


@dataclass
class Stage:
    buckets: object
    s3: object
    worker: Worker
    sealer: sealing.Sealer
    table: DigestTable
    public: object
    seals: list[datetime]  # the end time each digest was sealed with
    archives: list[str]  # archive key of segment n at index n-1
    tmp: Path

    def archive(self, segment: int, when: datetime, *, cid: str = CID) -> str:
        staged = stage(self.s3, self.buckets.staging, f"s{segment}", docker_lines(10, start=when, seed=segment),
                       segment=segment, cid=cid)
        head = self.s3.head_object(Bucket=self.buckets.staging, Key=staged.key)
        out = self.worker.archive(Job(bucket=self.buckets.staging, key=staged.key, etag=head["ETag"],
                                      size=head["ContentLength"]))
        assert out.status is Status.ARCHIVED, out
        return out.archive_key

    def seal(self, when: datetime) -> sealing.SealReport:
        report = self.sealer.seal(now=when)
        self.seals.append(when)
        return report

    def digest_keys(self, bucket: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket or self.buckets.archive,
                                          Prefix=fmt.stack_digests_prefix(STACK))
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def audit(self, bucket: str = "", *, now: datetime | None = None, **options) -> model.AuditResult:
        opts = checks.Options(bucket=bucket or self.buckets.archive, stack=STACK, public_keys=[self.public],
                              now=now or datetime.now(UTC), **options)
        return checks.run(opts, self.s3)

    def kinds(self, result: model.AuditResult) -> list[str]:
        return [f.kind for f in result.findings]

    def delete_everywhere(self, key: str) -> None:
        for bucket in (self.buckets.archive, self.buckets.customer):
            self.s3.delete_object(Bucket=bucket, Key=key)


def signing_pem() -> bytes:
    return (VECTORS / "ed25519-private.pem").read_bytes()


@pytest.fixture
def st(buckets, monkeypatch, tmp_path) -> Stage:
    """Six digests sealed an hour apart, the newest now, each listing one archive of ``CID``."""
    env = archiver_env(monkeypatch, buckets)
    (tmp_path / "signing.pem").write_bytes(signing_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(tmp_path / "signing.pem"))
    s3 = aws.client("s3")
    signer = Ed25519Signer.from_pem(signing_pem())
    table = DigestTable(aws.client("dynamodb"), TABLE, STACK)
    sealer = sealing.Sealer(s3, bucket=buckets.archive, stack=STACK, signer=signer, table=table,
                            copies=(buckets.customer,))
    stage_ = Stage(buckets, s3, Worker(settings, env["keyring"]), sealer, table, signer.public_key, [], [], tmp_path)
    end = datetime.now(UTC)
    for n in range(1, 7):
        when = end - timedelta(hours=6 - n)
        stage_.archives.append(stage_.archive(n, when - timedelta(minutes=30)))
        assert stage_.seal(when).archives == 1
    return stage_


def test_the_stage_passes_its_audits(st: Stage):
    for bucket in (st.buckets.archive, st.buckets.customer):
        result = st.audit(bucket, deep=True)
        assert result.ok and len(result.digests) == 6 and result.verified == 6, result.findings
        assert result.containers_contiguous == 1 and not result.envelope_unproven


@pytest.mark.parametrize("k", [1, 3])
def test_rolling_the_chain_back_is_refused_by_the_sealer_and_caught_by_the_audit(st: Stage, k: int):
    """The newest k digests and the archives they list deleted from both buckets, an older digest
    put back where the head used to be: the next seal refuses (the table names the newest digest),
    and once the chain is older than --max-digest-age every audit fails, --deep included.
    (Before: the audit passed, and the next seal signed the rollback.)"""
    digests = st.digest_keys()
    for key in digests[-k:]:
        st.delete_everywhere(key)
    for key in st.archives[-k:]:
        st.delete_everywhere(key)
    older = st.s3.get_object(Bucket=st.buckets.archive, Key=digests[-k - 1])
    st.s3.put_object(Bucket=st.buckets.archive, Key="_logarchive/digest-head/teststack.json",
                     Body=older["Body"].read(), Metadata=older["Metadata"])
    next_hour = st.seals[-1] + timedelta(hours=1)
    with pytest.raises(sealing.SealRefused, match=rf"digest of teststack not sealed: .*{digests[-1]}.* is gone"):
        st.seal(next_hour)
    assert st.table.state().sequence == 6 and st.digest_keys() == digests[:-k]
    for bucket in (st.buckets.archive, st.buckets.customer):
        for deep in (False, True):
            result = st.audit(bucket, now=next_hour + timedelta(minutes=30), deep=deep)
            assert model.CHAIN_STOPS in st.kinds(result), result.findings
            stops = next(f for f in result.findings if f.kind == model.CHAIN_STOPS)
            assert f"stops at sequence {6 - k}" in stops.detail and "Newer digests were deleted" in stops.detail


def test_a_rewound_or_replaced_head_is_refused(st: Stage):
    """The digest the table names replaced by an older digest's bytes, or by a digest signed with
    another key: refused, nothing sealed. A digest-head object planted in the bucket steers nothing."""
    digests = st.digest_keys()
    newest = st.s3.get_object(Bucket=st.buckets.archive, Key=digests[-1])
    body, meta = newest["Body"].read(), newest["Metadata"]
    older = st.s3.get_object(Bucket=st.buckets.archive, Key=digests[2])
    st.s3.put_object(Bucket=st.buckets.archive, Key=digests[-1], Body=older["Body"].read(),
                     Metadata=older["Metadata"])
    with pytest.raises(sealing.SealRefused, match="is not the digest the chain names"):
        st.seal(st.seals[-1] + timedelta(hours=1))
    # Re-signed with a key of the insider's own: same SHA-256 needed, so refused the same way; and
    # the table unchanged, nothing staged, nothing written.
    assert st.table.state().sequence == 6 and st.digest_keys() == digests
    st.s3.put_object(Bucket=st.buckets.archive, Key=digests[-1], Body=body, Metadata=meta)
    st.s3.put_object(Bucket=st.buckets.archive, Key="_logarchive/digest-head/teststack.json",
                     Body=older["Body"].read(), Metadata=older["Metadata"])
    report = st.seal(st.seals[-1] + timedelta(hours=1))
    assert report.sequence == 7
    assert fmt.parse(st.s3.get_object(Bucket=st.buckets.archive, Key=report.key)["Body"].read()) \
        .previous_digest_key == digests[-1]
    assert st.audit(now=st.seals[-1]).ok


def test_without_chain_state_a_bucket_with_digests_is_refused_until_adopted(st: Stage, capsys):
    """A fresh table (or one emptied, or a stage upgraded from the head-in-the-bucket release) must
    not start a second chain over the first: refused, until ``digest adopt`` verified the whole
    chain and recorded its newest digest. A broken chain is not adopted."""
    aws.client("dynamodb").delete_item(TableName=TABLE, Key={"id": {"S": f"digest-chain#{STACK}"}})
    with pytest.raises(sealing.SealRefused, match="holds no chain state for it, but s3://.* holds digests"):
        st.seal(st.seals[-1] + timedelta(hours=1))
    pub = st.tmp / "signing.pub"
    pub.write_bytes((VECTORS / "ed25519-public.pem").read_bytes())
    argv = ["digest", "adopt", "--bucket", st.buckets.archive, "--stack", STACK, "--public-key-file", str(pub),
            "--table", TABLE]
    third = st.digest_keys()[2]
    held = st.s3.get_object(Bucket=st.buckets.archive, Key=third)
    st.s3.delete_object(Bucket=st.buckets.archive, Key=third)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not adopted: digest missing" in err and st.table.state() is None, err
    st.s3.put_object(Bucket=st.buckets.archive, Key=third, Body=held["Body"].read(), Metadata=held["Metadata"])
    assert cli.main(argv) == 0
    assert f"adopted the chain of {STACK}: sequence 6" in capsys.readouterr().out
    assert cli.main(argv) == 1 and "already holds the chain" in capsys.readouterr().err
    assert st.seal(st.seals[-1] + timedelta(hours=1)).sequence == 7


def test_an_injected_archive_with_a_record_in_the_bucket_is_not_signed(st: Stage):
    """An archive put in the bucket with a worker-style record under the old pending-digest prefix:
    the sealer reads no record from the bucket, so the next digest does not list it and the audit
    names it (before: signed into the next digest by the real key)."""
    real = st.archives[0]
    injected = real.replace(".log.1.", ".log.7.")
    got = st.s3.get_object(Bucket=st.buckets.archive, Key=real)
    body = got["Body"].read()
    st.s3.put_object(Bucket=st.buckets.archive, Key=injected, Body=body, Metadata=got["Metadata"],
                     ChecksumAlgorithm="SHA256")
    entry = fmt.ArchiveEntry(
        key=injected, stored_sha256=hashlib.sha256(body).hexdigest(), stored_size=len(body),
        s3_checksum_sha256=base64.b64encode(hashlib.sha256(body).digest()).decode(), s3_part_size=None,
        raw_sha256="0" * 64, raw_bytes=1, lines=1, key_id="0" * 64, container_id=CID, host="host-1",
        source="staged/x", segment=7, byte_start=0, byte_end=1, first_time=fmt.fmt_time(st.seals[-1]),
        last_time=fmt.fmt_time(st.seals[-1]),
        envelope_sha256=fmt.envelope_sha256(got["Metadata"]))
    planted = "_logarchive/pending-digest/teststack/a-" + hashlib.sha256(injected.encode()).hexdigest()[:40] + ".json"
    st.s3.put_object(Bucket=st.buckets.archive, Key=planted, Body=fmt.canonical_json(
        {"archive": entry.to_dict(), "recorded_at": fmt.fmt_time(st.seals[-1])}))
    report = st.seal(datetime.now(UTC))
    assert report.archives == 0 and report.sequence == 7
    result = st.audit(grace=timedelta(0))
    assert [(f.kind, f.object) for f in result.findings] == [
        (model.ARCHIVE_IN_NO_DIGEST, f"s3://{st.buckets.archive}/{injected}")], result.findings


def test_a_record_that_s3_contradicts_is_reported_not_signed(st: Stage):
    """The worker recorded an archive; before the seal an insider replaced its bytes, and another
    its envelope: the sealer's HEAD shows both, neither is signed, both are reported."""
    seven = st.archive(7, st.seals[-1])
    eight = st.archive(8, st.seals[-1])
    size = st.s3.head_object(Bucket=st.buckets.archive, Key=seven)["ContentLength"]
    st.s3.put_object(Bucket=st.buckets.archive, Key=seven, Body=b"\0" * size, ChecksumAlgorithm="SHA256",
                     Metadata=st.s3.head_object(Bucket=st.buckets.archive, Key=seven)["Metadata"])
    meta = st.s3.head_object(Bucket=st.buckets.archive, Key=eight)["Metadata"]
    st.s3.copy_object(Bucket=st.buckets.archive, Key=eight, CopySource={"Bucket": st.buckets.archive, "Key": eight},
                      Metadata={**meta, "x-amz-iv": base64.b64encode(b"\1" * 12).decode()},
                      MetadataDirective="REPLACE", ChecksumAlgorithm="SHA256")
    report = st.seal(datetime.now(UTC))
    assert report.archives == 0 and len(report.rejected) == 2
    (r7,) = [r for r in report.rejected if seven in r]
    (r8,) = [r for r in report.rejected if eight in r]
    assert "S3's checksum is" in r7 and "its envelope is not the one recorded" in r8 and "checksum" not in r8
    assert len(st.table.pending()) == 2  # still there: reported again at every seal until resolved


def test_a_forged_abandoned_event_does_not_explain_a_deleted_segment(st: Stage):
    """Segment 8 of the container is deleted from staging; two forgeries try to explain it: an
    event record planted in the bucket (the old pending-digest prefix), and an abandoned-event
    object staged under another container's path. Neither explains it: the audit names the gap."""
    seg7 = st.archive(7, st.seals[-1])
    victim = stage(st.s3, st.buckets.staging, "s8", docker_lines(10, seed=8), segment=8, cid=CID)
    st.s3.delete_object(Bucket=st.buckets.staging, Key=victim.key)
    st.archive(9, st.seals[-1])
    event = fmt.ExplainedEvent(type="abandoned", container_id=CID, host="host-1", source=victim.key, segment=8,
                               byte_start=0, byte_end=10, reason="bytes deleted by Docker", at=fmt.fmt_time(st.seals[-1]))
    st.s3.put_object(Bucket=st.buckets.archive, Key="_logarchive/pending-digest/teststack/e-" + "0" * 40 + ".json",
                     Body=fmt.canonical_json({"event": event.to_dict(), "recorded_at": event.at}))
    other = "d" * 64
    meta = contract_metadata(b"", cid=CID, segment=8, **{"logarchive-event": "abandoned",
                                                        "logarchive-event-reason": "forged"})
    forged_key = f"staged/teststack/host-1/{other}/00000008-abandoned.event"
    st.s3.put_object(Bucket=st.buckets.staging, Key=forged_key, Body=b"", Metadata=meta)
    head = st.s3.head_object(Bucket=st.buckets.staging, Key=forged_key)
    out = st.worker.archive(Job(bucket=st.buckets.staging, key=forged_key, etag=head["ETag"], size=0))
    assert out.status is Status.QUARANTINED and "metadata disagrees with the key's path" in out.reason
    report = st.seal(datetime.now(UTC))
    assert report.archives == 2
    (sealed_event,) = fmt.parse(st.s3.get_object(Bucket=st.buckets.archive, Key=report.key)["Body"].read()).events
    assert (sealed_event.type, sealed_event.container_id, sealed_event.segment) == ("quarantined", other, 8)
    result = st.audit()
    assert [(f.kind, f.detail) for f in result.findings] == [
        (model.SEGMENT_GAP, "segment 8 missing (after " + seg7.rsplit("/", 1)[-1] + ")")], result.findings


def test_an_envelope_edited_in_place_is_caught(st: Stage, capsys):
    """x-amz-iv or x-amz-key-v2 rewritten by a copy onto itself, body untouched (the same S3
    checksum): the archive cannot be decrypted any more, and every audit says so, --deep too."""
    victim = st.archives[2]
    for bucket in (st.buckets.archive, st.buckets.customer):
        for field, value in (("x-amz-iv", base64.b64encode(b"\7" * 12).decode()),
                             ("x-amz-key-v2", base64.b64encode(b"\7" * 40).decode())):
            meta = st.s3.head_object(Bucket=bucket, Key=victim)["Metadata"]
            before = st.s3.head_object(Bucket=bucket, Key=victim, ChecksumMode="ENABLED")["ChecksumSHA256"]
            st.s3.copy_object(Bucket=bucket, Key=victim, CopySource={"Bucket": bucket, "Key": victim},
                              Metadata={**meta, field: value}, MetadataDirective="REPLACE", ChecksumAlgorithm="SHA256")
            assert st.s3.head_object(Bucket=bucket, Key=victim, ChecksumMode="ENABLED")["ChecksumSHA256"] == before
            for deep in (False, True):
                result = st.audit(bucket, deep=deep)
                (f,) = result.findings
                assert f.kind == model.ARCHIVE_CHANGED and victim in f.object and "its envelope" in f.detail, f
            st.s3.copy_object(Bucket=bucket, Key=victim, CopySource={"Bucket": bucket, "Key": victim},
                              Metadata=meta, MetadataDirective="REPLACE", ChecksumAlgorithm="SHA256")
        assert st.audit(bucket).ok


def test_an_envelope_in_an_instruction_file_is_read_for_its_hash(st: Stage):
    """An archive whose envelope is in ``<key>.instruction`` (as S3EC clients may write): the
    audit's HEAD reads that object too, and an edit of it shows."""
    key = st.archives[0] + ".copy"
    meta = st.s3.head_object(Bucket=st.buckets.archive, Key=st.archives[0])["Metadata"]
    envelope = {k: v for k, v in meta.items() if k.startswith("x-amz-") and k != "x-amz-unencrypted-content-length"}
    st.s3.put_object(Bucket=st.buckets.archive, Key=key, Body=b"body",
                     Metadata={"x-amz-crypto-instr-file": "", "x-amz-unencrypted-content-length": "4"})
    st.s3.put_object(Bucket=st.buckets.archive, Key=key + ".instruction", Body=json.dumps(envelope).encode())
    held = reads.head_archive(st.s3, st.buckets.archive, key, envelope=True).envelope_sha256
    assert held == fmt.envelope_sha256({**envelope, "x-amz-unencrypted-content-length": "4"})
    st.s3.put_object(Bucket=st.buckets.archive, Key=key + ".instruction",
                     Body=json.dumps({**envelope, "x-amz-iv": base64.b64encode(b"\2" * 12).decode()}).encode())
    assert reads.head_archive(st.s3, st.buckets.archive, key, envelope=True).envelope_sha256 != held
    st.s3.delete_object(Bucket=st.buckets.archive, Key=key + ".instruction")
    assert reads.head_archive(st.s3, st.buckets.archive, key, envelope=True).envelope_sha256.startswith("unreadable")


def test_nothing_to_prove_is_a_failure(buckets, tmp_path, capsys):
    """An empty bucket, a stack that is not there, a name that is no stack name."""
    pub = tmp_path / "p.pem"
    pub.write_bytes((VECTORS / "ed25519-public.pem").read_bytes())
    for stack, rc_want, said in (("teststack", 1, "nothing to prove"), ("teststak", 1, "nothing to prove"),
                                 ("test stack", 2, "not a stack name")):
        rc = cli.main(["audit", "--bucket", buckets.customer, "--stack", stack, "--public-key-file", str(pub)])
        out, err = capsys.readouterr()
        assert rc == rc_want and said in out + err, (stack, out, err)
        if rc == 1:
            assert f"s3://{buckets.customer}" in out and f"stack {stack}" in out


def test_a_bucket_whose_digests_and_archives_were_all_deleted_fails(st: Stage):
    for key in st.digest_keys(st.buckets.customer) + st.archives:
        st.s3.delete_object(Bucket=st.buckets.customer, Key=key)
    result = st.audit(st.buckets.customer)
    assert st.kinds(result) == [model.NOTHING_TO_PROVE] and STACK in result.findings[0].detail


def test_a_dated_audit_checks_the_digest_before_its_window(buckets, monkeypatch, tmp_path):
    """Digests on three days; a dated audit of the last two passes, lists months concurrently (a
    ten-year window too, one listing a month). The window's earliest digest and its archive
    deleted: the digest before the window is missing, and the audit says so (before: it passed)."""
    env = archiver_env(monkeypatch, buckets)
    (tmp_path / "signing.pem").write_bytes(signing_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(tmp_path / "signing.pem"))
    s3 = aws.client("s3")
    signer = Ed25519Signer.from_pem(signing_pem())
    st = Stage(buckets, s3, Worker(settings, env["keyring"]),
               sealing.Sealer(s3, bucket=buckets.archive, stack=STACK, signer=signer,
                              table=DigestTable(aws.client("dynamodb"), TABLE, STACK)),
               DigestTable(aws.client("dynamodb"), TABLE, STACK), signer.public_key, [], [], tmp_path)
    now = datetime.now(UTC)
    days = [now - timedelta(days=3), now - timedelta(days=2), now - timedelta(days=1)]
    for n, when in enumerate(days, start=1):
        st.archives.append(st.archive(n, when - timedelta(minutes=30)))
        st.seal(when)
    st.seal(now)
    start, end = days[1].date(), now.date()
    assert st.audit(start_date=start, end_date=end).ok
    lists = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: lists.append(1))
    decade = st.audit(start_date=date(end.year - 10, 1, 1), end_date=end)
    assert decade.ok and len(decade.digests) == 4
    assert len(lists) <= 12 * 11 + 2  # a listing a month, not a day (and one of the archives)
    # The window's earliest digest (day 2) and the archive it lists, gone from both views.
    earliest = next(k for k in st.digest_keys() if f"/{days[1]:%Y/%m/%d}/" in k)
    s3.delete_object(Bucket=buckets.archive, Key=earliest)
    s3.delete_object(Bucket=buckets.archive, Key=st.archives[1])
    result = st.audit(start_date=start, end_date=end)
    assert (model.DIGEST_MISSING, f"s3://{buckets.archive}/{earliest}") in [
        (f.kind, f.object) for f in result.findings], result.findings
    # An end date in the past moves "now" there: the chain must reach that day's end only.
    past = checks.Options(bucket="b", stack=STACK, public_keys=[], start_date=start, end_date=start, now=now)
    assert past.present == datetime.combine(start + timedelta(days=1), datetime.min.time(), UTC)


def test_backfill_stops_at_a_planted_digest(buckets, monkeypatch, tmp_path, capsys):
    """An archive from before digests began, one real digest, and a digest planted by an insider
    (signed with a key of their own, listing that archive so that backfill would skip it):
    backfill verifies every digest it reads, stops at the planted one, records nothing."""
    env = archiver_env(monkeypatch, buckets)
    s3 = aws.client("s3")
    unsigned = Worker(Settings.from_env(), env["keyring"])
    staged = stage(s3, buckets.staging, "old", docker_lines(10, seed=1), segment=1, cid=CID)
    head = s3.head_object(Bucket=buckets.staging, Key=staged.key)
    old = unsigned.archive(Job(bucket=buckets.staging, key=staged.key, etag=head["ETag"], size=head["ContentLength"]))
    signer = Ed25519Signer.from_pem(signing_pem())
    table = DigestTable(aws.client("dynamodb"), TABLE, STACK)
    # (sealed as of two seconds on: S3's LastModified has whole seconds)
    sealing.Sealer(s3, bucket=buckets.archive, stack=STACK, signer=signer, table=table).seal(
        now=datetime.now(UTC) + timedelta(seconds=2))
    from cryptography.hazmat.primitives.asymmetric import ed25519

    insider = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    got = s3.head_object(Bucket=buckets.archive, Key=old.archive_key)
    planted = fmt.sign(fmt.build(
        stack=STACK, end=datetime(2020, 1, 1, tzinfo=UTC), signing_key_id=insider.key_id,
        signature_algorithm=insider.algorithm, archives=[fmt.ArchiveEntry(
            key=old.archive_key, stored_sha256="0" * 64, stored_size=got["ContentLength"], s3_checksum_sha256=None,
            s3_part_size=None, raw_sha256="0" * 64, raw_bytes=0, lines=0, key_id="0" * 64, container_id=CID,
            host="h", source="s", segment=1, byte_start=0, byte_end=0, first_time="2020-01-01T00:00:00.000000Z",
            last_time="2020-01-01T00:00:00.000000Z", envelope_sha256="0" * 64)]), insider)
    s3.put_object(Bucket=buckets.archive, Key=planted.key, Body=planted.body, Metadata=planted.metadata())
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(signing_pem())
    other = tmp_path / "older.pub"
    other.write_bytes((VECTORS / "p256-public.pem").read_bytes())
    rc = cli.main(["digest", "backfill", "--bucket", buckets.archive, "--stack", STACK, "--signing-key-file",
                   str(key_file), "--public-key-file", str(other), "--table", TABLE])
    out, err = capsys.readouterr()
    assert rc == 1 and err.count("\n") == 1 and planted.key in err and "backfill stopped" in err, (out, err)
    assert table.pending() == [] and table.state().sequence == 1
    # Without the planted digest, the same command backfills the old archive.
    s3.delete_object(Bucket=buckets.archive, Key=planted.key)
    rc = cli.main(["digest", "backfill", "--bucket", buckets.archive, "--stack", STACK, "--signing-key-file",
                   str(key_file), "--table", TABLE])
    out, err = capsys.readouterr()
    assert rc == 0 and "1 of 1 archives before digests began backfilled" in out, (out, err)


def test_digests_need_the_table(buckets, monkeypatch, tmp_path, capsys):
    """The scheduler refuses to seal without the idempotency table; so does archive --once."""
    archiver_env(monkeypatch, buckets)
    (tmp_path / "signing.pem").write_bytes(signing_pem())
    settings = replace(Settings.from_env(), signing_key_file=str(tmp_path / "signing.pem"), idempotency_table="")
    with pytest.raises(sealing.LogarchiveError, match="digests need the idempotency table"):
        sealing.seal_digest(settings, aws.client("s3"), leases=None)
    rc = cli.main(["archive", "--once", "--staging", f"s3://{buckets.staging}/staged/", "--archive-bucket",
                   buckets.archive, "--stack", STACK, "--key-file", str(tmp_path / "k"),
                   "--signing-key-file", str(tmp_path / "signing.pem")])
    err = capsys.readouterr().err
    assert rc == 2 and "--signing-key-file needs --table" in err and err.count("\n") == 1


def test_public_key_of_each_signer():
    signer = Ed25519Signer.from_pem(signing_pem())
    assert fmt.public_key_id(signer.public_key) == fmt.public_key_id(
        load_public_key((VECTORS / "ed25519-public.pem").read_bytes()))


def test_archives_sealed_by_version_1_digests_are_reported_as_envelope_not_proven(st: Stage):
    """A chain sealed before version 2 (the same six digests, rebuilt as version 1): the audit
    passes and says that their archives' envelopes are not proven."""
    signer = Ed25519Signer.from_pem(signing_pem())
    previous = None
    for key in st.digest_keys():
        got = st.s3.get_object(Bucket=st.buckets.archive, Key=key)
        doc = fmt.parse(got["Body"].read())
        old = replace(doc, version=1, archives=tuple(replace(a, envelope_sha256=None) for a in doc.archives),
                      previous_digest_key=previous.key if previous else None,
                      previous_digest_sha256=previous.sha256 if previous else None,
                      previous_digest_signature=previous.signature.hex() if previous else None)
        previous = fmt.sign(old, signer)
        assert b'"version":1' in previous.body and b"envelope_sha256" not in previous.body
        st.s3.put_object(Bucket=st.buckets.archive, Key=key, Body=previous.body, Metadata=previous.metadata())
    result = st.audit()
    assert result.ok and len(result.envelope_unproven) == 6, result.findings
    assert "6 with the envelope not proven (sealed by version-1 digests" in result.summary()

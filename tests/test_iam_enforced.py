"""IAM enforced on the local AWS (issue 19): every function runs its real handler under a role
carrying exactly the S3 and SQS statements of its generated policy; the shipper under the host
policy (docs/SHIPPER.md), ``logs-from-archive`` and ``audit`` under the customer's read-only policy.

One IAM-enforced local AWS for the module (the rest of the suite keeps its own). What the local
AWS cannot check (resource ARNs outside S3/SQS, conditions, bucket policies) is checked from
the recorded calls here and statically elsewhere (docs/OPERATIONS.md, "Checked locally").
"""

from __future__ import annotations

import gzip
import json
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers_index import eventbridge_event, put_k8s_archive

from chalicelib import aws, cli
from chalicelib.devkit import local_aws, local_iam, local_stack
from chalicelib.devkit.fakedocker import FakeDockerRoot
from chalicelib.keyring import MasterKey
from chalicelib.setup import iam
from chalicelib.setup.resources import FUNCTIONS, StageResources
from chalicelib.sqs_pump import pump

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
STACK = "iamstk"
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass
class Stage:
    endpoint: str
    tmp: Path
    env: dict[str, str]
    res: StageResources
    urls: dict[str, str]
    admin: aws.Credentials
    master: MasterKey
    public_key: Path
    policies: dict[str, dict] = field(default_factory=dict)
    creds: dict[str, aws.Credentials] = field(default_factory=dict)
    client: Any = None
    ships: int = 0
    recorder: local_iam.CallRecorder = field(default_factory=local_iam.CallRecorder)

    @property
    def buckets(self) -> local_aws.StackBuckets:
        return local_aws.StackBuckets.for_stack(STACK)


def _deploy_env(env: dict[str, str], stage: local_stack.LocalStage) -> dict[str, str]:
    """The same stage as ``setup deployment-files`` sees it: names, the local account and region."""
    return {**{k: v for k, v in env.items() if not k.endswith("_QUEUE_URL")},
            "LOGARCHIVE_ACCOUNT_ID": local_iam.LOCAL_ACCOUNT, "LOGARCHIVE_REGION": local_aws.LOCAL_REGION,
            "LOGARCHIVE_WORK_QUEUE": stage.queue("work"), "LOGARCHIVE_RETRIEVAL_QUEUE": stage.queue("retrieval")}


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> Iterator[Stage]:
    saved = {k: os.environ.get(k) for k in (*local_aws.LOCAL_CREDENTIALS, "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    saved_env = dict(os.environ)
    tmp = tmp_path_factory.mktemp("iam")
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        local = local_stack.LocalStage(STACK)
        master = MasterKey.generate()
        env, urls = local_stack.provision(endpoint, local, keys_text=master.to_base64())
        signing = Ed25519PrivateKey.generate()
        import boto3

        boto3.client("secretsmanager").create_secret(
            Name=f"{STACK}-signing-key", SecretString=signing.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode())
        public = tmp / "signing.pub.pem"
        public.write_bytes(signing.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
        env |= {"LOGARCHIVE_STAGING_PREFIX": "staged/", "LOGARCHIVE_REPLICATION_MODE": "direct",
                "LOGARCHIVE_SIGNING_KEY_SECRET": f"{STACK}-signing-key",
                "LOGARCHIVE_ACCOUNT_ID": local_iam.LOCAL_ACCOUNT}
        res = StageResources.from_env("iam", _deploy_env(env, local))
        admin = local_iam.enforce(endpoint)
        os.environ.update({"AWS_ACCESS_KEY_ID": admin.access_key, "AWS_SECRET_ACCESS_KEY": admin.secret_key})
        os.environ.update(env)
        os.environ.update({"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                           "LOGARCHIVE_WORKER_RESERVE_MS": "-1000000000", "LOGARCHIVE_WORKER_MIN_MB_PER_S": "1000"})
        aws.reset_clients()
        st = Stage(endpoint, tmp, env, res, urls, admin, master, public)
        for fn in FUNCTIONS:
            st.policies[fn] = iam.function_policy(res, fn)
            st.creds[fn] = local_iam.role_credentials(f"iam-{fn}", local_iam.local_policy(st.policies[fn]),
                                                      admin=admin)
        st.policies["host"] = iam.host_policy(res, "host-1")
        st.creds["host"] = local_iam.role_credentials("iam-host", st.policies["host"], admin=admin)
        st.policies["reader"] = iam.customer_reader_policy(st.buckets.customer, STACK)
        st.creds["reader"] = local_iam.role_credentials("iam-reader", st.policies["reader"], admin=admin)
        from chalice.test import Client

        from app import app

        (tmp / "project").mkdir()
        with Client(app, project_dir=str(tmp / "project")) as client, st.recorder.observing():
            st.client = client
            yield st
    os.environ.clear()
    os.environ.update(saved_env)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
    aws.reset_clients()


def environment_credentials(creds: aws.Credentials):
    """For code that takes boto3's own credential chain (the shipper, the CLI); the environment
    is restored afterwards."""
    return mock.patch.dict(os.environ, {"AWS_ACCESS_KEY_ID": creds.access_key,
                                        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                                        "AWS_SESSION_TOKEN": creds.token or ""})


class Errors:
    """Error codes every aws.client call answered (a botocore ``after-call`` hook)."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.log: list[str] = []

    def __call__(self, parsed: dict, model: Any = None, **_: Any) -> None:
        code = (parsed or {}).get("Error", {}).get("Code")
        if code:
            self.codes.append(str(code))
            self.log.append(f"{getattr(model, 'name', '?')}: {code}")


# -- the path, step by step -------------------------------------------------------------------------
def ship(st: Stage) -> int:
    st.ships += 1
    fake = FakeDockerRoot(st.tmp / f"docker-{st.ships}")
    for n in (1, 2):
        c = fake.add(f"web-{st.ships}-{n}", labels={"logarchive.app_id": "42", "logarchive.service_id": "7"})
        c.start()
        for i in range(20):
            c.log(f"request {st.ships}-{n}-{i} ok", "stdout")
        c.log(f"upstream timeout {st.ships}-{n}", "stderr")
        c.stop()
    with environment_credentials(st.creds["host"]):
        return cli.main(["ship", "--docker-root", str(st.tmp / f"docker-{st.ships}"), "--staging",
                         f"s3://{st.buckets.staging}/staged", "--stack", STACK, "--host", "host-1",
                         "--state", str(st.tmp / f"ship-{st.ships}.db"), "--once", "--settle", "0"])


@contextmanager
def as_function(st: Stage, function: str) -> Iterator[None]:
    """``function``'s role, and its calls recorded as its own."""
    st.recorder.current = function
    try:
        with aws.credentials(st.creds[function]):
            yield
    finally:
        st.recorder.current = ""


def invoke(st: Stage, function: str, event: dict) -> Any:
    with as_function(st, function):
        return st.client.lambda_.invoke(function, event).payload


def schedule(st: Stage) -> dict:
    event = st.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                               detail={}, resources=[])
    return invoke(st, "archive_scheduler", event)


def drain(st: Stage, function: str, queue: str) -> list[str]:
    """Lambda's SQS event source for ``function`` (it polls with the function's role)."""
    failures: list[str] = []

    def handle(records: list[dict]) -> list[str]:
        event = {"Records": [{**r, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:local",
                              "awsRegion": local_aws.LOCAL_REGION} for r in records]}
        payload = invoke(st, function, event) or {}
        failed = [f["itemIdentifier"] for f in payload.get("batchItemFailures", [])]
        failures.extend(f"{f}: {payload}" for f in failed)
        return []  # a failure is the finding, not something to retry here

    errors = Errors()
    with as_function(st, function), aws.observe("after-call", errors):
        pump(aws.client("sqs"), st.urls[queue], handle, attempts=20, visibility_timeout=60)
    return [f"{f} ({errors.log})" for f in failures]


def archive_keys(st: Stage, bucket: str) -> list[str]:
    with aws.credentials(st.admin):
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{STACK}/")
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def index(st: Stage, keys: list[str]) -> list[Any]:
    return [invoke(st, "index_archive", eventbridge_event(st.buckets.archive, k)) for k in keys]


def api(st: Stage, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    with as_function(st, "api_handler"):
        if method == "POST":
            r = st.client.http.post(path, headers={"Content-Type": "application/json"},
                                    body=json.dumps(body).encode())
        else:
            r = st.client.http.get(path)
    return r.status_code, json.loads(r.body)


def _window() -> tuple[str, str]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return tuple(t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (now - timedelta(hours=2), now + timedelta(hours=1)))


START, END = _window()
QUESTION = {"app_id": "42", "start": START, "end": END, "grep": "timeout"}


def test_the_whole_path_passes_under_the_generated_policies(stage: Stage) -> None:
    whole_path(stage)


def whole_path(st: Stage) -> None:
    before = set(archive_keys(st, st.buckets.archive))
    assert ship(st) == 0
    assert schedule(st)["scheduled"] >= 1
    assert drain(st, "archive_worker", "work") == []
    keys = sorted(set(archive_keys(st, st.buckets.archive)) - before)
    assert keys and set(keys) <= set(archive_keys(st, st.buckets.customer))
    schedule(st)  # the next run seals the digest of what the workers finished
    with aws.credentials(st.admin):
        digests = aws.client("s3").list_objects_v2(Bucket=st.buckets.customer, Prefix=f"_logarchive/digests/{STACK}/")
    assert digests.get("KeyCount", 0) >= 1
    assert all(p["outcomes"] == ["live"] for p in index(st, keys))
    status, listed = api(st, "GET", f"/archives?app_id=42&start={START}&end={END}")
    assert status == 200 and listed["count"] == len(before) + len(keys), listed
    # Pages of one: the API signs the page token with its secret, and checks it on the way back.
    status, page = api(st, "GET", f"/archives?app_id=42&start={START}&end={END}&limit=1")
    assert status == 200 and page["next_token"]
    status, page = api(st, "GET", f"/archives?app_id=42&start={START}&end={END}&limit=1&next_token="
                                  + urllib.parse.quote(page["next_token"]))
    assert status == 200 and page["count"] == 1
    status, one = api(st, "GET", f"/archives/{listed['archives'][0]['id']}")
    assert status == 200 and one["download_url"]
    status, job = api(st, "POST", "/retrievals", QUESTION)
    assert status == 202
    assert drain(st, "retrieval_worker", "retrieval") == []
    status, done = api(st, "GET", f"/retrievals/{job['id']}")
    assert status == 200 and done["status"] == "succeeded", done
    # The local AWS cannot check a presigned (query-string signed) GET with IAM on (it answers
    # 500), so: each URL is signed by the API's role session, and a statement of the API's
    # policy grants s3:GetObject on what it names (what S3 checks for the URL); the object's
    # lines are then read as the operator.
    lines = b""
    urls = [one["download_url"]] + [r["url"] for r in done["results"] if "url" in r]
    assert len(urls) >= 2
    for url in urls:
        parts = urllib.parse.urlparse(url)
        query = urllib.parse.parse_qs(parts.query)
        assert query["X-Amz-Credential"][0].startswith(st.creds["api_handler"].access_key + "/")
        bucket, key = urllib.parse.unquote(parts.path).lstrip("/").split("/", 1)
        arn = f"arn:aws:s3:::{bucket}/{key}"
        assert any(local_iam.grants(stmt, "s3:GetObject", arn)
                   for stmt in local_iam.enforced_statements(st.policies["api_handler"])), arn
        if bucket == st.buckets.staging or bucket == st.res.results_bucket:
            with aws.credentials(st.admin):
                body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            lines += gzip.decompress(body)
    assert b"upstream timeout" in lines
    # The customer, with read-only access to their bucket: the archives and the proof.
    with environment_credentials(st.creds["reader"]):
        assert customer_reads(st, "--app-id", "42") == 0
        assert cli.main(["audit", "--bucket", st.buckets.customer, "--stack", STACK,
                         "--public-key-file", str(st.public_key)]) == 0


def customer_reads(st: Stage, *selection: str) -> int:
    """``logs-from-archive`` of the customer's bucket (with whatever credentials are current)."""
    keyfile = st.tmp / "master.key"
    keyfile.write_text(st.master.to_base64() + "\n")
    return cli.main(["logs-from-archive", "--bucket", st.buckets.customer, "--stack", STACK,
                     "--decryption-keys-file", str(keyfile), *selection,
                     "--download-location", str(st.tmp / "restored")])


def test_the_customer_reads_kubernetes_archives_under_the_reader_policy(stage: Stage) -> None:
    with aws.credentials(stage.admin):
        put_k8s_archive(stage.buckets.customer, [b"2022-01-01T12:00:00Z stdout F from a pod"], master=stage.master,
                        stack=STACK, s3=aws.client("s3"))
    with environment_credentials(stage.creds["reader"]):
        assert customer_reads(stage, "--namespace", "shop") == 0


# -- what the local AWS checks against "*": recorded and compared with the generated statements ----------
# Statements no handler calls on this path, and why (every other one must be used).
UNUSED_HERE = {
    "Logs": "the Lambda runtime writes the function's logs, not the handler",
    "Tracing": "the X-Ray daemon sends the traces (tracing is off locally)",
    "ResumeJobs": "only for 'Object Restore Completed' (a cold archive restored)",
}


def test_every_other_call_is_granted_by_its_functions_statements_and_each_statement_used(stage: Stage) -> None:
    st = stage
    st.recorder.calls.clear()
    aws.clear_parameter_caches()  # as a cold start: secrets are read again, and recorded
    whole_path(st)
    for fn in FUNCTIONS:
        calls = st.recorder.calls.get(fn, set())
        policy = st.policies[fn]
        assert local_iam.uncovered(policy, calls) == [], fn
        others = tuple({local_iam.service_of(a) for s in policy["Statement"] for a in s["Action"]}
                       - set(local_iam.ENFORCED))
        unused = [sid for sid in local_iam.unused(policy, calls, services=others) if sid not in UNUSED_HERE]
        assert unused == [], f"{fn}: statements no call used: {unused}"


# -- each S3/SQS statement is needed ------------------------------------------------------------------
# (function, Sid) -> why dropping it cannot fail on this path; every other S3/SQS statement of the
# generated policies must, when dropped, make its function's step meet AccessDenied.
NOT_ON_THIS_PATH = {
    ("archive_scheduler", "AbortAbandonedUploads"): "only for multipart uploads older than a day",
    # The sealer reads the hosts' heartbeats: both statements grant that GetObject, so neither
    # alone is needed for it (an overlap, reported); HostRetirements' own part needs `hosts retire`.
    ("archive_scheduler", "ReadStagedMetadata"): "its heartbeat reads are also granted by HostRetirements",
    ("archive_scheduler", "HostRetirements"): "retirement requests only after `hosts retire`; its heartbeat "
                                              "reads are also granted by ReadStagedMetadata",
    ("archive_worker", "ListStaging"): "only turns 403 into 404 for a missing key; the local AWS answers 404 "
                                       "without it",
    ("archive_worker", "ListDestination0"): "as ListStaging",
    ("archive_worker", "ListDestination1"): "as ListStaging",
    ("retrieval_worker", "ListResults"): "as the worker's ListStaging",
    ("archive_worker", "Quarantine"): "only for bad input (tests/test_archiver_faults.py)",
    ("archive_worker", "WriteArchivesIfNoneMatch"): "the local AWS evaluates no Condition: WriteArchivesParts "
                                                     "grants the same PutObject (conditions: test_hostile_iam)",
    ("archive_worker", "WriteArchivesParts"): "as WriteArchivesIfNoneMatch (and these segments are one part)",
    ("index_archive", "ListArchives"): "only when the archive's key answers 404 (a deleted archive)",
    ("index_archive", "ResumeScans"): "only for 'Object Restore Completed' (a cold archive restored)",
    ("retrieval_worker", "RestoreArchives"): "only for archives in cold storage",
    ("api_handler", "PresignArchives"): "presigning calls nothing; the local AWS cannot check a presigned GET "
                                        "with IAM on (checked from the URL, test above)",
    ("api_handler", "PresignResults"): "as PresignArchives",
    ("api_handler", "HealthArchiveBucket"): "only GET /health (GetBucketLocation), which answers 503, "
                                            "not AccessDenied, without it (tests/test_api_errors.py)",
    ("host", "ReadItsOwnArchivedMarkers"): "only after a crash between archive and state commit",
    ("host", "TellMissingFromForbidden"): "only turns 403 into 404 for a missing key, which the local AWS "
                                          "answers anyway",
    ("host", "OwnQuarantinedSegments"): "only when the host's state names a quarantined segment "
                                        "(the start check, --rebuild-state)",
}
EXERCISED = {
    "archive_scheduler": ["ListStaging", "FanOut", "ListUploads0", "ListUploads1",
                          "StagedDigest", "CheckRecordedArchives", "WriteDigests"],
    "archive_worker": ["Work", "Staged", "MarkArchived", "WriteArchives"],
    "index_archive": ["ReadArchiveMetadata"],
    "retrieval_worker": ["Retrievals", "ReadArchives", "WriteResults"],
    "api_handler": ["StartRetrievals"],
    "host": ["StageUnderItsOwnPath"],
    "reader": ["ListArchive", "ReadArchives", "ReadDigests"],
}
DENIED = {"AccessDenied", "AccessDeniedException", "403"}


def test_every_s3_and_sqs_statement_is_classified(stage: Stage) -> None:
    for who, policy in stage.policies.items():
        sids = {s["Sid"] for s in local_iam.enforced_statements(policy)}
        classified = set(EXERCISED.get(who, [])) | {sid for fn, sid in NOT_ON_THIS_PATH if fn == who}
        assert sids == classified, who


def _archived_once(st: Stage) -> list[str]:
    before = set(archive_keys(st, st.buckets.archive))
    assert ship(st) == 0
    assert schedule(st)["scheduled"] >= 1
    assert drain(st, "archive_worker", "work") == []
    return sorted(set(archive_keys(st, st.buckets.archive)) - before)


def _step(st: Stage, who: str, dropped: Any) -> tuple[list[str], bool]:
    """Run ``who``'s part of the path on fresh input, the steps before it with their full
    policies and ``who``'s own under ``dropped()`` (its policy less one statement); returns the
    error codes its calls met and whether it reported a failure."""
    errors = Errors()

    @contextmanager
    def watched() -> Iterator[None]:
        with dropped(), aws.observe("after-call", errors):
            try:
                yield
            except ClientError as exc:  # the handler (or its event source) stopped on it
                errors.codes.append(str(exc.response.get("Error", {}).get("Code")))

    failed = False
    if who == "host":
        with dropped():
            return [], ship(st) != 0
    if who == "reader":
        keyfile = st.tmp / "master.key"
        keyfile.write_text(st.master.to_base64() + "\n")
        with dropped(), environment_credentials(st.creds["reader"]):
            rc = cli.main(["logs-from-archive", "--bucket", st.buckets.customer, "--stack", STACK,
                           "--decryption-keys-file", str(keyfile), "--app-id", "42",
                           "--download-location", str(st.tmp / f"r-{st.ships}")])
            rc = max(rc, cli.main(["audit", "--bucket", st.buckets.customer, "--stack", STACK,
                                   "--public-key-file", str(st.public_key)]))
        return [], rc != 0
    if who == "archive_scheduler":
        _archived_once(st)  # digest records waiting to be sealed
        assert ship(st) == 0  # and a staged segment to schedule
        with watched():
            schedule(st)
        drain(st, "archive_worker", "work")
    elif who == "archive_worker":
        assert ship(st) == 0
        assert schedule(st)["scheduled"] >= 1
        with watched():
            failed = bool(drain(st, "archive_worker", "work"))
    elif who == "index_archive":
        keys = _archived_once(st)
        with watched():
            failed = any(o.get("outcomes") != ["live"] for o in index(st, keys))
    elif who == "api_handler":
        with watched():
            status, _ = api(st, "POST", "/retrievals", QUESTION)
            failed = status != 202
    elif who == "retrieval_worker":
        status, _ = api(st, "POST", "/retrievals", QUESTION)
        assert status == 202
        with watched():
            failed = bool(drain(st, "retrieval_worker", "retrieval"))
    else:
        raise AssertionError(who)
    return errors.codes, failed


@pytest.mark.parametrize("who, sid", [(who, sid) for who, sids in EXERCISED.items() for sid in sids])
def test_dropping_a_statement_meets_access_denied(stage: Stage, who: str, sid: str) -> None:
    st = stage
    name = f"iam-{who}"
    full = st.policies[who]
    assert sid in {s["Sid"] for s in full["Statement"]}, f"{who} has no statement {sid}"
    policy = local_iam.local_policy(full, drop=sid) if who in FUNCTIONS else {
        **full, "Statement": [s for s in full["Statement"] if s["Sid"] != sid]}
    restored = local_iam.local_policy(full) if who in FUNCTIONS else full

    @contextmanager
    def dropped() -> Iterator[None]:
        local_iam.role_credentials(name, policy, admin=st.admin)  # the same sessions, the policy replaced
        try:
            yield
        finally:
            local_iam.role_credentials(name, restored, admin=st.admin)

    codes, failed = _step(st, who, dropped)
    if who in ("host", "reader"):
        assert failed, f"{who} without {sid} still succeeded"
    else:
        assert DENIED & set(codes), f"{who} without {sid}: no AccessDenied ({codes}, failed={failed})"

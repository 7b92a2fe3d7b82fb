"""``logarchive archive --once``: the Lambdas' scheduler and worker code, run locally.

The archiver is wired as the Lambdas wire it (``archiver.service.build``). The scheduler lists
the staging prefix and produces the same work items; they reach the same worker either in
process (default) or through an SQS queue (``--queue-url``), which this command then drains
with ``sqs_pump``, the way Lambda's event source mapping does (delete what succeeded, make the
rest visible again). Rounds repeat while items fail, up to ``--attempts``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from .. import aws
from ..awserrors import error_code
from ..errors import LogarchiveError, UsageError, describe
from ..layout import STACK_RE
from ..settings import ReplicationMode, Settings
from ._common import (
    add_compression_option,
    add_endpoint_options,
    add_key_options,
    add_progress_option,
    keyring_from_args,
    progress_enabled,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="archive staged log segments now (the hourly Lambdas, locally)")
    p.add_argument("--once", action="store_true", required=True, help="one scheduler run, then its work")
    p.add_argument("--staging", required=True, metavar="s3://BUCKET/PREFIX", help="where the shipper stages")
    p.add_argument("--archive-bucket", required=True, metavar="NAME", help="the versioned archive bucket")
    p.add_argument("--replicate-to", nargs="+", default=[], metavar="BUCKET",
                   help="customer bucket(s) to copy each archive to (default: none)")
    p.add_argument("--replication-mode", choices=[m.value for m in ReplicationMode],
                   default=ReplicationMode.DIRECT.value,
                   help="direct: the worker copies; s3-replication: S3 Replication does (default: direct)")
    p.add_argument("--stack", help="stack in archive keys (required; default: $LOGARCHIVE_STACK); objects "
                   "staged for another stack are quarantined")
    p.add_argument("--queue-url", help="hand work over through this SQS queue (default: in process)")
    p.add_argument("--table", help="idempotency table: the scheduler's in-flight leases, and with "
                   "--signing-key-file the digest chain's state and records (default: none)")
    p.add_argument("--attempts", type=int, default=3, help="deliveries of a failing item (default 3)")
    p.add_argument("--signing-key-file", metavar="P",
                   help="Ed25519 private key (PEM, `keys signing-generate`): record what is archived and "
                   "seal a signed digest of it before exiting; needs --table (docs/AUDIT.md; default: "
                   "no digest)")
    add_compression_option(p)  # else $LOGARCHIVE_COMPRESSION, as the worker Lambda
    add_key_options(p, encrypt=True)
    add_endpoint_options(p)
    add_progress_option(p)
    p.set_defaults(func=run)


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or len(url) <= 5:
        raise LogarchiveError(f"--staging {url!r}: expected s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


def run(args: argparse.Namespace) -> int:
    # Without a stack each staged object would name its own, and a shipper's word would
    # decide where in the archive bucket (and under which customer prefix) its bytes land.
    # Checked before the archiver is imported (Powertools' logger binds stdout at import).
    stack = args.stack or Settings.from_env().stack
    if not stack:
        raise UsageError("--stack (or $LOGARCHIVE_STACK) is required: the stack of the archive keys")
    if not STACK_RE.match(stack):
        raise UsageError(f"--stack {stack[:70]!r}: not a stack name ({STACK_RE.pattern})")
    from ..archiver import scheduler
    from ..archiver.service import build
    from ..archiver.worker import Outcome, Status
    from ..sqs_pump import pump
    from ..telemetry import metrics

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    aws.reset_clients()
    bucket, prefix = parse_s3_url(args.staging)
    env = Settings.from_env()
    settings = replace(
        env, compression=args.compression or env.compression,
        stack=stack, staging_bucket=bucket, staging_prefix=prefix,
        archive_bucket=args.archive_bucket, replicate_to=tuple(args.replicate_to),
        replication_mode=ReplicationMode(args.replication_mode), work_queue_url=args.queue_url or "",
        idempotency_table=args.table or "",
        signing_key_file=args.signing_key_file or "",
    )
    signer = None
    if args.signing_key_file and not args.table:
        raise UsageError("--signing-key-file needs --table: the digest chain's state and the records to "
                         "sign live in the idempotency table, where no writer of a bucket can change them")
    if args.signing_key_file:
        from ..archiver.sealing import signer_from_settings

        signer = signer_from_settings(settings)  # a bad key file fails before any work
        if not settings.stack:
            raise UsageError("--signing-key-file needs --stack (or $LOGARCHIVE_STACK)")
    keyring = keyring_from_args(args)
    if not keyring.can_encrypt:
        raise UsageError("no master key: give --key-file, --kms-key-id or set $LOGARCHIVE_KEYS")
    _check_buckets(aws.client("s3"), [settings.archive_bucket, *settings.replicate_to])
    archiver = build(settings, keyring)
    outcomes: list[Outcome] = []
    sender: Any = None if args.queue_url else scheduler.ListSender()
    report = archiver.schedule(sender)
    attempts = max(1, args.attempts)
    bodies = [] if args.queue_url else sender.bodies
    bar = _progress(bodies, outcomes) if progress_enabled(args) else None

    def failures(records: list[dict]) -> list[str]:
        return [f["itemIdentifier"] for f in archiver.handle(records, None, outcomes)["batchItemFailures"]]

    if args.queue_url:
        # Lambda's event source, played here: a message that failed ``attempts`` times stays
        # hidden in the queue for the rest of this run (a redrive policy would move it to the DLQ).
        failed = len(pump(archiver.sqs, args.queue_url, failures, attempts=attempts, visibility_timeout=900,
                          release_failed=False).failed)
    else:
        records = [{"messageId": str(i), "body": b} for i, b in enumerate(bodies)]
        for _ in range(attempts):  # what SQS redelivery does, in process
            retry = []
            for i in range(0, len(records), 10):
                batch = records[i:i + 10]
                bad = set(failures(batch))
                if bar is not None:
                    bar.advance()
                retry.extend(r for r in batch if r["messageId"] in bad)
            records = retry
            if not records:
                break
        failed = len(records)
    if bar is not None:
        bar.close()
    sealed = archiver.seal(signer) if signer is not None else None
    if signer is not None:
        if sealed is None or not sealed.key:
            raise LogarchiveError(f"digest of {settings.stack} not sealed: another run holds the seal")
    metrics.clear_metrics()  # no EMF on a terminal: the summary below says it
    if sealed is not None:
        print(f"sealed digest s3://{settings.archive_bucket}/{sealed.key} "
              f"({sealed.archives} archives, {sealed.events} explained events)")
    failed += report.send_failed
    quarantined = [o for o in outcomes if o.status is Status.QUARANTINED]
    archived = [o for o in outcomes if o.status in (Status.ARCHIVED, Status.ALREADY_ARCHIVED)]
    for o in archived:
        print(f"archived {o.job.name} -> s3://{settings.archive_bucket}/{o.archive_key}")
    for o in quarantined:
        print(f"quarantined {o.job.name} -> s3://{o.job.bucket}/{o.archive_key}: {o.reason}", file=sys.stderr)
    explained = [o for o in outcomes if o.status is Status.EXPLAINED]
    for o in explained:
        print(f"explained {o.job.name}: {o.reason}")
    raw = sum(o.bytes_in for o in archived)
    print(f"{len(archived)} archived ({raw} log bytes), {len(quarantined)} quarantined, {failed} failed"
          + (f", {len(explained)} explained" if explained else ""))
    return 1 if failed or quarantined else 0


class _Progress:
    """A bar on stderr over the staged bytes of this run, with archived / total segments."""

    def __init__(self, bodies: list[str], outcomes: list[Any]) -> None:
        from tqdm import tqdm

        from ..archiver.messages import Job

        self.outcomes, self.seen = outcomes, 0
        self.total = len(bodies)
        self.bar = tqdm(total=sum(Job.from_body(b).size for b in bodies), unit="B", unit_scale=True,
                        unit_divisor=1024, file=sys.stderr, dynamic_ncols=True, desc="archiving",
                        postfix={"segments": f"0/{self.total}"})

    def advance(self) -> None:
        new = self.outcomes[self.seen:]
        self.seen = len(self.outcomes)
        # One outcome per item handled (a failed delivery leaves none: it is tried again).
        self.bar.set_postfix(segments=f"{len(self.outcomes)}/{self.total}", refresh=False)
        self.bar.update(sum(o.job.size for o in new))

    def close(self) -> None:
        self.bar.close()


def _progress(bodies: list[str], outcomes: list[Any]) -> _Progress | None:
    return _Progress(bodies, outcomes) if bodies else None


def _check_buckets(s3: Any, buckets: list[str]) -> None:
    """Stop before any work when a bucket to write into is missing or AWS is out of reach: every
    object would fail the same way (in Lambda, SQS redelivery is the retry)."""
    for bucket in buckets:
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise LogarchiveError(f"s3://{bucket}: no such bucket (NoSuchBucket)") from None
            if code in ("403", "AccessDenied"):
                continue  # writing may still be allowed without s3:ListBucket
            raise LogarchiveError(f"s3://{bucket}: {describe(exc)}") from None

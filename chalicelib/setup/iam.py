"""Least-privilege IAM policies, one per Lambda function, from a stage's resources.

No wildcard actions, every resource named (buckets and prefixes, tables and their
indexes, queues, keys). The only ``"Resource": "*"`` is X-Ray's, which has no resource
level permissions. ``autogen_policy`` cannot do this: it reads app.py alone and would
see none of the calls made in chalicelib.
"""

from __future__ import annotations

from typing import Any

from ..digest import stack_digests_prefix
from ..layout import k8s_root
from ..settings import ReplicationMode
from ..staged import ARCHIVED_PREFIX, PENDING_PREFIX, QUARANTINE_PREFIX, RETIRE_PREFIX, heartbeat_key
from .resources import StageResources

Statement = dict[str, Any]

SQS_CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
               "sqs:GetQueueAttributes"]
DDB_READ_WRITE = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
# TransactWriteItems is authorised per item: put/update/delete and ConditionCheckItem.
# BatchGetItem: a page of results (order items -> their tasks) and of GET /retrievals (jobs).
JOBS_ACTIONS = [*DDB_READ_WRITE, "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem"]
S3_MULTIPART = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def _st(sid: str, actions: list[str], resources: list[str] | str, **extra: Any) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
            "Resource": resources if isinstance(resources, list) else [resources], **extra}


def _bucket(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def _objects(name: str, prefix: str = "") -> str:
    return f"arn:aws:s3:::{name}/{prefix}*"


def _archives(res: StageResources, bucket: str) -> list[str]:
    """The stack's archive objects in ``bucket``: Docker's and Kubernetes' layouts."""
    return [_objects(bucket, prefix) for prefix in res.archive_prefixes]


def _create_once(sid: str, resources: list[str]) -> list[Statement]:
    """PutObject that cannot overwrite: S3 checks it as well as our code (s3io.create_once).
    PutObject and CompleteMultipartUpload must carry If-None-Match; CreateMultipartUpload and
    UploadPart (also s3:PutObject, and taking no such header) are no object creation."""
    if_none_match = {"Null": {"s3:if-none-match": "false"}}
    parts = {"Bool": {"s3:ObjectCreationOperation": "false"}}
    return [
        _st(f"{sid}IfNoneMatch", ["s3:PutObject"], resources, Condition=if_none_match),
        _st(f"{sid}Parts", ["s3:PutObject"], resources, Condition=parts),
    ]


def _list(sid: str, bucket: str, *, versions: bool = False) -> Statement:
    # No s3:prefix condition: S3 answers a HEAD of a missing key with 404 only when the
    # caller may list the bucket, and a HEAD carries no prefix (the condition would turn
    # "not archived yet" into 403). The buckets are the stack's own.
    actions = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    if versions:
        actions.append("s3:ListBucketVersions")
    return _st(sid, actions, _bucket(bucket))


def _base(res: StageResources, function: str) -> list[Statement]:
    group = res.log_group_arn(function)
    return [
        _st("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [group, f"{group}:*"]),
        # Tracer: X-Ray has no resource-level permissions, so these two take "*".
        _st("Tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
    ]


def _keys(res: StageResources, *, encrypt: bool, decrypt: bool) -> list[Statement]:
    out = []
    if res.kms_key_arn:
        actions = (["kms:GenerateDataKey"] if encrypt else []) + (["kms:Decrypt"] if decrypt else [])
        out.append(_st("MasterKeyKms", actions, res.kms_key_arn))
    if res.keys_secret:
        out.append(_st("MasterKeysSecret", ["secretsmanager:GetSecretValue"], res.secret_arn))
    if res.keys_parameter:
        out.append(_st("MasterKeysParameter", ["ssm:GetParameter"], res.parameter_arn))
    return out


def _digest_records(res: StageResources) -> list[str]:
    from ..archiver.digest_table import records_prefix

    return [f"{records_prefix(res.stack)}*"]


def _digest_sealing(res: StageResources) -> list[Statement]:
    """The scheduler alone seals digests (chalicelib/archiver/sealing.py): it reads the chain's
    state and the workers' records in the idempotency table (no writer of a bucket can touch
    them), HEADs each recorded archive, commits the chain item, marks the records sealed, writes
    each digest to the archive bucket (and, in direct mode, every customer bucket; S3
    Replication's second rule otherwise), and signs."""
    if not res.digests:
        return []
    # Imported here: sealing loads telemetry, whose Powertools logger would print every CLI
    # command's log records as JSON on stdout (commands/setup imports this module).
    from ..archiver.digest_table import chain_id
    from ..archiver.sealing import staged_prefix

    stack = res.stack
    table = res.table_arn(res.idempotency_table)
    statements = [
        # The chain item (conditional put) and the records (read, then kept as sealed).
        _st("DigestChainState", ["dynamodb:GetItem", "dynamodb:PutItem"], table,
            Condition={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [chain_id(stack)]}}),
        _st("DigestRecords", ["dynamodb:Scan", "dynamodb:BatchWriteItem"], table),
        # Each recorded archive (and its instruction file) is checked with a HEAD before signing.
        _st("CheckRecordedArchives", ["s3:GetObject"], _objects(res.archive_bucket, res.archive_prefix)),
        # A digest's body waits here between the chain's commit and the digest object's write.
        _st("StagedDigest", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            _objects(res.archive_bucket, staged_prefix(stack))),
        _st("WriteDigests", ["s3:GetObject", "s3:PutObject"],
            [_objects(b, stack_digests_prefix(stack))
             for b in (res.archive_bucket, *res.direct_destinations)]),
    ]
    if res.signing_kms_key_arn:
        statements.append(_st("SignDigestsKms", ["kms:Sign", "kms:GetPublicKey"], res.signing_kms_key_arn))
    elif res.signing_key_secret:
        statements.append(_st("SigningKeySecret", ["secretsmanager:GetSecretValue"],
                              res.secret_arn_of(res.signing_key_secret)))
    else:
        statements.append(_st("SigningKeyParameter", ["ssm:GetParameter"],
                              res.parameter_arn_of(res.signing_key_parameter)))
    return statements


def archive_scheduler(res: StageResources) -> list[Statement]:
    swept = (res.archive_bucket, *res.direct_destinations)
    statements = [
        _list("ListStaging", res.staging_bucket),
        _st("ReadStagedMetadata", ["s3:GetObject"], _objects(res.staging_bucket, res.staging_prefix)),
        _st("FanOut", ["sqs:SendMessage", "sqs:GetQueueAttributes"], res.work_queue.arn),
        # Hosts (archiver/heartbeats.py): heartbeats are read as staged objects are (above); an
        # operator's retirement requests are read and cleared once sealed, with the retired host's
        # heartbeat.
        _st("HostRetirements", ["s3:GetObject", "s3:DeleteObject"],
            [_objects(res.staging_bucket, f"{RETIRE_PREFIX}{res.stack}/"),
             _bucket(res.staging_bucket) + "/"
             + heartbeat_key(res.staging_prefix.strip("/"), res.stack, "*")]),  # any host's
        # In-flight leases (chalicelib/archiver/lease.py): conditional put, release by delete.
        _st("RunLease", ["dynamodb:PutItem", "dynamodb:DeleteItem"], res.table_arn(res.idempotency_table)),
        # Every run aborts multipart uploads crashed workers left (scheduler.py, older than a day)
        # in the archive bucket and every bucket the worker writes directly.
        *[_list(f"ListUploads{i}", b) for i, b in enumerate(swept)],
        _st("AbortAbandonedUploads", ["s3:AbortMultipartUpload"],
            [a for b in swept for a in _archives(res, b)]),
    ]
    redriven = [a for b in res.replicate_to for a in _archives(res, b)]
    if res.replication_mode == ReplicationMode.S3_REPLICATION:
        statements += [
            # Pending-replication markers: read the status of each archive (HEAD), clear the marker.
            _st("PendingMarkers", ["s3:GetObject", "s3:DeleteObject"],
                _objects(res.staging_bucket, PENDING_PREFIX)),
            # ListBucketVersions on top of ListUploads0 (the archive bucket)
            _st("ListArchiveVersions", ["s3:ListBucketVersions"], f"arn:aws:s3:::{res.archive_bucket}"),
            _st("ReadArchives", ["s3:GetObject", "s3:GetObjectVersion"],
                _archives(res, res.archive_bucket)),
            # Re-drive of FAILED or stalled replication: a direct copy to each destination.
            *[_list(f"ListDestination{i}", b) for i, b in enumerate(res.replicate_to)],
            *([_st("RedriveReplication", ["s3:GetObject", *S3_MULTIPART], redriven),
               *_create_once("RedriveReplication", redriven)] if res.replicate_to else []),
        ]
    return statements + _digest_sealing(res)


def archive_worker(res: StageResources) -> list[Statement]:
    destinations = (res.archive_bucket, *res.direct_destinations)
    statements = [
        _st("Work", SQS_CONSUME, res.work_queue.arn),
        _list("ListStaging", res.staging_bucket),
        # Read a staged version; delete exactly that version once its archive is verified.
        _st("Staged", ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"],
            _objects(res.staging_bucket, res.staging_prefix)),
        # Bad input is moved aside (copy with reason metadata and a tag), never dropped.
        _st("Quarantine", ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", *S3_MULTIPART],
            _objects(res.staging_bucket, QUARANTINE_PREFIX)),
        # "archived" markers (empty, the archive key in metadata), left before the staged delete.
        _st("MarkArchived", ["s3:PutObject"],
            _objects(res.staging_bucket, ARCHIVED_PREFIX + res.staging_prefix)),
        *[_list(f"ListDestination{i}", b) for i, b in enumerate(destinations)],
        _st("WriteArchives", ["s3:GetObject", *S3_MULTIPART],
            [a for b in destinations for a in _archives(res, b)]),
        *_create_once("WriteArchives", [a for b in destinations for a in _archives(res, b)]),
        *_keys(res, encrypt=True, decrypt=False),
    ]
    if res.replication_mode == ReplicationMode.S3_REPLICATION:
        statements.append(_st("MarkPending", ["s3:PutObject"], _objects(res.staging_bucket, PENDING_PREFIX)))
    if res.digests:
        # A record of each finished archive or explained event, for the scheduler's next digest:
        # created once (a conditional put), and only under the stack's record ids.
        only_records = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": _digest_records(res)}}
        statements.append(_st("RecordForDigest", ["dynamodb:PutItem"], res.table_arn(res.idempotency_table),
                              Condition=only_records))
    return statements


def index_archive(res: StageResources) -> list[Statement]:
    # Invoked by the EventBridge rule of the archive bucket's "Object Created"/"Object Deleted"
    # events (the rule's resource policy on the function, not this role, allows that). Per event
    # it HEADs the key; on 404 it lists that key's versions and HEADs the newest data version.
    return [
        # ListBucket: a HEAD of a deleted key answers 404, not 403; ListBucketVersions: the lookup.
        _st("ListArchives", ["s3:ListBucket", "s3:ListBucketVersions"], _bucket(res.archive_bucket)),
        # Metadata only (HEAD), of the current or a given version; never the body's keys.
        _st("ReadArchiveMetadata", ["s3:GetObject", "s3:GetObjectVersion"],
            _archives(res, res.archive_bucket)),
        # index/store.py: a consistent GetItem of the head, then conditional PutItems, the
        # selector's years item (UpdateItem ADD), and the deletion of schema-1 items (BatchWriteItem).
        _st("Index",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
            res.table_arn(res.index_table)),
        # "Object Restore Completed": find the jobs waiting for the archive (Query), skip the
        # cancelled ones (GetItem), resume each task (a transaction of two updates), drop its
        # wait item, send its scan.
        _st("ResumeJobs", ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem",
                           "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"],
            res.table_arn(res.jobs_table)),
        _st("ResumeScans", ["sqs:SendMessage"], res.retrieval_queue.arn),
    ]


def retrieval_worker(res: StageResources) -> list[Statement]:
    index = res.table_arn(res.index_table)
    return [
        _st("Retrievals", [*SQS_CONSUME, "sqs:SendMessage"], res.retrieval_queue.arn),
        _st("ReadArchives", ["s3:GetObject", "s3:GetObjectVersion"],
            _archives(res, res.archive_bucket)),
        # Archives a job finds in cold storage are restored (jobs/scan_step.py).
        _st("RestoreArchives", ["s3:RestoreObject"], _archives(res, res.archive_bucket)),
        _list("ListResults", res.results_bucket),
        _st("WriteResults", ["s3:PutObject", "s3:GetObject", *S3_MULTIPART],
            _objects(res.results_bucket, res.results_prefix)),
        _st("ReadIndex", ["dynamodb:GetItem", "dynamodb:Query"], [index, f"{index}/index/*"]),
        _st("Jobs", JOBS_ACTIONS, res.table_arn(res.jobs_table)),
        *_keys(res, encrypt=False, decrypt=True),
    ]


def api_handler(res: StageResources) -> list[Statement]:
    index = res.table_arn(res.index_table)
    return [
        _st("ReadIndex", ["dynamodb:GetItem", "dynamodb:Query"], [index, f"{index}/index/*"]),
        _st("Jobs", JOBS_ACTIONS, res.table_arn(res.jobs_table)),
        _st("StartRetrievals", ["sqs:SendMessage", "sqs:GetQueueAttributes"], res.retrieval_queue.arn),
        # Presigned GET URLs carry this role's permission: archives and results only.
        _st("PresignArchives", ["s3:GetObject", "s3:GetObjectVersion"],
            _archives(res, res.archive_bucket)),
        _st("PresignResults", ["s3:GetObject"], _objects(res.results_bucket, res.results_prefix)),
        # GET /health asks the archive bucket its location (api/health.py; the table and the
        # queue are asked with the grants above).
        _st("HealthArchiveBucket", ["s3:GetBucketLocation"], _bucket(res.archive_bucket)),
        # The HMAC key of pagination tokens (api/tokens.py).
        _st("PageTokenSecret", ["secretsmanager:GetSecretValue"], res.api_token_secret_arn),
    ]


_BUILDERS = {
    "archive_scheduler": archive_scheduler,
    "archive_worker": archive_worker,
    "index_archive": index_archive,
    "retrieval_worker": retrieval_worker,
    "api_handler": api_handler,
}


def function_policy(res: StageResources, function: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [*_base(res, function), *_BUILDERS[function](res)]}


def replication_role_policy(res: StageResources) -> dict[str, Any]:
    """The role S3 assumes to replicate the archive bucket to the customers' buckets."""
    statements = [
        _st("SourceBucket", ["s3:GetReplicationConfiguration", "s3:ListBucket"], _bucket(res.archive_bucket)),
        _st("SourceObjects", ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
                              "s3:GetObjectVersionTagging"], _objects(res.archive_bucket)),
    ]
    if res.replicate_to:
        # What the customer's bucket policy grants (bucket_policy.py): no ReplicateDelete (delete
        # markers are never replicated), no ReplicateTags (archives and digests carry no tags).
        statements.append(_st("Destinations", ["s3:ReplicateObject", "s3:ObjectOwnerOverrideToBucketOwner"],
                              [_objects(b) for b in res.replicate_to]))
    return {"Version": "2012-10-17", "Statement": statements}


def host_policy(res: StageResources, host: str) -> dict[str, Any]:
    """Host ``host``'s role in stage ``res``: the one host policy (``setup/host_policy.py``:
    its own staging path and markers, and its own history), from the stage's names."""
    from .host_policy import policy  # that module builds on host_history_read below

    return policy(stack=res.stack, host=host, staging_bucket=res.staging_bucket,
                  staging_prefix=res.staging_prefix)


def customer_reader_policy(bucket: str, stack: str) -> dict[str, Any]:
    """Read-only access to a customer's bucket for ``logs-from-archive`` (docs/RETRIEVAL.md,
    "Permissions") and ``audit`` (docs/AUDIT.md: the archives and the stack's signed digests)."""
    return {"Version": "2012-10-17", "Statement": [
        _st("ListArchive", ["s3:ListBucket", "s3:ListBucketVersions"], _bucket(bucket)),
        # Docker's archives and Kubernetes' (``_k8s/<stack>/``, layout.py).
        _st("ReadArchives", ["s3:GetObject", "s3:GetObjectVersion"],
            [_objects(bucket, f"{stack}/shareable/"), _objects(bucket, k8s_root(stack))]),
        _st("ReadDigests", ["s3:GetObject", "s3:GetObjectVersion"],
            _objects(bucket, stack_digests_prefix(stack))),
    ]}


def host_history_read(staging_bucket: str, staging_prefix: str, stack: str, host: str,
                      archive_bucket: str = "") -> list[Statement]:
    """What one host's shipper reads of its own history: the start check of its state and
    ``logarchive ship --rebuild-state`` (docs/SHIPPER.md, "Host policy"). Added to the host's
    role beside what it writes: HEADs of its own quarantined segments (its staged segments and
    ``archived/`` markers it reads already), and with ``--archive-bucket`` a listing of the
    stack's v3 archive keys and HEADs of them (metadata; the bodies are ciphertext under keys
    the host never holds). The archive's key layout names containers, not hosts, so that part
    cannot be narrowed to one host's containers."""
    own = "/".join(p for p in (staging_prefix.strip("/"), stack, host) if p) + "/"
    statements = [_st("OwnQuarantinedSegments", ["s3:GetObject"],
                      _objects(staging_bucket, QUARANTINE_PREFIX + own))]
    if archive_bucket:
        statements += [
            _st("ListStackArchives", ["s3:ListBucket"], _bucket(archive_bucket),
                Condition={"StringLike": {"s3:prefix": [f"{stack}/shareable/v3/*"]}}),
            _st("ReadArchiveMetadata", ["s3:GetObject"], _objects(archive_bucket, f"{stack}/shareable/v3/")),
        ]
    return statements

"""CloudFormation for the resources Chalice does not create: queues, tables, alarms, roles.

``merge_template`` is given to ``chalice package --merge-template``; Chalice deep-merges it
into its SAM template, so besides new resources it can add properties to the functions
Chalice generates (``FunctionResponseTypes``, the queue ARN, the S3 bucket of the
EventBridge rule, the function name). ``infra_template`` holds the same resources alone,
for ``chalice deploy``, which creates only functions, roles, the API and event sources.
"""

from __future__ import annotations

from typing import Any

from ..settings import ReplicationMode
from . import alarms
from .iam import replication_role_policy
from .post_deploy import EPHEMERAL_STORAGE_MB
from .resources import StageResources, cfn_name

FOURTEEN_DAYS = 14 * 24 * 3600
# SQS: the visibility timeout of a Lambda event source must be at least the function's
# timeout; AWS advises six times it (retries of a throttled batch).
WORKER_TIMEOUT = 900
VISIBILITY_TIMEOUT = 6 * WORKER_TIMEOUT
MAX_RECEIVE_COUNT = 5


def _queue(name: str, dlq_logical: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "QueueName": name,
        "MessageRetentionPeriod": FOURTEEN_DAYS,
        "SqsManagedSseEnabled": True,
    }
    if dlq_logical:
        props["VisibilityTimeout"] = VISIBILITY_TIMEOUT
        props["RedrivePolicy"] = {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_logical, "Arn"]},
            "maxReceiveCount": MAX_RECEIVE_COUNT,
        }
    return {"Type": "AWS::SQS::Queue", "Properties": props}


def _table(name: str, keys: list[tuple[str, str]], *, ttl: str = "", retain: bool = False) -> dict[str, Any]:
    attrs = [name_ for name_, _ in keys]
    props: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attrs],
        "KeySchema": [{"AttributeName": a, "KeyType": kind} for a, kind in keys],
        "SSESpecification": {"SSEEnabled": True},
    }
    if ttl:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl, "Enabled": True}
    if retain:
        props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    table: dict[str, Any] = {"Type": "AWS::DynamoDB::Table", "Properties": props}
    if retain:
        table["DeletionPolicy"] = "Retain"
        table["UpdateReplacePolicy"] = "Retain"
    return table


def _dlq_alarm(res: StageResources, queue_logical: str, what: str) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"logarchive-{res.stage}-{what}-dead-letters",
            "AlarmDescription": f"{what} messages failed {MAX_RECEIVE_COUNT} times and wait in the "
                                "dead-letter queue: see docs/OPERATIONS.md (re-drive)",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_logical, "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
            "OKActions": [{"Ref": "AlarmTopic"}],
        },
    }


def infra_resources(res: StageResources) -> dict[str, Any]:
    """Queues with dead-letter queues, tables, alarms and (for S3 Replication) its role."""
    resources: dict[str, Any] = {
        "WorkDeadLetterQueue": _queue(res.work_queue.dlq_name, None),
        "WorkQueue": _queue(res.work_queue.name, "WorkDeadLetterQueue"),
        "RetrievalDeadLetterQueue": _queue(res.retrieval_queue.dlq_name, None),
        "RetrievalQueue": _queue(res.retrieval_queue.name, "RetrievalDeadLetterQueue"),
        # Powertools Idempotency's default schema: partition key "id", TTL "expiration".
        "IdempotencyTable": _table(res.idempotency_table, [("id", "HASH")], ttl="expiration"),
        # Index and jobs: pk/sk strings (chalicelib/index/schema.py, chalicelib/jobs/); the
        # index keeps deletion tombstones until their TTL.
        "IndexTable": _table(res.index_table, [("pk", "HASH"), ("sk", "RANGE")], ttl="expires_at",
                             retain=True),
        "JobsTable": _table(res.jobs_table, [("pk", "HASH"), ("sk", "RANGE")], ttl="expires_at"),
        "AlarmTopic": {"Type": "AWS::SNS::Topic",
                       "Properties": {"TopicName": f"logarchive-{res.stage}-alarms"}},
        "WorkDeadLetterAlarm": _dlq_alarm(res, "WorkDeadLetterQueue", "archive-work"),
        "RetrievalDeadLetterAlarm": _dlq_alarm(res, "RetrievalDeadLetterQueue", "retrieval"),
        "WorkBacklogAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": f"logarchive-{res.stage}-archive-work-backlog",
                "AlarmDescription": "the oldest staged segment waits over an hour: workers fall behind",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkQueue", "QueueName"]}}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 2,
                "Threshold": 3600,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlarmTopic"}],
            },
        },
    }
    resources.update(alarms.resources(res))  # no archive run, a silent host, seal failures, a failed job
    if not res.api_token_secret.startswith("arn:"):  # an ARN names a secret managed elsewhere
        resources["ApiTokenSecret"] = {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Name": res.api_token_secret,
                "Description": "HMAC key of the retrieval API's pagination tokens; rotating it "
                               "invalidates outstanding tokens (docs/OPERATIONS.md)",
                "GenerateSecretString": {"PasswordLength": 64, "ExcludePunctuation": True},
            },
        }
    if res.replication_mode == ReplicationMode.S3_REPLICATION:
        resources["ReplicationRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": res.replication_role_name,
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                                   "Action": "sts:AssumeRole"}],
                },
                "Policies": [{"PolicyName": "s3-replication",
                              "PolicyDocument": replication_role_policy(res)}],
            },
        }
    return resources


def infra_outputs(res: StageResources) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "WorkQueueUrl": {"Value": {"Ref": "WorkQueue"}},
        "RetrievalQueueUrl": {"Value": {"Ref": "RetrievalQueue"}},
        "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
    }
    if res.replication_mode == ReplicationMode.S3_REPLICATION:
        outputs["ReplicationRoleArn"] = {"Value": {"Fn::GetAtt": ["ReplicationRole", "Arn"]}}
    return outputs


def function_overrides(res: StageResources) -> dict[str, Any]:
    """Properties merged into the functions ``chalice package`` generates, by logical id."""
    # The queue stays the one Chalice names (by queue name, Fn::Sub): a dict merged onto
    # it would keep both keys. app.py takes that name from the stage's queue URL, and
    # DependsOn makes CloudFormation create the queue before the event source mapping.
    report_failures = {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}}

    overrides: dict[str, Any] = {}
    for fn in ("archive_scheduler", "archive_worker", "index_archive", "retrieval_worker", "api_handler"):
        # The name chalice deploy gives, so the log-group ARNs of the policies match.
        overrides[cfn_name(fn)] = {"Properties": {"FunctionName": res.function_name(fn)}}
    for worker in ("ArchiveWorker", "RetrievalWorker"):
        # /tmp holds a sealed archive (or a retrieval's results) of up to 2 GB.
        overrides[worker]["Properties"]["EphemeralStorage"] = {"Size": EPHEMERAL_STORAGE_MB}
    overrides["ArchiveWorker"]["DependsOn"] = ["WorkQueue"]
    overrides["ArchiveWorker"]["Properties"]["Events"] = {"ArchiveWorkerSqsEventSource": report_failures}
    overrides["RetrievalWorker"]["DependsOn"] = ["RetrievalQueue"]
    overrides["RetrievalWorker"]["Properties"]["Events"] = {"RetrievalWorkerSqsEventSource": report_failures}
    # on_s3_event cannot be packaged (CloudFormation cannot change an existing bucket's
    # notifications): the indexer's trigger is an EventBridge rule on the archive bucket's
    # events, defined whole here so that the template holds it whether app.py declares it
    # with on_cw_event (Chalice names that event IndexArchiveEvent) or not at all.
    overrides["IndexArchive"]["Properties"]["Events"] = {
        "IndexArchiveEvent": {
            "Type": "CloudWatchEvent",
            "Properties": {"Pattern": {
                "source": ["aws.s3"],
                # index/indexer.py INDEXER_EVENTS (the restore completion resumes retrieval jobs).
                "detail-type": ["Object Created", "Object Deleted", "Object Storage Class Changed",
                                "Object Restore Completed"],
                # Archives only: the sealer's records and digests under _logarchive/ are no
                # index entries (the indexer would skip them, one invocation each).
                "detail": {"bucket": {"name": [res.archive_bucket]},
                           "object": {"key": [{"prefix": p} for p in res.archive_prefixes]}},
            }},
        }
    }
    return overrides


def merge_template(res: StageResources) -> dict[str, Any]:
    return {
        "Resources": {**infra_resources(res), **function_overrides(res)},
        "Outputs": infra_outputs(res),
    }


def infra_template(res: StageResources) -> dict[str, Any]:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"logarchive {res.stage}: queues, tables and alarms for `chalice deploy`",
        "Resources": infra_resources(res),
        "Outputs": infra_outputs(res),
    }

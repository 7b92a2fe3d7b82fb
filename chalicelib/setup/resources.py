"""What one deployment stage uses, from its environment variables in .chalice/config.json.

The stage's ``environment_variables`` are the single source of truth, read by the Lambdas'
own reader (``Settings.from_env``); this module adds the deploy-time checks (what must be
set, ARNs, queue URLs) and derives names. The IAM policy files, the merge template and the
infra template are all generated from the result (``deployment.py``), so names cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LogarchiveError
from ..layout import k8s_root
from ..settings import Env, ReplicationMode, Settings, max_concurrency, require

APP_NAME = "logarchive"
# The Lambda functions of app.py (docs/ARCHITECTURE.md), and their CloudFormation names
# as ``chalice package`` writes them.
FUNCTIONS = ("archive_scheduler", "archive_worker", "index_archive", "retrieval_worker", "api_handler")
_QUEUE_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(\d{12})/([A-Za-z0-9_-]{1,80})$")


def deployed_function_name(app: str, stage: str, function: str) -> str:
    """The name ``chalice deploy`` gives a function: ``<app>-<stage>-<name>``, but the API
    handler's is ``<app>-<stage>`` (its old deployer's name, kept for compatibility)."""
    return f"{app}-{stage}" if function == "api_handler" else f"{app}-{stage}-{function}"


def deployed_role_name(app: str, stage: str, function: str) -> str:
    """The role ``chalice deploy`` creates for a function with its own policy file."""
    return f"{app}-{stage}-{function}"


def deployed_rule_name(app: str, stage: str, function: str) -> str:
    """The EventBridge rule ``chalice deploy`` creates for a scheduled or event handler."""
    return f"{app}-{stage}-{function}-event"


class DeploymentConfigError(LogarchiveError):
    """.chalice/config.json lacks or misstates a setting the deployment needs."""


def cfn_name(function: str) -> str:
    """The logical id ``chalice package`` gives a function (``api_handler`` is special)."""
    if function == "api_handler":
        return "APIHandler"
    return "".join(part.capitalize() for part in function.split("_"))


def role_cfn_name(function: str) -> str:
    return "".join(part.capitalize() for part in function.split("_")) + "Role"


@dataclass(frozen=True)
class Queue:
    url: str
    region: str
    account: str
    name: str

    @classmethod
    def parse(cls, url: str, setting: str) -> Queue:
        m = _QUEUE_URL.match(url)
        if not m:
            raise DeploymentConfigError(f"{setting}={url!r} is not an SQS queue URL")
        return cls(url, m.group(1), m.group(2), m.group(3))

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


def api_token_secret_name(stage: str) -> str:
    """The secret a stage's template generates to sign the API's page tokens."""
    return f"{APP_NAME}-{stage}-api-token"


@dataclass(frozen=True)
class StageResources:
    stage: str
    region: str
    account: str
    stack: str
    staging_bucket: str
    staging_prefix: str
    archive_bucket: str
    replicate_to: tuple[str, ...]
    replication_mode: ReplicationMode
    work_queue: Queue
    retrieval_queue: Queue
    idempotency_table: str
    index_table: str
    jobs_table: str
    results_bucket: str
    results_prefix: str
    kms_key_arn: str
    keys_secret: str
    keys_parameter: str
    api_token_secret: str  # Secrets Manager secret signing the API's page tokens (name or ARN)
    # MaximumConcurrency of the SQS workers' event sources (app.py passes it to Chalice).
    archive_max_concurrency: int
    retrieval_max_concurrency: int
    # The digest signing key (docs/AUDIT.md): a KMS key ARN, or an Ed25519 PEM in a secret/parameter.
    signing_kms_key_arn: str = ""
    signing_key_secret: str = ""
    signing_key_parameter: str = ""
    # Where the Lambdas' EMF metrics land (telemetry.py): the alarms on them (alarms.py) must match.
    metrics_namespace: str = "logarchive"
    metrics_service: str = "logarchive"
    host_silent_seconds: int = 21600

    @classmethod
    def from_env(cls, stage: str, env: Env) -> StageResources:
        try:
            s = Settings.from_env(env)
            caps = {fn: max_concurrency(fn, env) for fn in ("archive_worker", "retrieval_worker")}
        except LogarchiveError as exc:
            raise DeploymentConfigError(f"stage {stage}: {exc}") from None

        def need(value: str, name: str) -> str:
            try:
                return require(value, f"environment variable {name}")
            except LogarchiveError as exc:
                raise DeploymentConfigError(f"stage {stage}: {exc}") from None

        work = Queue.parse(need(s.work_queue_url, "LOGARCHIVE_WORK_QUEUE_URL"), "LOGARCHIVE_WORK_QUEUE_URL")
        retrieval = Queue.parse(need(s.retrieval_queue_url, "LOGARCHIVE_RETRIEVAL_QUEUE_URL"),
                                "LOGARCHIVE_RETRIEVAL_QUEUE_URL")
        if (retrieval.region, retrieval.account) != (work.region, work.account):
            raise DeploymentConfigError(f"stage {stage}: the two queues are in different accounts or regions")
        if s.kms_key_id and not s.kms_key_id.startswith("arn:"):
            # A policy needs the key's ARN; an alias or bare id cannot be scoped.
            raise DeploymentConfigError(f"stage {stage}: LOGARCHIVE_KMS_KEY_ID must be a key ARN")
        if s.signing_kms_key_id and not s.signing_kms_key_id.startswith("arn:"):
            raise DeploymentConfigError(f"stage {stage}: LOGARCHIVE_SIGNING_KMS_KEY_ID must be a key ARN")
        res = cls(
            stage=stage,
            region=work.region,
            account=work.account,
            stack=need(s.stack, "LOGARCHIVE_STACK"),
            staging_bucket=need(s.staging_bucket, "LOGARCHIVE_STAGING_BUCKET"),
            staging_prefix=s.staging_prefix,
            archive_bucket=need(s.archive_bucket, "LOGARCHIVE_ARCHIVE_BUCKET"),
            replicate_to=s.replicate_to,
            replication_mode=s.replication_mode,
            work_queue=work,
            retrieval_queue=retrieval,
            idempotency_table=need(s.idempotency_table, "LOGARCHIVE_IDEMPOTENCY_TABLE"),
            index_table=need(s.index_table, "LOGARCHIVE_INDEX_TABLE"),
            jobs_table=need(s.jobs_table, "LOGARCHIVE_JOBS_TABLE"),
            results_bucket=need(s.results_bucket, "LOGARCHIVE_RESULTS_BUCKET"),
            results_prefix=s.results_prefix,
            kms_key_arn=s.kms_key_id,
            keys_secret=s.keys_secret,
            keys_parameter=s.keys_parameter,
            api_token_secret=s.api_token_secret or api_token_secret_name(stage),
            archive_max_concurrency=caps["archive_worker"],
            retrieval_max_concurrency=caps["retrieval_worker"],
            signing_kms_key_arn=s.signing_kms_key_id,
            signing_key_secret=s.signing_key_secret,
            signing_key_parameter=s.signing_key_parameter,
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "logarchive",
            metrics_service=env.get("POWERTOOLS_SERVICE_NAME", "").strip() or "logarchive",
            host_silent_seconds=s.host_silent_seconds,
        )
        if not (res.kms_key_arn or res.keys_secret or res.keys_parameter):
            raise DeploymentConfigError(
                f"stage {stage}: no key source (LOGARCHIVE_KMS_KEY_ID, LOGARCHIVE_KEYS_SECRET or "
                "LOGARCHIVE_KEYS_PARAMETER); a deployed Lambda never reads keys from its environment"
            )
        return res

    # --- names and ARNs ---------------------------------------------------------------------

    def function_name(self, function: str) -> str:
        """The deployed function name (``chalice deploy``'s; the merge template sets the same)."""
        return deployed_function_name(APP_NAME, self.stage, function)

    @property
    def replication_role_name(self) -> str:
        return f"{APP_NAME}-{self.stage}-replication"

    @property
    def replication_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.replication_role_name}"

    def table_arn(self, table: str) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{table}"

    def log_group_arn(self, function: str) -> str:
        name = f"/aws/lambda/{self.function_name(function)}"
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}"

    @property
    def archive_prefix(self) -> str:
        # Everything this stack writes: the v3 (and v2) layouts start with it.
        return f"{self.stack}/shareable/"

    @property
    def archive_prefixes(self) -> tuple[str, str]:
        """The stack's archives: Docker's (``archive_prefix``) and Kubernetes' (``_k8s/<stack>/``)."""
        return (self.archive_prefix, k8s_root(self.stack))

    @property
    def secret_arn(self) -> str:
        return self.secret_arn_of(self.keys_secret)

    def secret_arn_of(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        # Secrets Manager appends "-" and six random characters to a secret's ARN.
        return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{name}-??????"

    @property
    def api_token_secret_arn(self) -> str:
        if self.api_token_secret.startswith("arn:"):
            return self.api_token_secret
        return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{self.api_token_secret}-??????"

    @property
    def parameter_arn(self) -> str:
        return self.parameter_arn_of(self.keys_parameter)

    def parameter_arn_of(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:ssm:{self.region}:{self.account}:parameter/{name.lstrip('/')}"

    @property
    def digests(self) -> bool:
        """A signing key is named: workers record, the scheduler seals (docs/AUDIT.md)."""
        return bool(self.signing_kms_key_arn or self.signing_key_secret or self.signing_key_parameter)

    @property
    def direct_destinations(self) -> tuple[str, ...]:
        return self.replicate_to if self.replication_mode == ReplicationMode.DIRECT else ()

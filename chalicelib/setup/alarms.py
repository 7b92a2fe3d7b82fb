"""The stage's alarms on its own metrics (EMF, telemetry.py), all on the stage's alarm topic.

The local AWS evaluates no alarm: tests check the template, and ``setup check --stage S`` lists
them (``describe``). The dead-letter and backlog alarms on SQS's metrics are in templates.py.

- ``…-no-archive-run``: ``ArchiveRuns`` (one per finished scheduler run) Sum < 1 for 2 hours,
  missing data breaching: no archive run in 2 h.
- ``…-host-silent``: ``HostsSilent`` >= 1: a host's heartbeat is older than
  ``LOGARCHIVE_HOST_SILENT_SECONDS`` (6 h).
- ``…-digest-seal-failures``: ``DigestSealFailures`` >= 1: a digest was not sealed (or refused).
- ``…-retrieval-job-failed``: ``RetrievalArchivesFailed`` (retrieval worker) >= 1: a job failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LogarchiveError
from .resources import StageResources

HOUR = 3600


@dataclass(frozen=True)
class AlarmSpec:
    logical_id: str
    suffix: str  # the alarm is named logarchive-<stage>-<suffix>
    metric: str
    statistic: str
    period: int
    evaluation_periods: int
    comparison: str
    threshold: float
    missing: str  # TreatMissingData
    description: str


def specs(res: StageResources) -> list[AlarmSpec]:
    silent = res.host_silent_seconds
    silent_text = f"{silent // 3600} h" if silent % 3600 == 0 else f"{silent} s"
    return [
        AlarmSpec("NoArchiveRunAlarm", "no-archive-run", "ArchiveRuns", "Sum", HOUR, 2,
                  "LessThanThreshold", 1, "breaching",
                  "no archive run (the scheduler at :30) finished in 2 hours: nothing is archived or "
                  "sealed; see the archive_scheduler's logs (docs/OPERATIONS.md, alarms)"),
        AlarmSpec("HostSilentAlarm", "host-silent", "HostsSilent", "Maximum", HOUR, 1,
                  "GreaterThanOrEqualToThreshold", 1, "notBreaching",
                  f"a shipper host wrote no heartbeat for over {silent_text}: its logs may exist "
                  "nowhere else; `logarchive status` names it (retire it with `logarchive hosts retire` "
                  "if it is gone on purpose)"),
        AlarmSpec("DigestSealFailuresAlarm", "digest-seal-failures", "DigestSealFailures", "Sum", HOUR, 1,
                  "GreaterThanOrEqualToThreshold", 1, "notBreaching",
                  "the archive run could not seal the next signed digest (docs/AUDIT.md): the records "
                  "wait, the chain does not grow"),
        AlarmSpec("RetrievalJobFailedAlarm", "retrieval-job-failed", "RetrievalArchivesFailed", "Sum", 300, 1,
                  "GreaterThanOrEqualToThreshold", 1, "notBreaching",
                  "a retrieval job failed on an archive (its result names it); see the "
                  "retrieval_worker's logs"),
    ]


def name(res: StageResources, spec: AlarmSpec) -> str:
    return f"logarchive-{res.stage}-{spec.suffix}"


def resources(res: StageResources) -> dict[str, Any]:
    """CloudFormation alarms, by logical id, notifying the stage's ``AlarmTopic`` (alarm and OK)."""
    out: dict[str, Any] = {}
    for spec in specs(res):
        out[spec.logical_id] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": name(res, spec),
                "AlarmDescription": spec.description,
                "Namespace": res.metrics_namespace,
                "MetricName": spec.metric,
                "Dimensions": [{"Name": "service", "Value": res.metrics_service}],
                "Statistic": spec.statistic,
                "Period": spec.period,
                "EvaluationPeriods": spec.evaluation_periods,
                "Threshold": spec.threshold,
                "ComparisonOperator": spec.comparison,
                "TreatMissingData": spec.missing,
                "AlarmActions": [{"Ref": "AlarmTopic"}],
                "OKActions": [{"Ref": "AlarmTopic"}],
            },
        }
    return out


def describe(res: StageResources, template_resources: dict[str, Any]) -> list[str]:
    """One line per alarm of the stage's template (these and the SQS ones): name, metric, condition."""
    ops = {"LessThanThreshold": "<", "GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=",
           "LessThanOrEqualToThreshold": "<="}
    lines = []
    for logical, r in sorted(template_resources.items()):
        if r.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        p = r["Properties"]
        window = p["Period"] * p["EvaluationPeriods"]
        span = f"{window // 3600} h" if window % 3600 == 0 else f"{window // 60} min"
        lines.append(f"{p['AlarmName']}: {p['Namespace']} {p['MetricName']} {p['Statistic']} "
                     f"{ops.get(p['ComparisonOperator'], p['ComparisonOperator'])} {p['Threshold']:g} "
                     f"over {span} ({logical})")
    return lines


def stage_listing(project_dir: str, stage: str) -> list[str]:
    """``describe`` of the stage's template, from the project's ``.chalice/config.json``."""
    import json
    from pathlib import Path

    from . import deployment, templates

    path = Path(project_dir) / ".chalice" / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LogarchiveError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    res = deployment.stage_resources(config, stage)
    return describe(res, templates.infra_template(res)["Resources"])

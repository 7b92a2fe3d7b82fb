"""The stage's alarms (the local AWS evaluates none, so the template is what is checked): each on
the alarm topic, on a metric the code really publishes, in the stage's namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_deployment_files import ENV, actions_on

from chalicelib.setup import alarms, iam, templates
from chalicelib.setup.resources import StageResources

ROOT = Path(__file__).resolve().parents[1]
WANTED = {  # the four: metric, statistic, comparison, threshold, period × periods
    "logarchive-prod-no-archive-run": ("ArchiveRuns", "Sum", "LessThanThreshold", 1, 7200, "breaching"),
    "logarchive-prod-host-silent": ("HostsSilent", "Maximum", "GreaterThanOrEqualToThreshold", 1, 3600,
                                    "notBreaching"),
    "logarchive-prod-digest-seal-failures": ("DigestSealFailures", "Sum", "GreaterThanOrEqualToThreshold", 1,
                                             3600, "notBreaching"),
    "logarchive-prod-retrieval-job-failed": ("RetrievalArchivesFailed", "Sum", "GreaterThanOrEqualToThreshold",
                                             1, 300, "notBreaching"),
}


def _published() -> set[str]:
    """Every metric name the Lambdas' code counts (telemetry.count / add_seconds / add_bytes)."""
    names = set()
    for path in (ROOT / "chalicelib").rglob("*.py"):
        names |= set(re.findall(r'telemetry\.(?:count|add_seconds|add_bytes)\("(\w+)"', path.read_text()))
    return names


@pytest.mark.parametrize("build", [templates.merge_template, templates.infra_template])
def test_every_new_alarm_is_on_the_topic_and_a_published_metric(build) -> None:
    res = StageResources.from_env("prod", {**ENV, "POWERTOOLS_METRICS_NAMESPACE": "acme",
                                           "LOGARCHIVE_HOST_SILENT_SECONDS": "7200"})
    resources = build(res)["Resources"]
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    found = {r["Properties"]["AlarmName"]: r["Properties"] for r in resources.values()
             if r.get("Type") == "AWS::CloudWatch::Alarm"}
    published = _published()
    for name, (metric, stat, op, threshold, window, missing) in WANTED.items():
        p = found[name]
        assert (p["MetricName"], p["Statistic"], p["ComparisonOperator"], p["Threshold"]) == (
            metric, stat, op, threshold)
        assert (p["Period"] * p["EvaluationPeriods"], p["TreatMissingData"]) == (window, missing)
        assert p["Namespace"] == "acme" and p["Dimensions"] == [{"Name": "service", "Value": "logarchive"}]
        assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}] and p["OKActions"] == [{"Ref": "AlarmTopic"}]
        assert metric in published, f"{metric}: no code publishes it"
    assert "2 h" in found["logarchive-prod-host-silent"]["AlarmDescription"]


def test_setup_check_lists_every_alarm_of_the_stage() -> None:
    res = StageResources.from_env("prod", ENV)
    lines = alarms.describe(res, templates.infra_template(res)["Resources"])
    assert "logarchive-prod-no-archive-run: logarchive ArchiveRuns Sum < 1 over 2 h (NoArchiveRunAlarm)" in lines
    assert any(line.startswith("logarchive-prod-archive-work-dead-letters: AWS/SQS") for line in lines)
    assert len(lines) == 3 + len(WANTED)  # and the two dead-letter alarms and the backlog alarm


def test_scheduler_may_clear_retirements_and_read_heartbeats_only_of_its_stack() -> None:
    res = StageResources.from_env("prod", ENV)
    policy = {"Statement": iam.archive_scheduler(res)}
    assert actions_on(policy, "arn:aws:s3:::stg/retire/s1/*") == {"s3:GetObject", "s3:DeleteObject"}
    assert actions_on(policy, "arn:aws:s3:::stg/staged/s1/*/_heartbeat.json") == {"s3:GetObject",
                                                                                 "s3:DeleteObject"}
    assert "arn:aws:s3:::stg/staged/*" in str(policy)  # heartbeats are read as staged objects are


def test_setup_check_stage_prints_the_listing(capsys) -> None:
    from chalicelib import cli

    assert cli.main(["setup", "check", "--stage", "prod", "--project-dir", str(ROOT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stage prod: 7 alarms, each notifying logarchive-prod-alarms (docs/OPERATIONS.md §6)"
    assert any(line.startswith("  logarchive-prod-host-silent: logarchive HostsSilent Maximum >= 1") for line in out)
    assert cli.main(["setup", "check", "--stage", "nope", "--project-dir", str(ROOT)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no stage 'nope'" in err[0]
    assert cli.main(["setup", "check"]) == 2

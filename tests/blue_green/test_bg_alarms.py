"""Rollback alarms: the metrics ALB and the worker really publish, timing that beats a canary, idle = OK."""

from __future__ import annotations

import inspect
import json
import re
import sys

import pulumi_aws as aws
import pytest

from components.settings.timing import (
    AlarmError,
    AlarmSpec,
    AlarmTiming,
    TargetGroupAlarmArgs,
    WorkerAlarmArgs,
    alarm_names,
    detection_seconds,
    target_group_alarms,
    worker_5xx_alarm,
)
from components.settings.traffic import TrafficShift, bad_canary_rollback_minutes

TG = "targetgroup/gantry-prod-green/0123456789abcdef"
LB = "app/gantry-prod/fedcba9876543210"


def params(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "__self__"}


def green() -> list[AlarmSpec]:
    return target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "green", TG, LB))


def by_role(specs) -> dict[str, dict]:
    return {spec.role: spec.args for spec in specs}


def test_three_alarms_per_target_group_with_stable_names():
    specs = green()
    assert [s.name for s in specs] == [
        "gantry-prod-green-target-5xx-rate",
        "gantry-prod-green-p99-latency",
        "gantry-prod-green-unhealthy-hosts",
    ]
    blue = target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "blue", TG, LB))
    assert alarm_names([*specs, *blue]) == [s.name for s in [*specs, *blue]]
    with pytest.raises(AlarmError, match="duplicate alarm names"):
        alarm_names([*specs, *specs])


def test_every_argument_is_a_metric_alarm_argument():
    allowed = params(aws.cloudwatch.MetricAlarmArgs)
    query_keys = params(aws.cloudwatch.MetricAlarmMetricQueryArgs)
    metric_keys = params(aws.cloudwatch.MetricAlarmMetricQueryMetricArgs)
    for spec in [*green(), worker_5xx_alarm(WorkerAlarmArgs("gantry-prod"))]:
        assert set(spec.args) <= allowed, set(spec.args) - allowed
        for query in spec.args.get("metric_queries", []):
            assert set(query) <= query_keys
            if "metric" in query:
                assert set(query["metric"]) <= metric_keys


def test_5xx_rate_is_metric_math_over_the_target_groups_alb_counts():
    rate = by_role(green())["green-target-5xx-rate"]
    queries = {q["id"]: q for q in rate["metric_queries"]}
    assert [q["id"] for q in rate["metric_queries"] if q["return_data"]] == ["rate"]
    for query_id, metric in (("errors", "HTTPCode_Target_5XX_Count"), ("requests", "RequestCount")):
        m = queries[query_id]["metric"]
        assert (m["metric_name"], m["namespace"], m["stat"], m["period"]) == (metric, "AWS/ApplicationELB", "Sum", 60)
        assert m["dimensions"] == {"TargetGroup": TG, "LoadBalancer": LB}
    expression = queries["rate"]["expression"]
    # Every identifier the expression uses is a query; absent error counts read 0; idle reads 0.
    assert set(re.findall(r"\b(errors|requests)\b", expression)) == {"errors", "requests"}
    assert "FILL(errors, 0)" in expression and "FILL(requests, 0) >= 10" in expression
    assert (rate["comparison_operator"], rate["threshold"]) == ("GreaterThanThreshold", 5.0)


def test_latency_and_health_alarms():
    roles = by_role(green())
    latency = roles["green-p99-latency"]
    assert (latency["metric_name"], latency["extended_statistic"], latency["threshold"]) == (
        "TargetResponseTime",
        "p99",
        2.0,
    )
    assert "statistic" not in latency
    assert latency["evaluate_low_sample_count_percentiles"] == "ignore"
    unhealthy = roles["green-unhealthy-hosts"]
    assert (unhealthy["metric_name"], unhealthy["statistic"]) == ("UnHealthyHostCount", "Maximum")
    assert (unhealthy["comparison_operator"], unhealthy["threshold"]) == ("GreaterThanOrEqualToThreshold", 1.0)
    for spec in (latency, unhealthy):
        assert spec["dimensions"] == {"TargetGroup": TG, "LoadBalancer": LB}


def test_idle_service_does_not_alarm_and_no_actions_are_wired():
    for spec in [*green(), worker_5xx_alarm(WorkerAlarmArgs("gantry-prod"))]:
        assert spec.args["treat_missing_data"] == "notBreaching"
        assert not {"alarm_actions", "ok_actions", "insufficient_data_actions"} & set(spec.args)


def test_descriptions_are_runbooks_within_the_cloudwatch_limit():
    for spec in [*green(), worker_5xx_alarm(WorkerAlarmArgs("gantry-prod"))]:
        text = spec.args["alarm_description"]
        assert len(text) <= 1024
        assert "Check first: 1)" in text and "2)" in text and "3)" in text


def test_default_timing_rolls_a_bad_canary_back_within_the_interval():
    timing = AlarmTiming()
    assert detection_seconds(timing) == 2 * 60 + 60
    for spec in green():
        assert (spec.args["datapoints_to_alarm"], spec.args["evaluation_periods"]) == (2, 3)
    minutes = detection_seconds(timing) / 60
    assert bad_canary_rollback_minutes(
        TrafficShift("canary", 10, 5), green_ready_minutes=0, hook_minutes=0, detection_minutes=minutes
    ) == pytest.approx(4.0)
    slow = AlarmTiming(period_seconds=120, datapoints_to_alarm=2, evaluation_periods=2)
    with pytest.raises(Exception, match="interval is 5 min"):
        bad_canary_rollback_minutes(
            TrafficShift("canary", 10, 5),
            green_ready_minutes=0,
            hook_minutes=0,
            detection_minutes=detection_seconds(slow) / 60,
        )


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: AlarmTiming(period_seconds=30), "period_seconds"),
        (lambda: AlarmTiming(datapoints_to_alarm=4, evaluation_periods=3), "datapoints_to_alarm"),
        (lambda: target_group_alarms(TargetGroupAlarmArgs("gantry prod", "green", TG, LB)), "prefix"),
        (lambda: target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "Green", TG, LB)), "role"),
        (
            lambda: target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "green", TG, LB, max_5xx_percent=0)),
            "max_5xx",
        ),
        (
            lambda: target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "green", TG, LB, min_requests=0)),
            "min_requests",
        ),
        (lambda: target_group_alarms(TargetGroupAlarmArgs("gantry-prod", "green", TG, LB, max_p99_seconds=0)), "p99"),
        (lambda: worker_5xx_alarm(WorkerAlarmArgs("gantry-prod", namespace="has space")), "namespace"),
    ],
)
def test_bad_settings_are_refused(build, needle):
    with pytest.raises(AlarmError, match=needle):
        build()


def test_worker_alarm_reads_exactly_what_the_worker_emits():
    """Run the worker's own EMF serialiser and match namespace, metric names and dimensions."""
    sys.modules.pop("worker", None)
    from worker.metrics import Metrics, _Interval

    interval = _Interval(requests=20, errors_5xx=3)
    lines = Metrics(namespace="Team/Embeddings", service="emb-prod").documents(interval)
    directive = json.loads(lines[0])["_aws"]["CloudWatchMetrics"][0]
    emitted = {m["Name"] for m in directive["Metrics"]}
    spec = worker_5xx_alarm(WorkerAlarmArgs("gantry-prod", namespace="Team/Embeddings", service_name="emb-prod")).args
    metrics = [q["metric"] for q in spec["metric_queries"] if "metric" in q]
    assert {m["metric_name"] for m in metrics} <= emitted
    assert {m["metric_name"] for m in metrics} == {"Errors5xx", "Requests"}
    for m in metrics:
        assert m["namespace"] == directive["Namespace"] == "Team/Embeddings"
        assert [sorted(m["dimensions"])] == [sorted(d) for d in directive["Dimensions"]]
        assert m["dimensions"] == {"Service": "emb-prod"}
    assert spec["name"] == "gantry-prod-worker-5xx-rate"


def test_worker_alarm_defaults_are_the_workers_defaults():
    from worker import config

    source = inspect.getsource(config.load_settings)
    args = WorkerAlarmArgs("gantry-prod")
    assert f'"METRICS_NAMESPACE", "{args.namespace}"' in source
    assert f'"SERVICE_NAME", "{args.service_name}"' in source

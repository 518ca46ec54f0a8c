"""Operations units: alarm specs against the worker's code and AWS's names, routing, policies, dashboard, budget."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.env import AwsEnv
from components.observability.alarms import (
    WORKER_METRICS,
    EdgeMetricIdentity,
    OperationsAlarmSet,
    ServiceMetricIdentity,
    Thresholds,
    WorkerMetricIdentity,
    edge_5xx_alarm,
    operations_alarms,
    utilization_alarm,
)
from components.observability.budget import ALERTS, BudgetError, budget_notifications, tag_filter
from components.observability.dashboard import DashboardSpec, dashboard_body
from components.observability.notifications import (
    Notifications,
    NotificationsArgs,
    Publishers,
    key_policy,
    route,
    topic_policy,
)
from components.settings.operations import DEFAULT_SEVERITY, OperationsSettings, Severities
from tests.harness import ACCOUNT, run_component
from tests.metric_catalog import (
    alarm_metrics,
    dashboard_body_problems,
    dashboard_metrics,
    metric_problem,
    worker_metrics_from_code,
)

SERVICE = ServiceMetricIdentity(cluster_name="gantry-cluster", service_name="gantry-service")
WORKER = WorkerMetricIdentity()
ALB = EdgeMetricIdentity.alb("app/gantry-lb/50dc6c495c0c9188", "eu-west-1")
CLOUDFRONT = EdgeMetricIdentity.cloudfront("E2QWRUHAPOMQZL")
PUBLISHERS = Publishers(account_id=ACCOUNT, partition="aws", region="eu-west-1", alarm_prefix="gantry-prod")


def every_spec():
    specs = operations_alarms(
        OperationsAlarmSet(
            prefix="gantry-prod", service=SERVICE, worker=WORKER, thresholds=Thresholds(tokens_per_minute=10)
        )
    )
    return [
        *specs,
        edge_5xx_alarm("gantry-prod", ALB, Thresholds()),
        edge_5xx_alarm("gantry-prod", CLOUDFRONT, Thresholds()),
    ]


def camel(args: dict) -> dict:
    """Spec args as the mocks see them (camelCase), for the catalog's readers."""
    if "metric_queries" in args:
        return {
            "metricQueries": [
                {
                    "metric": {
                        "namespace": q["metric"]["namespace"],
                        "metricName": q["metric"]["metric_name"],
                        "dimensions": q["metric"]["dimensions"],
                    }
                }
                for q in args["metric_queries"]
                if "metric" in q
            ]
        }
    return {"namespace": args["namespace"], "metricName": args["metric_name"], "dimensions": args["dimensions"]}


def test_the_worker_metric_table_is_what_the_worker_code_emits():
    assert {frozenset(k): set(v) for k, v in WORKER_METRICS.items()} == worker_metrics_from_code()


def test_every_operations_alarm_reads_a_published_metric_with_its_dimensions():
    worker = worker_metrics_from_code()
    for spec in every_spec():
        for namespace, metric, dimensions in alarm_metrics(camel(spec.args)):
            assert metric_problem(namespace, metric, dimensions, WORKER.namespace, worker) is None, spec.name


def test_the_metric_check_catches_a_misspelt_name_a_wrong_dimension_and_a_foreign_namespace():
    worker = worker_metrics_from_code()
    assert "no Token " in str(metric_problem("Gantry/Worker", "Token", {"Service": "s"}, "Gantry/Worker", worker))
    assert metric_problem("Gantry/Worker", "InFlight", {"Service": "s", "Tenant": "t"}, "Gantry/Worker", worker)
    assert metric_problem("AWS/ECS", "RunningTaskCount", SERVICE.dimensions, "Gantry/Worker", worker)
    assert metric_problem("AWS/ApplicationELB", "HealthyHostCount", {"LoadBalancer": "x"}, "Gantry/Worker", worker)
    assert metric_problem("AWS/EC2", "CPUUtilization", {}, "Gantry/Worker", worker)


def test_every_spec_argument_is_a_metric_alarm_argument_and_each_has_a_runbook():
    def params(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self", "__self__"}

    allowed, queries = params(aws.cloudwatch.MetricAlarmArgs), params(aws.cloudwatch.MetricAlarmMetricQueryArgs)
    for spec in every_spec():
        assert set(spec.args) <= allowed, set(spec.args) - allowed
        assert all(set(q) <= queries for q in spec.args.get("metric_queries", []))
        assert spec.name == f"gantry-prod-{spec.role}" and spec.role in DEFAULT_SEVERITY
        description = spec.args["alarm_description"]
        assert "Check first: 1)" in description and " 2) " in description and " 3) " in description


def test_tasks_below_desired_is_desired_minus_running_from_container_insights():
    [tasks] = [s for s in every_spec() if s.role == "tasks-below-desired"]
    queries = {q["id"]: q for q in tasks.args["metric_queries"]}
    assert queries["missing"]["expression"] == "desired - running" and queries["missing"]["return_data"]
    for ident, metric in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        m = queries[ident]["metric"]
        assert (m["namespace"], m["metric_name"], m["dimensions"]) == (
            "ECS/ContainerInsights",
            metric,
            SERVICE.dimensions,
        )
    assert tasks.args["threshold"] == 1.0 and tasks.args["comparison_operator"] == "GreaterThanOrEqualToThreshold"


def test_the_edge_alarm_follows_its_metric_identity_alb_or_cloudfront():
    alb = edge_5xx_alarm("gantry-prod", ALB, Thresholds())
    names = {q["metric"]["metric_name"] for q in alb.args["metric_queries"] if "metric" in q}
    assert names == {"HTTPCode_ELB_5XX_Count", "RequestCount"}
    cloudfront = edge_5xx_alarm("gantry-prod", CLOUDFRONT, Thresholds())
    assert (cloudfront.args["namespace"], cloudfront.args["metric_name"], cloudfront.args["statistic"]) == (
        "AWS/CloudFront", "5xxErrorRate", "Average",
    )  # fmt: skip
    assert cloudfront.args["dimensions"] == {"DistributionId": "E2QWRUHAPOMQZL", "Region": "Global"}
    assert CLOUDFRONT.region == "us-east-1" and ALB.region == "eu-west-1"


def test_utilization_alarms_read_ecs_cpu_average_and_memory_of_the_busiest_task():
    cpu, memory = (utilization_alarm("p", SERVICE, r, 85) for r in ("cpu", "memory"))
    assert (cpu.args["metric_name"], cpu.args["statistic"]) == ("CPUUtilization", "Average")
    assert (memory.args["metric_name"], memory.args["statistic"]) == ("MemoryUtilization", "Maximum")
    with pytest.raises(ValueError, match="allowed: cpu, memory"):
        utilization_alarm("p", SERVICE, "disk", 85)


def test_no_worker_means_no_worker_alarms_and_no_budget_means_no_token_alarm():
    own = operations_alarms(OperationsAlarmSet(prefix="p", service=SERVICE, worker=None))
    assert [s.role for s in own] == ["tasks-below-desired", "cpu-high", "memory-high"]
    sample = operations_alarms(OperationsAlarmSet(prefix="p", service=SERVICE, worker=WORKER))
    assert "tokens-per-minute" not in [s.role for s in sample] and "worker-throttle-rate" in [s.role for s in sample]


def test_severity_routing_overrides_and_paging_off():
    prod = OperationsSettings(severity=Severities(cpu_high="page", p99_latency="none"))
    assert [route(prod, k) for k in ("target-5xx-rate", "cpu-high", "p99-latency", "memory-high")] == [
        "page", "page", None, "ticket",
    ]  # fmt: skip
    dev = OperationsSettings(paging=False)
    assert {route(dev, kind) for kind in DEFAULT_SEVERITY} == {"ticket"}
    assert list(dev.checks(None)) == []  # type: ignore[arg-type]
    noisy = OperationsSettings.model_validate_json(
        json.dumps({"paging": False, "page": {"emails": ["oncall@acme.io"]}, "severity": {"cpuHigh": "page"}})
    )
    assert [field for field, _ in noisy.checks(None)] == ["page", "severity.cpuHigh"]  # type: ignore[arg-type]


def test_every_alarm_kind_has_a_severity_setting():
    assert {name.replace("_", "-") for name in Severities.model_fields} == set(DEFAULT_SEVERITY)
    aliases = {f.alias for f in Severities.model_fields.values()}
    assert {"edge5xxRate", "target5xxRate", "worker5xxRate", "p99Latency", "cpuHigh"} <= aliases


def test_key_and_topic_policies_name_only_cloudwatch_and_budgets_with_source_conditions():
    key = {s["Sid"]: s for s in key_policy(PUBLISHERS)["Statement"]}
    assert key["AccountAdministersKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert key["CloudWatchAlarmsPublish"]["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:gantry-prod-*"
    }
    arn = f"arn:aws:sns:eu-west-1:{ACCOUNT}:gantry-prod-page"
    statements = topic_policy(arn, PUBLISHERS)["Statement"]
    principals = [s["Principal"] for s in statements if s["Effect"] == "Allow"]
    assert principals == [{"Service": "cloudwatch.amazonaws.com"}, {"Service": "budgets.amazonaws.com"}]
    assert all(s["Resource"] == arn for s in statements)
    # The topic's own conditions, not only the key's: the topic policy alone decides who may publish.
    conditions = {s["Principal"]["Service"]: s["Condition"] for s in statements if s["Effect"] == "Allow"}
    assert conditions == {
        "cloudwatch.amazonaws.com": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:gantry-prod-*"},
        },
        "budgets.amazonaws.com": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:budgets::{ACCOUNT}:*"},
        },
    }


def test_a_second_region_notifications_scopes_its_policies_to_that_region():
    env = AwsEnv(account_id=ACCOUNT, region="eu-west-1", partition="aws", stack="prod")

    def build():
        Notifications("edge-alerts", NotificationsArgs(env=env, settings=OperationsSettings(), region="us-east-1"))

    graph = run_component(build)
    sources = {
        s["Condition"]["ArnLike"]["aws:SourceArn"]
        for s in graph.one("aws:kms/key:Key").json("policy")["Statement"]
        if "Condition" in s
    }
    assert f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:gantry-prod-*" in sources
    assert {t.inputs["name"] for t in graph.of_type("aws:sns/topic:Topic")} == {
        "gantry-prod-page",
        "gantry-prod-ticket",
    }


def spec(edge: EdgeMetricIdentity = ALB, worker: WorkerMetricIdentity | None = WORKER) -> DashboardSpec:
    return DashboardSpec(
        region="eu-west-1",
        load_balancer="app/gantry-lb/50dc6c495c0c9188",
        target_groups={"blue": "targetgroup/b/1", "green": "targetgroup/g/2"},
        cluster_name="gantry-cluster",
        service_name="gantry-service",
        edge=edge,
        worker=worker,
    )


def test_the_dashboard_body_is_valid_and_names_only_published_metrics():
    worker = worker_metrics_from_code()
    for variant in (spec(), spec(CLOUDFRONT), spec(worker=None)):
        body = dashboard_body(variant)
        assert dashboard_body_problems(json.loads(json.dumps(body))) == []
        for namespace, metric, dimensions in dashboard_metrics(body):
            assert metric_problem(namespace, metric, dimensions, WORKER.namespace, worker) is None


def test_the_dashboard_graphs_a_cloudfront_edge_from_us_east_1_and_drops_worker_widgets_for_an_own_image():
    body = dashboard_body(spec(CLOUDFRONT))
    edge_rows = [r for w in body["widgets"] for r in w["properties"]["metrics"] if r[0] == "AWS/CloudFront"]
    assert edge_rows and all(r[-1]["region"] == "us-east-1" for r in edge_rows)
    own = dashboard_body(spec(worker=None))
    assert not any(
        r[0] == "Gantry/Worker" for w in own["widgets"] for r in w["properties"]["metrics"] if isinstance(r[0], str)
    )
    assert len(own["widgets"]) < len(body["widgets"])


def test_the_body_check_catches_what_cloudwatch_refuses():
    good = dashboard_body(spec())
    broken = json.loads(json.dumps(good))
    broken["widgets"][0]["properties"]["metrics"][0] = broken["widgets"][0]["properties"]["metrics"][0][:-1] + ["x"]
    broken["widgets"][1]["x"] = 20
    broken["widgets"][2]["properties"]["view"] = "lineChart"
    broken["widgets"][3]["properties"]["metrics"].append({"expression": "m1"})
    problems = dashboard_body_problems(broken)
    assert any("widgets[0].properties.metrics[0]" in p for p in problems)
    assert any(p.startswith("widgets[1]") for p in problems)
    assert any("widgets[2].properties.view" in p for p in problems)
    assert any("widgets[3].properties.metrics" in p for p in problems)
    assert dashboard_body_problems({"widgets": []}) == ["widgets must be a non-empty list"]


def test_budget_filter_and_alerts():
    assert tag_filter("environment", {"environment": "dev", "project": "gantry"}) == {
        "name": "TagKeyValue",
        "values": ["user:environment$dev"],
    }
    with pytest.raises(BudgetError, match="it has: project"):
        tag_filter("environment", {"project": "gantry"})

    class Router:
        def __init__(self, silent: str):
            self.silent = silent

        def topic_arn(self, kind: str) -> pulumi.Output[str] | None:
            return None if kind == self.silent else f"arn:{kind}"  # type: ignore[return-value]

    assert len(budget_notifications(Router(""))) == len(ALERTS) == 3
    # Each kind files exactly its own alert: silencing one drops that alert and nothing else.
    alerts = {
        silent: [(n["notification_type"], n["threshold"]) for n in budget_notifications(Router(silent))]
        for silent in ("budget-actual-warning", "budget-forecast", "budget-actual")
    }
    assert alerts == {
        "budget-actual-warning": [("FORECASTED", 100.0), ("ACTUAL", 100.0)],
        "budget-forecast": [("ACTUAL", 80.0), ("ACTUAL", 100.0)],
        "budget-actual": [("ACTUAL", 80.0), ("FORECASTED", 100.0)],
    }
    # The kind a notification is filed under is the topic it reaches.
    notifications: list[Any] = list(budget_notifications(Router("")))  # plain values, not Input unions
    assert {(n["notification_type"], n["threshold"], n["subscriber_sns_topic_arns"][0]) for n in notifications} == {
        ("ACTUAL", 80.0, "arn:budget-actual-warning"),
        ("FORECASTED", 100.0, "arn:budget-forecast"),
        ("ACTUAL", 100.0, "arn:budget-actual"),
    }


def test_a_cloudfront_edge_alarm_notifies_topics_of_its_own_region():
    from components.observability.operations import OperationsAlarms, OperationsAlarmsArgs

    env = AwsEnv(account_id=ACCOUNT, region="eu-west-1", partition="aws", stack="prod")
    settings = OperationsSettings()

    def build():
        us_east_1 = aws.Provider("us-east-1", region="us-east-1")
        home = Notifications("alerts", NotificationsArgs(env=env, settings=settings))
        OperationsAlarms(
            "ops",
            OperationsAlarmsArgs(
                env=env,
                settings=settings,
                notifier=home,
                edge=CLOUDFRONT,
                service=SERVICE,
                worker=None,
                edge_provider=us_east_1,
            ),
        )

    graph = run_component(build)
    alarms = {a.inputs["name"]: a for a in graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    edge_alarm = alarms["gantry-prod-edge-5xx-rate"]
    assert edge_alarm.inputs["namespace"] == "AWS/CloudFront"
    # CloudFront's metrics are in us-east-1: the alarm is created there, and notifies topics of that region
    # (the component creates them) rather than the stack's, which an alarm could not reach.
    assert "us-east-1" in edge_alarm.opts.provider
    topics = {t.name: t for t in graph.of_type("aws:sns/topic:Topic")}
    east = topics["ops-edge-alerts-page"]
    assert "us-east-1" in east.opts.provider and "us-east-1" not in topics["alerts-page"].opts.provider
    assert edge_alarm.opts.property_dependencies["alarmActions"] == frozenset({east.opts.urn})
    home_page = alarms["gantry-prod-tasks-below-desired"]
    assert home_page.opts.property_dependencies["alarmActions"] == frozenset({topics["alerts-page"].opts.urn})

"""Target-tracking rules for an ECS service's task count, as pure specs (each has its own tests).

A rule names one signal and the value per task to hold it at; Application Auto Scaling adds tasks
when the signal is above target and removes them, slowly, when it is below. CPU catches compute-bound
load; requests per target catches load that waits on I/O (over both target groups with CodeDeploy,
see `requests_rule`). A signal AWS does not predefine (a queue's
backlog, the worker's own in-flight requests) is a metric-math query whose one returned series is
already "per task", e.g. messages visible / running tasks.

The sample worker's signals come from its EMF metrics (app/worker/metrics.py): every FLUSH_SECONDS
each task writes one document with the dimension set {Service}, and every task writes the same
set. CloudWatch does not keep tasks apart then: each task's value is one more sample of one metric.
So a statistic over a minute runs over (tasks x 6) samples, each one task's 10 s figure, and
`Average` already is the per-task value: the mean over tasks (and intervals) of each task's peak
in-flight. `Sum / RunningTaskCount` would be wrong twice: Sum adds the six 10 s peaks of a task
(6x too high, and a sum of peaks is no count of anything), and Container Insights' RunningTaskCount
counts tasks still loading the model, which report nothing. Tokens are a count per interval, so
per task per minute they are Average x (60 / FLUSH_SECONDS): Sum over the samples divided by the
samples one task writes, which is exactly "tokens per minute / tasks reporting". An idle task writes
zeros, so it lowers the average as it should. Scheduled actions change the bounds at known times
(pre-warm before a peak). Security stance: nothing here grants anything; scaling changes only the
task count, inside the configured (or scheduled) bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.settings import AutoscalingSettings, WorkerMetrics

# Metric-math ids: a lower-case letter, then letters, digits and underscores (CloudWatch's rule for
# MetricDataQuery.Id, which target tracking's TargetTrackingMetricDataQuery shares).
_QUERY_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")

_TargetTracking = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgsDict
_Predefined = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgsDict
_Query = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgsDict

# The worker's EMF flush interval (app/worker/metrics.py FLUSH_SECONDS; a test holds the two together).
WORKER_FLUSH_SECONDS = 10
IN_FLIGHT_METRIC, TOKENS_METRIC = "InFlight", "Tokens"


@dataclass(frozen=True, kw_only=True)
class MetricQuery:
    """One query of a customized target-tracking metric: a metric statistic or an expression."""

    id: str
    """The id other queries' expressions use."""
    expression: str | None = None
    """Metric math over other queries' ids; default None (this query is a metric statistic)."""
    namespace: str | None = None
    metric_name: str | None = None
    dimensions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    stat: str = "Average"
    """Default Average."""
    returns: bool = False
    """Default False: exactly one query of a rule returns the series that is held at the target."""
    label: str | None = None

    def __post_init__(self) -> None:
        if not _QUERY_ID.match(self.id):
            raise ValueError(f"metric query id {self.id!r}: start with a lower-case letter; letters, digits, _")
        if (self.expression is None) == (self.metric_name is None):
            raise ValueError(f"metric query {self.id!r}: give either an expression or a namespace + metric_name")
        if self.metric_name is not None and self.namespace is None:
            raise ValueError(f"metric query {self.id!r}: a metric statistic needs its namespace")


@dataclass(frozen=True, kw_only=True)
class ScalingRule:
    name: str
    """Stable suffix of the policy's logical name (`<service>-scale-on-<name>`)."""
    target_value: float
    predefined_metric: str | None = None
    """An AWS predefined metric type; default None (then `metric_queries` defines the signal)."""
    resource_label: pulumi.Input[str] | None = None
    metric_queries: tuple[MetricQuery, ...] = ()
    """Default none: metric math whose one returned series is the per-task signal."""
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int

    def __post_init__(self) -> None:
        if (self.predefined_metric is None) == (not self.metric_queries):
            raise ValueError(f"scaling rule {self.name!r}: give either a predefined metric or metric queries")
        if self.metric_queries and sum(q.returns for q in self.metric_queries) != 1:
            raise ValueError(f"scaling rule {self.name!r}: exactly one metric query must return the signal")


@dataclass(frozen=True, kw_only=True)
class RequestCounts:
    """Where the load balancer counts the service's requests (`ServiceLoadBalancer.request_counts`)."""

    load_balancer: pulumi.Input[str]
    """The load balancer's ARN suffix (`app/<name>/<id>`), the LoadBalancer dimension."""
    target_groups: tuple[pulumi.Input[str], ...]
    """ARN suffixes (`targetgroup/<name>/<id>`) of every group production traffic can reach: one on a
    rolling stack; blue and green with CodeDeploy, which moves production between them each deploy."""

    def __post_init__(self) -> None:
        if not self.target_groups:
            raise ValueError("request counts need at least one target group")


def standard_rules(
    settings: AutoscalingSettings,
    requests: RequestCounts | None,
    worker: WorkerMetrics | None = None,
) -> list[ScalingRule]:
    """CPU always; requests per target when the service sits behind target groups; in-flight and
    tokens per task when configured and the sample worker (`worker`) writes the metrics they read."""
    scale_in, scale_out = settings.scale_in_cooldown_seconds, settings.scale_out_cooldown_seconds
    rules = [
        ScalingRule(
            name="cpu",
            target_value=settings.cpu_target_percent,
            predefined_metric="ECSServiceAverageCPUUtilization",
            scale_in_cooldown_seconds=scale_in,
            scale_out_cooldown_seconds=scale_out,
        )
    ]
    if requests is not None:
        rules.append(requests_rule(settings, requests))
    if worker is not None and settings.in_flight_per_task is not None:
        rules.append(in_flight_rule(settings, worker))
    if worker is not None and settings.tokens_per_minute_per_task is not None:
        rules.append(tokens_rule(settings, worker))
    return rules


def requests_rule(settings: AutoscalingSettings, requests: RequestCounts) -> ScalingRule:
    """Requests per healthy target a minute, over every group production traffic can reach.

    One group: AWS's predefined ALBRequestCountPerTarget, which reads the group its resource label
    names. Blue/green: that predefined metric reads one group, and CodeDeploy moves production to the
    other on every deploy, so after every second deploy it would read an idle group and scale in
    under load; AWS says so: "The ALBRequestCountPerTarget metric for target tracking scaling policies
    is not supported for the blue/green deployment type"
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-autoscaling-targettracking.html).
    So the signal is metric math over all groups (target tracking takes any CloudWatch function that
    returns one series, https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-target-tracking-metric-math.html):
    their RequestCount sum divided by their HealthyHostCount, which is what the predefined metric
    computes for one group (RequestCount / healthy targets). Healthy hosts, not ECS's running tasks:
    a task still loading the model is running but receives no requests. FILL(.., 0) because the ALB
    publishes no RequestCount for a group that got no request, and `a + b` has no value where one
    series has none. During a deployment the green tasks are healthy in the other group before traffic
    shifts; they count as capacity then, as they are."""
    scale_in, scale_out = settings.scale_in_cooldown_seconds, settings.scale_out_cooldown_seconds
    if len(requests.target_groups) == 1:
        return ScalingRule(
            name="requests",
            target_value=settings.requests_per_target,
            predefined_metric="ALBRequestCountPerTarget",
            resource_label=_resource_label(requests.load_balancer, requests.target_groups[0]),
            scale_in_cooldown_seconds=scale_in,
            scale_out_cooldown_seconds=scale_out,
        )
    queries: list[MetricQuery] = []
    for index, group in enumerate(requests.target_groups):
        dimensions = {"LoadBalancer": requests.load_balancer, "TargetGroup": group}
        queries += [
            MetricQuery(
                id=f"requests_{index}",
                namespace="AWS/ApplicationELB",
                metric_name="RequestCount",
                dimensions=dimensions,
                stat="Sum",
            ),
            MetricQuery(
                id=f"healthy_{index}",
                namespace="AWS/ApplicationELB",
                metric_name="HealthyHostCount",
                dimensions=dimensions,
                stat="Average",
            ),
        ]
    ids = range(len(requests.target_groups))
    total = " + ".join(f"FILL(requests_{i}, 0)" for i in ids)
    healthy = " + ".join(f"FILL(healthy_{i}, 0)" for i in ids)
    queries.append(
        MetricQuery(
            id="requests_per_target",
            expression=f"({total}) / ({healthy})",
            returns=True,
            label="Requests per healthy target, over every target group",
        )
    )
    return ScalingRule(
        name="requests",
        target_value=settings.requests_per_target,
        metric_queries=tuple(queries),
        scale_in_cooldown_seconds=scale_in,
        scale_out_cooldown_seconds=scale_out,
    )


def _resource_label(load_balancer: pulumi.Input[str], group: pulumi.Input[str]) -> pulumi.Input[str]:
    """`<lb suffix>/<group suffix>`, ALBRequestCountPerTarget's ResourceLabel; plain text stays plain
    (the rule is then a pure value, as its tests build it)."""
    if isinstance(load_balancer, str) and isinstance(group, str):
        return f"{load_balancer}/{group}"
    return pulumi.Output.concat(load_balancer, "/", group)


def in_flight_rule(settings: AutoscalingSettings, worker: WorkerMetrics) -> ScalingRule:
    """Concurrent inference requests per task: the Average of the worker's InFlight (see the module doc)."""
    assert settings.in_flight_per_task is not None
    return ScalingRule(
        name="in-flight",
        target_value=settings.in_flight_per_task,
        metric_queries=(
            MetricQuery(
                id="in_flight",
                namespace=worker.namespace,
                metric_name=IN_FLIGHT_METRIC,
                dimensions={"Service": worker.service},
                stat="Average",
                returns=True,
                label="Peak in-flight requests per task (10 s peaks, averaged over tasks)",
            ),
        ),
        scale_in_cooldown_seconds=settings.scale_in_cooldown_seconds,
        scale_out_cooldown_seconds=settings.scale_out_cooldown_seconds,
    )


def tokens_rule(settings: AutoscalingSettings, worker: WorkerMetrics) -> ScalingRule:
    """Tokens per task per minute: the Average of the worker's 10 s Tokens counts x 60 / FLUSH_SECONDS."""
    assert settings.tokens_per_minute_per_task is not None
    return ScalingRule(
        name="tokens",
        target_value=settings.tokens_per_minute_per_task,
        metric_queries=(
            MetricQuery(
                id="tokens",
                namespace=worker.namespace,
                metric_name=TOKENS_METRIC,
                dimensions={"Service": worker.service},
                stat="Average",
                label="Tokens per task per 10 s interval",
            ),
            MetricQuery(
                id="tokens_per_minute",
                expression=f"tokens * {60 // WORKER_FLUSH_SECONDS}",
                returns=True,
                label="Tokens per task per minute",
            ),
        ),
        scale_in_cooldown_seconds=settings.scale_in_cooldown_seconds,
        scale_out_cooldown_seconds=settings.scale_out_cooldown_seconds,
    )


@dataclass(frozen=True, kw_only=True)
class ScheduledBounds:
    """One scheduled action's arguments (see `scheduled_bounds`)."""

    name: str
    """Stable suffix of the action's logical name (`<service>-schedule-<name>`)."""
    schedule: str
    timezone: str
    min_capacity: int | None
    max_capacity: int | None


def scheduled_bounds(settings: AutoscalingSettings) -> list[ScheduledBounds]:
    """The configured schedules as Application Auto Scaling's PutScheduledAction takes them."""
    return [
        ScheduledBounds(
            name=s.name,
            schedule=s.expression,
            timezone=s.timezone,
            min_capacity=s.min_capacity,
            max_capacity=s.max_capacity,
        )
        for s in settings.schedules
    ]


def target_tracking_configuration(rule: ScalingRule) -> _TargetTracking:
    """The policy's `target_tracking_scaling_policy_configuration`."""
    config: _TargetTracking = {
        "target_value": rule.target_value,
        "scale_in_cooldown": rule.scale_in_cooldown_seconds,
        "scale_out_cooldown": rule.scale_out_cooldown_seconds,
    }
    if rule.predefined_metric is not None:
        metric: _Predefined = {"predefined_metric_type": rule.predefined_metric}
        if rule.resource_label is not None:
            metric["resource_label"] = rule.resource_label
        config["predefined_metric_specification"] = metric
    else:
        config["customized_metric_specification"] = {"metrics": [_query(q) for q in rule.metric_queries]}
    return config


def _query(query: MetricQuery) -> _Query:
    spec: _Query = {"id": query.id, "return_data": query.returns}
    if query.label is not None:
        spec["label"] = query.label
    if query.expression is not None:
        spec["expression"] = query.expression
    else:
        assert query.namespace is not None and query.metric_name is not None  # __post_init__ holds this
        spec["metric_stat"] = {
            "metric": {
                "namespace": query.namespace,
                "metric_name": query.metric_name,
                "dimensions": [{"name": k, "value": v} for k, v in query.dimensions.items()],
            },
            "stat": query.stat,
        }
    return spec

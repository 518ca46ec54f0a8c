"""Target-tracking rules for an ECS service's task count, as pure specs (each has its own tests).

A rule names one signal and the value per task to hold it at; Application Auto Scaling adds tasks
when the signal is above target and removes them, slowly, when it is below. CPU catches compute-bound
load; requests per target catches load that waits on I/O. A signal AWS does not predefine (a queue's
backlog, the worker's own in-flight requests) is a metric-math query whose one returned series is
already "per task", e.g. messages visible / running tasks. Security stance: nothing here grants
anything; scaling changes only the task count, inside the configured bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.settings import AutoscalingSettings

# Metric-math ids: a lower-case letter, then letters, digits and underscores (CloudWatch's rule for
# MetricDataQuery.Id, which target tracking's TargetTrackingMetricDataQuery shares).
_QUERY_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")

_TargetTracking = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgsDict
_Predefined = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgsDict
_Query = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgsDict


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


def standard_rules(settings: AutoscalingSettings, request_count_label: pulumi.Input[str] | None) -> list[ScalingRule]:
    """CPU always; requests per target when the service sits behind a target group."""
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
    if request_count_label is not None:
        rules.append(
            ScalingRule(
                name="requests",
                target_value=settings.requests_per_target,
                predefined_metric="ALBRequestCountPerTarget",
                resource_label=request_count_label,
                scale_in_cooldown_seconds=scale_in,
                scale_out_cooldown_seconds=scale_out,
            )
        )
    return rules


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

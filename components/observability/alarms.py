"""The operations alarms beyond the rollback set: pure specs for `aws.cloudwatch.MetricAlarm`.

The rollback alarms (`components.settings.timing`: target 5xx rate, p99 latency, unhealthy hosts per
target group, the worker's 5xx rate) already watch the signals a deploy must stop on; they are reused
here, not duplicated, and get notification actions through `Notifications.actions`. This module adds
what a person must hear about even when nothing is deploying: the edge's own 5xx rate (load-balancer
or CloudFront generated: no healthy target, timeouts), running tasks below desired (Container
Insights), task CPU and memory, and from the sample worker's EMF metrics its throttle rate and tokens
per minute. Metric names, namespaces and dimensions are exactly what AWS and app/worker/metrics.py
publish (a test parses the worker's code and holds these constants to it). Every description is a
runbook paragraph: what it means, the first three things to check. Missing data: an idle stack
publishes no ALB error counts and the worker writes zeros every 10 s, so every alarm here treats
missing data as not breaching except tasks-below-desired, where no data means no task reports at all.
Security stance: specs only read metrics; the actions they carry are SNS topic ARNs of this stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from components.settings.timing import AlarmSpec, AlarmTiming, _describe, _rate_queries

ALB_NAMESPACE = "AWS/ApplicationELB"
ECS_NAMESPACE = "AWS/ECS"
CONTAINER_INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
CLOUDFRONT_NAMESPACE = "AWS/CloudFront"
# What the sample worker publishes (app/worker/metrics.py `Metrics.documents`), per dimension set.
WORKER_METRICS: Mapping[tuple[str, ...], frozenset[str]] = MappingProxyType(
    {
        ("Service",): frozenset(
            {
                "Requests",
                "Tokens",
                "Throttled",
                "Errors4xx",
                "Errors5xx",
                "InFlight",
                "QueuedInputs",
                "Latency",
                "BatchSize",
            }
        ),
        ("Service", "Tenant"): frozenset({"Requests", "Tokens", "Throttled"}),
    }
)
# Saturation is judged over 5 minutes: autoscaling reacts within that, so only what it cannot fix alarms.
SUSTAINED = AlarmTiming(period_seconds=60, datapoints_to_alarm=5, evaluation_periods=5)
# Edge errors page, so one bad minute is not enough; three of five is a storm, not a blip.
EDGE = AlarmTiming(period_seconds=60, datapoints_to_alarm=3, evaluation_periods=5)


@dataclass(frozen=True, kw_only=True)
class EdgeMetricIdentity:
    """Where the edge's request and 5xx metrics live. Build with `alb` or `cloudfront`."""

    namespace: str
    """AWS/ApplicationELB or AWS/CloudFront."""
    dimensions: Mapping[str, Any]
    """The edge's dimensions (values may be Pulumi Outputs)."""
    region: str
    """Where the metrics are published: the stack's region for an ALB, us-east-1 for CloudFront, so the
    alarm (and the topic it notifies) must be created there."""
    errors_metric: str
    """A 5xx count (ALB HTTPCode_ELB_5XX_Count) or a 5xx percentage (CloudFront 5xxErrorRate)."""
    requests_metric: str
    """RequestCount (ALB) or Requests (CloudFront)."""
    errors_are_percent: bool
    """True when `errors_metric` is already a percentage (CloudFront), so no metric math is needed."""

    @classmethod
    def alb(cls, load_balancer_arn_suffix: Any, region: str) -> EdgeMetricIdentity:
        return cls(
            namespace=ALB_NAMESPACE,
            dimensions={"LoadBalancer": load_balancer_arn_suffix},
            region=region,
            errors_metric="HTTPCode_ELB_5XX_Count",
            requests_metric="RequestCount",
            errors_are_percent=False,
        )

    @classmethod
    def cloudfront(cls, distribution_id: Any) -> EdgeMetricIdentity:
        # CloudFront publishes its metrics only in us-east-1 with Region=Global
        # (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/programming-cloudwatch-metrics.html).
        return cls(
            namespace=CLOUDFRONT_NAMESPACE,
            dimensions={"DistributionId": distribution_id, "Region": "Global"},
            region="us-east-1",
            errors_metric="5xxErrorRate",
            requests_metric="Requests",
            errors_are_percent=True,
        )


@dataclass(frozen=True, kw_only=True)
class ServiceMetricIdentity:
    """The ECS service's dimensions: ClusterName and ServiceName (AWS/ECS and ECS/ContainerInsights)."""

    cluster_name: Any
    service_name: Any

    @property
    def dimensions(self) -> dict[str, Any]:
        return {"ClusterName": self.cluster_name, "ServiceName": self.service_name}


@dataclass(frozen=True, kw_only=True)
class WorkerMetricIdentity:
    """The sample worker's METRICS_NAMESPACE and SERVICE_NAME (the `Service` dimension)."""

    namespace: str = "Gantry/Worker"
    """Default: the worker's own default (app/worker/config.py)."""
    service_name: str = "gantry-worker"
    """Default: the worker's own default."""


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The numbers the operations alarms compare against; the stack's `operations` settings fill them."""

    edge_5xx_percent: float = 5.0
    """Default 5 %, as the target 5xx rollback alarm: above it users see errors the tasks never answered."""
    min_requests: int = 10
    """Below this many requests a minute, rates read 0. Default 10, as the rollback alarms."""
    cpu_percent: int = 85
    memory_percent: int = 85
    throttle_percent: int = 5
    tokens_per_minute: int | None = None
    """None: no token-spend alarm."""


def _window(timing: AlarmTiming) -> str:
    return f"{timing.datapoints_to_alarm} of {timing.evaluation_periods} periods of {timing.period_seconds} s"


def _timing(timing: AlarmTiming, missing: str = "notBreaching") -> dict[str, Any]:
    return {
        "evaluation_periods": timing.evaluation_periods,
        "datapoints_to_alarm": timing.datapoints_to_alarm,
        "treat_missing_data": missing,
    }


def _metric(namespace: str, name: str, stat: str, dimensions: Mapping[str, Any], period: int) -> dict[str, Any]:
    return {"namespace": namespace, "metric_name": name, "stat": stat, "dimensions": dict(dimensions), "period": period}


def edge_5xx_alarm(prefix: str, edge: EdgeMetricIdentity, thresholds: Thresholds) -> AlarmSpec:
    """The edge's own 5xx rate: errors the edge generated (no healthy target, target timeout, origin down)."""
    timing, kind = EDGE, "edge-5xx-rate"
    if edge.errors_are_percent:
        measure: dict[str, Any] = {
            "metric_name": edge.errors_metric,
            "namespace": edge.namespace,
            "statistic": "Average",
            "period": timing.period_seconds,
            "dimensions": dict(edge.dimensions),
        }
    else:
        measure = {
            "metric_queries": _rate_queries(
                _metric(edge.namespace, edge.errors_metric, "Sum", edge.dimensions, timing.period_seconds),
                _metric(edge.namespace, edge.requests_metric, "Sum", edge.dimensions, timing.period_seconds),
                thresholds.min_requests,
                "edge 5xx %",
            )
        }
    return AlarmSpec(
        role=kind,
        args={
            "name": f"{prefix}-{kind}",
            "alarm_description": _describe(
                f"""More than {thresholds.edge_5xx_percent:g} % of requests at the edge ({edge.namespace}
                {edge.errors_metric}, {_window(timing)}) got a 5xx the edge generated itself: users are
                seeing errors now. Check first: 1) healthy targets (dashboard 'Healthy hosts'): none
                healthy means 503s, so look at the ECS service events and stopped tasks; 2) the target
                response time against the edge's timeout (504s) and the tasks' CPU; 3) a deployment in
                progress (CodeDeploy or ECS events) that shifted traffic to a bad target group."""
            ),
            "comparison_operator": "GreaterThanThreshold",
            "threshold": float(thresholds.edge_5xx_percent),
            **measure,
            **_timing(timing),
        },
    )


def tasks_below_desired_alarm(prefix: str, service: ServiceMetricIdentity) -> AlarmSpec:
    """Container Insights' RunningTaskCount below DesiredTaskCount for 5 minutes (a deploy replaces tasks
    within that; a crash loop or capacity shortage does not recover)."""
    timing, kind = SUSTAINED, "tasks-below-desired"
    dims = service.dimensions
    return AlarmSpec(
        role=kind,
        args={
            "name": f"{prefix}-{kind}",
            "alarm_description": _describe(
                f"""The service runs fewer tasks than it wants ({CONTAINER_INSIGHTS_NAMESPACE} DesiredTaskCount -
                RunningTaskCount >= 1, {_window(timing)}); no data at all counts as breaching, because a
                service with no running task reports nothing. Check first: 1) the ECS service events and
                the stopped tasks' stop reasons (essential container exited, out of memory, failed health
                check); 2) FARGATE_SPOT capacity or interruptions (scale-out tasks on Spot); 3) image
                pulls and secrets at start (CannotPullContainerError, ResourceInitializationError)."""
            ),
            "comparison_operator": "GreaterThanOrEqualToThreshold",
            "threshold": 1.0,
            "metric_queries": [
                {
                    "id": "missing",
                    "expression": "desired - running",
                    "label": "tasks below desired",
                    "return_data": True,
                },
                {
                    "id": "desired",
                    "metric": _metric(
                        CONTAINER_INSIGHTS_NAMESPACE, "DesiredTaskCount", "Maximum", dims, timing.period_seconds
                    ),
                    "return_data": False,
                },
                {
                    "id": "running",
                    "metric": _metric(
                        CONTAINER_INSIGHTS_NAMESPACE, "RunningTaskCount", "Maximum", dims, timing.period_seconds
                    ),
                    "return_data": False,
                },
            ],
            **_timing(timing, missing="breaching"),
        },
    )


def utilization_alarm(prefix: str, service: ServiceMetricIdentity, resource: str, percent: int) -> AlarmSpec:
    """AWS/ECS CPUUtilization (average over tasks) or MemoryUtilization (busiest task) above `percent`."""
    if resource not in ("cpu", "memory"):
        raise ValueError(f"utilization_alarm resource={resource!r} is invalid; allowed: cpu, memory")
    timing, kind = SUSTAINED, f"{resource}-high"
    # CPU: the average is what autoscaling tracks. Memory: one task near its limit is the one killed.
    metric, stat = ("CPUUtilization", "Average") if resource == "cpu" else ("MemoryUtilization", "Maximum")
    checks = (
        """1) whether autoscaling is at maxCapacity (scale-out cannot help: raise it or the task CPU);
        2) the worker InFlight and BatchSize metrics: large batches of long inputs cost more CPU each;
        3) INFERENCE_THREADS against the task's vCPUs."""
        if resource == "cpu"
        else """1) whether memory grows steadily across hours (a leak: compare task start times) or jumps with
        load; 2) MAX_QUEUED_INPUTS and MAX_BATCH_SIZE, which bound what is held in memory; 3) stopped
        tasks with reason OutOfMemoryError, then raise container.memory."""
    )
    return AlarmSpec(
        role=kind,
        args={
            "name": f"{prefix}-{kind}",
            "alarm_description": _describe(
                f"""The service's {resource} ({ECS_NAMESPACE} {metric} {stat}) is above {percent} % ({_window(timing)}):
                tasks are saturated and latency will follow. Check first: {checks}"""
            ),
            "comparison_operator": "GreaterThanThreshold",
            "threshold": float(percent),
            "metric_name": metric,
            "namespace": ECS_NAMESPACE,
            "statistic": stat,
            "period": timing.period_seconds,
            "dimensions": service.dimensions,
            **_timing(timing),
        },
    )


def worker_throttle_alarm(prefix: str, worker: WorkerMetricIdentity, thresholds: Thresholds) -> AlarmSpec:
    """The worker's Throttled / Requests (429 over a tenant's limit, 503 queue full), dimension Service."""
    timing, kind = SUSTAINED, "worker-throttle-rate"
    dims = {"Service": worker.service_name}
    return AlarmSpec(
        role=kind,
        args={
            "name": f"{prefix}-{kind}",
            "alarm_description": _describe(
                f"""More than {thresholds.throttle_percent} % of requests to {worker.service_name} were refused
                with 429 or 503 ({worker.namespace} Throttled / Requests, {_window(timing)}): clients are being
                turned away. Check first: 1) which tenant (dashboard 'Throttled (429 / 503)'): one tenant over
                its RATE_LIMIT_REQUESTS_PER_MINUTE or TOKEN_BUDGET_PER_MINUTE is a conversation, not an
                outage; 2) QueuedInputs at MAX_QUEUED_INPUTS (503s): scale out or raise maxCapacity;
                3) whether autoscaling is already at maxCapacity."""
            ),
            "comparison_operator": "GreaterThanThreshold",
            "threshold": float(thresholds.throttle_percent),
            "metric_queries": _rate_queries(
                _metric(worker.namespace, "Throttled", "Sum", dims, timing.period_seconds),
                _metric(worker.namespace, "Requests", "Sum", dims, timing.period_seconds),
                thresholds.min_requests,
                "throttled %",
            ),
            **_timing(timing),
        },
    )


def tokens_alarm(prefix: str, worker: WorkerMetricIdentity, tokens_per_minute: int) -> AlarmSpec:
    """The worker's Tokens per minute (Sum over 60 s, dimension Service) above the budgeted rate."""
    timing, kind = SUSTAINED, "tokens-per-minute"
    return AlarmSpec(
        role=kind,
        args={
            "name": f"{prefix}-{kind}",
            "alarm_description": _describe(
                f"""{worker.service_name} embedded more than {tokens_per_minute} tokens a minute ({worker.namespace}
                Tokens Sum per 60 s, {_window(timing)}): spend is above what the team budgeted. Check first:
                1) the dashboard 'Tokens per minute per tenant' for the tenant driving it; 2) whether that
                tenant's traffic is expected (a backfill, a new client) or a loop resending the same inputs;
                3) that tenant's TOKEN_BUDGET_PER_MINUTE, which caps it per task."""
            ),
            "comparison_operator": "GreaterThanThreshold",
            "threshold": float(tokens_per_minute),
            "metric_name": "Tokens",
            "namespace": worker.namespace,
            "statistic": "Sum",
            "period": timing.period_seconds,
            "dimensions": {"Service": worker.service_name},
            **_timing(timing),
        },
    )


@dataclass(frozen=True, kw_only=True)
class OperationsAlarmSet:
    """Everything the operations alarms are built from (pure values or Outputs)."""

    prefix: str
    service: ServiceMetricIdentity
    worker: WorkerMetricIdentity | None
    """None for a team's own image, which writes no worker metrics."""
    thresholds: Thresholds = field(default_factory=Thresholds)


def operations_alarms(spec: OperationsAlarmSet) -> list[AlarmSpec]:
    """The stack's operations alarms in the stack's region (the edge alarm is separate: see `edge_5xx_alarm`)."""
    alarms = [
        tasks_below_desired_alarm(spec.prefix, spec.service),
        utilization_alarm(spec.prefix, spec.service, "cpu", spec.thresholds.cpu_percent),
        utilization_alarm(spec.prefix, spec.service, "memory", spec.thresholds.memory_percent),
    ]
    if spec.worker is not None:
        alarms.append(worker_throttle_alarm(spec.prefix, spec.worker, spec.thresholds))
        if spec.thresholds.tokens_per_minute is not None:
            alarms.append(tokens_alarm(spec.prefix, spec.worker, spec.thresholds.tokens_per_minute))
    return alarms

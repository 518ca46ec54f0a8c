"""OperationsAlarms and Dashboard: the alarms that tell a person, and the one screen they open first.

`OperationsAlarms` creates the specs of `components.observability.alarms` (edge 5xx rate, tasks below desired, CPU,
memory, the worker's throttle rate and tokens per minute) with the notification actions of their
severity; the 5xx, latency and health alarms are the rollback alarms, which notify through the same
`Notifications`. The edge alarm takes an `EdgeMetricIdentity`, so it can watch the ALB today or a
CloudFront distribution (then with a us-east-1 provider and a us-east-1 `Notifications`, because
CloudFront's metrics exist only there). `Dashboard` renders `components.observability.dashboard.dashboard_body` once
the ARN suffixes and names are known. Both take narrow handles (Outputs and small dataclasses), never
another component. Security stance: alarms read metrics and notify only this stack's topics; the
dashboard shows metrics and grants nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.observability.alarms import (
    EdgeMetricIdentity,
    OperationsAlarmSet,
    ServiceMetricIdentity,
    Thresholds,
    WorkerMetricIdentity,
    edge_5xx_alarm,
    operations_alarms,
)
from components.observability.dashboard import DashboardSpec, dashboard_body
from components.observability.notifications import Notifications, NotificationsArgs
from components.observability.rollback_alarms import WORKER_NAMESPACE_DEFAULT, WORKER_SERVICE_DEFAULT, AlarmNotifier
from components.settings import ContainerSettings
from components.settings.operations import OperationsSettings


class EdgeMetricsHandles(Protocol):
    """Where the edge's metrics are (`components.edge.distribution.EdgeMetrics`)."""

    @property
    def namespace(self) -> str: ...

    @property
    def dimensions(self) -> Mapping[str, Any]: ...

    @property
    def region(self) -> str: ...


class LoadBalancerHandles(Protocol):
    @property
    def arn_suffix(self) -> pulumi.Output[str]: ...

    @property
    def target_groups(self) -> Mapping[str, aws.lb.TargetGroup]: ...


def edge_identity(metrics: EdgeMetricsHandles) -> EdgeMetricIdentity:
    """The edge the clients reach (`Edge.metrics`): CloudFront's distribution, or the public ALB."""
    if metrics.namespace == "AWS/CloudFront":
        return EdgeMetricIdentity.cloudfront(metrics.dimensions["DistributionId"])
    return EdgeMetricIdentity.alb(metrics.dimensions["LoadBalancer"], metrics.region)


def worker_identity(container: ContainerSettings, sample_worker: bool) -> WorkerMetricIdentity | None:
    """The sample worker's metric namespace and Service dimension (its METRICS_NAMESPACE and SERVICE_NAME
    when the stack sets them); None for a team's own image."""
    if not sample_worker:
        return None
    variables = container.variables
    return WorkerMetricIdentity(
        namespace=variables.get("METRICS_NAMESPACE", WORKER_NAMESPACE_DEFAULT),
        service_name=variables.get("SERVICE_NAME", WORKER_SERVICE_DEFAULT),
    )


def thresholds(settings: OperationsSettings) -> Thresholds:
    return Thresholds(
        cpu_percent=settings.cpu_high_percent,
        memory_percent=settings.memory_high_percent,
        throttle_percent=settings.throttle_percent,
        tokens_per_minute=settings.tokens_per_minute,
    )


@dataclass(frozen=True, kw_only=True)
class OperationsAlarmsArgs:
    env: AwsEnv
    """The stack name prefixes every alarm name (gantry-<stack>-...), as the rollback alarms."""
    settings: OperationsSettings
    """Thresholds."""
    notifier: AlarmNotifier
    """Actions per alarm kind (`Notifications.actions`)."""
    edge: EdgeMetricIdentity
    """Where the edge's requests and 5xx are published (`edge_identity(Edge.metrics)`)."""
    service: ServiceMetricIdentity
    """The ECS service's ClusterName / ServiceName."""
    worker: WorkerMetricIdentity | None
    """The sample worker's metrics; None for a team's own image."""
    edge_provider: pulumi.ProviderResource | None = None
    """Default: the stack's provider. For an edge whose metrics live in another region (CloudFront:
    us-east-1, `Edge.alarm_provider`), that region's provider: the edge alarm is created there, with its
    own topics (an alarm can notify only a topic in its own region)."""


class OperationsAlarms(pulumi.ComponentResource):
    alarms: dict[str, aws.cloudwatch.MetricAlarm]

    def __init__(self, name: str, args: OperationsAlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:operations:OperationsAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"gantry-{args.env.stack}"
        limits = thresholds(args.settings)
        specs = operations_alarms(
            OperationsAlarmSet(prefix=prefix, service=args.service, worker=args.worker, thresholds=limits)
        )
        self.alarms = {
            spec.role: aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.role}", **spec.args, **args.notifier.actions(spec.role), opts=child
            )
            for spec in specs
        }
        edge = edge_5xx_alarm(prefix, args.edge, limits)
        edge_opts = pulumi.ResourceOptions(parent=self, provider=args.edge_provider)
        edge_notifier = args.notifier
        if args.edge.region != args.env.region:
            edge_notifier = Notifications(
                f"{name}-edge-alerts",
                NotificationsArgs(env=args.env, settings=args.settings, region=args.edge.region),
                opts=edge_opts,
            )
        self.alarms[edge.role] = aws.cloudwatch.MetricAlarm(
            f"{name}-{edge.role}",
            **edge.args,
            **edge_notifier.actions(edge.role),
            opts=edge_opts,
        )
        self.register_outputs({"alarmNames": [alarm.name for alarm in self.alarms.values()]})


@dataclass(frozen=True, kw_only=True)
class DashboardArgs:
    env: AwsEnv
    """The stack's region and name (the dashboard is gantry-<stack>)."""
    load_balancer: LoadBalancerHandles
    """Its ARN suffix and its target groups' (one, or blue and green)."""
    service: ServiceMetricIdentity
    edge: EdgeMetricIdentity
    worker: WorkerMetricIdentity | None


class Dashboard(pulumi.ComponentResource):
    dashboard: aws.cloudwatch.Dashboard

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:operations:Dashboard", name, None, opts)
        roles = list(args.load_balancer.target_groups)
        edge_keys = list(args.edge.dimensions)

        def render(values: list[Any]) -> str:
            lb, cluster, service, *rest = values
            groups, edge_values = rest[: len(roles)], rest[len(roles) :]
            spec = DashboardSpec(
                region=args.env.region,
                load_balancer=lb,
                target_groups=dict(zip(roles, groups, strict=True)),
                cluster_name=cluster,
                service_name=service,
                edge=replace(args.edge, dimensions=dict(zip(edge_keys, edge_values, strict=True))),
                worker=args.worker,
            )
            return json.dumps(dashboard_body(spec))

        body = pulumi.Output.all(
            args.load_balancer.arn_suffix,
            args.service.cluster_name,
            args.service.service_name,
            *(group.arn_suffix for group in args.load_balancer.target_groups.values()),
            *args.edge.dimensions.values(),
        ).apply(render)
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"gantry-{args.env.stack}",
            dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"dashboardName": self.dashboard.dashboard_name})

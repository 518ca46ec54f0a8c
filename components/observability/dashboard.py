"""The stack's CloudWatch dashboard body, built by a pure function from plain metric identities.

One dashboard per stack, read top to bottom as an incident is worked: traffic and errors first
(requests, 5xx, latency p50/p99, healthy hosts), then capacity (running vs desired tasks, CPU and
memory, deployments), then the sample worker's own view (tokens per minute per tenant, throttles per
tenant, batch size, in-flight and queued inputs, latency). The body follows CloudWatch's dashboard body
structure (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html):
`widgets`, each with type, x, y, width, height and `properties` holding `metrics` rows of
[namespace, name, dimension name, value, ..., {options}] or [{expression, id, label}], `region`,
`view` and `title`. Per-tenant graphs use a SEARCH expression over the Tenant dimension, because
tenants live in a secret and change without a deploy. Security stance: the body names metrics only;
it holds no secret (tenant names appear only as the metrics' own dimension values, at view time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.observability.alarms import (
    ALB_NAMESPACE,
    CONTAINER_INSIGHTS_NAMESPACE,
    ECS_NAMESPACE,
    EdgeMetricIdentity,
    WorkerMetricIdentity,
)

WIDTH, HEIGHT, COLUMNS = 12, 6, 2
PERIOD = 60


@dataclass(frozen=True, kw_only=True)
class DashboardSpec:
    """Resolved (plain string) identities of everything the dashboard graphs."""

    region: str
    """The stack's region: every widget's region except the edge's own (CloudFront: us-east-1)."""
    load_balancer: str
    """The ALB's ARN suffix (LoadBalancer dimension)."""
    target_groups: Mapping[str, str]
    """Role (main; blue, green) -> target group ARN suffix (TargetGroup dimension)."""
    cluster_name: str
    service_name: str
    edge: EdgeMetricIdentity
    """With plain dimension values."""
    worker: WorkerMetricIdentity | None
    """None for a team's own image: no worker widgets."""


def _row(namespace: str, name: str, dimensions: Mapping[str, str], **options: Any) -> list[Any]:
    row: list[Any] = [namespace, name]
    for key, value in dimensions.items():
        row.extend([key, value])
    if options:
        row.append(options)
    return row


def _graph(title: str, metrics: list[list[Any]], region: str, stat: str = "Sum", **extra: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "metrics": metrics,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "stat": stat,
            "period": PERIOD,
            **extra,
        },
    }


def _search(worker: WorkerMetricIdentity, metric: str, ident: str) -> list[Any]:
    query = (
        f'SEARCH(\'{{{worker.namespace},Service,Tenant}} MetricName="{metric}" '
        f"Service=\"{worker.service_name}\"', 'Sum', {PERIOD})"
    )
    return [{"expression": query, "id": ident, "label": ""}]


def _widgets(spec: DashboardSpec) -> list[dict[str, Any]]:
    lb = {"LoadBalancer": spec.load_balancer}
    groups = {role: {"TargetGroup": suffix, **lb} for role, suffix in spec.target_groups.items()}
    ecs = {"ClusterName": spec.cluster_name, "ServiceName": spec.service_name}
    edge = spec.edge
    edge_region = edge.region
    widgets = [
        _graph(
            "Requests",
            [_row(edge.namespace, edge.requests_metric, edge.dimensions, label="edge", region=edge_region)]
            + [_row(ALB_NAMESPACE, "RequestCount", dims, label=role) for role, dims in groups.items()],
            spec.region,
        ),
        _graph(
            "5xx",
            [
                _row(
                    edge.namespace,
                    edge.errors_metric,
                    edge.dimensions,
                    label="edge 5xx %" if edge.errors_are_percent else "edge 5xx",
                    stat="Average" if edge.errors_are_percent else "Sum",
                    region=edge_region,
                )
            ]
            + [
                _row(ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", dims, label=f"{role} target 5xx")
                for role, dims in groups.items()
            ],
            spec.region,
        ),
        _graph(
            "Latency p50 / p99 (s)",
            [
                _row(ALB_NAMESPACE, "TargetResponseTime", lb, stat="p50", label="p50"),
                _row(ALB_NAMESPACE, "TargetResponseTime", lb, stat="p99", label="p99"),
            ],
            spec.region,
            stat="p99",
        ),
        _graph(
            "Healthy hosts",
            [
                _row(ALB_NAMESPACE, metric, dims, label=f"{role} {label}")
                for role, dims in groups.items()
                for metric, label in (("HealthyHostCount", "healthy"), ("UnHealthyHostCount", "unhealthy"))
            ],
            spec.region,
            stat="Maximum",
        ),
        _graph(
            "Running tasks",
            [
                _row(CONTAINER_INSIGHTS_NAMESPACE, metric, ecs, label=label)
                for metric, label in (
                    ("DesiredTaskCount", "desired"),
                    ("RunningTaskCount", "running"),
                    ("PendingTaskCount", "pending"),
                )
            ],
            spec.region,
            stat="Maximum",
        ),
        _graph(
            "CPU and memory (%)",
            [
                _row(ECS_NAMESPACE, "CPUUtilization", ecs, stat="Average", label="CPU average"),
                _row(ECS_NAMESPACE, "MemoryUtilization", ecs, stat="Maximum", label="memory, busiest task"),
            ],
            spec.region,
            stat="Average",
            yAxis={"left": {"min": 0, "max": 100}},
        ),
        _graph(
            "Deployments",
            [
                _row(CONTAINER_INSIGHTS_NAMESPACE, "DeploymentCount", ecs, label="deployments"),
                _row(CONTAINER_INSIGHTS_NAMESPACE, "TaskSetCount", ecs, label="task sets"),
            ],
            spec.region,
            stat="Maximum",
        ),
    ]
    worker = spec.worker
    if worker is not None:
        service = {"Service": worker.service_name}
        ns = worker.namespace
        widgets += [
            _graph("Tokens per minute per tenant", [_search(worker, "Tokens", "tokens")], spec.region),
            _graph(
                "Throttled (429 / 503)",
                [_row(ns, "Throttled", service, label="all tenants"), _search(worker, "Throttled", "tenants")],
                spec.region,
            ),
            _graph(
                "Batch size",
                [
                    _row(ns, "BatchSize", service, stat="Average", label="average"),
                    _row(ns, "BatchSize", service, stat="Maximum", label="max"),
                ],
                spec.region,
                stat="Average",
            ),
            _graph(
                "In flight and queued",
                [
                    _row(ns, "InFlight", service, label="in flight (max)"),
                    _row(ns, "QueuedInputs", service, label="queued inputs (max)"),
                ],
                spec.region,
                stat="Maximum",
            ),
            _graph(
                "Worker latency (ms)",
                [
                    _row(ns, "Latency", service, stat="p50", label="p50"),
                    _row(ns, "Latency", service, stat="p99", label="p99"),
                ],
                spec.region,
                stat="p99",
            ),
            _graph(
                "Worker errors",
                [_row(ns, "Errors5xx", service, label="5xx"), _row(ns, "Errors4xx", service, label="4xx")],
                spec.region,
            ),
        ]
    return widgets


def dashboard_body(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard body: the widgets laid out two to a row, 12 x 6 grid units each."""
    widgets = _widgets(spec)
    return {"widgets": [_place(widget, index) for index, widget in enumerate(widgets)]}


def _place(widget: dict[str, Any], index: int) -> dict[str, Any]:
    column, row = index % COLUMNS, index // COLUMNS
    return {**widget, "x": column * WIDTH, "y": row * HEIGHT, "width": WIDTH, "height": HEIGHT}

"""What is really published: AWS's metric names per namespace and the sample worker's, read from its code.

AWS side, as the AWS documentation lists them (names and the dimension sets each is published with):
- AWS/ApplicationELB: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html
- AWS/ECS (service CPU/memory): https://docs.aws.amazon.com/AmazonECS/latest/developerguide/available-metrics.html
- ECS/ContainerInsights: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html
- AWS/CloudFront (us-east-1, Region=Global): https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/programming-cloudwatch-metrics.html
- AWS/SQS (the batch queue): https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
Worker side: an AST walk of app/worker/metrics.py `Metrics.documents`, pairing each MetricsContext's
`set_dimensions` keys with the names it `put_metric`s, so a renamed metric in the worker fails the tests.
Also the CloudWatch dashboard body rules the tests hold the dashboard to
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LB, TG_LB = frozenset({"LoadBalancer"}), frozenset({"TargetGroup", "LoadBalancer"})
ECS_SERVICE = frozenset({"ClusterName", "ServiceName"})
AWS_METRICS: Mapping[str, Mapping[str, tuple[frozenset[str], ...]]] = {
    "AWS/ApplicationELB": {
        "RequestCount": (LB, TG_LB),
        "HTTPCode_Target_5XX_Count": (LB, TG_LB),
        "HTTPCode_ELB_5XX_Count": (LB,),
        "TargetResponseTime": (LB, TG_LB),
        "HealthyHostCount": (TG_LB,),
        "UnHealthyHostCount": (TG_LB,),
    },
    "AWS/ECS": {"CPUUtilization": (ECS_SERVICE,), "MemoryUtilization": (ECS_SERVICE,)},
    "ECS/ContainerInsights": {
        name: (ECS_SERVICE,)
        for name in ("RunningTaskCount", "DesiredTaskCount", "PendingTaskCount", "DeploymentCount", "TaskSetCount")
    },
    "AWS/SQS": {
        name: (frozenset({"QueueName"}),)
        for name in (
            "ApproximateAgeOfOldestMessage",
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
        )
    },
    "AWS/CloudFront": {
        "Requests": (frozenset({"DistributionId", "Region"}),),
        "5xxErrorRate": (frozenset({"DistributionId", "Region"}),),
    },
}


def worker_metrics_from_code(path: Path = ROOT / "app" / "worker" / "metrics.py") -> dict[frozenset[str], set[str]]:
    """{dimension keys: metric names} as `Metrics.documents` emits them."""
    tree = ast.parse(path.read_text())
    [documents] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "documents"]
    dims: dict[str, frozenset[str]] = {}
    names: dict[str, set[str]] = {}
    for node in ast.walk(documents):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if not isinstance(target, ast.Name):
            continue
        if node.func.attr == "set_dimensions":
            [dimension_sets] = [a for a in node.args if isinstance(a, ast.List)]
            [one] = dimension_sets.elts
            assert isinstance(one, ast.Dict)
            dims[target.id] = frozenset(str(k.value) for k in one.keys if isinstance(k, ast.Constant))
        elif node.func.attr == "put_metric":
            first = node.args[0]
            assert isinstance(first, ast.Constant)
            names.setdefault(target.id, set()).add(str(first.value))
    found: dict[frozenset[str], set[str]] = {}
    for variable, keys in dims.items():
        found.setdefault(keys, set()).update(names.get(variable, set()))
    return found


def alarm_metrics(inputs: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of every metric a MetricAlarm reads (mock inputs are camelCase)."""
    if "metricName" in inputs:
        return [(inputs["namespace"], inputs["metricName"], dict(inputs.get("dimensions") or {}))]
    return [
        (q["metric"]["namespace"], q["metric"]["metricName"], dict(q["metric"].get("dimensions") or {}))
        for q in inputs.get("metricQueries") or []
        if q.get("metric")
    ]


def dashboard_metrics(body: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of every metric row of a dashboard body."""
    found = []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], str):
                pairs = [x for x in row[2:] if not isinstance(x, dict)]
                found.append((row[0], row[1], dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


def metric_problem(
    namespace: str,
    name: str,
    dimensions: Mapping[str, Any],
    worker_namespace: str,
    worker: Mapping[frozenset[str], set[str]],
) -> str | None:
    """Why (namespace, name, dimensions) is not a metric anyone publishes, or None when it is."""
    keys = frozenset(dimensions)
    if namespace == worker_namespace:
        if name not in worker.get(keys, set()):
            return f"the worker publishes no {name} with dimensions {sorted(keys)} (it has {worker})"
        return None
    if namespace not in AWS_METRICS:
        return f"namespace {namespace} is neither AWS's nor the worker's {worker_namespace}"
    if name not in AWS_METRICS[namespace]:
        return f"{namespace} has no metric {name}"
    if keys not in AWS_METRICS[namespace][name]:
        return f"{namespace} {name} is not published with dimensions {sorted(keys)}"
    return None


WIDGET_TYPES = {"metric", "text", "alarm", "log", "explorer"}
VIEWS = {"timeSeries", "singleValue", "gauge", "bar", "pie", "table"}
ROW_OPTIONS = {"accountId", "color", "label", "id", "period", "region", "stat", "visible", "yAxis"}
STAT = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d+)?)$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def dashboard_body_problems(body: Any) -> list[str]:
    """Where a body breaks CloudWatch's dashboard body structure (empty when it is valid)."""
    if not isinstance(body, dict) or set(body) - {"widgets", "start", "end", "periodOverride", "variables"}:
        return ["the body must be an object with widgets (and optionally start, end, periodOverride, variables)"]
    widgets = body.get("widgets")
    if not isinstance(widgets, list) or not widgets:
        return ["widgets must be a non-empty list"]
    problems: list[str] = []
    cells: set[tuple[int, int]] = set()
    for i, widget in enumerate(widgets):
        where = f"widgets[{i}]"
        if widget.get("type") not in WIDGET_TYPES:
            problems.append(f"{where}.type {widget.get('type')!r} is not one of {sorted(WIDGET_TYPES)}")
        x, y, w, h = (widget.get(k) for k in ("x", "y", "width", "height"))
        if not all(isinstance(v, int) for v in (x, y, w, h)) or not (
            1 <= w <= 24 and 1 <= h <= 1000 and 0 <= x <= 24 - w
        ):
            problems.append(f"{where}: x, y, width, height must be whole numbers inside the 24-column grid")
            continue
        area = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        if area & cells:
            problems.append(f"{where} overlaps another widget")
        cells |= area
        props = widget.get("properties")
        if not isinstance(props, dict):
            problems.append(f"{where}.properties must be an object")
            continue
        if widget.get("type") != "metric":
            continue
        if not isinstance(props.get("region"), str) or not REGION.match(props["region"]):
            problems.append(f"{where}.properties.region must be a region name")
        if props.get("view") not in VIEWS:
            problems.append(f"{where}.properties.view must be one of {sorted(VIEWS)}")
        if "stat" in props and not STAT.match(props["stat"]):
            problems.append(f"{where}.properties.stat {props['stat']!r} is not a statistic")
        if props.get("period", 60) % 60:
            problems.append(f"{where}.properties.period must be a multiple of 60")
        metrics = props.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            problems.append(f"{where}.properties.metrics must be a non-empty list")
            continue
        ids = []
        for j, row in enumerate(metrics):
            at = f"{where}.properties.metrics[{j}]"
            if not isinstance(row, list) or not row:
                problems.append(f"{at} must be a non-empty array")
                continue
            options = row[-1] if isinstance(row[-1], dict) else {}
            if isinstance(row[0], dict):
                if len(row) != 1 or "expression" not in row[0] or "id" not in row[0]:
                    problems.append(f"{at}: an expression row is one object with expression and id")
                ids.append(row[0].get("id"))
                continue
            names = row[:-1] if options else row
            if len(names) < 2 or len(names) % 2 or not all(isinstance(v, str) and v for v in names):
                problems.append(f"{at}: [namespace, metric, name, value, ...] of non-empty strings")
            if set(options) - ROW_OPTIONS:
                problems.append(f"{at}: unknown rendering options {sorted(set(options) - ROW_OPTIONS)}")
            if "stat" in options and not STAT.match(options["stat"]):
                problems.append(f"{at}: stat {options['stat']!r} is not a statistic")
            if "region" in options and not REGION.match(options["region"]):
                problems.append(f"{at}: region {options['region']!r} is not a region name")
            if "id" in options:
                ids.append(options["id"])
        for ident in ids:
            if not isinstance(ident, str) or not re.fullmatch(r"[a-z][A-Za-z0-9_]*", ident) or ids.count(ident) > 1:
                problems.append(f"{where}: metric id {ident!r} must be unique and start with a lower-case letter")
    return problems

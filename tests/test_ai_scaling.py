"""Autoscaling on the worker's own signals (in-flight and tokens per task) and scheduled bounds, on the whole stack.

The in-flight and tokens policies are held against what the worker really writes: its config loader
run on the environment the task definition carries (namespace, Service) and the EMF document its
`Metrics` class serialises (metric names, dimension set, flush interval). Schedules are checked
against Application Auto Scaling's PutScheduledAction model and the cron/at rules AWS documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from components.settings.workload import at_expression, cron_expression
from components.workload.scaling import WORKER_FLUSH_SECONDS
from tests.harness import OWN_SERVICE, Graph, run_program, stack_config, with_test_secrets
from worker import config as worker_config
from worker import metrics as worker_metrics

POLICY = "aws:appautoscaling/policy:Policy"
SCHEDULED = "aws:appautoscaling/scheduledAction:ScheduledAction"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    # The worker's loader only checks that the build outputs exist.
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    return tmp_path


def policies(graph: Graph) -> dict[str, dict[str, Any]]:
    # The API service's policies (the batch consumer has its own, on its queue).
    return {
        p.name: p.inputs["targetTrackingScalingPolicyConfiguration"]
        for p in graph.of_type(POLICY)
        if p.name.startswith("gantry-scale-on-")
    }


def what_the_worker_emits(graph: Graph, model_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """(namespace, Service, one EMF document) the worker writes given this stack's task environment."""
    (container,) = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").json("containerDefinitions")
    env = {e["name"]: e["value"] for e in container["environment"]}
    env |= {"API_KEYS": '{"t": "0123456789abcdef0123"}', "MODEL_DIR": str(model_dir)}
    settings = worker_config.load_settings(env, cpus=1)
    metrics = worker_metrics.Metrics(settings.metrics_namespace, settings.service_name)
    document = json.loads(metrics.documents(worker_metrics._Interval())[0])
    return settings.metrics_namespace, settings.service_name, document


def emitted(document: dict[str, Any]) -> tuple[str, list[list[str]], set[str]]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    return directive["Namespace"], directive["Dimensions"], {m["Name"] for m in directive["Metrics"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_in_flight_policy_reads_exactly_the_metric_the_worker_writes(stack, model_dir):
    graph = run_program(stack)
    namespace, service, document = what_the_worker_emits(graph, model_dir)
    doc_namespace, dimension_sets, names = emitted(document)
    in_flight = policies(graph)["gantry-scale-on-in-flight"]
    assert in_flight["targetValue"] == stack_config(stack)["gantry:autoscaling"]["inFlightPerTask"]
    (query,) = in_flight["customizedMetricSpecification"]["metrics"]
    metric = query["metricStat"]["metric"]
    assert query["returnData"] is True and query["metricStat"]["stat"] == "Average"
    assert metric["namespace"] == namespace == doc_namespace
    assert metric["metricName"] == "InFlight" and "InFlight" in names
    # The one dimension set the service-level document carries, with the value this task writes.
    assert dimension_sets == [["Service"]]
    assert metric["dimensions"] == [{"name": "Service", "value": service}] and document["Service"] == service


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_tokens_policy_is_average_tokens_per_interval_times_intervals_per_minute(stack, model_dir):
    graph = run_program(stack)
    namespace, service, document = what_the_worker_emits(graph, model_dir)
    tokens = policies(graph)["gantry-scale-on-tokens"]
    assert tokens["targetValue"] == stack_config(stack)["gantry:autoscaling"]["tokensPerMinutePerTask"]
    stat, expression = tokens["customizedMetricSpecification"]["metrics"]
    assert stat["metricStat"]["metric"] == {
        "namespace": namespace,
        "metricName": "Tokens",
        "dimensions": [{"name": "Service", "value": service}],
    }
    assert "Tokens" in emitted(document)[2]
    assert stat["metricStat"]["stat"] == "Average" and stat["returnData"] is False
    assert expression == {
        "id": "tokens_per_minute",
        "expression": f"{stat['id']} * 6",
        "returnData": True,
        "label": "Tokens per task per minute",
    }
    assert WORKER_FLUSH_SECONDS == worker_metrics.FLUSH_SECONDS == 10


def test_the_worker_metric_identity_follows_the_container_environment(model_dir):
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:container"] = {
        **config["gantry:container"],
        "environment": {
            **config["gantry:container"]["environment"],
            "METRICS_NAMESPACE": "Acme/Embeddings",
            "SERVICE_NAME": "embed-dev",
        },
    }
    graph = run_program("dev", config, secret_keys)
    namespace, service, _ = what_the_worker_emits(graph, model_dir)
    assert (namespace, service) == ("Acme/Embeddings", "embed-dev")
    (query,) = policies(graph)["gantry-scale-on-in-flight"]["customizedMetricSpecification"]["metrics"]
    assert query["metricStat"]["metric"]["namespace"] == "Acme/Embeddings"
    assert query["metricStat"]["metric"]["dimensions"] == [{"name": "Service", "value": "embed-dev"}]


def test_a_team_image_scales_on_cpu_and_requests_only():
    assert set(policies(run_program(OWN_SERVICE))) == {"gantry-scale-on-cpu", "gantry-scale-on-requests"}


def test_prod_pre_warms_on_its_schedules_and_dev_has_none():
    assert run_program("dev").of_type(SCHEDULED) == []
    graph = run_program("prod")
    target = graph.one("aws:appautoscaling/target:Target", "gantry-scaling")
    actions = {a.name: a.inputs for a in graph.of_type(SCHEDULED)}
    assert set(actions) == {"gantry-schedule-weekday-prewarm", "gantry-schedule-weekday-evening"}
    prewarm = actions["gantry-schedule-weekday-prewarm"]
    assert prewarm["schedule"] == "cron(45 7 ? * MON-FRI *)"
    assert prewarm["timezone"] == "Europe/Dublin"
    assert prewarm["scalableTargetAction"] == {"minCapacity": 6}
    assert prewarm["name"] == "gantry-prod-weekday-prewarm"
    for action in actions.values():
        assert action["resourceId"] == target.inputs["resourceId"]
        assert (action["serviceNamespace"], action["scalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
        params = {
            "ServiceNamespace": action["serviceNamespace"],
            "Schedule": action["schedule"],
            "Timezone": action["timezone"],
            "ScheduledActionName": action["name"],
            "ResourceId": action["resourceId"],
            "ScalableDimension": action["scalableDimension"],
            "ScalableTargetAction": {k[0].upper() + k[1:]: int(v) for k, v in action["scalableTargetAction"].items()},
        }
        shape = botocore.session.get_session().get_service_model("application-autoscaling")
        report = ParamValidator().validate(params, shape.operation_model("PutScheduledAction").input_shape)
        assert not report.has_errors(), report.generate_report()


def test_schedules_own_the_bounds_so_a_refreshing_up_does_not_undo_a_pre_warm():
    prod = run_program("prod").one("aws:appautoscaling/target:Target", "gantry-scaling")
    assert set(prod.opts.ignore_changes) == {"minCapacity", "maxCapacity"}
    dev = run_program("dev").one("aws:appautoscaling/target:Target", "gantry-scaling")
    assert dev.opts.ignore_changes == ()


@pytest.mark.parametrize(
    "expression",
    [
        "0 8 ? * MON-FRI *",
        "45 7 ? * 2-6 *",
        "0/15 * * * ? *",
        "0 18 L * ? *",
        "0 9 15W * ? 2027",
        "0 9 ? * 6L *",
        "0 9 ? * MON#1 *",
        "0 10,14 ? JAN-MAR,NOV * 2026-2030",
        "30 6 ? * MON *",
    ],
)
def test_cron_expressions_aws_documents_are_accepted(expression):
    assert cron_expression(expression) == expression


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 8 * * 1-5", "six fields"),  # Unix cron: five fields
        ("cron(0 8 ? * MON-FRI *)", "gantry adds cron"),
        ("0 8 * * MON-FRI *", "exactly one of day-of-month and day-of-week"),
        ("0 8 ? * ? *", "exactly one of day-of-month and day-of-week"),
        ("60 8 ? * MON *", "minutes 60 is outside 0-59"),
        ("0 24 ? * MON *", "hours 24 is outside 0-23"),
        ("0 8 ? * 0 *", "day-of-week 0 is outside 1-7"),
        ("0 8 ? FOO * *", "month 'FOO' is not a value"),
        ("0 8 ? * FRI-MON *", "runs backwards"),
        ("0 8 ? * MON#6 *", "day-of-week"),
        ("0/0 8 ? * MON *", "increment"),
        ("0  8 ? * MON *", "six fields"),
        ("0 ? * * * *", "? is allowed only"),
        ("0 8 ? * MON 1969", "year 1969 is outside"),
    ],
)
def test_cron_mistakes_are_refused_by_name(expression, says):
    with pytest.raises(ValueError, match=None) as error:
        cron_expression(expression)
    assert says in str(error.value)


def test_at_expressions_must_be_real_local_date_times():
    assert at_expression("2026-11-27T07:30:00") == "2026-11-27T07:30:00"
    for bad in ("2026-11-27 07:30:00", "2026-11-27T07:30", "2026-11-27T07:30:00Z", "2026-02-30T08:00:00"):
        with pytest.raises(ValueError):
            at_expression(bad)

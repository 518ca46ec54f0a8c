"""Tracing on demand, on the whole stack: off adds nothing, on adds the collector sidecar and X-Ray writes only.

"Nothing" is checked as equality: the graph of a committed stack with `tracing` unset and with
`tracing.enabled: false` is the same, resource for resource and input for input, and no resource
mentions X-Ray, OTLP or the collector. "Only" is checked as a difference: tracing on changes the
task definition and adds exactly one inline policy on the task role, holding AWSXrayWriteOnlyAccess's
five actions, and the policy pack's rules still pass.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.workload.tracing import XRAY_WRITE_ACTIONS
from policy.rules import Resource, evaluate
from tests.harness import Graph, run_program, stack_config, with_test_secrets
from tests.test_aws_shapes import SESSION, shape_errors

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def run(stack: str, tracing: dict[str, Any] | None) -> Graph:
    config, secret_keys = with_test_secrets(stack_config(stack))
    if tracing is not None:
        config["gantry:tracing"] = tracing
    return run_program(stack, config, secret_keys)


def _asset(value: Any) -> Any:
    """Pulumi assets and archives (the hook's code) as what they are built from, so graphs compare."""
    if hasattr(value, "assets"):
        return {name: _asset(item) for name, item in value.assets.items()}
    return getattr(value, "path", None) or getattr(value, "text", None) or type(value).__name__


def by_name(graph: Graph) -> dict[str, tuple[str, Any]]:
    """Logical name (with the type: components and resources may share a name) -> (type, inputs)."""
    return {
        f"{r.typ}::{r.name}": (r.typ, json.loads(json.dumps(r.inputs, default=_asset, sort_keys=True)))
        for r in graph.resources
    }


def containers(graph: Graph) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in graph.one(TASK_DEFINITION, "gantry-task").json("containerDefinitions")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_tracing_off_adds_nothing(stack):
    default, off = run(stack, None), run(stack, {"enabled": False})
    assert by_name(default) == by_name(off)
    text = json.dumps(by_name(default)).lower()
    for word in ("xray", "otel", "4318", "aws-otel-collector"):
        assert word not in text
    assert list(containers(default)) == ["app"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_tracing_on_adds_the_sidecar_and_x_ray_writes_only(stack):
    off, on = by_name(run(stack, None)), run(stack, {"enabled": True})
    added = {n.split("::")[-1]: v for n, v in by_name(on).items() if n not in off}
    changed = {n.split("::")[-1] for n, v in by_name(on).items() if n in off and off[n] != v}
    assert set(added) == {"gantry-roles-task-tracing"}
    # The task definition changes, and so does what follows its revision (the service; with blue/green
    # the deployment resource that carries the revision to CodeDeploy).
    assert "gantry-task" in changed and changed <= {"gantry-task", "gantry-service", "gantry-deploy-release"}
    typ, policy = added["gantry-roles-task-tracing"]
    assert typ == ROLE_POLICY
    task_role = on.named("gantry-roles-task")
    assert policy["role"] == task_role.outputs["id"]
    assert json.loads(policy["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "XRayWriteTraces", "Effect": "Allow", "Action": list(XRAY_WRITE_ACTIONS), "Resource": "*"}
        ],
    }
    assert set(XRAY_WRITE_ACTIONS) == {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_sidecar_is_pinned_hardened_non_essential_and_logged(stack):
    graph = run(stack, {"enabled": True})
    defs = containers(graph)
    assert list(defs) == ["app", "otel-collector"]
    app, collector = defs["app"], defs["otel-collector"]
    assert app["essential"] is True and collector["essential"] is False
    assert collector["image"] == "public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1"
    assert collector["command"] == ["--config=/etc/ecs/ecs-xray.yaml"]
    assert collector["memoryReservation"] == 64
    assert collector["healthCheck"]["command"] == ["CMD", "/healthcheck"]
    assert collector["readonlyRootFilesystem"] is True and collector["user"] == "10001:10001"
    assert collector["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert "portMappings" not in collector
    logs = collector["logConfiguration"]["options"]
    assert logs["awslogs-group"] == app["logConfiguration"]["options"]["awslogs-group"]
    assert logs["awslogs-stream-prefix"] == "otel-collector" and logs["mode"] == "non-blocking"
    env = {e["name"]: e["value"] for e in app["environment"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert env["OTEL_SERVICE_NAME"] == graph.one(TASK_DEFINITION, "gantry-task").inputs["family"] == f"gantry-{stack}"
    off_env = {e["name"] for e in containers(run(stack, None))["app"]["environment"]}
    assert set(env) - off_env == {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
    shape = SESSION.get_service_model("ecs").shape_for("ContainerDefinition")
    assert [e for name, d in defs.items() for e in shape_errors(d, shape, name)] == []


def as_resources(graph: Graph, policy_of: dict[str, str] | None = None) -> list[Resource]:
    """The graph as CrossGuard shows it (as tests/policy/test_rules.py builds it), a policy optionally replaced."""
    return [
        Resource(
            type=r.typ,
            urn=r.urn,
            props={
                **r.inputs,
                **{k: r.outputs[k] for k in ("id", "arn") if k in r.outputs},
                **({"policy": policy_of[r.name]} if policy_of and r.name in policy_of else {}),
            },
            property_dependencies=r.opts.property_dependencies,
        )
        for r in graph.resources
    ]


def test_tracing_on_passes_the_policy_pack_and_a_wider_star_still_fails():
    graph = run("prod", {"enabled": True})
    verdicts = evaluate(as_resources(graph), production=True)
    assert verdicts["no-star-resources"] == [] and verdicts["task-roles-exact"] == []
    document = graph.named("gantry-roles-task-tracing").json("policy")
    document["Statement"][0]["Action"].append("xray:BatchGetTraces")
    widened = as_resources(graph, {"gantry-roles-task-tracing": json.dumps(document)})
    assert any("xray:BatchGetTraces" in m for m in evaluate(widened, production=True)["task-roles-exact"])


def test_the_worker_turns_tracing_on_from_exactly_the_rendered_variables():
    from worker import tracing as worker_tracing

    app = containers(run("dev", {"enabled": True}))["app"]
    tracer = worker_tracing.from_env({e["name"]: e["value"] for e in app["environment"]})
    assert tracer is not None and tracer._path == "/v1/traces" and (tracer._host, tracer._port) == ("localhost", 4318)
    off = containers(run("dev", None))["app"]
    assert worker_tracing.from_env({e["name"]: e["value"] for e in off["environment"]}) is None

"""What gantry generates, checked against AWS's own API models (botocore), not against our memory.

The container definitions travel to ECS as a JSON string; the provider decodes it into the SDK's
struct and silently drops unknown fields, so a misspelt `readonlyRootFilesystem` would quietly lose a
hardening. Likewise an IAM action that names no real API call grants nothing and fails only at run
time. Both are checked here against botocore's service models.
"""

from __future__ import annotations

import re

import botocore.session
import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape

from components.workload.scaling import MetricQuery, ScalingRule, target_tracking_configuration
from tests.harness import Graph, run_program

SESSION = botocore.session.get_session()
# IAM service prefixes whose botocore model name differs.
MODEL_FOR_PREFIX = {"elasticloadbalancing": "elbv2"}
# IAM actions whose API operation has another name (Lambda's Invoke is authorised as lambda:InvokeFunction).
OPERATION_FOR_ACTION = {"lambda:InvokeFunction": "Invoke"}
# Permission-only actions: checked by IAM, no API of their own (the CodeDeploy role passes the task roles).
PERMISSION_ONLY = {"iam:PassRole"}


def shape_errors(value, shape: Shape, path: str) -> list[str]:
    """Where `value` does not fit the botocore `shape`: unknown members, wrong types, bad enum values."""
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        errors = [f"{path}.{k}: not a member of {shape.name}" for k in value if k not in shape.members]
        missing = [m for m in shape.required_members if m not in value]
        errors += [f"{path}.{m}: required by {shape.name}" for m in missing]
        for key, item in value.items():
            if key in shape.members:
                errors += shape_errors(item, shape.members[key], f"{path}.{key}")
        return errors
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(value) for e in shape_errors(item, shape.member, f"{path}[{i}]")]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [e for k, item in value.items() for e in shape_errors(item, shape.value, f"{path}.{k}")]
    expected = {"string": str, "integer": int, "boolean": bool, "long": int}.get(shape.type_name)
    if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        return [f"{path}: expected {shape.type_name}, got {value!r}"]
    enum = getattr(shape, "enum", None)
    if enum and value not in enum:
        return [f"{path}: {value!r} is not one of {enum}"]
    return []


def policy_actions(graph: Graph) -> set[str]:
    actions: set[str] = set()
    for res in graph.resources:
        for key in ("policy", "assumeRolePolicy"):
            if key in res.inputs and isinstance(res.inputs[key], str) and '"Statement"' in res.inputs[key]:
                for statement in res.json(key)["Statement"]:
                    listed = statement["Action"]
                    actions.update([listed] if isinstance(listed, str) else listed)
    return actions


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_container_definitions_fit_the_ecs_api_model(stack):
    graph = run_program(stack)
    definitions = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").json("containerDefinitions")
    shape = SESSION.get_service_model("ecs").shape_for("ContainerDefinition")
    errors = [e for i, d in enumerate(definitions) for e in shape_errors(d, shape, f"containerDefinitions[{i}]")]
    assert errors == []


def test_the_shape_check_catches_a_misspelt_hardening_field():
    shape = SESSION.get_service_model("ecs").shape_for("ContainerDefinition")
    bad = {"name": "app", "image": "x", "readOnlyRootFilesystem": True, "portMappings": [{"protocol": "sctp"}]}
    errors = shape_errors(bad, shape, "c")
    assert "c.readOnlyRootFilesystem: not a member of ContainerDefinition" in errors
    assert any(e.startswith("c.portMappings[0].protocol") for e in errors)


def pascal(value):
    """The provider's camelCase input keys as the API's PascalCase members; the engine records every
    number as a float, so integral floats are the integers they were written as."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def camel(value):
    """A Python ArgsDict as the provider's camelCase inputs (what the mocks record)."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def scaling_shape_errors(config: dict) -> list[str]:
    shape = SESSION.get_service_model("application-autoscaling").shape_for("TargetTrackingScalingPolicyConfiguration")
    return shape_errors(pascal(config), shape, "targetTracking")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_scaling_policy_fits_the_application_auto_scaling_model(stack):
    graph = run_program(stack)
    policies = graph.of_type("aws:appautoscaling/policy:Policy")
    assert policies
    model = SESSION.get_service_model("application-autoscaling")
    errors = []
    for p in policies:
        if p.inputs["policyType"] == "StepScaling":
            shape = model.shape_for("StepScalingPolicyConfiguration")
            errors += shape_errors(pascal(p.inputs["stepScalingPolicyConfiguration"]), shape, p.name)
        else:
            errors += scaling_shape_errors(p.inputs["targetTrackingScalingPolicyConfiguration"])
    assert errors == []


def test_a_metric_math_rule_fits_the_model_and_the_check_catches_a_wrong_member():
    rule = ScalingRule(
        name="backlog",
        target_value=10,
        metric_queries=(
            MetricQuery(
                id="m1",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": "jobs"},
                stat="Sum",
            ),
            MetricQuery(
                id="tasks",
                namespace="ECS/ContainerInsights",
                metric_name="RunningTaskCount",
                dimensions={"ClusterName": "c", "ServiceName": "s"},
            ),
            MetricQuery(id="perTask", expression="m1 / tasks", returns=True),
        ),
        scale_in_cooldown_seconds=300,
        scale_out_cooldown_seconds=60,
    )
    config = target_tracking_configuration(rule)
    as_provider_inputs = camel(config)
    assert scaling_shape_errors(as_provider_inputs) == []
    (returned,) = [q for q in as_provider_inputs["customizedMetricSpecification"]["metrics"] if q["returnData"]]
    assert returned["expression"] == "m1 / tasks"
    as_provider_inputs["customizedMetricSpecification"]["metrics"][0]["metricStat"]["statistic"] = "Sum"
    assert any("MetricStat.Statistic: not a member" in e for e in scaling_shape_errors(as_provider_inputs))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_allowed_iam_action_is_a_real_api_operation(stack):
    graph = run_program(stack)
    actions = policy_actions(graph)
    assert "ecr:GetAuthorizationToken" in actions  # the walk found the policies
    unknown = []
    for action in sorted(actions):
        prefix, operation = action.split(":", 1)
        if operation == "*" or action in PERMISSION_ONLY:
            continue  # "*" only in the Deny of the access-log bucket policy
        operation = OPERATION_FOR_ACTION.get(action, operation)
        model = SESSION.get_service_model(MODEL_FOR_PREFIX.get(prefix, prefix))
        if operation not in model.operation_names:
            unknown.append(action)
    assert unknown == []

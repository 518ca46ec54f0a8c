"""The ECS AppSpec builder: the documented schema, never a public IP, only the hooks given, strict input."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from components.blue_green.appspec import (
    HOOK_EVENTS,
    AppSpecArgs,
    AppSpecError,
    CapacityProviderItem,
    appspec,
    appspec_content,
    revision,
)

TASK_DEF = "arn:aws:ecs:eu-west-1:210987654321:task-definition/gantry-prod:42"
HOOK = "arn:aws:lambda:eu-west-1:210987654321:function:gantry-prod-hook"


def args(**overrides: Any) -> AppSpecArgs:
    base: dict[str, Any] = dict(
        task_definition_arn=TASK_DEF,
        container_name="worker",
        container_port=8000,
        subnets=("subnet-0a1b2c", "subnet-0d4e5f"),
        security_groups=("sg-0123abcd",),
        capacity_provider_strategy=(
            CapacityProviderItem("FARGATE", weight=1, base=1),
            CapacityProviderItem("FARGATE_SPOT", weight=3),
        ),
        platform_version="1.4.0",
        hooks={"AfterAllowTestTraffic": HOOK},
    )
    base.update(overrides)
    return AppSpecArgs(**base)


def target_properties(document):
    (resource,) = document["Resources"]
    assert resource["TargetService"]["Type"] == "AWS::ECS::Service"
    return resource["TargetService"]["Properties"]


def test_document_follows_the_aws_example_shape():
    document = appspec(args())
    assert document["version"] == 0.0
    props = target_properties(document)
    assert props["TaskDefinition"] == TASK_DEF
    assert props["LoadBalancerInfo"] == {"ContainerName": "worker", "ContainerPort": 8000}
    assert props["PlatformVersion"] == "1.4.0"
    assert props["NetworkConfiguration"] == {
        "AwsvpcConfiguration": {
            "Subnets": ["subnet-0a1b2c", "subnet-0d4e5f"],
            "SecurityGroups": ["sg-0123abcd"],
            "AssignPublicIp": "DISABLED",
        }
    }
    assert props["CapacityProviderStrategy"] == [
        {"Base": 1, "CapacityProvider": "FARGATE", "Weight": 1},
        {"Base": 0, "CapacityProvider": "FARGATE_SPOT", "Weight": 3},
    ]
    assert document["Hooks"] == [{"AfterAllowTestTraffic": HOOK}]


def test_public_ip_is_never_possible():
    assert "assign_public_ip" not in AppSpecArgs.__dataclass_fields__
    assert '"AssignPublicIp":"DISABLED"' in appspec_content(args())
    assert "ENABLED" not in appspec_content(args())


def test_only_given_hooks_appear_in_lifecycle_order():
    hooks = {event: f"{HOOK}-{i}" for i, event in enumerate(HOOK_EVENTS)}
    reversed_hooks = dict(reversed(list(hooks.items())))
    document = appspec(args(hooks=reversed_hooks))
    assert [next(iter(h)) for h in document["Hooks"]] == list(HOOK_EVENTS)
    assert "Hooks" not in appspec(args(hooks={}))


def test_empty_strategy_keeps_the_cluster_default():
    assert "CapacityProviderStrategy" not in target_properties(appspec(args(capacity_provider_strategy=())))


def test_content_is_deterministic_json_and_revision_carries_its_sha256():
    content = appspec_content(args())
    assert json.loads(content) == appspec(args())
    assert appspec_content(args()) == content
    rev = revision(args())
    assert rev["revisionType"] == "AppSpecContent"
    assert rev["appSpecContent"] == {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()}


def test_revision_fits_codedeploy_create_deployment_model():
    model = botocore.session.get_session().get_service_model("codedeploy")
    shape = model.operation_model("CreateDeployment").input_shape
    report = ParamValidator().validate(
        {"applicationName": "app", "deploymentGroupName": "group", "revision": revision(args())}, shape
    )
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"task_definition_arn": "gantry-prod:42"}, "task_definition_arn"),
        ({"task_definition_arn": TASK_DEF.rsplit(":", 1)[0]}, "task_definition_arn"),
        ({"container_name": ""}, "container_name"),
        ({"container_port": 0}, "container_port"),
        ({"container_port": 65536}, "container_port"),
        ({"container_port": True}, "container_port"),
        ({"subnets": ()}, "subnets"),
        ({"subnets": ("subnet-0a", "subnet-0a")}, "subnets"),
        ({"subnets": ("10.0.0.0/24",)}, "subnets"),
        ({"security_groups": ()}, "security_groups"),
        ({"security_groups": tuple(f"sg-{i:04x}" for i in range(6))}, "security_groups"),
        ({"platform_version": "latest"}, "platform_version"),
        ({"hooks": {"AfterTraffic": HOOK}}, "hooks"),
        ({"hooks": {"AfterAllowTestTraffic": "gantry-prod-hook"}}, "hooks[AfterAllowTestTraffic]"),
        (
            {
                "capacity_provider_strategy": (
                    CapacityProviderItem("FARGATE", base=1),
                    CapacityProviderItem("FARGATE_SPOT", base=1),
                )
            },
            "base on at most one",
        ),
        ({"capacity_provider_strategy": (CapacityProviderItem("FARGATE", weight=0),)}, "weight > 0"),
        (
            {"capacity_provider_strategy": (CapacityProviderItem("FARGATE"), CapacityProviderItem("FARGATE"))},
            "distinct",
        ),
        ({"capacity_provider_strategy": (CapacityProviderItem("FARGATE", weight=-1),)}, "weight"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(overrides, needle):
    with pytest.raises(AppSpecError, match=None) as caught:
        appspec(args(**overrides))
    assert needle in str(caught.value)
    assert "allowed" in str(caught.value)

"""The ECS AppSpec that a CodeDeploy blue/green deployment carries, as a pure function of plain values.

CodeDeploy reads the replacement task set's definition from the AppSpec, not from the ECS service: the
task definition, the container and port behind the load balancer, the network configuration, capacity
provider strategy and platform version, and the Lambda hooks to run. Schema: AWS CodeDeploy User Guide,
"AppSpec File example for an Amazon ECS deployment"
(https://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file-example.html), the
"resources" section for ECS (reference-appspec-file-structure-resources.html#reference-appspec-file-
structure-resources-ecs) and the ECS "hooks" section, a list of one-key maps
(reference-appspec-file-structure-hooks.html#appspec-hooks-ecs). Security stance: tasks never get a
public IP (`AssignPublicIp` is always DISABLED and is not a parameter), and every value is validated so
a malformed deployment is refused here rather than half-way through a deploy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The five ECS lifecycle events that accept a Lambda hook, in the order CodeDeploy runs them.
HOOK_EVENTS = ("BeforeInstall", "AfterInstall", "AfterAllowTestTraffic", "BeforeAllowTraffic", "AfterAllowTraffic")

_TASK_DEFINITION_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/[A-Za-z0-9_-]{1,255}:\d+$")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]+)?$")
_PLATFORM_VERSION = re.compile(r"^(LATEST|\d+\.\d+\.\d+)$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# ECS limits per awsvpcConfiguration (ECS API reference, AwsVpcConfiguration) and per strategy.
_MAX_SUBNETS, _MAX_SECURITY_GROUPS, _MAX_CAPACITY_PROVIDERS = 16, 5, 6


class AppSpecError(ValueError):
    """An AppSpec argument is invalid; the message names it and says what is allowed."""


@dataclass(frozen=True)
class CapacityProviderItem:
    """One entry of the replacement task set's capacity provider strategy."""

    capacity_provider: str
    """Short name, e.g. FARGATE or FARGATE_SPOT. No default: the caller states where tasks run."""
    weight: int = 1
    """Relative share of tasks after `base` is met. Default 1, ECS's usual single-provider weight."""
    base: int = 0
    """Tasks always placed on this provider first. Default 0; at most one item may set it."""


@dataclass(frozen=True)
class AppSpecArgs:
    """Everything the replacement (green) task set needs; mirrors the live service's settings."""

    task_definition_arn: str
    """Full ARN with revision of the task definition to deploy. No default: it is what a deploy ships."""
    container_name: str
    """The container registered with the target groups. No default: must match the task definition."""
    container_port: int
    """The port the target groups send traffic to. No default: must equal the target group port."""
    subnets: tuple[str, ...]
    """Subnet IDs for the tasks (private subnets). No default: the service's own subnets."""
    security_groups: tuple[str, ...]
    """Security group IDs for the tasks. No default: the service's own task security group."""
    capacity_provider_strategy: tuple[CapacityProviderItem, ...] = ()
    """Empty (the default) keeps the cluster's default strategy; give the service's strategy otherwise,
    or CodeDeploy would start green on different capacity than blue."""
    platform_version: str = "LATEST"
    """Fargate platform version. Default LATEST, as ECS uses when a service names none."""
    hooks: Mapping[str, str] = field(default_factory=dict)
    """Lifecycle event -> Lambda function ARN; only the events given appear. Default: no hooks."""


def _fail(name: str, value: Any, allowed: str) -> AppSpecError:
    return AppSpecError(f"AppSpec {name}={value!r} is invalid; allowed: {allowed}")


def _validate(args: AppSpecArgs) -> None:
    if not isinstance(args.task_definition_arn, str) or not _TASK_DEFINITION_ARN.match(args.task_definition_arn):
        raise _fail(
            "task_definition_arn", args.task_definition_arn, "arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REV"
        )
    if not isinstance(args.container_name, str) or not _CONTAINER_NAME.match(args.container_name):
        raise _fail("container_name", args.container_name, "1-255 of A-Z a-z 0-9 _ -")
    port = args.container_port
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _fail("container_port", port, "an integer from 1 to 65535")
    if not args.subnets or len(args.subnets) > _MAX_SUBNETS or len(set(args.subnets)) != len(args.subnets):
        raise _fail("subnets", args.subnets, f"1 to {_MAX_SUBNETS} distinct subnet IDs")
    if any(not isinstance(s, str) or not re.fullmatch(r"subnet-[0-9a-f]+", s) for s in args.subnets):
        raise _fail("subnets", args.subnets, "subnet IDs of the form subnet-0123abcd")
    groups = args.security_groups
    if not groups or len(groups) > _MAX_SECURITY_GROUPS or len(set(groups)) != len(groups):
        raise _fail("security_groups", groups, f"1 to {_MAX_SECURITY_GROUPS} distinct security group IDs")
    if any(not isinstance(g, str) or not re.fullmatch(r"sg-[0-9a-f]+", g) for g in groups):
        raise _fail("security_groups", groups, "security group IDs of the form sg-0123abcd")
    _validate_strategy(args.capacity_provider_strategy)
    if not isinstance(args.platform_version, str) or not _PLATFORM_VERSION.match(args.platform_version):
        raise _fail("platform_version", args.platform_version, "LATEST or a version such as 1.4.0")
    for event, arn in args.hooks.items():
        if event not in HOOK_EVENTS:
            raise _fail("hooks", event, ", ".join(HOOK_EVENTS))
        if not isinstance(arn, str) or not _FUNCTION_ARN.match(arn):
            raise _fail(f"hooks[{event}]", arn, "a Lambda function ARN arn:aws:lambda:REGION:ACCOUNT:function:NAME")


def _validate_strategy(strategy: tuple[CapacityProviderItem, ...]) -> None:
    if len(strategy) > _MAX_CAPACITY_PROVIDERS:
        raise _fail("capacity_provider_strategy", strategy, f"at most {_MAX_CAPACITY_PROVIDERS} providers")
    names = [item.capacity_provider for item in strategy]
    if len(set(names)) != len(names) or any(not isinstance(n, str) or not n for n in names):
        raise _fail("capacity_provider_strategy", names, "distinct, non-empty capacity provider names")
    for item in strategy:
        for name, value, high in (("weight", item.weight, 1000), ("base", item.base, 100000)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise _fail(f"capacity_provider_strategy[{item.capacity_provider}].{name}", value, f"0 to {high}")
    # ECS: only one provider may define a base, and some provider must have weight > 0 to place tasks.
    if sum(1 for item in strategy if item.base > 0) > 1:
        raise _fail("capacity_provider_strategy", names, "a base on at most one provider")
    if strategy and not any(item.weight > 0 for item in strategy):
        raise _fail("capacity_provider_strategy", names, "at least one provider with weight > 0")


def appspec(args: AppSpecArgs) -> dict[str, Any]:
    """The AppSpec document as a dict, with only the hooks given and never a public IP."""
    _validate(args)
    properties: dict[str, Any] = {
        "TaskDefinition": args.task_definition_arn,
        "LoadBalancerInfo": {"ContainerName": args.container_name, "ContainerPort": args.container_port},
        "PlatformVersion": args.platform_version,
        "NetworkConfiguration": {
            "AwsvpcConfiguration": {
                "Subnets": list(args.subnets),
                "SecurityGroups": list(args.security_groups),
                "AssignPublicIp": "DISABLED",
            }
        },
    }
    if args.capacity_provider_strategy:
        properties["CapacityProviderStrategy"] = [
            {"Base": item.base, "CapacityProvider": item.capacity_provider, "Weight": item.weight}
            for item in args.capacity_provider_strategy
        ]
    document: dict[str, Any] = {
        "version": 0.0,
        "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": properties}}],
    }
    hooks = [{event: args.hooks[event]} for event in HOOK_EVENTS if event in args.hooks]
    if hooks:
        document["Hooks"] = hooks
    return document


def appspec_content(args: AppSpecArgs) -> str:
    """The AppSpec as the string CodeDeploy takes for `revisionType: AppSpecContent`.

    JSON is valid YAML, so the one encoding serves both; keys are sorted so that the same arguments
    always give the same bytes (and the same sha256).
    """
    return json.dumps(appspec(args), sort_keys=True, separators=(",", ":"))


def revision(args: AppSpecArgs) -> dict[str, Any]:
    """The `revision` argument of codedeploy.create_deployment, with the content's sha256 for integrity."""
    content = appspec_content(args)
    return {
        "revisionType": "AppSpecContent",
        "appSpecContent": {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()},
    }


def target_properties(content: str | None) -> dict[str, Any] | None:
    """What an AppSpec asks of the replacement task set (task definition, container and port, network,
    capacity, platform), with subnet and group order normalised (ECS treats them as sets); None when
    `content` is missing or not an ECS AppSpec. Hooks are left out: they check a deployment, they are
    not part of what runs."""
    if not content:
        return None
    try:
        document: Any = json.loads(content)
        properties = dict(document["Resources"][0]["TargetService"]["Properties"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    network = json.loads(json.dumps(properties.get("NetworkConfiguration", {})))
    vpc = network.get("AwsvpcConfiguration", {})
    for key in ("Subnets", "SecurityGroups"):
        if isinstance(vpc.get(key), list):
            vpc[key] = sorted(vpc[key])
    properties["NetworkConfiguration"] = network
    return properties


def changed_properties(deployed: str | None, intended: str) -> list[str]:
    """The AppSpec properties that differ between what was deployed and what is intended (every one of
    them when nothing usable was recorded), in a stable order; [] means no deployment is needed."""
    old, new = target_properties(deployed), target_properties(intended)
    if new is None:
        raise AppSpecError("the intended AppSpec is not an ECS AppSpec with one TargetService")
    if old is None:
        return sorted(new)
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))

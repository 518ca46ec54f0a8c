"""PreTrafficTask: the rolling-mode step of `pulumi up` that runs `deployment.preTraffic` before the service update.

A Pulumi dynamic provider around `components.pre_traffic.OneOffTaskRunner`: create and update run the
one-off task from the task definition ARN they are given (the new revision) and wait for it; a failure
raises, which the dynamic provider host turns into a failed `up` (and the engine keeps the previous
state, so the next `up` runs it again). The ECS service depends on this resource, so the rolling update
starts only after the command succeeded. Diff: a new task definition revision or command runs it again;
delete does nothing (a finished task leaves nothing behind). Progress goes to `pulumi.log.info`, which
the person running `pulumi up` sees. Security stance: runs with the deploying credentials, needing only
`components.pre_traffic.one_off_task_policy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.pre_traffic import OneOffTask, OneOffTaskRunner

INPUT_KEYS = (
    "region",
    "cluster",
    "task_definition_arn",
    "container_name",
    "command",
    "subnets",
    "security_groups",
    "log_group",
    "log_stream_prefix",
    "timeout_seconds",
)


def task_from_props(props: Mapping[str, Any]) -> OneOffTask:
    missing = [key for key in INPUT_KEYS if props.get(key) in (None, "", [])]
    if missing:
        raise ValueError(f"pre-traffic task inputs {missing} are missing")
    return OneOffTask(
        region=str(props["region"]),
        cluster=str(props["cluster"]),
        task_definition_arn=str(props["task_definition_arn"]),
        container_name=str(props["container_name"]),
        command=tuple(str(a) for a in props["command"]),
        subnets=tuple(str(s) for s in props["subnets"]),
        security_groups=tuple(str(s) for s in props["security_groups"]),
        log_group=str(props["log_group"]),
        log_stream_prefix=str(props["log_stream_prefix"]),
        timeout_seconds=int(props["timeout_seconds"]),
    )


def run_needed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Run again for a new revision or command (or any other input change)."""
    return any(olds.get(key) != news.get(key) for key in INPUT_KEYS)


# Import path pinned: every stack's state pickles this class by reference as its module and name
# (tests/test_dynamic_provider_pickling.py PINNED_IMPORT_PATHS). Renaming or moving it breaks `up`,
# `refresh` and `destroy` of existing stacks; a move must leave a re-export under this path.
class PreTrafficTaskProvider(pulumi.dynamic.ResourceProvider):
    def _run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        import boto3  # Only the deploying machine needs boto3.

        task = task_from_props(props)
        ecs = boto3.session.Session(region_name=task.region).client("ecs")
        result = OneOffTaskRunner(ecs, log=pulumi.log.info).run(task)
        return {**{key: props[key] for key in INPUT_KEYS}, **result}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._run(props)
        return pulumi.dynamic.CreateResult(id_=outs["task_arn"], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=run_needed(olds, news), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: a stopped task leaves nothing behind."""


@dataclass(frozen=True)
class PreTrafficTaskArgs:
    region: pulumi.Input[str]
    cluster: pulumi.Input[str]
    task_definition_arn: pulumi.Input[str]
    """The new revision's ARN (the task definition resource's `arn`)."""
    container_name: str
    command: Sequence[str]
    subnets: pulumi.Input[Sequence[str]]
    security_groups: pulumi.Input[Sequence[pulumi.Input[str]]]
    log_group: pulumi.Input[str]
    log_stream_prefix: str
    timeout_seconds: int


class PreTrafficTask(pulumi.dynamic.Resource):
    """One run of the pre-traffic command per new revision, awaited inside `pulumi up`."""

    task_arn: pulumi.Output[str]
    exit_code: pulumi.Output[int]

    def __init__(self, name: str, args: PreTrafficTaskArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {key: getattr(args, key) for key in INPUT_KEYS}
        super().__init__(PreTrafficTaskProvider(), name, {**props, "task_arn": None, "exit_code": None}, opts)

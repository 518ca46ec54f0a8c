"""PreTrafficTask: the rolling-mode step of `pulumi up` that runs `deployment.preTraffic` before the service update.

A Pulumi dynamic provider around `components.pre_traffic.OneOffTaskRunner`: create and update run the
one-off task from the task definition ARN they are given (the new revision) and wait for it; a failure
raises, which the dynamic provider host turns into a failed `up` (and the engine keeps the previous
state, so the next `up` runs it again). The ECS service depends on this resource, so the rolling update
starts only after the command succeeded. Diff: a new task definition revision or command runs it again;
delete does nothing (a finished task leaves nothing behind). Progress lines go to the provider
process's stdout, which the CLI shows as they come (components.provider_runtime.progress). Security
stance: runs as the stack's pulumi-aws principal (its aws:profile and assumed role, passed as plain
inputs, components.provider_runtime.session_for), needing only `components.pre_traffic.one_off_task_policy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.pre_traffic import OneOffTask, OneOffTaskRunner
from components.provider_runtime import progress, session_for
from components.settings.invocation import SESSION_KEYS, ProviderSession

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
        task = task_from_props(props)
        ecs = session_for(task.region, ProviderSession.from_props(props)).client("ecs")
        result = OneOffTaskRunner(ecs, log=progress).run(task)
        # The session keys are optional (None when the stack sets no profile or role).
        return {**{key: props.get(key) for key in (*INPUT_KEYS, *SESSION_KEYS)}, **result}

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
    session: ProviderSession = ProviderSession()
    """The stack's aws:profile and assumed role; default none (boto3's default chain). A change alone runs
    nothing again (run_needed reads INPUT_KEYS only)."""


class PreTrafficTask(pulumi.dynamic.Resource):
    """One run of the pre-traffic command per new revision, awaited inside `pulumi up`."""

    task_arn: pulumi.Output[str]
    exit_code: pulumi.Output[int]

    def __init__(self, name: str, args: PreTrafficTaskArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {key: getattr(args, key) for key in INPUT_KEYS}
        props.update(args.session.inputs())
        super().__init__(PreTrafficTaskProvider(), name, {**props, "task_arn": None, "exit_code": None}, opts)

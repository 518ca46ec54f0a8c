"""One-off tasks before traffic: run `deployment.preTraffic`'s command once from the new task definition.

A database migration, cache warm-up or model check must run on the new revision before any production
traffic reaches it, and must stop the deploy when it fails. `OneOffTaskRunner` starts one Fargate task
of the new task definition (same image, roles, secrets and network as the service: private subnets,
the service's security group, no public IP) with only the container's command overridden, waits for
it to stop, and raises `OneOffTaskFailed` with the exit code, the stop reason and a CloudWatch Logs
console link unless the container exited 0. Its log stream is in the service's log group, named
`<awslogs-stream-prefix>/<container>/<task id>` by the awslogs driver; RunTask's overrides cannot
change the log configuration (ContainerOverride has no logConfiguration), so the task id, and
`startedBy: gantry-pre-traffic` on the task, is what tells it from the service's own tasks. In rolling
mode `PreTrafficTask` (a dynamic provider, like components.blue_green.provider) runs it inside `pulumi
up`, and the service update depends on it, so a failure fails the `up` before ECS starts replacing
tasks; the engine then keeps the resource's previous state and the next `up` runs the task again.
Only the standard library is imported at module level. Security stance: no public IP, no command
shell (exec form), and the caller needs only ecs:RunTask on this task definition family (conditioned
on the cluster), iam:PassRole on exactly the task and execution roles, ecs:DescribeTasks and
ecs:StopTask on the cluster's tasks (`one_off_task_policy`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STARTED_BY = "gantry-pre-traffic"
# Fargate tasks take tens of seconds to start; polling every 10 s shows progress without spending quota.
POLL_SECONDS = 10


class OneOffTaskFailed(RuntimeError):
    """The one-off task did not exit 0; the message carries exit code, stop reason and the logs link."""


@dataclass(frozen=True, kw_only=True)
class OneOffTask:
    """One run of the pre-traffic command."""

    region: str
    cluster: str
    """Cluster name or ARN."""
    task_definition_arn: str
    """The NEW revision (family:revision ARN), never the family alone (which would run whatever is latest)."""
    container_name: str
    command: tuple[str, ...]
    """Exec form; replaces the container's command for this task only."""
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    log_group: str
    log_stream_prefix: str
    timeout_seconds: int = 600
    """Stop the task and fail after this long; default 600 (deployment.preTraffic.timeoutSeconds)."""

    def __post_init__(self) -> None:
        if (
            ":task-definition/" not in self.task_definition_arn
            or ":" not in self.task_definition_arn.rsplit("/", 1)[-1]
        ):
            raise ValueError(
                f"task_definition_arn={self.task_definition_arn!r} is invalid; allowed: a task definition ARN "
                "with its revision (family:N)"
            )
        if not self.command or not self.subnets or not self.security_groups:
            raise ValueError("a one-off task needs a command, subnets and security groups")
        if not 60 <= self.timeout_seconds <= 3600:
            raise ValueError(f"timeout_seconds={self.timeout_seconds} is invalid; allowed: 60 to 3600")


def run_task_request(task: OneOffTask) -> dict[str, Any]:
    """The RunTask call: one Fargate task of the new revision in the service's private network."""
    return {
        "cluster": task.cluster,
        "taskDefinition": task.task_definition_arn,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "count": 1,
        "startedBy": STARTED_BY,
        "enableExecuteCommand": False,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(task.subnets),
                "securityGroups": list(task.security_groups),
                "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {"containerOverrides": [{"name": task.container_name, "command": list(task.command)}]},
    }


def log_stream(task: OneOffTask, task_arn: str) -> str:
    """The awslogs driver's stream name: prefix/container/task id."""
    return f"{task.log_stream_prefix}/{task.container_name}/{task_arn.rsplit('/', 1)[-1]}"


def logs_url(region: str, log_group: str, stream: str) -> str:
    """The CloudWatch Logs console page of one stream (the console escapes '/' as $252F inside its fragment)."""

    def encode(value: str) -> str:
        return urllib.parse.quote(value, safe="").replace("%", "$25")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{encode(log_group)}/log-events/{encode(stream)}"
    )


def one_off_task_policy(
    *, family_arn_prefix: str, cluster_arn: str, task_role_arns: Sequence[str], partition: str = "aws"
) -> dict[str, Any]:
    """The least privilege that runs and watches the one-off task: RunTask only of this family's revisions
    and only on this cluster, PassRole of exactly the two task roles to ECS tasks, describe/stop its tasks."""
    account_region = cluster_arn.split(":")[3:5]
    task_arns = f"arn:{partition}:ecs:{account_region[0]}:{account_region[1]}:task/{cluster_arn.rsplit('/', 1)[-1]}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunThisFamilyOnThisCluster",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                "Resource": f"{family_arn_prefix}:*",
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
            },
            {
                "Sid": "PassTheTaskRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": sorted(task_role_arns),
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
            {
                "Sid": "WatchItsTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": task_arns,
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
            },
        ],
    }


class OneOffTaskRunner:
    """RunTask-and-wait over a boto3 ECS client; log, sleep and clock are injectable for tests."""

    def __init__(
        self,
        ecs: Any,
        *,
        log: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ecs, self.log, self.sleep, self.clock = ecs, log, sleep, clock

    def run(self, task: OneOffTask) -> dict[str, Any]:
        """Run the task to completion; returns {task_arn, exit_code: 0} or raises OneOffTaskFailed."""
        started = self.ecs.run_task(**run_task_request(task))
        if started.get("failures") or not started.get("tasks"):
            reasons = "; ".join(
                f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip()
                for f in started.get("failures", [])
            )
            raise OneOffTaskFailed(
                f"pre-traffic task of {_short(task.task_definition_arn)} could not start: "
                f"{reasons or 'no task returned'}"
            )
        task_arn = started["tasks"][0]["taskArn"]
        link = logs_url(task.region, task.log_group, log_stream(task, task_arn))
        self.log(
            f"pre-traffic task {task_arn.rsplit('/', 1)[-1]} of {_short(task.task_definition_arn)} started: "
            f"{' '.join(task.command)}; logs: {link}"
        )
        deadline = self.clock() + task.timeout_seconds
        last_status = None
        while True:
            described = self.ecs.describe_tasks(cluster=task.cluster, tasks=[task_arn]).get("tasks", [])
            current = described[0] if described else {}
            status = current.get("lastStatus")
            if status != last_status:
                self.log(f"pre-traffic task: {status}")
                last_status = status
            if status == "STOPPED":
                return self._verdict(task, task_arn, current, link)
            remaining = deadline - self.clock()
            if remaining <= 0:
                self.ecs.stop_task(cluster=task.cluster, task=task_arn, reason=f"{STARTED_BY}: timed out")
                raise OneOffTaskFailed(
                    f"pre-traffic task {task_arn} ran longer than {task.timeout_seconds} s and was stopped; the deploy "
                    f"did not proceed. Logs: {link}"
                )
            self.sleep(min(POLL_SECONDS, remaining))

    def _verdict(self, task: OneOffTask, task_arn: str, described: Mapping[str, Any], link: str) -> dict[str, Any]:
        containers = [c for c in described.get("containers", []) if c.get("name") == task.container_name]
        container = containers[0] if containers else {}
        exit_code = container.get("exitCode")
        if exit_code == 0:
            self.log("pre-traffic task exited 0; the deploy proceeds")
            return {"task_arn": task_arn, "exit_code": 0}
        reasons = [r for r in (described.get("stoppedReason"), container.get("reason")) if r]
        raise OneOffTaskFailed(
            f"pre-traffic task {task_arn} of {_short(task.task_definition_arn)} failed: exit code "
            f"{exit_code if exit_code is not None else 'none (the container never ran)'}; stop reason: "
            f"{' / '.join(reasons) or 'not given'}; the deploy did not proceed and the service keeps its previous "
            f"revision. Logs: {link}"
        )


def _short(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]

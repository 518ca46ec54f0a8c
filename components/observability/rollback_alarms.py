"""RollbackAlarms: the CloudWatch alarms that roll a bad release back, in either deployment strategy.

One set per target group of the load balancer (target 5xx rate, p99 latency, unhealthy hosts; for a
blue/green pair both groups, because they swap roles on every deployment) plus, for the sample worker,
its own 5xx rate from its EMF metrics. The specs are `components.settings.timing`; this box only
creates them and hands out their names: to the ECS service's deployment `alarms` (rolling) or to the
CodeDeploy deployment group (blue/green). They are also the operations layer's 5xx, latency and health
alarms (not duplicated there): given a notifier, each one notifies the topic of its kind's severity.
Alarm names are identity (the consumers list them), so they derive from the stack name, never from
values that change. Security stance: alarms only read metrics; their only actions are this stack's
notification topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.settings import ContainerSettings
from components.settings.timing import (
    AlarmSpec,
    TargetGroupAlarmArgs,
    WorkerAlarmArgs,
    alarm_names,
    target_group_alarms,
    worker_5xx_alarm,
)

# The sample worker's own defaults for its metric names (app/worker/config.py).
WORKER_NAMESPACE_DEFAULT, WORKER_SERVICE_DEFAULT = "Gantry/Worker", "gantry-worker"


class AlarmNotifier(Protocol):
    """What notifies people: MetricAlarm action arguments for an alarm kind (`Notifications.actions`)."""

    def actions(self, kind: str) -> Mapping[str, Any]: ...


class TargetGroupHandles(Protocol):
    """What the alarms read from the load balancer: each target group's and the ALB's ARN suffixes."""

    @property
    def target_groups(self) -> Mapping[str, aws.lb.TargetGroup]: ...

    @property
    def arn_suffix(self) -> pulumi.Output[str]: ...


@dataclass(frozen=True, kw_only=True)
class RollbackAlarmsArgs:
    env: AwsEnv
    """The stack name prefixes every alarm name (gantry-<stack>-...)."""
    load_balancer: TargetGroupHandles
    """Every one of its target groups gets the three ALB alarms."""
    container: ContainerSettings
    """The worker's METRICS_NAMESPACE and SERVICE_NAME, when set, name its metrics."""
    worker_metrics: bool
    """True for the sample worker, which writes the EMF metrics the worker alarm reads; a team's own
    image does not, so it gets the ALB alarms only."""
    notifier: AlarmNotifier | None = None
    """Default none: the alarms only drive rollbacks. Given, each alarm notifies per its kind's severity."""


class RollbackAlarms(pulumi.ComponentResource):
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    names: list[str]
    """Every alarm's name, for the ECS deployment `alarms` or the deployment group."""

    def __init__(self, name: str, args: RollbackAlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:observability:RollbackAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"gantry-{args.env.stack}"
        specs: list[AlarmSpec] = []
        kinds: dict[str, str] = {}
        for role, group in args.load_balancer.target_groups.items():
            group_specs = target_group_alarms(
                TargetGroupAlarmArgs(
                    prefix=prefix,
                    role=role,
                    target_group_arn_suffix=group.arn_suffix,
                    load_balancer_arn_suffix=args.load_balancer.arn_suffix,
                )
            )
            kinds.update({spec.role: spec.role.removeprefix(f"{role}-") for spec in group_specs})
            specs.extend(group_specs)
        if args.worker_metrics:
            variables = args.container.variables
            specs.append(
                worker_5xx_alarm(
                    WorkerAlarmArgs(
                        prefix=prefix,
                        namespace=variables.get("METRICS_NAMESPACE", WORKER_NAMESPACE_DEFAULT),
                        service_name=variables.get("SERVICE_NAME", WORKER_SERVICE_DEFAULT),
                    )
                )
            )
        self.names = alarm_names(specs)
        self.alarms = {
            spec.role: aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.role}",
                **spec.args,
                **(args.notifier.actions(kinds.get(spec.role, spec.role)) if args.notifier else {}),
                opts=child,
            )
            for spec in specs
        }
        self.register_outputs({"alarmNames": self.names})

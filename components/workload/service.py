"""FargateService: the task definition, ECS service and autoscaling for one container in a shared Cluster.

Built from plain pulumi_aws resources (not `awsx.ecs.FargateService`, whose children are invisible to
tests, whose default security group is open to the world, and which cannot hand deployments to
CodeDeploy). Rolling deploys (the ECS controller) run with the circuit breaker, the rollback alarms
and rollback on, and `pulumi up` waits for steady state, so a release that never gets healthy or
raises the 5xx, latency or health alarms fails the `up` and is rolled back by ECS. With the
CODE_DEPLOY controller the service only holds the first task set: later revisions, load balancers and
network settings change through a CodeDeploy deployment (components.blue_green), so `pulumi up`
leaves them alone. A service may sit behind a target group or have no ingress at all (a queue worker).
Security stance: tasks in private subnets without public IPs, a read-only root filesystem with only
/tmp writable, a non-root user, all Linux capabilities dropped, secrets only through ECS `secrets`,
and the two IAM roles from `TaskRoles` scoped to this task's image, log group and secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.network.vpc import VpcHandles
from components.pre_traffic_provider import PreTrafficTask, PreTrafficTaskArgs
from components.settings import (
    AutoscalingSettings,
    ContainerSettings,
    LogsSettings,
    PolicyStatement,
    ServiceSettings,
    TracingSettings,
)
from components.settings.deployment import PreTrafficSettings
from components.settings.environment import gantry_environment
from components.settings.invocation import ProviderSession
from components.settings.promotion import SourceRevision
from components.workload.cluster import Cluster
from components.workload.roles import TaskRoles, TaskRolesArgs
from components.workload.scaling import ScalingRule, ScheduledBounds, target_tracking_configuration
from components.workload.secrets import SecretRefs, version_labels
from components.workload.tracing import app_environment, collector_container

CONTAINER_NAME = "app"
TMP_VOLUME = "tmp"
LOG_STREAM_PREFIX = "service"
TRACING_OFF = TracingSettings()
# Properties owned by something other than `pulumi up` after creation, per deployment controller:
# with the ECS controller, Application Auto Scaling owns the task count. With CODE_DEPLOY, also what
# only a CodeDeploy deployment may change ("If your service uses the blue/green (CODE_DEPLOY)
# deployment controller, only the desired count, deployment configuration, health check grace period,
# task placement constraints and strategies, enable ECS managed tags option, and propagate tags can be
# updated using this API. If the network configuration, platform version, task definition, or load
# balancer need to be updated, create a new CodeDeploy deployment", ECS API Reference, UpdateService);
# the capacity provider strategy travels in the AppSpec for the same reason.
IGNORED_SERVICE_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "ECS": ("desiredCount",),
    "CODE_DEPLOY": (
        "desiredCount",
        "taskDefinition",
        "loadBalancers",
        "networkConfiguration",
        "platformVersion",
        "capacityProviderStrategies",
    ),
}


SOURCE_TAG = "gantry:source-revision"


def service_resource_options(
    parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource], deployment_controller: str = "ECS"
) -> pulumi.ResourceOptions:
    """The ECS service's options: the one place that decides what `pulumi up` must leave alone."""
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on),
        ignore_changes=list(IGNORED_SERVICE_PROPERTIES[deployment_controller]),
    )


def scaling_target_options(parent: pulumi.Resource, scheduled: bool) -> pulumi.ResourceOptions:
    """The scalable target's options. With schedules, the scheduled actions own the bounds after creation:
    the project refreshes before every `up` (Pulumi.yaml `refresh: always`), so without this an `up`
    during a pre-warm window would put minCapacity back to its off-peak value."""
    return pulumi.ResourceOptions(parent=parent, ignore_changes=["minCapacity", "maxCapacity"] if scheduled else None)


def container_definitions(
    *,
    image: str,
    container: ContainerSettings,
    secrets: Mapping[str, str],
    secret_versions: Mapping[str, str],
    log_group_name: str,
    region: str,
    health_check_start_period: int,
    tracing: TracingSettings = TRACING_OFF,
    service_name: str = "",
    environment: Mapping[str, str] | None = None,
    command: Sequence[str] = (),
) -> list[dict]:
    """The task's app container (plus, with tracing on, the collector sidecar), as ECS's JSON. PORT and
    DRAIN_TIMEOUT_SECONDS derive from settings, the OTEL_* pair from `tracing`; the secrets' versions
    are labels, so a new secret value is a new task definition revision. With a `command` (a queue
    worker) the container serves no port: no port mapping, no PORT and no HTTP health check, and
    `environment` (what gantry sets from other resources) may set its own drain window."""
    worker = bool(command)
    variables = {
        **container.variables,
        **gantry_environment(container, serves_port=not worker),
        **app_environment(tracing, service_name),
        **(environment or {}),
    }
    sidecars = [collector_container(tracing, log_group_name=log_group_name, region=region)] if tracing.enabled else []
    definition: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
    }
    if worker:
        definition["command"] = list(command)
    else:
        definition["portMappings"] = [{"name": "http", "containerPort": container.port, "protocol": "tcp"}]
    return [
        {
            **definition,
            "environment": [{"name": k, "value": v} for k, v in sorted(variables.items())],
            "secrets": [{"name": k, "valueFrom": arn} for k, arn in sorted(secrets.items())],
            "dockerLabels": version_labels(secret_versions),
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group_name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                    # A CloudWatch slowdown must not stall request handling; 25 MiB buffers bursts.
                    "mode": "non-blocking",
                    "max-buffer-size": "25m",
                },
            },
            **(
                {}
                if worker
                else {
                    "healthCheck": {
                        "command": list(container.health_check_command),
                        "interval": 15,
                        "timeout": 5,
                        "retries": 3,
                        "startPeriod": health_check_start_period,
                    }
                }
            ),
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": TMP_VOLUME, "containerPath": "/tmp", "readOnly": False}],
            "user": container.user,
            "stopTimeout": container.stop_timeout_seconds,
            "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        },
        *sidecars,
    ]


class ImageHandles(Protocol):
    @property
    def image_uri(self) -> pulumi.Input[str]:
        """repository@sha256:digest."""
        ...

    @property
    def repository_arn(self) -> pulumi.Input[str]: ...


@dataclass(frozen=True, kw_only=True)
class TargetAttachment:
    """What a service needs to put its tasks behind one target group."""

    target_group_arn: pulumi.Input[str]
    container_port: int
    listener: aws.lb.Listener
    """The listener forwarding to the group: ECS refuses a target group no listener uses, so tasks
    register only after it exists."""


@dataclass(frozen=True, kw_only=True)
class FargateServiceArgs:
    env: AwsEnv
    cluster: Cluster
    vpc: VpcHandles
    """Tasks run in the VPC's private subnets and get no public IP."""
    security_group_id: pulumi.Input[str]
    image: ImageHandles
    container: ContainerSettings
    service: ServiceSettings
    autoscaling: AutoscalingSettings
    logs: LogsSettings
    secrets: SecretRefs = SecretRefs()
    """The container's secrets (environment variable -> secret); default none."""
    task_statements: Sequence[PolicyStatement] = ()
    """The application's own AWS permissions; default none."""
    load_balancer: TargetAttachment | None = None
    """The target group the tasks register with; default none (a worker without ingress)."""
    scaling_rules: Sequence[ScalingRule] = ()
    """Target-tracking rules on the task count (see `components.workload.scaling`); default none."""
    start_after: Sequence[pulumi.Resource] = ()
    """What tasks need before they start, beyond their own roles and secrets: the VPC endpoints."""
    deployment_controller: str = "ECS"
    """ECS (rolling, the default) or CODE_DEPLOY (blue/green through components.blue_green)."""
    rollback_alarm_names: pulumi.Input[Sequence[str]] = ()
    """Alarms that roll a rolling deploy back (ECS deployment `alarms`); default none. Unused with
    CODE_DEPLOY, whose deployment group watches them instead."""
    source: SourceRevision | None = None
    """The commit being deployed: tagged on the service (`gantry:source-revision`, propagated to its tasks),
    since an ECS rolling deployment has no description of its own; default none (no tag)."""
    schedules: Sequence[ScheduledBounds] = ()
    """Scheduled changes of the task-count bounds (see `components.workload.scaling.scheduled_bounds`); default none."""
    tracing: TracingSettings = TRACING_OFF
    """Default off. On: the ADOT collector sidecar, the OTEL_* variables and the task role's X-Ray writes."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Variables gantry sets from other resources (the batch queue's URL ...); default none."""
    command: Sequence[str] = ()
    """The container's command instead of the image's; default none (the image's CMD, an HTTP service).
    Set, the container is a worker that serves no port (see `container_definitions`)."""
    task_policies: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Further task-role policies (suffix -> JSON document) on resources of this stack; default none."""
    scale_to_zero: bool = False
    """Default False. True: the service starts with no task and autoscaling may take it back to none
    (a queue worker, brought back by a scaling policy on its queue): the minimum is 0, and
    `autoscaling.min_capacity` and `service.desired_count` do not apply."""
    pre_traffic: PreTrafficSettings | None = None
    """A one-off task of each new revision that must exit 0 before the rolling update starts (ECS controller
    only; with CODE_DEPLOY the blue/green hook runs it); default none."""
    provider_session: ProviderSession = ProviderSession()
    """Who the pre-traffic task's dynamic provider acts as: the stack's aws:profile and assumed role;
    default none (boto3's default chain)."""


def check_deployment_controller(controller: str) -> None:
    """ECS (rolling) or CODE_DEPLOY: the two controllers gantry knows which service properties to ignore for."""
    if controller not in IGNORED_SERVICE_PROPERTIES:
        raise ValueError(
            f"deployment_controller={controller!r} is invalid; allowed: {', '.join(IGNORED_SERVICE_PROPERTIES)}"
        )


class FargateService(pulumi.ComponentResource):
    service: aws.ecs.Service
    task_definition: aws.ecs.TaskDefinition
    log_group: aws.cloudwatch.LogGroup
    roles: TaskRoles
    scaling_target: aws.appautoscaling.Target
    """The task count's scalable target, for scaling policies built elsewhere (a queue's step policy)."""
    deployment_controller: str
    """ECS or CODE_DEPLOY, exported so the next `pulumi up` knows what the live service uses."""
    task_family: str
    """The task definition family: every revision's ARN is `...:task-definition/<family>:<revision>`."""
    pre_traffic: PreTrafficTask | None
    """The one-off task the rolling update waits for (None without deployment.preTraffic or with CODE_DEPLOY)."""

    def __init__(self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:ecs:FargateService", name, None, opts)
        check_deployment_controller(args.deployment_controller)
        self.deployment_controller = args.deployment_controller
        self.task_family = f"{name}-{args.env.stack}"
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=args.logs.retention_days, opts=pulumi.ResourceOptions(parent=self)
        )
        self.roles = self._roles(name, args)
        self.task_definition = self._task_definition(name, args)
        start_after = self._start_after(args)
        self.pre_traffic = self._pre_traffic(name, args, start_after)
        self.service = self._service(name, args, start_after)
        self.scaling_target = self._scaling(name, args)
        self.register_outputs(
            {
                "serviceName": self.service.name,
                "logGroupName": self.log_group.name,
                "taskDefinitionArn": self.task_definition.arn,
            }
        )

    def _roles(self, name: str, args: FargateServiceArgs) -> TaskRoles:
        return TaskRoles(
            f"{name}-roles",
            TaskRolesArgs(
                env=args.env,
                repository_arn=args.image.repository_arn,
                log_group_arn=self.log_group.arn,
                secrets=args.secrets,
                task_statements=args.task_statements,
                xray_write=args.tracing.enabled,
                task_policies=args.task_policies,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _container_definitions(self, args: FargateServiceArgs) -> pulumi.Output[str]:
        refs = args.secrets.refs
        names = sorted(args.environment)
        return pulumi.Output.all(
            image=args.image.image_uri,
            log_group=self.log_group.name,
            arns=pulumi.Output.all(*[r.arn for r in refs]),
            versions=pulumi.Output.all(*[r.version for r in refs]),
            environment=pulumi.Output.all(*[args.environment[n] for n in names]),
        ).apply(
            lambda v: json.dumps(
                container_definitions(
                    image=v["image"],
                    container=args.container,
                    secrets=dict(zip([r.name for r in refs], v["arns"], strict=True)),
                    secret_versions=dict(zip([r.name for r in refs], v["versions"], strict=True)),
                    log_group_name=v["log_group"],
                    region=args.env.region,
                    # ECS allows at most 300 s; past the grace period the ALB decides anyway.
                    health_check_start_period=min(args.service.health_check_grace_period_seconds, 300),
                    tracing=args.tracing,
                    service_name=self.task_family,
                    environment=dict(zip(names, v["environment"], strict=True)),
                    command=args.command,
                )
            )
        )

    def _task_definition(self, name: str, args: FargateServiceArgs) -> aws.ecs.TaskDefinition:
        return aws.ecs.TaskDefinition(
            f"{name}-task",
            family=self.task_family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(args.container.cpu),
            memory=str(args.container.memory),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": args.container.architecture},
            execution_role_arn=self.roles.execution_role_arn,
            task_role_arn=self.roles.task_role_arn,
            container_definitions=self._container_definitions(args),
            volumes=[{"name": TMP_VOLUME}],
            # A replaced revision stays registered (ACTIVE) instead of being deregistered: a rollback,
            # CodeDeploy's stop-and-rollback and `aws ecs update-service --task-definition <family>:<n>`
            # need the earlier revisions (the provider's skip_destroy: "Whether to retain the old
            # revision when the resource is destroyed or replacement is necessary").
            skip_destroy=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _start_after(args: FargateServiceArgs) -> list[pulumi.Resource]:
        """What must exist before a task starts: capacity providers, the caller's prerequisites, the listener."""
        start_after = [args.cluster.capacity_providers, *args.start_after]
        if args.load_balancer is not None:
            start_after.append(args.load_balancer.listener)
        return start_after

    def _pre_traffic(
        self, name: str, args: FargateServiceArgs, start_after: Sequence[pulumi.Resource]
    ) -> PreTrafficTask | None:
        if args.deployment_controller != "ECS" or args.pre_traffic is None:
            return None
        return PreTrafficTask(
            f"{name}-pre-traffic",
            PreTrafficTaskArgs(
                region=args.env.region,
                cluster=args.cluster.name,
                task_definition_arn=self.task_definition.arn,
                container_name=CONTAINER_NAME,
                command=list(args.pre_traffic.command),
                subnets=args.vpc.private_subnet_ids,
                security_groups=[args.security_group_id],
                log_group=self.log_group.name,
                log_stream_prefix=LOG_STREAM_PREFIX,
                timeout_seconds=args.pre_traffic.timeout_seconds,
                session=args.provider_session,
            ),
            # It starts tasks: they need the endpoints (or NAT) and capacity providers the service needs.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(start_after)),
        )

    def _service(self, name: str, args: FargateServiceArgs, start_after: list[pulumi.Resource]) -> aws.ecs.Service:
        svc = args.service
        attachment = args.load_balancer
        rolling = args.deployment_controller == "ECS"
        if self.pre_traffic is not None:
            start_after = [*start_after, self.pre_traffic]
        return aws.ecs.Service(
            f"{name}-service",
            cluster=args.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=0 if args.scale_to_zero else svc.desired_count,
            platform_version="LATEST",
            capacity_provider_strategies=[
                {"capacity_provider": p.provider, "base": p.base, "weight": p.weight} for p in svc.capacity_providers
            ],
            # The provider refuses a capacity-provider strategy update without it ("Updating this argument
            # requires force_new_deployment = true", pulumi_aws ecs.Service); every other update starts a
            # deployment anyway. Not with CODE_DEPLOY: only CodeDeploy starts its deployments.
            force_new_deployment=True if rolling else None,
            network_configuration={
                "subnets": args.vpc.private_subnet_ids,
                "security_groups": [args.security_group_id],
                "assign_public_ip": False,
            },
            load_balancers=[
                {
                    "target_group_arn": attachment.target_group_arn,
                    "container_name": CONTAINER_NAME,
                    "container_port": attachment.container_port,
                }
            ]
            if attachment is not None
            else None,
            deployment_controller={"type": args.deployment_controller},
            # "The deployment circuit breaker can only be used for services using the rolling update (ECS)
            # deployment type" (ECS API Reference, DeploymentCircuitBreaker); deployment alarms likewise
            # (DeploymentAlarms). Blue/green rolls back through the deployment group instead.
            deployment_circuit_breaker={"enable": True, "rollback": True} if rolling else None,
            alarms={"alarm_names": args.rollback_alarm_names, "enable": True, "rollback": True}
            if rolling and args.rollback_alarm_names
            else None,
            deployment_minimum_healthy_percent=svc.min_healthy_percent,
            deployment_maximum_percent=svc.max_percent,
            health_check_grace_period_seconds=svc.health_check_grace_period_seconds if attachment else None,
            # Unset with CODE_DEPLOY: ECS then enables it "if the service is compatible" (pulumi_aws
            # ecs.Service), rather than gantry asserting that task sets are.
            availability_zone_rebalancing="ENABLED" if rolling else None,
            # With CODE_DEPLOY the deploy resource waits for the deployment, which is the steady state.
            wait_for_steady_state=True if rolling else None,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            # A tag, not a task-definition label: a new commit with the same image must not roll the tasks.
            tags={SOURCE_TAG: args.source.description} if args.source else None,
            opts=service_resource_options(self, start_after, args.deployment_controller),
        )

    def _scaling(self, name: str, args: FargateServiceArgs) -> aws.appautoscaling.Target:
        """The task count's scalable target, its target-tracking policies and its scheduled bounds."""
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster.name, "/", self.service.name),
            min_capacity=0 if args.scale_to_zero else args.autoscaling.min_capacity,
            max_capacity=args.autoscaling.max_capacity,
            opts=scaling_target_options(self, scheduled=bool(args.schedules)),
        )
        for rule in args.scaling_rules:
            aws.appautoscaling.Policy(
                f"{name}-scale-on-{rule.name}",
                policy_type="TargetTrackingScaling",
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                service_namespace=target.service_namespace,
                target_tracking_scaling_policy_configuration=target_tracking_configuration(rule),
                opts=child,
            )
        for bounds in args.schedules:
            aws.appautoscaling.ScheduledAction(
                f"{name}-schedule-{bounds.name}",
                name=f"{self.task_family}-{bounds.name}",
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                service_namespace=target.service_namespace,
                schedule=bounds.schedule,
                timezone=bounds.timezone,
                scalable_target_action={"min_capacity": bounds.min_capacity, "max_capacity": bounds.max_capacity},
                opts=child,
            )
        return target

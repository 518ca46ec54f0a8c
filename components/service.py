"""FargateService: the ECS cluster, task definition, service and autoscaling for one container.

Built from plain pulumi_aws resources (not `awsx.ecs.FargateService`, whose children are invisible to
tests, whose default security group is open to the world, and which cannot hand deployments to
CodeDeploy). Rolling deploys run with the circuit breaker and rollback on, and `pulumi up` waits for
steady state, so a release that never gets healthy fails the `up` and is rolled back by ECS.
Security stance: tasks in private subnets without public IPs, a read-only root filesystem with only
/tmp writable, a non-root user, all Linux capabilities dropped, secrets only through ECS `secrets`,
and the two IAM roles from `TaskRoles` scoped to this task's image, log group and secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.roles import TaskRoles, TaskRolesArgs
from components.settings import AutoscalingSettings, ContainerSettings, PolicyStatement, ServiceSettings

CONTAINER_NAME = "app"
TMP_VOLUME = "tmp"
LOG_STREAM_PREFIX = "service"
# Properties owned by something other than `pulumi up` after creation, per deployment controller:
# with the ECS controller, Application Auto Scaling owns the task count.
IGNORED_SERVICE_PROPERTIES: Mapping[str, tuple[str, ...]] = {"ECS": ("desiredCount",)}


def service_resource_options(
    parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource], deployment_controller: str = "ECS"
) -> pulumi.ResourceOptions:
    """The ECS service's options: the one place that decides what `pulumi up` must leave alone."""
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on),
        ignore_changes=list(IGNORED_SERVICE_PROPERTIES[deployment_controller]),
    )


def container_definitions(
    *,
    image: str,
    container: ContainerSettings,
    secrets: Mapping[str, str],
    log_group_name: str,
    region: str,
    health_check_start_period: int,
) -> list[dict]:
    """The task's single container, as ECS's JSON. PORT and DRAIN_TIMEOUT_SECONDS derive from settings."""
    environment = {
        **container.environment,
        "PORT": str(container.port),
        "DRAIN_TIMEOUT_SECONDS": str(container.drain_timeout_seconds),
    }
    return [
        {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "portMappings": [{"name": "http", "containerPort": container.port, "protocol": "tcp"}],
            "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            "secrets": [{"name": k, "valueFrom": arn} for k, arn in sorted(secrets.items())],
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
            "healthCheck": {
                "command": list(container.health_check_command),
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": health_check_start_period,
            },
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": TMP_VOLUME, "containerPath": "/tmp", "readOnly": False}],
            "user": container.user,
            "stopTimeout": container.stop_timeout_seconds,
            "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        }
    ]


@dataclass(frozen=True)
class FargateServiceArgs:
    family: str
    """Task definition family (one per stack, so revisions of dev and prod never interleave)."""
    account_id: pulumi.Input[str]
    region: str
    partition: str
    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets; tasks get no public IP."""
    security_group_id: pulumi.Input[str]
    image_uri: pulumi.Input[str]
    """repository@sha256:digest."""
    repository_arn: pulumi.Input[str]
    container: ContainerSettings
    service: ServiceSettings
    autoscaling: AutoscalingSettings
    log_retention_days: int
    target_group_arn: pulumi.Input[str]
    request_count_resource_label: pulumi.Input[str]
    """`<alb arn suffix>/<target group arn suffix>`, for ALBRequestCountPerTarget scaling."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Environment variable -> secret ARN; default none."""
    secrets_manager_arns: Sequence[pulumi.Input[str]] = ()
    ssm_parameter_arns: Sequence[pulumi.Input[str]] = ()
    kms_key_arns: Sequence[str] = ()
    task_statements: Sequence[PolicyStatement] = ()
    service_dependencies: Sequence[pulumi.Resource] = ()
    """What must exist before tasks start: the listener that attaches the target group, the VPC endpoints."""


class FargateService(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    service: aws.ecs.Service
    task_definition: aws.ecs.TaskDefinition
    log_group: aws.cloudwatch.LogGroup
    roles: TaskRoles

    def __init__(self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:ecs:FargateService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        secrets = dict(args.secrets)

        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], opts=child
        )
        capacity = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            opts=child,
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=args.log_retention_days, opts=child
        )
        self.roles = TaskRoles(
            f"{name}-roles",
            TaskRolesArgs(
                account_id=args.account_id,
                region=args.region,
                partition=args.partition,
                repository_arn=args.repository_arn,
                log_group_arn=self.log_group.arn,
                secret_arns=args.secrets_manager_arns,
                ssm_parameter_arns=args.ssm_parameter_arns,
                kms_key_arns=args.kms_key_arns,
                task_statements=args.task_statements,
            ),
            opts=child,
        )

        names = sorted(secrets)
        definitions = pulumi.Output.all(
            image=args.image_uri,
            log_group=self.log_group.name,
            arns=pulumi.Output.all(*[secrets[n] for n in names]),
        ).apply(
            lambda v: json.dumps(
                container_definitions(
                    image=v["image"],
                    container=args.container,
                    secrets=dict(zip(names, v["arns"], strict=True)),
                    log_group_name=v["log_group"],
                    region=args.region,
                    # ECS allows at most 300 s; past the grace period the ALB decides anyway.
                    health_check_start_period=min(args.service.health_check_grace_period_seconds, 300),
                )
            )
        )
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=args.family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(args.container.cpu),
            memory=str(args.container.memory),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": args.container.architecture},
            execution_role_arn=self.roles.execution_role_arn,
            task_role_arn=self.roles.task_role_arn,
            container_definitions=definitions,
            volumes=[{"name": TMP_VOLUME}],
            opts=child,
        )

        svc = args.service
        self.service = aws.ecs.Service(
            f"{name}-service",
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=svc.desired_count,
            platform_version="LATEST",
            capacity_provider_strategies=[
                {"capacity_provider": p.provider, "base": p.base, "weight": p.weight} for p in svc.capacity_providers
            ],
            network_configuration={
                "subnets": args.subnet_ids,
                "security_groups": [args.security_group_id],
                "assign_public_ip": False,
            },
            load_balancers=[
                {
                    "target_group_arn": args.target_group_arn,
                    "container_name": CONTAINER_NAME,
                    "container_port": args.container.port,
                }
            ],
            deployment_controller={"type": "ECS"},
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=svc.min_healthy_percent,
            deployment_maximum_percent=svc.max_percent,
            health_check_grace_period_seconds=svc.health_check_grace_period_seconds,
            availability_zone_rebalancing="ENABLED",
            wait_for_steady_state=True,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            opts=service_resource_options(self, [capacity, *args.service_dependencies]),
        )

        scaling = args.autoscaling
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.cluster.name, "/", self.service.name),
            min_capacity=scaling.min_capacity,
            max_capacity=scaling.max_capacity,
            opts=child,
        )
        for policy_name, metric, target_value, label in (
            ("cpu", "ECSServiceAverageCPUUtilization", scaling.cpu_target_percent, None),
            ("requests", "ALBRequestCountPerTarget", scaling.requests_per_target, args.request_count_resource_label),
        ):
            aws.appautoscaling.Policy(
                f"{name}-scale-on-{policy_name}",
                policy_type="TargetTrackingScaling",
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                service_namespace=target.service_namespace,
                target_tracking_scaling_policy_configuration={
                    "predefined_metric_specification": {"predefined_metric_type": metric, "resource_label": label},
                    "target_value": target_value,
                    "scale_in_cooldown": scaling.scale_in_cooldown_seconds,
                    "scale_out_cooldown": scaling.scale_out_cooldown_seconds,
                },
                opts=child,
            )

        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "serviceName": self.service.name,
                "logGroupName": self.log_group.name,
                "taskDefinitionArn": self.task_definition.arn,
            }
        )

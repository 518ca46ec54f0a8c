"""BlueGreenDeployment: the CodeDeploy application, deployment group, hook and deploy resource of a stack.

With `deployment.strategy: codedeploy` this box turns the ECS service (CODE_DEPLOY controller) behind
the load balancer's blue/green pair into a deploy pipeline inside `pulumi up`: a CodeDeploy
application and BLUE_GREEN deployment group with traffic control (the target-group pair by name, the
production and test listeners, auto-rollback on failure and on the rollback alarms, which watch both
groups), the traffic shape as a predefined or custom deployment config, the AfterAllowTestTraffic hook
Lambda that checks green through the test listener, and the `BlueGreenDeploy` resource that starts a
deployment whenever the task definition or the AppSpec's target (network, capacity, platform) changes
and fails the `up` when it rolls back; its `deploymentId` and `consoleUrl` are this box's outputs. The
deploy resource depends on the subnets and the task security group through the AppSpec, so on an AZ or
subnet change the new subnets exist before it runs, and the old ones are deleted only after green has
moved onto the new ones: "By default, to minimize downtime, Pulumi creates new instances of resources
before deleting old ones" (https://www.pulumi.com/docs/iac/concepts/options/deletebeforereplace/), and
the engine deletes replaced resources only once every resource has been registered (pulumi/pulumi
pkg/resource/deploy deployment_executor.go: `GenerateDeletes` runs after the program's steps), while
CodeDeploy ends a deployment only after blue's tasks, whose ENIs hold the old subnets, are gone. With
`rolling` it creates nothing: ECS's own rolling deployment and the service's alarms apply.
Security stance: the CodeDeploy role is an inline policy on this service, these listeners, this
function and the two task roles (PassRole only to ECS tasks) instead of AWSCodeDeployRoleForECS; the
hook runs in the private subnets with its own security group and may report only to this deployment
group; its archive holds code and public evaluation data, and the API key stays in Secrets Manager.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from components.blue_green import hook_package, policies
from components.blue_green.appspec import AppSpecArgs, CapacityProviderItem, appspec_content
from components.blue_green.provider import BlueGreenDeploy, BlueGreenDeployArgs, deployment_description
from components.env import AwsEnv, gantry_role
from components.network.vpc import VpcHandles
from components.pre_traffic import one_off_task_policy
from components.settings import ContainerSettings, DeploymentSettings, LogsSettings, ServiceSettings
from components.settings.invocation import ProviderSession
from components.settings.promotion import SourceRevision
from components.settings.traffic import deployment_config
from components.workload.cluster import Cluster
from components.workload.secrets import SecretRefs
from components.workload.service import CONTAINER_NAME, LOG_STREAM_PREFIX, FargateService

HOOK_EVENT = "AfterAllowTestTraffic"
HOOK_RUNTIME = "python3.12"
# The eval embeds ~200 golden texts in batches of 32 on green; a minute is ample, five is the cap
# before CodeDeploy would be left waiting on a hung check.
HOOK_TIMEOUT_SECONDS = 300
SAMPLE_API_KEY_SECRET = "API_KEYS"


class LoadBalancerHandles(Protocol):
    """What the deployment group and the hook need from the load balancer (a ServiceLoadBalancer)."""

    @property
    def load_balancer(self) -> aws.lb.LoadBalancer: ...

    @property
    def target_groups(self) -> Mapping[str, aws.lb.TargetGroup]: ...

    @property
    def production_listener(self) -> aws.lb.Listener: ...

    @property
    def test_listener(self) -> aws.lb.Listener | None: ...

    @property
    def arn_suffix(self) -> pulumi.Output[str]: ...


@dataclass(frozen=True, kw_only=True)
class BlueGreenDeploymentArgs:
    env: AwsEnv
    settings: DeploymentSettings
    """The strategy (rolling: nothing is created), traffic shape, waits, timeout and check thresholds."""
    cluster: Cluster
    service: FargateService
    """Must use the CODE_DEPLOY controller when the strategy is codedeploy."""
    load_balancer: LoadBalancerHandles
    """The ServiceLoadBalancer: its blue/green target groups, production and test listeners."""
    vpc: VpcHandles
    """The hook runs in the private subnets, like the tasks."""
    task_security_group_id: pulumi.Input[str]
    """Green's tasks get the service's own security group (AppSpec)."""
    hook_security_group_id: pulumi.Input[str] | None
    """The hook's group (ServiceSecurityGroups): the test listener and HTTPS to AWS only."""
    container: ContainerSettings
    """The container's port (AppSpec) and health path (smoke check)."""
    service_settings: ServiceSettings
    """Green starts on the service's capacity provider strategy."""
    logs: LogsSettings
    """The hook's log group keeps the service's retention."""
    rollback_alarm_names: Sequence[str]
    """Alarms of both target groups (and the worker): any in ALARM stops and rolls back a deployment."""
    eval_check: bool
    """True for the sample worker (the eval gate with packaged references), false for a smoke check."""
    secrets: SecretRefs = SecretRefs()
    """The container's secrets: the eval hook reads the sample worker's API_KEYS secret (the key of
    `settings.evalTenant`); default none (no key sent)."""
    source: SourceRevision | None = None
    """The commit being deployed, named in each deployment's description; default none (not named)."""
    alarm_override: str | None = None
    """A hotfix's incident reason (GANTRY_HOTFIX_IGNORE_ALARMS, components.settings.invocation): this `up`'s
    deployment ignores the rollback alarms and its description says why; default none."""
    provider_session: ProviderSession = ProviderSession()
    """Who the deploy resource acts as (the stack's aws:profile and assumed role); default none."""


def check_blue_green(args: BlueGreenDeploymentArgs) -> aws.lb.Listener:
    """What a blue/green deployment needs of the service and load balancer; returns the test listener."""
    if args.service.deployment_controller != "CODE_DEPLOY":
        raise ValueError("a blue/green deployment needs the service's CODE_DEPLOY deployment controller")
    lb = args.load_balancer
    if lb.test_listener is None or set(lb.target_groups) != {"blue", "green"} or args.hook_security_group_id is None:
        raise ValueError(
            "a blue/green deployment needs the blue and green target groups, a test listener and the hook's group"
        )
    return lb.test_listener


class BlueGreenDeployment(pulumi.ComponentResource):
    application: aws.codedeploy.Application | None
    deployment_group: aws.codedeploy.DeploymentGroup | None
    hook: aws.lambda_.Function | None
    deploy: BlueGreenDeploy | None
    deployment_id: pulumi.Output[str | None] | None
    """The last CodeDeploy deployment the deploy resource ran (None without blue/green)."""
    console_url: pulumi.Output[str | None] | None
    """Its CodeDeploy console page (None without blue/green)."""

    def __init__(self, name: str, args: BlueGreenDeploymentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:deploy:BlueGreenDeployment", name, None, opts)
        self.application = self.deployment_group = self.hook = self.deploy = None
        self.deployment_id = self.console_url = None
        if not args.settings.blue_green:
            self.register_outputs({})
            return
        test_listener = check_blue_green(args)
        child = pulumi.ResourceOptions(parent=self)
        self.application = aws.codedeploy.Application(f"{name}-app", compute_platform="ECS", opts=child)
        self.hook = self._hook(name, args, self._group_arn(args, self.application), child)
        role, role_policy = self._codedeploy_role(name, args, test_listener, self.hook)
        self.deployment_group = self._deployment_group(name, args, test_listener, role, role_policy)
        self.deploy = self._deploy(name, args, self.application, self.deployment_group, self.hook)
        self.deployment_id, self.console_url = self.deploy.deployment_id, self.deploy.console_url
        self.register_outputs(
            {
                "applicationName": self.application.name,
                "deploymentGroupName": self.deployment_group.deployment_group_name,
                "hookFunctionName": self.hook.name,
                "deploymentId": self.deployment_id,
                "consoleUrl": self.console_url,
            }
        )

    @staticmethod
    def _group_arn(args: BlueGreenDeploymentArgs, application: aws.codedeploy.Application) -> pulumi.Output[str]:
        env = args.env
        group_name = f"gantry-{env.stack}"
        return application.name.apply(
            lambda app: policies.deployment_group_arn(
                application_name=app,
                deployment_group_name=group_name,
                region=env.region,
                account_id=env.account_id,
                partition=env.partition,
            )
        )

    def _codedeploy_role(
        self, name: str, args: BlueGreenDeploymentArgs, test_listener: aws.lb.Listener, hook: aws.lambda_.Function
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """CodeDeploy's service role: inline, on this service, its listeners, its hook and its task roles."""
        child = pulumi.ResourceOptions(parent=self)
        env, lb = args.env, args.load_balancer
        role = gantry_role(
            f"{name}-codedeploy-role",
            env=env,
            description="CodeDeploy blue/green of one gantry service (inline, least-privilege)",
            assume_role_policy=json.dumps(policies.codedeploy_trust_policy(account_id=env.account_id)),
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-codedeploy-policy",
            role=role.id,
            policy=pulumi.Output.all(
                cluster=args.cluster.name,
                service=args.service.service.name,
                listeners=pulumi.Output.all(lb.production_listener.arn, test_listener.arn),
                hook=hook.arn,
                roles=pulumi.Output.all(args.service.roles.execution_role_arn, args.service.roles.task_role_arn),
            ).apply(
                lambda v: json.dumps(
                    policies.codedeploy_service_policy(
                        cluster_name=v["cluster"],
                        service_name=v["service"],
                        listener_arns=v["listeners"],
                        hook_function_arn=v["hook"],
                        task_role_arns=v["roles"],
                        alarm_names=list(args.rollback_alarm_names),
                        region=env.region,
                        account_id=env.account_id,
                        partition=env.partition,
                    )
                )
            ),
            opts=child,
        )
        return role, role_policy

    def _deployment_group(
        self,
        name: str,
        args: BlueGreenDeploymentArgs,
        test_listener: aws.lb.Listener,
        role: aws.iam.Role,
        role_policy: aws.iam.RolePolicy,
    ) -> aws.codedeploy.DeploymentGroup:
        """The group: blue/green with traffic control, the shift's config, auto-rollback on failure or alarm."""
        assert self.application is not None  # created before this step
        child = pulumi.ResourceOptions(parent=self)
        env, settings, lb = args.env, args.settings, args.load_balancer
        blue, green = lb.target_groups["blue"], lb.target_groups["green"]
        group_name = f"gantry-{env.stack}"
        choice = deployment_config(settings.shift, custom_name=f"gantry-{env.stack}-{settings.traffic}")
        if choice.predefined_name is not None:
            config_name: pulumi.Input[str] = choice.predefined_name
        else:
            assert choice.custom_args is not None
            config_name = aws.codedeploy.DeploymentConfig(
                f"{name}-config", **choice.custom_args, opts=child
            ).deployment_config_name

        return aws.codedeploy.DeploymentGroup(
            f"{name}-group",
            app_name=self.application.name,
            deployment_group_name=group_name,
            service_role_arn=role.arn,
            deployment_config_name=config_name,
            deployment_style={"deployment_option": "WITH_TRAFFIC_CONTROL", "deployment_type": "BLUE_GREEN"},
            blue_green_deployment_config={
                # Green gets traffic as soon as it is healthy and the hook passed; nobody clicks "reroute".
                "deployment_ready_option": {"action_on_timeout": "CONTINUE_DEPLOYMENT"},
                "terminate_blue_instances_on_deployment_success": {
                    "action": "TERMINATE",
                    "termination_wait_time_in_minutes": settings.blue_termination_wait_minutes,
                },
            },
            ecs_service={"cluster_name": args.cluster.name, "service_name": args.service.service.name},
            load_balancer_info={
                "target_group_pair_info": {
                    "prod_traffic_route": {"listener_arns": [lb.production_listener.arn]},
                    "test_traffic_route": {"listener_arns": [test_listener.arn]},
                    "target_groups": [{"name": blue.name}, {"name": green.name}],
                }
            },
            auto_rollback_configuration={
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            },
            alarm_configuration={"enabled": True, "alarms": list(args.rollback_alarm_names)},
            # CodeDeploy checks the role's permissions when the group is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )

    def _deploy(
        self,
        name: str,
        args: BlueGreenDeploymentArgs,
        application: aws.codedeploy.Application,
        group: aws.codedeploy.DeploymentGroup,
        hook: aws.lambda_.Function,
    ) -> BlueGreenDeploy:
        """The deploy resource: one CodeDeploy deployment of the service's task definition per change."""
        env, settings = args.env, args.settings
        task_definition_arn = args.service.task_definition.arn
        strategy = tuple(
            CapacityProviderItem(capacity_provider=p.provider, weight=p.weight, base=p.base)
            for p in args.service_settings.capacity_providers
        )
        content = pulumi.Output.all(
            task=task_definition_arn,
            subnets=args.vpc.private_subnet_ids,
            sg=args.task_security_group_id,
            hook=hook.arn,
        ).apply(
            lambda v: appspec_content(
                AppSpecArgs(
                    task_definition_arn=v["task"],
                    container_name=CONTAINER_NAME,
                    container_port=args.container.port,
                    subnets=tuple(v["subnets"]),
                    security_groups=(v["sg"],),
                    capacity_provider_strategy=strategy,
                    platform_version="LATEST",
                    hooks={HOOK_EVENT: v["hook"]},
                )
            )
        )
        return BlueGreenDeploy(
            f"{name}-deploy",
            BlueGreenDeployArgs(
                region=env.region,
                cluster=args.cluster.name,
                service=args.service.service.name,
                application_name=application.name,
                deployment_group_name=group.deployment_group_name,
                task_definition_arn=task_definition_arn,
                appspec_content=content,
                description=task_definition_arn.apply(
                    lambda arn: deployment_description(
                        env.stack, arn, args.source.description if args.source else None, args.alarm_override
                    )
                ),
                alarm_names=list(args.rollback_alarm_names),
                timeout_seconds=settings.deploy_timeout_minutes * 60,
                other_timeout_seconds=settings.other_deploy_timeout_minutes * 60,
                alarm_override=args.alarm_override,
                session=args.provider_session,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.service.service, group]),
        )

    def _hook(
        self, name: str, args: BlueGreenDeploymentArgs, group_arn: pulumi.Output[str], child: pulumi.ResourceOptions
    ) -> aws.lambda_.Function:
        env, settings, lb = args.env, args.settings, args.load_balancer
        check = "eval" if args.eval_check else "smoke"
        hook_sg = args.hook_security_group_id
        assert hook_sg is not None  # checked by the constructor
        api_key_secret_arn = next(
            (
                r.arn
                for r in args.secrets.refs
                if args.eval_check and r.name == SAMPLE_API_KEY_SECRET and r.store == "secretsmanager"
            ),
            None,
        )
        log_group = aws.cloudwatch.LogGroup(f"{name}-hook-logs", retention_in_days=args.logs.retention_days, opts=child)
        role = gantry_role(
            f"{name}-hook-role",
            env=env,
            description="gantry blue/green hook: its logs, its ENIs, the verdict for one deployment group",
            assume_role_policy=json.dumps(policies.hook_trust_policy(account_id=env.account_id)),
            opts=child,
        )
        pre_traffic = settings.pre_traffic
        family_arn_prefix = env.arn("ecs", f"task-definition/{args.service.task_family}")
        policy = aws.iam.RolePolicy(
            f"{name}-hook-policy",
            role=role.id,
            policy=pulumi.Output.all(
                logs=log_group.arn,
                group=group_arn,
                subnets=args.vpc.private_subnet_ids,
                sg=hook_sg,
                secret=api_key_secret_arn,
                cluster=args.cluster.arn,
                roles=pulumi.Output.all(args.service.roles.execution_role_arn, args.service.roles.task_role_arn),
            ).apply(lambda v: json.dumps(_hook_policy(v, env, family_arn_prefix, pre_traffic is not None))),
            opts=child,
        )
        variables: dict[str, pulumi.Input[str]] = {
            "CHECK": check,
            # The ALB is internet-facing, so its DNS name resolves to public addresses, which a VPC client
            # reaches only through NAT (and then from the NAT's address, not the hook's group). The hook
            # connects to one of the ALB's private addresses instead, found by this ENI description.
            "TEST_LOAD_BALANCER": lb.arn_suffix,
            "TEST_URL": pulumi.Output.concat(
                "http://", lb.load_balancer.dns_name, ":", str(settings.test_listener_port)
            ),
            "HEALTH_PATH": args.container.health_check_path,
        }
        if pre_traffic is not None:
            variables.update(
                {
                    "PRE_TRAFFIC_COMMAND": json.dumps(list(pre_traffic.command)),
                    "PRE_TRAFFIC_TIMEOUT_SECONDS": str(pre_traffic.timeout_seconds),
                    "PRE_TRAFFIC_CLUSTER": args.cluster.arn,
                    "PRE_TRAFFIC_CONTAINER": CONTAINER_NAME,
                    "PRE_TRAFFIC_SUBNETS": pulumi.Output.from_input(args.vpc.private_subnet_ids).apply(",".join),
                    "PRE_TRAFFIC_SECURITY_GROUPS": args.task_security_group_id,
                    "PRE_TRAFFIC_LOG_GROUP": args.service.log_group.name,
                    "PRE_TRAFFIC_LOG_STREAM_PREFIX": LOG_STREAM_PREFIX,
                }
            )
        if args.eval_check:
            variables.update(
                {
                    "EVAL_MIN_TOP1": str(settings.eval_min_top1),
                    "EVAL_MIN_COSINE": str(settings.eval_min_cosine),
                    "EVAL_MEAN_COSINE": str(settings.eval_mean_cosine),
                    "API_KEY_TENANT": settings.eval_tenant,
                }
            )
            if api_key_secret_arn is not None:
                variables["API_KEY_SECRET_ARN"] = api_key_secret_arn
        elif settings.smoke_path is not None:
            variables.update(
                {
                    "SMOKE_PATH": settings.smoke_path,
                    "SMOKE_METHOD": settings.smoke_method,
                    "SMOKE_EXPECT_STATUS": str(settings.smoke_expect_status),
                }
            )
            if settings.smoke_body is not None:
                variables["SMOKE_BODY"] = settings.smoke_body
        return aws.lambda_.Function(
            f"{name}-hook",
            description=f"gantry {env.stack}: {check} check of green before production traffic",
            runtime=HOOK_RUNTIME,
            architectures=["arm64"],
            handler=hook_package.LAMBDA_HANDLER,
            code=pulumi.AssetArchive(
                {
                    archive_name: pulumi.FileAsset(str(path))
                    for path, archive_name in hook_package.archive_files(check, pre_traffic=pre_traffic is not None)
                }
            ),
            role=role.arn,
            # The one-off task runs first, inside the same invocation (validation keeps the sum within 900 s).
            timeout=HOOK_TIMEOUT_SECONDS + (pre_traffic.timeout_seconds if pre_traffic is not None else 0),
            memory_size=512,
            environment={"variables": variables},
            vpc_config={"subnet_ids": args.vpc.private_subnet_ids, "security_group_ids": [hook_sg]},
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            # The function's ENIs need the policy at creation, and its logs the group.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )


def _hook_policy(v: Mapping[str, Any], env: AwsEnv, family_arn_prefix: str, pre_traffic: bool) -> dict[str, Any]:
    """The hook's policy document; with a pre-traffic task, also what running it needs (and nothing more)."""
    document = policies.hook_function_policy(
        log_group_arn=v["logs"],
        deployment_group_arn=v["group"],
        subnet_ids=v["subnets"],
        security_group_ids=[v["sg"]],
        region=env.region,
        account_id=env.account_id,
        partition=env.partition,
        api_key_secret_arn=v["secret"],
    )
    if pre_traffic:
        document["Statement"].extend(
            policies.hook_pre_traffic_statements(
                deployment_group_arn=v["group"],
                one_off_task_policy=one_off_task_policy(
                    family_arn_prefix=family_arn_prefix,
                    cluster_arn=v["cluster"],
                    task_role_arns=v["roles"],
                    partition=env.partition,
                ),
            )
        )
    return document

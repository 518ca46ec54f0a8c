"""TaskRoles: the two roles of an ECS task, each with exactly the permissions it needs, created through
`components.env.gantry_role`, the one way the program creates a role.

`gantry_role` gives every role the stack's path and permissions boundary (`AwsEnv.role_path`,
`AwsEnv.permissions_boundary_arn`, from gantry:iam): the bootstrap's deploy roles may create roles only
there and only so bounded, and a whole-program test checks every registered role carries both. The
execution role is what ECS uses to start a task (pull the image, write the log group, read the declared
secrets); the task role is the identity of the application code. Conflating them is the most common ECS
mistake, so they are built apart. Security stance: inline policies from `components.policies` on exact
ARNs, no AWS managed policies, trust limited to ECS tasks of this account and region; the task role has
no permissions unless the app declares some in config (or tracing is on, which adds X-Ray's write
actions and nothing else); the boundary caps every role whatever its policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies
from components.env import AwsEnv, gantry_role
from components.settings import PolicyStatement
from components.workload.secrets import SecretRefs
from components.workload.tracing import xray_write_policy


@dataclass(frozen=True, kw_only=True)
class TaskRolesArgs:
    env: AwsEnv
    repository_arn: pulumi.Input[str]
    """The one ECR repository the task's image comes from."""
    log_group_arn: pulumi.Input[str]
    """The one log group the container writes to."""
    secrets: SecretRefs = SecretRefs()
    """The secrets the container references (and their customer-managed KMS keys); default none."""
    task_statements: Sequence[PolicyStatement] = ()
    """The application's own AWS permissions; default none."""
    xray_write: bool = False
    """Default false. True (tracing on) adds one inline policy: X-Ray's five write actions
    (components.workload.tracing.xray_write_policy), for the collector sidecar."""
    task_policies: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Further task-role policies gantry writes for resources of this stack (suffix -> JSON document),
    each its own inline policy `<name>-task-<suffix>`; default none."""


class TaskRoles(pulumi.ComponentResource):
    execution_role_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: TaskRolesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:iam:TaskRoles", name, None, opts)
        execution, execution_policy = self._execution_role(name, args)
        task, task_policies = self._task_role(name, args)
        # The ARNs resolve only once the roles' policies are attached, so a task definition that uses
        # them cannot start tasks that lack their permissions.
        self.execution_role_arn = pulumi.Output.all(execution.arn, execution_policy.id).apply(lambda v: v[0])
        self.task_role_arn = pulumi.Output.all(task.arn, *task_policies).apply(lambda v: v[0])
        self.register_outputs({"executionRoleArn": self.execution_role_arn, "taskRoleArn": self.task_role_arn})

    def _execution_role(self, name: str, args: TaskRolesArgs) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """What ECS uses to start a task: pull the image, write the log group, read the declared secrets."""
        child = pulumi.ResourceOptions(parent=self)
        execution = gantry_role(
            f"{name}-execution",
            env=args.env,
            assume_role_policy=json.dumps(policies.ecs_execution_role_trust_policy()),
            description="ECS starts gantry tasks with this",
            opts=child,
        )
        execution_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.id,
            policy=pulumi.Output.all(
                repo=args.repository_arn,
                log_group=args.log_group_arn,
                secrets=pulumi.Output.all(*args.secrets.of_store("secretsmanager")),
                params=pulumi.Output.all(*args.secrets.of_store("ssm")),
            ).apply(
                lambda v: json.dumps(
                    policies.execution_role_policy(
                        args.env,
                        repository_arn=v["repo"],
                        log_group_arn=v["log_group"],
                        secret_arns=v["secrets"],
                        ssm_parameter_arns=v["params"],
                        kms_key_arns=args.secrets.kms_key_arns,
                    )
                )
            ),
            opts=child,
        )
        return execution, execution_policy

    def _task_role(self, name: str, args: TaskRolesArgs) -> tuple[aws.iam.Role, list[pulumi.Output]]:
        """The application's identity, and the ids of its inline policies (none unless config declares some)."""
        child = pulumi.ResourceOptions(parent=self)
        task = gantry_role(
            f"{name}-task",
            env=args.env,
            assume_role_policy=json.dumps(policies.ecs_task_role_trust_policy(args.env)),
            description="gantry application code runs as this",
            opts=child,
        )
        document = policies.task_role_policy(args.task_statements)
        task_policies: list[pulumi.Output] = []
        if document is not None:
            task_policies.append(
                aws.iam.RolePolicy(f"{name}-task-policy", role=task.id, policy=json.dumps(document), opts=child).id
            )
        if args.xray_write:
            task_policies.append(
                aws.iam.RolePolicy(
                    f"{name}-task-tracing", role=task.id, policy=json.dumps(xray_write_policy()), opts=child
                ).id
            )
        for suffix, policy in sorted(args.task_policies.items()):
            task_policies.append(
                aws.iam.RolePolicy(f"{name}-task-{suffix}", role=task.id, policy=policy, opts=child).id
            )
        return task, task_policies

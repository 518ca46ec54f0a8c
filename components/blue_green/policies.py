"""IAM documents for blue/green deploys: the CodeDeploy service role and the validation hook's role.

Pure functions of plain strings (callers apply them inside `Output.all(...).apply(...)`), so tests see
exactly what IAM sees. The CodeDeploy role gets an inline policy instead of the managed
AWSCodeDeployRoleForECS, which grants `lambda:InvokeFunction`, `ecs:*TaskSet`, ELB listener changes,
`sns:Publish` and `s3:GetObject` on every resource and `iam:PassRole` on every role
(https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSCodeDeployRoleForECS.html). Kept here:
only what one ECS blue/green deployment with one Lambda hook and CloudWatch alarms calls, on this
service, these listeners and this function; no S3 (the AppSpec travels inline as AppSpecContent) and no
SNS (no triggers). The `*` resources are those AWS forces, each commented where it appears. Trust
policies pin the service principal to this account (`aws:SourceAccount`) against the confused deputy
(https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.policies import VERSION, service_trust_policy

_LISTENER_ARN = re.compile(
    r"^(arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}):listener/(app/[^/]+/[0-9a-f]+/[0-9a-f]+)$"
)


class PolicyError(ValueError):
    """A policy argument is invalid; the message names it and says what is allowed."""


def _trust(sid: str, service: str, account_id: str) -> dict[str, Any]:
    if not re.fullmatch(r"\d{12}", account_id):
        raise PolicyError(f"account_id={account_id!r} is invalid; allowed: 12 digits")
    return service_trust_policy(sid=sid, service=service, account_id=account_id)


def codedeploy_trust_policy(*, account_id: str) -> dict[str, Any]:
    """Who may assume the CodeDeploy service role: CodeDeploy, acting for this account.

    Only `aws:SourceAccount`: CodeDeploy documents no `aws:SourceArn` format for the role it assumes for
    a deployment group, and a wrong ArnLike pattern would silently break every deployment.
    """
    return _trust("CodeDeployOfThisAccount", "codedeploy.amazonaws.com", account_id)


def hook_trust_policy(*, account_id: str) -> dict[str, Any]:
    """Who may assume the hook function's role: Lambda, for this account's functions."""
    return _trust("LambdaOfThisAccount", "lambda.amazonaws.com", account_id)


def listener_rule_pattern(listener_arn: str) -> str:
    """The ARN pattern of every rule of one ALB listener (listener-rule/app/LB/ID/LISTENER/RULE)."""
    match = _LISTENER_ARN.match(listener_arn)
    if not match:
        raise PolicyError(
            f"listener ARN {listener_arn!r} is invalid; allowed: an ALB listener ARN "
            "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID"
        )
    return f"{match.group(1)}:listener-rule/{match.group(2)}/*"


def codedeploy_service_policy(
    *,
    cluster_name: str,
    service_name: str,
    listener_arns: Sequence[str],
    hook_function_arn: str,
    task_role_arns: Sequence[str],
    alarm_names: Sequence[str],
    region: str,
    account_id: str,
    partition: str = "aws",
) -> dict[str, Any]:
    """What CodeDeploy calls to run a blue/green deployment of one ECS service.

    `listener_arns`: the production and test listeners CodeDeploy re-points. `task_role_arns`: the task
    definition's execution role and task role, which CreateTaskSet passes to ECS tasks. `alarm_names`:
    the deployment group's rollback alarms, whose state CodeDeploy reads.
    """
    if not alarm_names:
        raise PolicyError("alarm_names is empty; a blue/green deployment without rollback alarms is not allowed here")
    if not listener_arns:
        raise PolicyError("listener_arns is empty; give the production and test listener ARNs")
    if len(task_role_arns) != 2 or len(set(task_role_arns)) != 2:
        raise PolicyError(
            f"task_role_arns={list(task_role_arns)!r} is invalid; allowed: the execution role and the task role"
        )
    ecs = f"arn:{partition}:ecs:{region}:{account_id}"
    service_arn = f"{ecs}:service/{cluster_name}/{service_name}"
    return {
        "Version": VERSION,
        "Statement": [
            {"Sid": "ReadService", "Effect": "Allow", "Action": "ecs:DescribeServices", "Resource": service_arn},
            {
                # Task-set actions are authorised on the service and on its task sets
                # (Service Authorization Reference, Amazon ECS); both are pinned to this one service.
                "Sid": "ManageTaskSetsOfThisService",
                "Effect": "Allow",
                "Action": ["ecs:CreateTaskSet", "ecs:DeleteTaskSet", "ecs:UpdateServicePrimaryTaskSet"],
                "Resource": [service_arn, f"{ecs}:task-set/{cluster_name}/{service_name}/*"],
            },
            {
                # The ELB Describe* calls support no resource-level permissions: "*" is the only value IAM accepts.
                "Sid": "DescribeLoadBalancing",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                ],
                "Resource": "*",
            },
            {
                "Sid": "SwapTheseListeners",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:ModifyListener",
                "Resource": sorted(listener_arns),
            },
            {
                # On the rules, not their listeners: ModifyRule's resource types are listener-rule/app and
                # listener-rule/net (Service Authorization Reference, Elastic Load Balancing V2,
                # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html).
                "Sid": "SwapRulesOfTheseListeners",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:ModifyRule",
                "Resource": sorted(listener_rule_pattern(arn) for arn in listener_arns),
            },
            {
                # DescribeAlarms is authorised on alarm ARNs (Service Authorization Reference, Amazon CloudWatch:
                # resource type alarm). Only composite alarms need "*": "To use this operation and return
                # information about composite alarms, you must be signed on with the cloudwatch:DescribeAlarms
                # permission that is scoped to *" (CloudWatch API Reference, DescribeAlarms,
                # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html);
                # gantry's rollback alarms are metric alarms (tests/blue_green/test_bg_policies.py holds it).
                "Sid": "ReadRollbackAlarmState",
                "Effect": "Allow",
                "Action": "cloudwatch:DescribeAlarms",
                "Resource": sorted(
                    f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:{name}" for name in alarm_names
                ),
            },
            {
                # The function and its versions/aliases, should the hook ever be published as one.
                "Sid": "InvokeTheHook",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": [hook_function_arn, f"{hook_function_arn}:*"],
            },
            {
                "Sid": "PassTaskRolesToEcsTasks",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": sorted(task_role_arns),
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ],
    }


def hook_function_policy(
    *,
    log_group_arn: str,
    deployment_group_arn: str,
    subnet_ids: Sequence[str],
    security_group_ids: Sequence[str],
    region: str,
    account_id: str,
    partition: str = "aws",
    api_key_secret_arn: str | None = None,
) -> dict[str, Any]:
    """The hook function: its own logs, its VPC network interfaces, the verdict for this deployment group.

    ENI actions as Lambda documents them for a function in a VPC
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html, "Required IAM permissions").
    `api_key_secret_arn`: the secret holding the tenant key the eval check sends (the sample worker
    refuses unauthenticated requests); omitted for a check that needs no key.
    """
    ec2 = f"arn:{partition}:ec2:{region}:{account_id}"
    statements: list[dict[str, Any]] = [
        {
            # No CreateLogGroup: the component creates the group (with retention) before the function.
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        },
        {
            # CreateNetworkInterface is authorised on the new interface, its subnet and its security groups:
            # the interface ID is not known in advance, the subnets and groups are this function's own.
            "Sid": "CreateEnisInOwnSubnets",
            "Effect": "Allow",
            "Action": "ec2:CreateNetworkInterface",
            "Resource": [
                f"{ec2}:network-interface/*",
                *sorted(f"{ec2}:subnet/{s}" for s in subnet_ids),
                *sorted(f"{ec2}:security-group/{g}" for g in security_group_ids),
            ],
        },
        {
            # Lambda: "ec2:DescribeNetworkInterfaces – This action only works if it's allowed on all resources";
            # DescribeSubnets likewise supports no resource-level permissions.
            "Sid": "DescribeEnis",
            "Effect": "Allow",
            "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            "Resource": "*",
        },
        {
            # Lambda deletes and re-addresses the interfaces it created; their IDs are unknown in advance, so
            # the pattern is this account's interfaces in this region (Lambda's own documented example form).
            "Sid": "ManageOwnEnis",
            "Effect": "Allow",
            "Action": ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            "Resource": f"{ec2}:network-interface/*",
        },
        {
            "Sid": "ReportVerdictForThisDeploymentGroup",
            "Effect": "Allow",
            "Action": "codedeploy:PutLifecycleEventHookExecutionStatus",
            "Resource": deployment_group_arn,
        },
    ]
    if not subnet_ids or not security_group_ids:
        raise PolicyError("subnet_ids and security_group_ids must be non-empty: the hook runs in the VPC")
    if api_key_secret_arn is not None:
        statements.append(
            {
                "Sid": "ReadEvalApiKey",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": api_key_secret_arn,
            }
        )
    return {"Version": VERSION, "Statement": statements}


def deployment_group_arn(
    *, application_name: str, deployment_group_name: str, region: str, account_id: str, partition: str = "aws"
) -> str:
    """arn:PARTITION:codedeploy:REGION:ACCOUNT:deploymentgroup:APPLICATION/GROUP."""
    return (
        f"arn:{partition}:codedeploy:{region}:{account_id}:deploymentgroup:{application_name}/{deployment_group_name}"
    )


def hook_pre_traffic_statements(
    *, deployment_group_arn: str, one_off_task_policy: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """What the hook adds to run `deployment.preTraffic`: read its own deployment (the AppSpec names the new
    task definition; GetDeployment is authorised on the deployment group) and the one-off task's own
    least privilege (components.pre_traffic.one_off_task_policy)."""
    return [
        {
            "Sid": "ReadOwnDeployment",
            "Effect": "Allow",
            "Action": "codedeploy:GetDeployment",
            "Resource": deployment_group_arn,
        },
        *one_off_task_policy["Statement"],
    ]

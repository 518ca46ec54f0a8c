"""IAM documents for blue/green: exact actions on exact resources; only the `*` AWS forces.

Statements are indexed as {action: resources} and compared whole, so a widened grant, an extra action
or a lost condition fails. Actions are also checked against botocore's models so none is a typo.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest

from components.blue_green import policies

ACCOUNT, REGION = "210987654321", "eu-west-1"
LISTENERS = [
    f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/gantry-prod/0123456789abcdef/aaaa1111bbbb2222",
    f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/gantry-prod/0123456789abcdef/cccc3333dddd4444",
]
HOOK = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gantry-prod-hook"
ROLES = [f"arn:aws:iam::{ACCOUNT}:role/gantry-prod-execution", f"arn:aws:iam::{ACCOUNT}:role/gantry-prod-task"]
ALARMS = ["gantry-prod-green-target-5xx-rate", "gantry-prod-blue-target-5xx-rate"]
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/gantry-prod-hook"
DG = policies.deployment_group_arn(
    application_name="gantry-prod", deployment_group_name="worker", region=REGION, account_id=ACCOUNT
)
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry-prod-api-keys-Ab12Cd"
MODEL_FOR_PREFIX = {"elasticloadbalancing": "elbv2"}
# IAM actions whose API operation has another name (Lambda's Invoke is authorised as lambda:InvokeFunction).
OPERATION_FOR_ACTION = {"lambda:InvokeFunction": "Invoke"}
# Permission-only actions: checked by IAM, no API of their own.
PERMISSION_ONLY = {"iam:PassRole"}


def as_list(value):
    return value if isinstance(value, list) else [value]


def grants(document) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        for action in as_list(statement["Action"]):
            out.setdefault(action, set()).update(as_list(statement["Resource"]))
    return out


def well_formed(document) -> None:
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    json.dumps(document)
    session = botocore.session.get_session()
    for action in set(grants(document)) - PERMISSION_ONLY:
        prefix, name = action.split(":")
        name = OPERATION_FOR_ACTION.get(action, name)
        model = session.get_service_model(MODEL_FOR_PREFIX.get(prefix, prefix))
        assert name in model.operation_names, f"{action} names no API operation"


def codedeploy_policy(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        cluster_name="gantry-prod",
        service_name="worker",
        listener_arns=LISTENERS,
        hook_function_arn=HOOK,
        task_role_arns=ROLES,
        alarm_names=ALARMS,
        region=REGION,
        account_id=ACCOUNT,
    )
    kwargs.update(overrides)
    return policies.codedeploy_service_policy(**kwargs)


def test_trust_policies_pin_the_service_to_this_account():
    for document, service in (
        (policies.codedeploy_trust_policy(account_id=ACCOUNT), "codedeploy.amazonaws.com"),
        (policies.hook_trust_policy(account_id=ACCOUNT), "lambda.amazonaws.com"),
    ):
        (statement,) = document["Statement"]
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == "sts:AssumeRole"
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    with pytest.raises(policies.PolicyError, match="account_id"):
        policies.codedeploy_trust_policy(account_id="12345")


def test_codedeploy_policy_exact_grants():
    document = codedeploy_policy()
    well_formed(document)
    service = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/gantry-prod/worker"
    task_sets = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-set/gantry-prod/worker/*"
    rules = {arn.replace(":listener/", ":listener-rule/") + "/*" for arn in LISTENERS}
    assert grants(document) == {
        "ecs:DescribeServices": {service},
        "ecs:CreateTaskSet": {service, task_sets},
        "ecs:DeleteTaskSet": {service, task_sets},
        "ecs:UpdateServicePrimaryTaskSet": {service, task_sets},
        # The only "*": ELB Describe* calls support no resource-level permissions.
        "elasticloadbalancing:DescribeListeners": {"*"},
        "elasticloadbalancing:DescribeRules": {"*"},
        "elasticloadbalancing:DescribeTargetGroups": {"*"},
        "elasticloadbalancing:ModifyListener": set(LISTENERS),
        "elasticloadbalancing:ModifyRule": rules,
        "cloudwatch:DescribeAlarms": {f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{n}" for n in ALARMS},
        "lambda:InvokeFunction": {HOOK, f"{HOOK}:*"},
        "iam:PassRole": set(ROLES),
    }


def test_codedeploy_policy_passes_roles_only_to_ecs_tasks_and_drops_the_managed_extras():
    document = codedeploy_policy()
    (pass_role,) = [s for s in document["Statement"] if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert not any(a.startswith(("s3:", "sns:")) for a in grants(document))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"listener_arns": []}, "listener_arns"),
        ({"listener_arns": ["arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/x/1"]}, "listener ARN"),
        ({"task_role_arns": ROLES[:1]}, "task_role_arns"),
        ({"task_role_arns": [ROLES[0], ROLES[0]]}, "task_role_arns"),
        ({"alarm_names": []}, "alarm_names"),
    ],
)
def test_codedeploy_policy_refuses_bad_input(overrides, needle):
    with pytest.raises(policies.PolicyError, match=needle):
        codedeploy_policy(**overrides)


def hook_policy(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        log_group_arn=LOG_GROUP,
        deployment_group_arn=DG,
        subnet_ids=["subnet-0b2", "subnet-0a1"],
        security_group_ids=["sg-0hook"],
        region=REGION,
        account_id=ACCOUNT,
    )
    kwargs.update(overrides)
    return policies.hook_function_policy(**kwargs)


def test_hook_policy_exact_grants():
    document = hook_policy()
    well_formed(document)
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    assert f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:gantry-prod/worker" == DG
    assert grants(document) == {
        "logs:CreateLogStream": {LOG_GROUP, f"{LOG_GROUP}:log-stream:*"},
        "logs:PutLogEvents": {LOG_GROUP, f"{LOG_GROUP}:log-stream:*"},
        "ec2:CreateNetworkInterface": {
            f"{ec2}:network-interface/*",
            f"{ec2}:subnet/subnet-0a1",
            f"{ec2}:subnet/subnet-0b2",
            f"{ec2}:security-group/sg-0hook",
        },
        # Lambda documents DescribeNetworkInterfaces as working only on "*"; DescribeSubnets has no resource type.
        "ec2:DescribeNetworkInterfaces": {"*"},
        "ec2:DescribeSubnets": {"*"},
        "ec2:DeleteNetworkInterface": {f"{ec2}:network-interface/*"},
        "ec2:AssignPrivateIpAddresses": {f"{ec2}:network-interface/*"},
        "ec2:UnassignPrivateIpAddresses": {f"{ec2}:network-interface/*"},
        "codedeploy:PutLifecycleEventHookExecutionStatus": {DG},
    }


def test_hook_policy_reads_the_api_key_secret_only_when_given():
    assert "secretsmanager:GetSecretValue" not in grants(hook_policy())
    document = hook_policy(api_key_secret_arn=SECRET)
    well_formed(document)
    assert grants(document)["secretsmanager:GetSecretValue"] == {SECRET}


def test_hook_policy_needs_its_vpc_placement():
    with pytest.raises(policies.PolicyError, match="subnet_ids"):
        hook_policy(subnet_ids=[])

"""Every IAM role the program creates sits under gantry's path with the bootstrap's permissions boundary, and
that is exactly what the bootstrap's deploy roles allow: the two sides agree by construction and by test.

The whole-program checks look at every registered `aws:iam/role:Role`, so a role added later by any
component that bypasses `components.workload.roles.gantry_role` fails here."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pulumi
import pytest

from bootstrap import documents
from components.env import AwsEnv, gantry_role
from components.settings.iam import IamSettings
from tests.harness import ACCOUNT, BOUNDARY_ARN, OWN_SERVICE, REGION, Graph, run_component, run_program, stack_config
from tests.harness import with_test_secrets as _with_test_secrets

ROLE = "aws:iam/role:Role"
STACKS = ["dev", "prod", OWN_SERVICE]
SCOPE = documents.Scope(account_id=ACCOUNT, region=REGION)
DEPLOY_POLICY = documents.deploy_role_policy(
    SCOPE,
    state_bucket_arn="arn:aws:s3:::gantry-state-210987654321-eu-west-1",
    state_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/state",
    secrets_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/secrets",
)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _granted(document: dict[str, Any], action: str, resource: str) -> list[dict[str, Any]]:
    """Allow statements granting `action` on `resource` (IAM's wildcard matching on both)."""
    found = []
    for s in document["Statement"]:
        if (
            s["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action, a) for a in s["Action"])
            and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
        ):
            found.append(s)
    return found


def _denied(document: dict[str, Any], action: str, resource: str) -> bool:
    """True when a Deny statement (Action or NotAction, Resource or NotResource) covers `action` on `resource`."""
    for s in document["Statement"]:
        if "NotResource" in s:
            covered = not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["NotResource"]))
        else:
            covered = any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
        if s["Effect"] != "Deny" or not covered:
            continue
        if "NotAction" in s:
            if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(s["NotAction"])):
                return True
        elif any(fnmatch.fnmatchcase(action, a) for a in _as_list(s["Action"])):
            return True
    return False


@pytest.fixture(params=STACKS)
def graph(request) -> Graph:
    return run_program(request.param)


def test_every_role_has_gantrys_path_and_the_bootstrap_boundary(graph):
    roles = graph.of_type(ROLE)
    assert roles, "the program creates roles"
    for role in roles:
        assert role.inputs.get("path") == documents.WORKLOAD_ROLE_PATH, role.name
        assert role.inputs.get("permissionsBoundary") == BOUNDARY_ARN, role.name
    assert SCOPE.boundary_arn == BOUNDARY_ARN


def test_the_bootstrap_deploy_role_may_create_and_pass_every_role_the_program_creates(graph):
    for role in graph.of_type(ROLE):
        arn = role.outputs["arn"]
        boundary = role.inputs["permissionsBoundary"]
        for action in ("iam:CreateRole", "iam:PutRolePolicy"):
            [statement] = _granted(DEPLOY_POLICY, action, arn)
            # The condition the deploy role is held to is met by the boundary the program sets.
            assert statement["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}, role.name
        [trusted] = role.json("assumeRolePolicy")["Statement"]
        service = trusted["Principal"]["Service"]
        [passing] = _granted(DEPLOY_POLICY, "iam:PassRole", arn)
        assert service in passing["Condition"]["StringEquals"]["iam:PassedToService"], role.name
        assert not _denied(DEPLOY_POLICY, "iam:CreateRole", arn)


BOUNDARY = documents.workload_boundary_policy(SCOPE)
# The API call `pulumi up` makes to create each resource type the program registers. A type missing here
# fails the coverage test below, so a component that adds a new kind of resource must say what the
# bootstrap's deploy role needs for it.
CREATE_ACTION = {
    "aws:appautoscaling/policy:Policy": "application-autoscaling:PutScalingPolicy",
    "aws:appautoscaling/scheduledAction:ScheduledAction": "application-autoscaling:PutScheduledAction",
    "aws:appautoscaling/target:Target": "application-autoscaling:RegisterScalableTarget",
    "aws:budgets/budget:Budget": "budgets:ModifyBudget",
    "aws:cloudfront/distribution:Distribution": "cloudfront:CreateDistribution",
    "aws:cloudfront/vpcOrigin:VpcOrigin": "cloudfront:CreateVpcOrigin",
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": "cloudfront:CreateResponseHeadersPolicy",
    "aws:cloudwatch/logDeliverySource:LogDeliverySource": "logs:PutDeliverySource",
    "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination": "logs:PutDeliveryDestination",
    "aws:cloudwatch/logDelivery:LogDelivery": "logs:CreateDelivery",
    "aws:cloudwatch/dashboard:Dashboard": "cloudwatch:PutDashboard",
    "aws:cloudwatch/logGroup:LogGroup": "logs:CreateLogGroup",
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": "logs:PutResourcePolicy",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "cloudwatch:PutMetricAlarm",
    "aws:codedeploy/application:Application": "codedeploy:CreateApplication",
    "aws:codedeploy/deploymentGroup:DeploymentGroup": "codedeploy:CreateDeploymentGroup",
    "aws:dynamodb/table:Table": "dynamodb:CreateTable",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "ec2:RevokeSecurityGroupIngress",
    "aws:ec2/flowLog:FlowLog": "ec2:CreateFlowLogs",
    "aws:ec2/securityGroup:SecurityGroup": "ec2:CreateSecurityGroup",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "ec2:CreateVpcEndpoint",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "ecr:PutLifecyclePolicy",
    "aws:ecr/repository:Repository": "ecr:CreateRepository",
    "aws:ecs/cluster:Cluster": "ecs:CreateCluster",
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": "ecs:PutClusterCapacityProviders",
    "aws:ecs/service:Service": "ecs:CreateService",
    "aws:ecs/taskDefinition:TaskDefinition": "ecs:RegisterTaskDefinition",
    "aws:iam/role:Role": "iam:CreateRole",
    "aws:iam/rolePolicy:RolePolicy": "iam:PutRolePolicy",
    "aws:kms/alias:Alias": "kms:CreateAlias",
    "aws:kms/key:Key": "kms:CreateKey",
    "aws:lambda/function:Function": "lambda:CreateFunction",
    "aws:lb/listener:Listener": "elasticloadbalancing:CreateListener",
    "aws:lb/loadBalancer:LoadBalancer": "elasticloadbalancing:CreateLoadBalancer",
    "aws:lb/targetGroup:TargetGroup": "elasticloadbalancing:CreateTargetGroup",
    "aws:s3/bucket:Bucket": "s3:CreateBucket",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "aws:s3/bucketPolicy:BucketPolicy": "s3:PutBucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:PutEncryptionConfiguration"
    ),
    "aws:secretsmanager/secret:Secret": "secretsmanager:CreateSecret",
    "aws:secretsmanager/secretVersion:SecretVersion": "secretsmanager:PutSecretValue",
    "aws:sns/topic:Topic": "sns:CreateTopic",
    "aws:sns/topicPolicy:TopicPolicy": "sns:SetTopicAttributes",
    "aws:sqs/queue:Queue": "sqs:CreateQueue",
    "aws:sqs/queuePolicy:QueuePolicy": "sqs:SetQueueAttributes",
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": "sqs:SetQueueAttributes",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "ec2:AuthorizeSecurityGroupEgress",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "ec2:AuthorizeSecurityGroupIngress",
    "aws:wafv2/webAcl:WebAcl": "wafv2:CreateWebACL",
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": "wafv2:PutLoggingConfiguration",
    "aws:route53/record:Record": "route53:ChangeResourceRecordSets",
    "aws:route53/healthCheck:HealthCheck": "route53:CreateHealthCheck",
    "aws:acm/certificate:Certificate": "acm:RequestCertificate",
    "aws:acm/certificateValidation:CertificateValidation": "acm:DescribeCertificate",
}


def test_the_deploy_role_may_create_every_kind_of_resource_the_program_registers(graph):
    zones = documents.deploy_role_policy(
        SCOPE,
        state_bucket_arn="arn:aws:s3:::state",
        state_key_arn="arn:aws:kms:eu-west-1:1:key/s",
        secrets_key_arn="arn:aws:kms:eu-west-1:1:key/k",
        hosted_zone_ids=["Z0GANTRYTEST01"],
    )
    kinds = {r.typ for r in graph.resources if r.typ.startswith("aws:")}
    unknown = kinds - set(CREATE_ACTION)
    assert not unknown, f"say which call creates {sorted(unknown)} and grant it in bootstrap/documents.py"
    missing = [
        (kind, CREATE_ACTION[kind])
        for kind in sorted(kinds)
        if not any(
            s["Effect"] == "Allow" and any(fnmatch.fnmatchcase(CREATE_ACTION[kind], a) for a in _as_list(s["Action"]))
            for s in zones["Statement"]
        )
    ]
    assert missing == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_permission_a_role_is_given_fits_inside_the_boundary(stack):
    config, secret_keys = _with_test_secrets(stack_config(stack))
    config["gantry:tracing"] = {"enabled": True}  # the X-Ray writes too
    config["gantry:queue"] = {"enabled": True}  # and the Batch API's roles
    graph = run_program(stack, config, secret_keys)
    outside = [
        (policy.name, action, resource)
        for policy in graph.of_type("aws:iam/rolePolicy:RolePolicy")
        for statement in json.loads(policy.inputs["policy"])["Statement"]
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement.get("Resource", "*"))
        if not _granted(BOUNDARY, action, resource)
    ]
    # A permission outside the boundary is denied at run time however the role's own policy reads.
    assert outside == []


def test_the_deploy_role_cannot_create_a_role_off_the_path_or_change_a_boundary():
    for arn in (f"arn:aws:iam::{ACCOUNT}:role/gantry-roles-task-1", f"arn:aws:iam::{ACCOUNT}:role/other/x"):
        assert not _granted(DEPLOY_POLICY, "iam:CreateRole", arn)
        assert not _granted(DEPLOY_POLICY, "iam:PassRole", arn)
    inside = f"arn:aws:iam::{ACCOUNT}:role/gantry/gantry-roles-task-1"
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:AttachRolePolicy", "iam:CreatePolicyVersion"):
        assert not _granted(DEPLOY_POLICY, action, inside)
    # The boundary itself: readable (the program's preview check), never writable.
    assert _granted(DEPLOY_POLICY, "iam:GetPolicy", SCOPE.boundary_arn)
    assert not _denied(DEPLOY_POLICY, "iam:GetPolicy", SCOPE.boundary_arn)
    for action in ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:SetDefaultPolicyVersion"):
        assert _denied(DEPLOY_POLICY, action, SCOPE.boundary_arn)


def test_the_boundary_is_checked_before_anything_is_created():
    config, secret_keys = _with_test_secrets(stack_config("dev"))
    config["gantry:iam"] = {"permissionsBoundary": "team-boundary"}
    graph = Graph()
    with pytest.raises(pulumi.RunError) as err:
        run_program("dev", config, secret_keys, graph)
    assert graph.resources == []
    assert f"gantry:iam.permissionsBoundary: arn:aws:iam::{ACCOUNT}:policy/gantry/team-boundary does not exist" in str(
        err.value
    )
    assert "iam.withoutPermissionsBoundary: true" in str(err.value)


def test_an_account_without_the_bootstrap_opts_out_by_name():
    config, secret_keys = _with_test_secrets(stack_config("dev"))
    config["gantry:iam"] = {"withoutPermissionsBoundary": True, "rolePath": "/team/ai/"}
    graph = run_program("dev", config, secret_keys)
    for role in graph.of_type(ROLE):
        assert role.inputs["path"] == "/team/ai/"
        assert "permissionsBoundary" not in role.inputs
        assert role.outputs["arn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/team/ai/")
    assert "aws:iam/getPolicy:getPolicy" not in graph.calls


def test_gantry_role_carries_the_envs_path_and_boundary():
    env = AwsEnv(
        account_id=ACCOUNT,
        region=REGION,
        partition="aws",
        stack="test",
        role_path="/gantry/",
        permissions_boundary_arn=BOUNDARY_ARN,
    )
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    graph = run_component(
        lambda: gantry_role("r", env=env, assume_role_policy=trust, description="d", opts=pulumi.ResourceOptions())
    )
    role = graph.one(ROLE)
    assert role.inputs == {
        "path": "/gantry/",
        "permissionsBoundary": BOUNDARY_ARN,
        "assumeRolePolicy": trust,
        "description": "d",
    }


# --- settings -------------------------------------------------------------------------------------------


def _iam(**values: Any) -> IamSettings:
    return IamSettings.model_validate_json(json.dumps(values), by_alias=True, by_name=False)


def test_defaults_are_the_bootstraps():
    iam = _iam()
    assert iam.role_path == documents.WORKLOAD_ROLE_PATH
    assert iam.boundary_arn(partition="aws", account_id=ACCOUNT) == SCOPE.boundary_arn


def test_boundary_forms():
    arn = "arn:aws:iam::210987654321:policy/platform/team-boundary"
    assert _iam(permissionsBoundary=arn).boundary_arn(partition="aws", account_id=ACCOUNT) == arn
    assert (
        _iam(rolePath="/ai/", permissionsBoundary="b").boundary_arn(partition="aws-us-gov", account_id=ACCOUNT)
        == f"arn:aws-us-gov:iam::{ACCOUNT}:policy/ai/b"
    )
    assert _iam(withoutPermissionsBoundary=True).boundary_arn(partition="aws", account_id=ACCOUNT) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rolePath": "gantry"}, "must be an IAM path"),
        ({"rolePath": "/gantry"}, "must be an IAM path"),
        ({"rolePath": "/gan try/"}, "must not contain spaces"),
        ({"permissionsBoundary": "arn:aws:iam::210987654321:role/gantry/x"}, "is not an IAM policy ARN"),
        ({"permissionsBoundary": "arn:aws:iam:eu-west-1:210987654321:policy/x"}, "is not an IAM policy ARN"),
        ({"permissionsBoundary": "team/boundary"}, "managed policy's name"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        _iam(**values)


def test_cross_field_rules():
    from components.settings.base import Where

    where = Where(region=REGION, partition="aws")
    both = _iam(withoutPermissionsBoundary=True, permissionsBoundary="b")
    assert [k for k, _ in both.checks(where)] == ["withoutPermissionsBoundary"]
    gov = _iam(permissionsBoundary="arn:aws-us-gov:iam::210987654321:policy/b")
    assert [k for k, _ in gov.checks(where)] == ["permissionsBoundary"]
    assert list(_iam().checks(where)) == []

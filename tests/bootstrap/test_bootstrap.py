"""The bootstrap project: its documents on their own, its config validation, and the whole program under
mocks (trust conditions exact, no `*` where a scope exists, state bucket and keys locked down)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from bootstrap import documents
from bootstrap.settings import BootstrapConfigError, parse
from components import quotas
from gantry.plan import as_policy_resources
from tests.bootstrap.bootstrap_runner import ACCOUNT, CONFIG, run_bootstrap, synthesize_bootstrap
from tests.iam_eval import allowed

SCOPE = documents.Scope(account_id=ACCOUNT, region="eu-west-1")
STATE = {
    "state_bucket_arn": "arn:aws:s3:::gantry-state-210987654321-eu-west-1",
    "state_key_arn": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/state",
    "secrets_key_arn": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/secrets",
}
ALL_DOCUMENTS = {
    "preview": documents.preview_role_policy(SCOPE, **STATE),
    "deploy": documents.deploy_role_policy(SCOPE, **STATE, hosted_zone_ids=["Z0GANTRYTEST01"]),
    "boundary": documents.workload_boundary_policy(SCOPE),
}


def _allows(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if s["Effect"] == "Allow"]


def _granted(document: dict[str, Any], action: str, resource: str) -> list[dict[str, Any]]:
    """Allow statements granting `action` on `resource` (IAM's wildcard matching on both)."""
    return [
        s
        for s in _allows(document)
        if any(fnmatch.fnmatchcase(action, a) for a in s["Action"])
        and any(
            fnmatch.fnmatchcase(resource, r)
            for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
        )
    ]


# --- documents -------------------------------------------------------------------------------------------


def test_trust_is_exact_subject_and_audience() -> None:
    trust = documents.github_trust_policy(
        provider_arn="arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com",
        repository="acme-ai/gantry",
        subject=documents.environment_subject("prod"),
    )
    [statement] = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:acme-ai/gantry:environment:prod",
        }
    }
    assert documents.pull_request_subject() == "pull_request"


@pytest.mark.parametrize("name", sorted(ALL_DOCUMENTS))
def test_star_resource_only_for_actions_aws_forces(name: str) -> None:
    for statement in _allows(ALL_DOCUMENTS[name]):
        if statement["Resource"] == "*":
            extra = {
                a for a in statement["Action"] if not any(fnmatch.fnmatchcase(a, p) for p in documents.STAR_ACTIONS)
            }
            assert not extra, f"{name} {statement['Sid']}: {sorted(extra)} on '*' although a scope exists"
        for action in statement["Action"]:
            assert action != "*" and not action.endswith(":*"), f"{name} {statement['Sid']}: {action}"


def test_deploy_creates_roles_only_under_the_path_with_the_boundary() -> None:
    deploy = ALL_DOCUMENTS["deploy"]
    for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"):
        [statement] = _granted(deploy, action, f"arn:aws:iam::{ACCOUNT}:role/gantry/gantry-roles-task-1a2b")
        assert statement["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": SCOPE.boundary_arn}}
        assert not _granted(deploy, action, f"arn:aws:iam::{ACCOUNT}:role/other")
        assert not _granted(deploy, action, f"arn:aws:iam::{ACCOUNT}:role/gantry-delivery/gantry-delivery-deploy-prod")
    # Gantry attaches no managed policies, so the deploy role may not either; nor drop a boundary.
    for action in ("iam:AttachRolePolicy", "iam:DeleteRolePermissionsBoundary", "iam:CreatePolicyVersion"):
        assert not _granted(deploy, action, f"arn:aws:iam::{ACCOUNT}:role/gantry/x")


def test_pass_role_only_to_gantry_roles_and_gantry_services() -> None:
    deploy = ALL_DOCUMENTS["deploy"]
    [statement] = _granted(deploy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/gantry/gantry-roles-execution-1")
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": list(documents.WORKLOAD_SERVICES)}}
    assert not _granted(deploy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")


def test_deploy_is_denied_iam_on_itself_and_all_but_reading_the_boundary() -> None:
    denies = {s["Sid"]: s for s in ALL_DOCUMENTS["deploy"]["Statement"] if s["Effect"] == "Deny"}
    roles, boundary = denies["NeverTouchDeliveryRoles"], denies["NeverChangeTheBoundary"]
    # The delivery roles and the managed policies that grant the deploy roles their rights.
    assert (roles["Action"], roles["Resource"]) == (
        "iam:*",
        [SCOPE.delivery_roles, f"arn:aws:iam::{ACCOUNT}:policy/gantry/gantry-deploy-*"],
    )
    for area in documents.DEPLOY_POLICY_AREAS:
        policy = f"arn:aws:iam::{ACCOUNT}:policy/gantry/{documents.deploy_policy_name(SCOPE, area)}"
        assert fnmatch.fnmatchcase(policy, roles["Resource"][1])
    assert (boundary["NotAction"], boundary["Resource"]) == (
        ["iam:GetPolicy", "iam:GetPolicyVersion"],
        SCOPE.boundary_arn,
    )
    assert "Action" not in boundary


def test_preview_writes_nothing_but_lock_files() -> None:
    preview = ALL_DOCUMENTS["preview"]
    writes = [
        a for s in _allows(preview) for a in s["Action"] if a.split(":")[1].startswith(("Put", "Delete", "Create"))
    ]
    assert sorted(writes) == ["s3:DeleteObject", "s3:PutObject"]
    assert _granted(preview, "s3:PutObject", STATE["state_bucket_arn"] + "/.pulumi/locks/org/gantry/dev/1.json")
    assert not _granted(preview, "s3:PutObject", STATE["state_bucket_arn"] + "/.pulumi/stacks/gantry/dev.json")
    assert not _granted(preview, "secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:gantry-x"))
    assert _granted(preview, "kms:Decrypt", STATE["secrets_key_arn"])
    assert not _granted(preview, "kms:Encrypt", STATE["secrets_key_arn"])


@pytest.mark.parametrize("name", ["deploy", "boundary"])
def test_modify_rule_is_granted_on_listener_rules_not_listeners(name: str) -> None:
    """ModifyRule is authorised on listener-rule ARNs (Service Authorization Reference, Elastic Load
    Balancing V2); ModifyListener on listener ARNs."""
    listener = f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:listener/app/gantry-lb-alb-1/50dc/1a2b"
    rule = f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:listener-rule/app/gantry-lb-alb-1/50dc/1a2b/9f8e"
    document = ALL_DOCUMENTS[name]
    assert _granted(document, "elasticloadbalancing:ModifyRule", rule)
    assert not _granted(document, "elasticloadbalancing:ModifyRule", listener)
    assert _granted(document, "elasticloadbalancing:ModifyListener", listener)
    assert not _granted(document, "elasticloadbalancing:ModifyRule", rule.replace("gantry-lb", "payroll-lb"))


def test_route53_writes_only_in_the_configured_zones() -> None:
    without = documents.deploy_role_policy(SCOPE, **STATE)
    assert not _granted(without, "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0GANTRYTEST01")
    assert _granted(
        ALL_DOCUMENTS["deploy"], "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0GANTRYTEST01"
    )
    assert not _granted(
        ALL_DOCUMENTS["deploy"], "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/ZOTHER"
    )


# What gantry's roles are given today (components/policies.py, components/blue_green/policies.py), as
# (action, a resource of the shape the program creates): the boundary must allow every one.
WORKLOAD_GRANTS = [
    ("ecr:GetAuthorizationToken", "*"),
    ("ecr:BatchGetImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/gantry-image-repo-1a2b3c4"),
    ("logs:PutLogEvents", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:gantry-logs-1a2b3c4:log-stream:service/app/1"),
    ("logs:CreateLogStream", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:gantry-network-flow-logs-9f8e7d6"),
    ("logs:DescribeLogGroups", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:*"),
    (
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:gantry-secrets-api-keys-1-Ab12Cd",
    ),
    ("ecs:CreateTaskSet", f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/gantry-cluster-1/gantry-service-2"),
    (
        "elasticloadbalancing:ModifyListener",
        f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:listener/app/gantry-lb-alb-1/50dc/1",
    ),
    ("lambda:InvokeFunction", f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:gantry-hook-1"),
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/gantry/gantry-roles-task-1"),
    (
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        f"arn:aws:codedeploy:eu-west-1:{ACCOUNT}:deploymentgroup:gantry-app-1/gantry-dg-1",
    ),
]


@pytest.mark.parametrize(("action", "resource"), WORKLOAD_GRANTS)
def test_the_boundary_allows_what_gantry_roles_need(action: str, resource: str) -> None:
    assert _granted(ALL_DOCUMENTS["boundary"], action, resource)


def test_the_boundary_allows_nothing_outside_gantry() -> None:
    boundary = ALL_DOCUMENTS["boundary"]
    assert not _granted(boundary, "ecr:BatchGetImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/payroll")
    assert not _granted(boundary, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")
    assert not _granted(boundary, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/gantry/x")
    [kms] = _granted(boundary, "kms:Decrypt", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/any")
    assert set(kms["Condition"]["StringEquals"]["kms:ViaService"]) == {
        "secretsmanager.eu-west-1.amazonaws.com",
        "ssm.eu-west-1.amazonaws.com",
    }


# --- settings ----------------------------------------------------------------------------------------------


def _values(**changes: Any) -> dict[str, str]:
    base = {k: v if isinstance(v, str) else json.dumps(v) for k, v in CONFIG.items() if k != "aws:region"}
    for key, value in changes.items():
        full = f"gantry-bootstrap:{key}"
        if value is None:
            base.pop(full, None)
        else:
            base[full] = value if isinstance(value, str) else json.dumps(value)
    return base


def test_settings_defaults() -> None:
    settings = parse(_values(environments=None), account_id=ACCOUNT, region="eu-west-1")
    assert settings.environments == ("dev", "prod")
    assert settings.state_bucket_name(ACCOUNT, "eu-west-1") == "gantry-state-210987654321-eu-west-1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"githubOwner": None}, "githubOwner=None is invalid"),
        ({"githubOwner": "acme/*"}, "githubOwner='acme/*' is invalid"),
        ({"githubRepo": "gantry:*"}, "githubRepo='gantry:*' is invalid"),
        ({"environments": []}, "environments is empty"),
        ({"environments": ["prod*"]}, "entry 'prod*' is invalid"),
        ({"environments": ["prod", "Prod"]}, "repeats ['prod']"),
        ({"environments": "prod"}, "must be a JSON list"),
        ({"environments": [f"e{i}" for i in range(11)]}, "environments lists 11 environments; allowed: at most 10"),
        ({"stateBucketPrefix": "Gantry_State"}, "stateBucketPrefix='Gantry_State' is invalid"),
        ({"stateBucketPrefix": "a" * 41}, "at most 63 characters"),
        ({"resourcePrefix": "g"}, "resourcePrefix='g' is invalid"),
        ({"hostedZoneIds": ["example.com"]}, "hostedZoneIds entry 'example.com' is invalid"),
        ({"hostedZoneIds": [f"Z{i:04d}" for i in range(21)]}, "hostedZoneIds lists 21 zones; allowed: at most 20"),
    ],
)
def test_settings_refuse_what_would_widen_a_condition(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(BootstrapConfigError) as error:
        parse(_values(**changes), account_id=ACCOUNT, region="eu-west-1")
    assert expected in str(error.value)


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(BootstrapConfigError) as error:
        parse(_values(githubOwner="-x", environments=["a:b"]), account_id=ACCOUNT, region="eu-west-1")
    assert "githubOwner" in str(error.value) and "'a:b'" in str(error.value)


# --- the program under mocks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return synthesize_bootstrap()


def test_one_deploy_role_per_environment_trusting_only_that_environment(graph) -> None:
    provider = graph.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider.inputs  # IAM validates GitHub against its trusted CAs
    subjects, sessions = {}, {}
    for role in graph.of_type("aws:iam/role:Role"):
        assert role.inputs["path"] == "/gantry-delivery/"
        [statement] = role.json("assumeRolePolicy")["Statement"]
        assert statement["Principal"] == {"Federated": provider.outputs["arn"]}
        assert set(statement["Condition"]) == {"StringEquals"}
        equals = statement["Condition"]["StringEquals"]
        assert equals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        subjects[role.name] = equals["token.actions.githubusercontent.com:sub"]
        sessions[role.name] = role.inputs["maxSessionDuration"]
    # One preview role per environment: dev's (the pull-request environment) trusts every same-repository
    # pull request, prod's only jobs in the GitHub environment `prod-preview`, which its reviewers gate.
    assert subjects == {
        "gantry-delivery-preview": "repo:acme-ai/gantry:pull_request",
        "gantry-delivery-preview-prod": "repo:acme-ai/gantry:environment:prod-preview",
        "gantry-delivery-deploy-dev": "repo:acme-ai/gantry:environment:dev",
        "gantry-delivery-deploy-prod": "repo:acme-ai/gantry:environment:prod",
    }
    # Sized to the longest job of each kind (identity.DEPLOY_SESSION_SECONDS: prod's 120-minute deploy).
    assert sessions == {
        "gantry-delivery-preview": 3600,
        "gantry-delivery-preview-prod": 3600,
        "gantry-delivery-deploy-dev": 7200,
        "gantry-delivery-deploy-prod": 7200,
    }


def _attached(graph, role_name: str) -> dict[str, Any]:
    """The permissions a role holds: every managed policy attached to it and its inline policies, as one
    document (IAM evaluates a role's identity policies together)."""
    role = graph.named(role_name)
    arns = {
        a.inputs["policyArn"]
        for a in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.depends_on(role)
    }
    policies = [p for p in graph.of_type("aws:iam/policy:Policy") if p.outputs["arn"] in arns]
    assert len(policies) == len(arns)
    inline = [p for p in graph.of_type("aws:iam/rolePolicy:RolePolicy") if p.depends_on(role)]
    return {"Statement": [s for p in [*policies, *inline] for s in p.json("policy")["Statement"]]}


def test_role_policies_are_the_documents_on_the_real_state_arns(graph) -> None:
    bucket = graph.one("aws:s3/bucket:Bucket")
    keys = {k.name: k for k in graph.of_type("aws:kms/key:Key")}
    policy = _attached(graph, "gantry-delivery-deploy-prod")
    assert _granted(policy, "s3:PutObject", bucket.outputs["arn"] + "/.pulumi/stacks/gantry/prod.json")
    # Prod's deploy encrypts and decrypts with prod's secrets key only: not dev's, not the shared one
    # (evaluated with conditions: it may use program keys through SNS, which these keys are not).
    for action in ("kms:Encrypt", "kms:Decrypt"):
        assert allowed([policy], action, keys["gantry-state-secrets-key-prod"].outputs["arn"])
        for other in ("gantry-state-secrets-key-dev", "gantry-state-secrets-key"):
            context = {"aws:ResourceTag/gantry-key": "bootstrap", "kms:ViaService": "sns.eu-west-1.amazonaws.com"}
            assert not allowed([policy], action, keys[other].outputs["arn"], context), (action, other)
    preview = graph.named("gantry-delivery-preview-policy").json("policy")
    assert _granted(preview, "kms:Decrypt", keys["gantry-state-secrets-key-dev"].outputs["arn"])
    assert not _granted(preview, "kms:Decrypt", keys["gantry-state-secrets-key-prod"].outputs["arn"])
    assert not _granted(preview, "ecs:UpdateService", SCOPE.arn("ecs", "service/gantry-cluster-1/gantry-service-1"))
    assert _granted(policy, "ecs:UpdateService", SCOPE.arn("ecs", "service/gantry-cluster-1/gantry-service-1"))


def test_boundary_policy_is_where_the_deploy_roles_require_it(graph) -> None:
    boundary = graph.named("gantry-delivery-boundary")
    arn = f"arn:aws:iam::{ACCOUNT}:policy{boundary.inputs['path']}{boundary.inputs['name']}"
    assert arn == SCOPE.boundary_arn
    assert graph.exports["workloadRolePath"] == "/gantry/"


def test_state_bucket_is_versioned_encrypted_private_and_tls_only(graph) -> None:
    bucket = graph.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == "gantry-state-210987654321-eu-west-1"
    assert bucket.inputs["forceDestroy"] is False and bucket.opts.protect
    assert graph.one("aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"] == {
        "status": "Enabled"
    }
    [rule] = graph.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs[
        "rules"
    ]
    state_key = graph.named("gantry-state-state-key")
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": state_key.outputs["arn"],
    }
    assert rule["bucketKeyEnabled"] is True
    block = graph.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    policy = graph.one("aws:s3/bucketPolicy:BucketPolicy")
    [deny] = policy.json("policy")["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [bucket.outputs["arn"], bucket.outputs["arn"] + "/*"]
    assert policy.depends_on(graph.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))


def test_keys_rotate_and_are_protected(graph) -> None:
    for key in graph.of_type("aws:kms/key:Key"):
        assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
        assert key.opts.protect
    # The shared key of the first layout, kept for re-keying, and one key per environment.
    assert sorted(k.name for k in graph.of_type("aws:kms/key:Key")) == [
        "gantry-state-secrets-key",
        "gantry-state-secrets-key-dev",
        "gantry-state-secrets-key-prod",
        "gantry-state-state-key",
    ]
    assert graph.exports["secretsProviders"] == {
        "dev": "awskms://alias/gantry-secrets-dev?region=eu-west-1",
        "prod": "awskms://alias/gantry-secrets-prod?region=eu-west-1",
    }
    assert "secretsProvider" not in graph.exports


def test_the_bootstrap_fits_every_quota_and_its_deploy_roles_use_managed_policies(graph) -> None:
    resources = as_policy_resources(graph)
    assert [str(f) for f in quotas.check(resources)] == []
    # What the check measured: six managed deploy policies, each attached to both deploy roles.
    policies = [r for r in resources if r.type == quotas.MANAGED_POLICY]
    assert len(policies) == len(documents.DEPLOY_POLICY_AREAS) + 1  # and the boundary
    attachments = [r for r in resources if r.type == quotas.ROLE_POLICY_ATTACHMENT]
    assert len(attachments) == 2 * len(documents.DEPLOY_POLICY_AREAS)
    for policy in policies:
        size = quotas.policy_size(policy.props["policy"])
        assert size is not None and 1_000 < size <= 6_144, policy.urn
    # Inline: each preview role's policy and each deploy role's small per-environment policy (its secrets
    # key, its topics); the quota check above measured each role's inline policies together.
    inline = [r for r in resources if r.type == quotas.ROLE_POLICY]
    assert sorted(r.urn.rsplit("::", 1)[1] for r in inline) == [
        "gantry-delivery-deploy-dev-environment",
        "gantry-delivery-deploy-prod-environment",
        "gantry-delivery-preview-policy",
        "gantry-delivery-preview-prod-policy",
    ]
    for r in inline:
        if r.urn.endswith("-environment"):
            assert (quotas.policy_size(r.props["policy"]) or 0) < 2_500, r.urn


def test_invalid_config_fails_before_any_resource() -> None:
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    with pytest.raises(Exception, match="environments entry 'prod\\*' is invalid"):
        run_bootstrap({**CONFIG, "gantry-bootstrap:environments": ["prod*"]})

"""Every IAM role the program creates sits under gantry's path with the bootstrap's permissions boundary, and
that is exactly what the bootstrap's deploy roles allow: the two sides agree by construction and by test.

The whole-program checks look at every registered `aws:iam/role:Role`, so a role added later by any
component that bypasses `components.roles.gantry_role` fails here."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pulumi
import pytest

from bootstrap import documents
from components.env import AwsEnv
from components.roles import gantry_role
from components.settings.iam import IamSettings
from harness import ACCOUNT, BOUNDARY_ARN, OWN_SERVICE, REGION, Graph, run_component, run_program, stack_config
from harness import with_test_secrets as _with_test_secrets

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
    """True when a Deny statement (Action or NotAction) covers `action` on `resource`."""
    for s in document["Statement"]:
        if s["Effect"] != "Deny" or not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"])):
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

"""What one `pulumi up` adds to the deploy resource: the hotfix override (an environment variable, never
config), the AWS session both dynamic providers act as (aws:profile / aws:assumeRoles, or a clear refusal),
the dependencies that let green move onto new subnets before the old ones go, and its outputs.
"""

from __future__ import annotations

import json

import pulumi
import pytest

from components import pre_traffic_provider
from components.provider_runtime import session_for
from components.settings.invocation import (
    HOTFIX_VARIABLE,
    ProviderSession,
    alarm_override,
    provider_session,
)
from tests.harness import run_program, stack_config, with_test_secrets

DEPLOY, REASON = "gantry-deploy-deploy", "INC-42: fix for the 5xx alarm"
ROLE = "arn:aws:iam::123456789012:role/gantry-deploy"


# --- pure rules ------------------------------------------------------------------------------------


def test_override_is_read_only_from_its_variable_and_only_for_codedeploy():
    assert alarm_override({}, blue_green=True) == (None, [])
    assert alarm_override({HOTFIX_VARIABLE: f"  {REASON} "}, blue_green=True) == (REASON, [])
    _, problems = alarm_override({HOTFIX_VARIABLE: REASON}, blue_green=False)
    assert problems and problems[0].startswith(f"{HOTFIX_VARIABLE}: applies only to deployment.strategy codedeploy")
    for bad in ("x", "a\nb", "y" * 201):
        _, problems = alarm_override({HOTFIX_VARIABLE: bad}, blue_green=True)
        assert problems and "3 to 200 printable characters" in problems[0], bad


def test_profile_and_one_assumed_role_reach_the_providers():
    config = {
        "aws:profile": "prod-admin",
        "aws:assumeRoles": json.dumps([{"roleArn": ROLE, "sessionName": "ci"}]),
    }
    session, problems = provider_session(config, needed=True)
    assert problems == [] and session == ProviderSession("prod-admin", ROLE, "ci")
    assert session.inputs() == {"aws_profile": "prod-admin", "aws_role_arn": ROLE, "aws_role_session_name": "ci"}
    assert ProviderSession.from_props(session.inputs()) == session
    assert provider_session({}, needed=True) == (ProviderSession(), [])


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"aws:accessKey": "AKIA..."}, "aws:accessKey:"),
        ({"aws:secretKey": "s"}, "aws:secretKey:"),
        ({"aws:token": "t"}, "aws:token:"),
        ({"aws:sharedCredentialsFiles": '["/tmp/c"]'}, "aws:sharedCredentialsFiles:"),
        ({"aws:assumeRoles": json.dumps([{"roleArn": ROLE, "externalId": "e"}])}, "aws:assumeRoles[0].externalId:"),
        ({"aws:assumeRoles": json.dumps([{"roleArn": ROLE}, {"roleArn": ROLE}])}, "aws:assumeRoles:"),
        ({"aws:assumeRoles": json.dumps([{"sessionName": "x"}])}, "aws:assumeRoles[0].roleArn:"),
        ({"aws:assumeRole": json.dumps({"roleArn": ROLE})}, "aws:assumeRole:"),
    ],
)
def test_what_cannot_reach_the_providers_is_refused_by_name(config, key):
    session, problems = provider_session(config, needed=True)
    assert session == ProviderSession() and len(problems) == 1 and problems[0].startswith(key)


def test_credentials_are_refused_only_where_a_dynamic_provider_runs():
    assert provider_session({"aws:accessKey": "AKIA..."}, needed=False) == (ProviderSession(), [])


def test_the_session_assumes_the_role_from_the_profile(monkeypatch):
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        plain = session_for("eu-west-1", ProviderSession())
        assumed = session_for("eu-west-1", ProviderSession(role_arn=ROLE, session_name="ci"))
        assert ":assumed-role/" not in plain.client("sts").get_caller_identity()["Arn"]
        assert assumed.client("sts").get_caller_identity()["Arn"].endswith(":assumed-role/gantry-deploy/ci")
        assert assumed.region_name == "eu-west-1"


# --- through the program ---------------------------------------------------------------------------


def prod(**aws) -> tuple[dict, list[str]]:
    config, secret_keys = with_test_secrets(stack_config("prod"))
    config.update(aws)
    return config, secret_keys


def test_prod_deploy_resource_carries_the_session_and_no_override_by_default(monkeypatch):
    monkeypatch.delenv(HOTFIX_VARIABLE, raising=False)
    roles = json.dumps([{"roleArn": ROLE, "sessionName": "ci"}])
    config, secret_keys = prod(**{"aws:profile": "prod-admin", "aws:assumeRoles": roles})
    config["gantry:deployment"] = {**config["gantry:deployment"], "otherDeployTimeoutMinutes": 20}
    graph = run_program("prod", config, secret_keys)
    deploy = graph.named(DEPLOY).inputs
    assert (deploy["aws_profile"], deploy["aws_role_arn"], deploy["aws_role_session_name"]) == (
        "prod-admin",
        ROLE,
        "ci",
    )
    assert deploy.get("alarm_override") is None and "overridden" not in deploy["description"]
    assert deploy["other_timeout_seconds"] == 20 * 60 and deploy["timeout_seconds"] == 45 * 60
    # The third dynamic provider, the promoted image's run tag, acts as the same principal.
    (tag,) = [r for r in graph.of_type("pulumi-python:dynamic:Resource") if r.name.endswith("-run-tag")]
    assert (tag.inputs["aws_profile"], tag.inputs["aws_role_arn"], tag.inputs["aws_role_session_name"]) == (
        "prod-admin",
        ROLE,
        "ci",
    )


def test_hotfix_variable_reaches_the_deployment_and_its_description(monkeypatch):
    monkeypatch.setenv(HOTFIX_VARIABLE, REASON)
    deploy = run_program("prod").named(DEPLOY).inputs
    assert deploy["alarm_override"] == REASON
    assert deploy["description"].endswith(f"[rollback alarms overridden: {REASON}]")


def test_hotfix_variable_on_a_rolling_stack_stops_the_program(monkeypatch):
    monkeypatch.setenv(HOTFIX_VARIABLE, REASON)
    with pytest.raises(pulumi.RunError, match=f"{HOTFIX_VARIABLE}: applies only to deployment.strategy codedeploy"):
        run_program("dev")


def test_credentials_in_config_stop_a_codedeploy_stack_by_name(monkeypatch):
    monkeypatch.delenv(HOTFIX_VARIABLE, raising=False)
    with pytest.raises(pulumi.RunError, match="aws:accessKey: is a credential"):
        run_program("prod", *prod(**{"aws:accessKey": "AKIAEXAMPLE"}))


def test_deploy_resource_waits_for_the_subnets_and_group_and_exports_its_deployment(monkeypatch):
    monkeypatch.delenv(HOTFIX_VARIABLE, raising=False)
    graph = run_program("prod")
    deploy = graph.named(DEPLOY)
    # The AppSpec carries the subnets and the task group, so the engine registers the deploy resource only
    # after both exist (and, on an AZ change, after the new subnets are created).
    assert deploy.depends_on(graph.named("gantry-network-vpc"))
    assert deploy.depends_on(graph.named("gantry-sg-task"))
    # The deployment id and console link are stack outputs (None under mocks: no deployment ran).
    assert {"deploymentId", "deploymentConsoleUrl"} <= set(graph.exports)


# --- the pre-traffic task's provider uses the same session ----------------------------------------


def dev_with_pre_traffic(**aws) -> tuple[dict, list[str]]:
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:deployment"] = {**(config.get("gantry:deployment") or {}), "preTraffic": {"command": ["migrate"]}}
    config.update(aws)
    return config, secret_keys


def test_pre_traffic_task_gets_the_stack_session_and_builds_its_client_from_it(monkeypatch):
    monkeypatch.delenv(HOTFIX_VARIABLE, raising=False)
    graph = run_program("dev", *dev_with_pre_traffic(**{"aws:profile": "dev-admin"}))
    inputs = graph.named("gantry-pre-traffic").inputs
    assert inputs["aws_profile"] == "dev-admin"

    class Reached(Exception):
        pass

    def session_for(region, session):
        raise Reached(region, session)

    monkeypatch.setattr(pre_traffic_provider, "session_for", session_for)
    props = {key: inputs.get(key) for key in (*pre_traffic_provider.INPUT_KEYS, "aws_profile")}
    props["task_definition_arn"] = "arn:aws:ecs:eu-west-1:210987654321:task-definition/gantry-dev:3"
    with pytest.raises(Reached) as reached:
        pre_traffic_provider.PreTrafficTaskProvider().create(props)
    assert reached.value.args == (inputs["region"], ProviderSession(profile="dev-admin"))
    # A profile change alone runs nothing again.
    assert not pre_traffic_provider.run_needed(props, {**props, "aws_profile": "other"})


def test_credentials_in_config_are_refused_only_where_a_dynamic_provider_runs(monkeypatch):
    monkeypatch.delenv(HOTFIX_VARIABLE, raising=False)
    with pytest.raises(pulumi.RunError, match="aws:secretKey: is a credential"):
        run_program("dev", *dev_with_pre_traffic(**{"aws:secretKey": "x"}))
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["aws:secretKey"] = "x"
    assert run_program("dev", config, secret_keys).of_type("aws:ecs/service:Service")

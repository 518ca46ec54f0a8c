"""The `deployment` section's rules: a bad canary must be caught inside its interval, a deploy must fit
its timeout, codedeploy-only fields are refused under rolling, the eval's tenant must have a key, and
the live deployment controller is read from the stack's own last outputs."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import ConfigError, load_settings
from components.stack_config import controller_from_outputs
from tests.harness import REGION, stack_config, with_test_secrets


def gantry_config(stack: str) -> tuple[dict[str, Any], list[str]]:
    config, secret_keys = with_test_secrets(stack_config(stack))
    return {k: v for k, v in config.items() if k.startswith("gantry:")}, secret_keys


def problems(deployment: dict[str, Any], stack: str = "prod", changes: dict[str, Any] | None = None) -> str:
    config, secret_keys = gantry_config(stack)
    config["gantry:deployment"] = deployment
    config.update(changes or {})
    try:
        load_settings(config, region=REGION, secret_keys=secret_keys)
    except ConfigError as error:
        return str(error)
    return ""


def test_the_committed_prod_canary_is_valid_and_uses_the_predefined_config():
    assert problems(stack_config("prod")["gantry:deployment"]) == ""
    config, secret_keys = gantry_config("prod")
    deployment = load_settings(config, region=REGION, secret_keys=secret_keys).deployment
    assert (deployment.shift.kind, deployment.shift.percent, deployment.shift.interval_minutes) == ("canary", 10, 5)
    # 3 green start + 1 hook + 5 canary interval + 5 blue wait; 3 + 1 + (2 x 1 min + 1 min delay) + 1 reroute.
    assert deployment.expected_deploy_minutes == 14 and deployment.bad_canary_minutes == 8


def test_a_canary_shorter_than_the_alarms_detection_is_refused():
    message = problems(
        {"strategy": "codedeploy", "traffic": "canary", "trafficPercent": 10, "trafficIntervalMinutes": 3}
    )
    assert "gantry:deployment.trafficIntervalMinutes" in message and "alarms need 3 min to fire" in message
    assert "gantry:deployment.trafficIntervalMinutes" in problems(
        {"strategy": "codedeploy", "traffic": "linear", "trafficPercent": 20, "trafficIntervalMinutes": 2}
    )
    # The predefined 10 %-every-3-minutes would be caught only after its next step; the default is 5.
    assert "trafficIntervalMinutes" in problems(
        {"strategy": "codedeploy", "traffic": "linear", "trafficIntervalMinutes": 3}
    )
    assert problems({"strategy": "codedeploy", "traffic": "linear"}) == ""


def test_a_timeout_shorter_than_a_successful_deploy_is_refused():
    message = problems({"strategy": "codedeploy", "deployTimeoutMinutes": 14})
    assert "gantry:deployment.deployTimeoutMinutes" in message and "about 14 min" in message
    assert problems({"strategy": "codedeploy", "deployTimeoutMinutes": 15}) == ""


def test_all_at_once_takes_no_percent_and_thresholds_must_be_consistent():
    assert "gantry:deployment.traffic" in problems(
        {"strategy": "codedeploy", "traffic": "all-at-once", "trafficPercent": 10}
    )
    assert problems({"strategy": "codedeploy", "traffic": "all-at-once"}) == ""
    assert "gantry:deployment.evalMinCosine" in problems(
        {"strategy": "codedeploy", "evalMinCosine": 0.99, "evalMeanCosine": 0.98}
    )
    assert "must be between 0.0 and 1.0" in problems({"strategy": "codedeploy", "evalMinTop1": 1.5})
    assert "gantry:deployment.strategy" in problems({"strategy": "blue-green"})


def test_codedeploy_only_fields_are_refused_under_rolling():
    message = problems({"strategy": "rolling", "trafficIntervalMinutes": 10, "testListenerPort": 9100}, stack="dev")
    assert "gantry:deployment.trafficIntervalMinutes: applies only to strategy codedeploy" in message
    assert "gantry:deployment.testListenerPort: applies only to strategy codedeploy" in message
    assert problems({"strategy": "rolling"}, stack="dev") == ""


def test_the_eval_tenant_needs_its_own_key_in_api_keys():
    message = problems(
        stack_config("prod")["gantry:deployment"],
        changes={"gantry:secretValues": {"API_KEYS": '{"a": "k-test-only-4f9c2e"}'}},
    )
    assert "gantry:secretValues.API_KEYS: has no key for tenant 'gantry-eval'" in message
    assert "k-test-only" not in message


def test_the_live_controller_comes_from_the_stacks_last_outputs():
    assert controller_from_outputs({}) is None  # a new stack: any strategy
    assert controller_from_outputs({"serviceName": "gantry-service-1"}) == "ECS"  # before the output existed
    assert controller_from_outputs({"serviceName": "s", "deploymentController": "CODE_DEPLOY"}) == "CODE_DEPLOY"


@pytest.mark.parametrize("live", ["ECS", "CODE_DEPLOY"])
def test_a_switch_is_refused_unless_acknowledged(live):
    from components.settings import AwsFacts

    config, secret_keys = gantry_config("prod")
    target = "rolling" if live == "CODE_DEPLOY" else "codedeploy"
    config["gantry:deployment"] = {"strategy": target}
    facts = AwsFacts(live_deployment_controller=live)
    with pytest.raises(ConfigError, match="would replace the service"):
        load_settings(config, region=REGION, secret_keys=secret_keys, aws_facts=facts)
    config["gantry:deployment"] = {"strategy": target, "replaceServiceOnStrategyChange": True}
    assert load_settings(config, region=REGION, secret_keys=secret_keys, aws_facts=facts).deployment.strategy == target


def test_the_traffic_shape_defaults_are_the_fields_own():
    # 10 % then the rest after 5 minutes: CodeDeploy's predefined ECSCanary10Percent5Minutes; linear steps
    # by the same amounts (a custom config: the predefined 1- and 3-minute steps are faster than the alarms).
    config, secret_keys = gantry_config("dev")
    for traffic, kind in (({}, "canary"), ({"traffic": "linear"}, "linear")):
        config["gantry:deployment"] = {"strategy": "codedeploy", **traffic}
        shift = load_settings(config, region=REGION, secret_keys=secret_keys).deployment.shift
        assert (shift.kind, shift.percent, shift.interval_minutes) == (kind, 10, 5)
    # All at once moves everything: the stepped shapes' defaults do not apply to it.
    config["gantry:deployment"] = {"strategy": "codedeploy", "traffic": "all-at-once"}
    shift = load_settings(config, region=REGION, secret_keys=secret_keys).deployment.shift
    assert (shift.kind, shift.percent, shift.interval_minutes) == ("all-at-once", None, None)
    assert "gantry:deployment.traffic" in problems(
        {"strategy": "codedeploy", "traffic": "all-at-once", "trafficIntervalMinutes": 5}
    )

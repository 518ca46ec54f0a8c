"""Traffic shifting: predefined configs where they match, exact custom-config arguments, the duration formulas."""

from __future__ import annotations

import inspect
from typing import Any

import pulumi_aws as aws
import pytest

from components.settings.traffic import (
    PREDEFINED,
    TrafficError,
    TrafficShift,
    bad_canary_rollback_minutes,
    deploy_minutes,
    deployment_config,
    first_exposure_percent,
    shift_minutes,
)


def custom(shift: TrafficShift, name: str = "x") -> dict[str, Any]:
    """The custom config's arguments (failing the test when a predefined config was chosen instead)."""
    args = deployment_config(shift, name).custom_args
    assert args is not None
    return args


@pytest.mark.parametrize(
    ("shift", "name"),
    [
        (TrafficShift("all-at-once"), "CodeDeployDefault.ECSAllAtOnce"),
        (TrafficShift("canary", 10, 5), "CodeDeployDefault.ECSCanary10Percent5Minutes"),
        (TrafficShift("canary", 10, 15), "CodeDeployDefault.ECSCanary10Percent15Minutes"),
        (TrafficShift("linear", 10, 1), "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"),
        (TrafficShift("linear", 10, 3), "CodeDeployDefault.ECSLinear10PercentEvery3Minutes"),
    ],
)
def test_predefined_configs_are_used_where_they_match(shift, name):
    choice = deployment_config(shift, "gantry-prod-traffic")
    assert (choice.predefined_name, choice.custom_args) == (name, None)


def test_predefined_table_holds_exactly_the_five_ecs_configs():
    assert len(PREDEFINED) == 5 and all(n.startswith("CodeDeployDefault.ECS") for n in PREDEFINED.values())


def test_custom_canary_and_linear_arguments():
    canary = custom(TrafficShift("canary", 20, 10), "gantry-prod-traffic")
    assert canary == {
        "deployment_config_name": "gantry-prod-traffic",
        "compute_platform": "ECS",
        "traffic_routing_config": {"type": "TimeBasedCanary", "time_based_canary": {"interval": 10, "percentage": 20}},
    }
    linear = custom(TrafficShift("linear", 25, 2), "gantry-prod-traffic")
    assert linear["traffic_routing_config"] == {
        "type": "TimeBasedLinear",
        "time_based_linear": {"interval": 2, "percentage": 25},
    }


def test_custom_arguments_are_the_pinned_providers_argument_names():
    def params(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self", "__self__"}

    args = custom(TrafficShift("canary", 20, 10))
    assert set(args) <= params(aws.codedeploy.DeploymentConfigArgs)
    routing = args["traffic_routing_config"]
    assert set(routing) <= params(aws.codedeploy.DeploymentConfigTrafficRoutingConfigArgs)
    assert set(routing["time_based_canary"]) == params(
        aws.codedeploy.DeploymentConfigTrafficRoutingConfigTimeBasedCanaryArgs
    )
    linear = custom(TrafficShift("linear", 20, 10))["traffic_routing_config"]
    assert set(linear["time_based_linear"]) == params(
        aws.codedeploy.DeploymentConfigTrafficRoutingConfigTimeBasedLinearArgs
    )


@pytest.mark.parametrize("name", ["", "CodeDeployDefault.Mine", "has space", "x" * 101])
def test_custom_name_is_validated(name):
    with pytest.raises(TrafficError, match="custom deployment config name"):
        deployment_config(TrafficShift("canary", 20, 10), name)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "blue-green"}, "kind"),
        ({"kind": "canary", "percent": 10}, "interval_minutes"),
        ({"kind": "canary", "percent": 0, "interval_minutes": 5}, "percent"),
        ({"kind": "linear", "percent": 100, "interval_minutes": 5}, "percent"),
        ({"kind": "linear", "percent": 10, "interval_minutes": 0}, "interval_minutes"),
        ({"kind": "linear", "percent": 10, "interval_minutes": 1441}, "interval_minutes"),
        ({"kind": "all-at-once", "percent": 10}, "no percent"),
    ],
)
def test_bad_shift_is_refused(kwargs, needle):
    with pytest.raises(TrafficError, match=needle):
        TrafficShift(**kwargs)


def test_shift_minutes_formula():
    assert shift_minutes(TrafficShift("all-at-once")) == 0
    assert shift_minutes(TrafficShift("canary", 10, 5)) == 5
    # Ten increments of 10 % at t = 0, 1, ..., 9 minutes.
    assert shift_minutes(TrafficShift("linear", 10, 1)) == 9
    # ceil(100 / 30) = 4 increments (30, 60, 90, 100 %) three intervals apart.
    assert shift_minutes(TrafficShift("linear", 30, 2)) == 6


def test_deploy_minutes_adds_every_phase():
    shift = TrafficShift("canary", 10, 5)
    assert deploy_minutes(shift, green_ready_minutes=3, hook_minutes=1, blue_wait_minutes=5) == 14
    with pytest.raises(TrafficError, match="blue_wait_minutes"):
        deploy_minutes(shift, green_ready_minutes=3, hook_minutes=1, blue_wait_minutes=-1)


def test_bad_canary_rollback_is_bounded_by_the_canary_interval():
    shift = TrafficShift("canary", 10, 5)
    assert bad_canary_rollback_minutes(shift, green_ready_minutes=3, hook_minutes=1, detection_minutes=3) == 8
    assert first_exposure_percent(shift) == 10
    with pytest.raises(TrafficError, match="interval is 5 min"):
        bad_canary_rollback_minutes(shift, green_ready_minutes=3, hook_minutes=1, detection_minutes=5)
    assert first_exposure_percent(TrafficShift("all-at-once")) == 100

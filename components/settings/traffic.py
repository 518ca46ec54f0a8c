"""How CodeDeploy moves production traffic from blue to green, and how long that takes.

A `TrafficShift` (canary, linear or all-at-once) maps to one of CodeDeploy's predefined ECS deployment
configurations when one matches exactly (AWS CodeDeploy User Guide, "Working with deployment
configurations", https://docs.aws.amazon.com/codedeploy/latest/userguide/deployment-configurations.html),
and otherwise to the arguments of a custom `aws.codedeploy.DeploymentConfig` (pulumi-aws 7.51:
`compute_platform`, `traffic_routing_config.type` TimeBasedCanary | TimeBasedLinear | AllAtOnce with
`time_based_canary` / `time_based_linear` {`interval` minutes, `percentage`}). The duration formulas
feed the README and the check that rollback alarms can fire before a bad canary gets all traffic.
Security stance: nothing here touches AWS; a shift that the alarms could not stop in time is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["canary", "linear", "all-at-once"]

# CodeDeploy's predefined ECS configurations, keyed by (kind, percent, interval minutes).
PREDEFINED: dict[tuple[str, int | None, int | None], str] = {
    ("all-at-once", None, None): "CodeDeployDefault.ECSAllAtOnce",
    ("canary", 10, 5): "CodeDeployDefault.ECSCanary10Percent5Minutes",
    ("canary", 10, 15): "CodeDeployDefault.ECSCanary10Percent15Minutes",
    ("linear", 10, 1): "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
    ("linear", 10, 3): "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
}
_ROUTING_TYPE = {"canary": "TimeBasedCanary", "linear": "TimeBasedLinear", "all-at-once": "AllAtOnce"}
# CodeDeploy deployment config names: 1-100 characters; `CodeDeployDefault.` is reserved for AWS.
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9._+=,@-]{1,100}$")


class TrafficError(ValueError):
    """A traffic-shifting setting is invalid; the message names it and says what is allowed."""


@dataclass(frozen=True)
class TrafficShift:
    """How production traffic moves to green."""

    kind: Kind
    """canary: `percent` first, the rest after `interval_minutes`; linear: `percent` more every
    `interval_minutes`; all-at-once: everything as soon as green is healthy and the hooks passed."""
    percent: int | None = None
    """Share of traffic per step, 1-99; required for canary and linear, absent for all-at-once."""
    interval_minutes: int | None = None
    """Minutes between steps, 1-1440; required for canary and linear, absent for all-at-once. The day-long
    cap is gantry's: a longer bake is a release approval, which `pulumi up` should not sit through."""

    def __post_init__(self) -> None:
        if self.kind not in _ROUTING_TYPE:
            raise TrafficError(f"traffic kind={self.kind!r} is invalid; allowed: canary, linear, all-at-once")
        if self.kind == "all-at-once":
            if self.percent is not None or self.interval_minutes is not None:
                raise TrafficError("traffic kind=all-at-once takes no percent or interval_minutes")
            return
        for name, value, low, high in (
            ("percent", self.percent, 1, 99),
            ("interval_minutes", self.interval_minutes, 1, 1440),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise TrafficError(
                    f"traffic {self.kind} {name}={value!r} is invalid; allowed: an integer from {low} to {high}"
                )

    @property
    def step_percent(self) -> int:
        """`percent` of a canary or linear shift (all-at-once moves 100 in one step)."""
        return 100 if self.percent is None else self.percent

    @property
    def interval(self) -> int:
        """`interval_minutes` of a canary or linear shift (0 for all-at-once)."""
        return 0 if self.interval_minutes is None else self.interval_minutes

    @property
    def steps(self) -> int:
        """Traffic increments: 1 for all-at-once, 2 for a canary, ceil(100 / percent) for linear."""
        if self.kind == "all-at-once":
            return 1
        if self.kind == "canary":
            return 2
        return math.ceil(100 / self.step_percent)


@dataclass(frozen=True)
class DeploymentConfigChoice:
    """Either a predefined config name, or the arguments of a custom `aws.codedeploy.DeploymentConfig`."""

    predefined_name: str | None
    custom_args: dict[str, Any] | None


def deployment_config(shift: TrafficShift, custom_name: str) -> DeploymentConfigChoice:
    """The predefined config when one matches exactly; else `custom_args` named `custom_name`.

    `custom_name` must be stable (a stack-derived prefix): a config's routing cannot be updated in place,
    so a new shape means a new config resource, and the deployment group is updated to reference it.
    """
    name = PREDEFINED.get((shift.kind, shift.percent, shift.interval_minutes))
    if name is not None:
        return DeploymentConfigChoice(predefined_name=name, custom_args=None)
    if not _CONFIG_NAME.match(custom_name) or custom_name.startswith("CodeDeployDefault."):
        raise TrafficError(
            f"custom deployment config name {custom_name!r} is invalid; allowed: 1-100 of A-Z a-z 0-9 . _ + = , @ -, "
            "not starting with CodeDeployDefault."
        )
    routing: dict[str, Any] = {"type": _ROUTING_TYPE[shift.kind]}
    if shift.kind == "canary":
        routing["time_based_canary"] = {"interval": shift.interval_minutes, "percentage": shift.percent}
    elif shift.kind == "linear":
        routing["time_based_linear"] = {"interval": shift.interval_minutes, "percentage": shift.percent}
    return DeploymentConfigChoice(
        predefined_name=None,
        custom_args={
            "deployment_config_name": custom_name,
            "compute_platform": "ECS",
            "traffic_routing_config": routing,
        },
    )


def shift_minutes(shift: TrafficShift) -> int:
    """Minutes from the first production traffic on green to 100 %.

    Each increment happens at the start of its interval, so the last of `steps` increments comes
    (steps - 1) intervals after the first: canary = interval, linear = (ceil(100 / p) - 1) * interval,
    all-at-once = 0.
    """
    if shift.kind == "all-at-once":
        return 0
    return (shift.steps - 1) * shift.interval


def deploy_minutes(
    shift: TrafficShift, *, green_ready_minutes: float, hook_minutes: float, blue_wait_minutes: int
) -> float:
    """Expected wall time of one successful deploy, which is also how long `pulumi up` waits for it.

    = green_ready (tasks start and pass health checks) + hook (the AfterAllowTestTraffic check)
      + shift_minutes + blue_wait (blue is kept this long after 100 %, and the deployment stays
      In progress, so `pulumi up` waits through it too).
    """
    for name, value in (
        ("green_ready_minutes", green_ready_minutes),
        ("hook_minutes", hook_minutes),
        ("blue_wait_minutes", blue_wait_minutes),
    ):
        if value < 0:
            raise TrafficError(f"{name}={value!r} is invalid; allowed: a number >= 0")
    return green_ready_minutes + hook_minutes + shift_minutes(shift) + blue_wait_minutes


def first_exposure_percent(shift: TrafficShift) -> int:
    """The share of production traffic green serves before the first chance to roll back."""
    return shift.step_percent


def bad_canary_rollback_minutes(
    shift: TrafficShift,
    *,
    green_ready_minutes: float,
    hook_minutes: float,
    detection_minutes: float,
    reroute_minutes: float = 1.0,
) -> float:
    """Minutes from the deploy's start until a green that fails the alarms is out of production again.

    = green_ready + hook + detection (alarm period x datapoints to alarm, plus metric delivery delay;
      see alarms.detection_seconds) + reroute (CodeDeploy moves the listeners back to blue; about a minute).
    Raises when detection is not shorter than the first interval: the alarms would fire only after the
    second increment, i.e. after more than `first_exposure_percent` of users saw the bad version.
    """
    if shift.kind != "all-at-once" and detection_minutes >= shift.interval:
        raise TrafficError(
            f"alarms need {detection_minutes:g} min to fire but the {shift.kind} interval is "
            f"{shift.interval_minutes} min: "
            "a bad release would get more traffic before it is rolled back; lengthen the interval or shorten the "
            "alarm period / datapoints"
        )
    return green_ready_minutes + hook_minutes + detection_minutes + reroute_minutes

"""Settings of `deployment`: how a new release reaches users (ECS rolling, or CodeDeploy blue/green).

`rolling` keeps ECS's own deployment with the circuit breaker and the rollback alarms; `codedeploy`
starts green beside blue, validates it through an internal test listener (the eval gate for the
sample worker, a smoke check otherwise), shifts production traffic as a canary, linear or all at once,
and rolls back when an alarm fires. Cross-field rules: the traffic shape must let the alarms fire
inside the first interval (`traffic.bad_canary_rollback_minutes`), the deploy timeout must outlast
a successful deploy, the codedeploy-only fields are refused under `rolling`, and a live stack's
deployment controller (immutable in ECS) is never switched by surprise. Security stance: the test
listener is never reachable from the internet, and the eval's API key is read by the hook from
Secrets Manager, never placed in configuration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from components.settings.base import Section, Token, Where, between
from components.settings.timing import AlarmTiming, detection_seconds
from components.settings.traffic import (
    TrafficError,
    TrafficShift,
    bad_canary_rollback_minutes,
    deploy_minutes,
)

CONTROLLERS = {"rolling": "ECS", "codedeploy": "CODE_DEPLOY"}
# Estimates for the duration check and the README: Fargate tasks pull, start and pass two health
# checks in about 3 minutes; the eval embeds the golden set in well under a minute.
GREEN_READY_MINUTES = 3.0
HOOK_MINUTES = 1.0
# Fields that mean something only to CodeDeploy; a rolling stack setting one has a mistake in it.
CODEDEPLOY_ONLY = (
    "traffic",
    "traffic_percent",
    "traffic_interval_minutes",
    "blue_termination_wait_minutes",
    "deploy_timeout_minutes",
    "other_deploy_timeout_minutes",
    "test_listener_port",
    "eval_min_top1",
    "eval_min_cosine",
    "eval_mean_cosine",
    "eval_tenant",
    "smoke_path",
    "smoke_method",
    "smoke_body",
    "smoke_expect_status",
)


def _tenant(value: str) -> str:
    # The sample worker's own rule for tenant names (app/worker/config.py).
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        raise ValueError("must be 1-64 of A-Z a-z 0-9 . _ - (the sample worker's tenant names)")
    return value


def _path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError("must be an absolute URL path such as /v1/ping (no spaces)")
    return value


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


# "Timeout: 900 seconds (15 minutes)" is Lambda's hard limit (Lambda quotas). With codedeploy the one-off task
# runs inside the hook function, whose check keeps its 300 s (components.blue_green.component).
LAMBDA_MAX_TIMEOUT_SECONDS = 900
PRE_TRAFFIC_MAX_IN_HOOK_SECONDS = 600


def _argument(value: str) -> str:
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty argument without NUL characters")
    return value


class PreTrafficSettings(Section):
    command: tuple[Annotated[str, AfterValidator(_argument)], ...] = Field(min_length=1, max_length=64)
    """Required: the one-off task's command in exec form (["python", "-m", "app.migrate"]), run in the new
    revision's container instead of its own command; no shell is involved, so nothing is re-split or expanded."""
    timeout_seconds: int = between(600, 60, 3600, "a one-off task gets 1 minute to 1 hour")
    """A task still running after this long is stopped and the deploy fails. With codedeploy it
    runs inside the hook function (Lambda allows 15 minutes, the check keeps 5), so at most 10 minutes there."""


class DeploymentSettings(Section):
    strategy: Literal["rolling", "codedeploy"] = "rolling"
    """rolling: ECS replaces tasks in place, rolled back by the circuit breaker and the 5xx,
    latency and health alarms. codedeploy: blue/green through CodeDeploy, green validated before any
    production traffic and shifted per `traffic`. A live stack cannot switch (see replaceServiceOnStrategyChange)."""
    traffic: Literal["canary", "linear", "all-at-once"] = "canary"
    """canary: `trafficPercent` of production first, the rest after `trafficIntervalMinutes`.
    linear: that share more every interval; all-at-once: everything once green passed its check."""
    traffic_percent: int = between(10, 1, 99, "a step moves part of production, never none or all of it")
    """The share of production each canary or linear step moves; as a canary, CodeDeploy's predefined
    ECSCanary10Percent5Minutes together with the interval. Refused for all-at-once, which moves everything."""
    traffic_interval_minutes: int = between(5, 1, 1440, "a longer bake is a release approval, not a deploy")
    """Minutes between steps. It must be longer than the alarms need to fire, so a bad canary is rolled back
    before it gets more traffic: the predefined linear steps (1 and 3 minutes) are not, so linear gets a
    custom config at this interval. Refused for all-at-once."""
    blue_termination_wait_minutes: int = between(5, 0, 2880, "CodeDeploy keeps blue for at most 2 days")
    """Blue keeps running this long after 100 % is on green, for an instant manual rollback;
    `pulumi up` waits through it too (the deployment is in progress until blue is gone)."""
    deploy_timeout_minutes: int = between(60, 1, 360, "the deploy resource allows 1 minute to 6 hours")
    """`pulumi up` stops the deployment with rollback and fails after this long; it must
    exceed a successful deploy's duration (green start + hook + shift + blue wait)."""
    other_deploy_timeout_minutes: int = between(60, 1, 360, "the deploy resource allows 1 minute to 6 hours")
    """How long `pulumi up` waits for a deployment it did not start (another `up`, a console
    redeploy, one an interrupted `up` left) before failing without touching it; counted apart from
    deployTimeoutMinutes, which starts when this run's own deployment does."""
    test_listener_port: int = between(9000, 1024, 65535, "ports below 1024 are the public listeners' range")
    """The ALB listener that reaches green before production does; only the hook's
    security group may connect to it, never the internet."""
    eval_min_top1: Fraction = 0.95
    """Share of golden retrieval cases whose positive must rank first on green (eval
    check, sample worker only; the same threshold as `python -m worker.eval`)."""
    eval_min_cosine: Fraction = 0.97
    """Lowest cosine any green embedding may have to its fp32 reference."""
    eval_mean_cosine: Fraction = 0.985
    """Lowest mean cosine of green's embeddings to the fp32 references."""
    eval_tenant: Annotated[Token, AfterValidator(_tenant)] = "gantry-eval"
    """The API_KEYS tenant whose key the eval hook sends; give it its own key, so
    its traffic is attributable and revocable."""
    smoke_path: Annotated[Token, AfterValidator(_path)] | None = None
    """Unset, the smoke check (a team's own image) requests only the health path; set a path for
    one real request as well."""
    smoke_method: Literal["GET", "POST"] = "GET"
    """The smoke request's method: POST to send `smokeBody`."""
    smoke_body: str | None = None
    """The smoke request's JSON body (POST); unset, the request has none."""
    smoke_expect_status: int = between(200, 100, 599, "an HTTP status code")
    """The status the smoke request must answer: anything else fails the deploy before traffic moves."""
    pre_traffic: PreTrafficSettings | None = None
    """Unset, nothing runs. A command (database migration, cache warm-up, model check) run once as a Fargate task of
    the new task definition before production traffic reaches it (rolling: before the service update;
    codedeploy: in the hook, before the eval and the traffic shift); a non-zero exit fails the deploy."""
    replace_service_on_strategy_change: bool = False
    """Switching a live stack's strategy changes the ECS deployment controller, which ECS
    cannot update in place, so `pulumi up` would replace the service; on acknowledges that one
    replacing `up` (turn it off again afterwards)."""

    @property
    def controller(self) -> str:
        """The ECS deployment controller this strategy needs: ECS or CODE_DEPLOY."""
        return CONTROLLERS[self.strategy]

    @property
    def blue_green(self) -> bool:
        return self.strategy == "codedeploy"

    @property
    def target_group_roles(self) -> tuple[str, ...]:
        """The load balancer's target groups: one for rolling, the swapping pair for blue/green."""
        return ("blue", "green") if self.blue_green else ("main",)

    @property
    def production_role(self) -> str:
        """The target group the service is created behind (blue/green: blue, which serves first)."""
        return self.target_group_roles[0]

    @property
    def test_listener(self) -> int | None:
        """The test listener's port, or None for rolling (which has no test traffic)."""
        return self.test_listener_port if self.blue_green else None

    @property
    def shift(self) -> TrafficShift:
        """The traffic shape. All-at-once takes a percent or interval only when the stack file sets one
        (which TrafficShift then refuses): their defaults describe the stepped shapes."""
        if self.traffic == "all-at-once":
            chosen = self.model_fields_set
            return TrafficShift(
                self.traffic,
                self.traffic_percent if "traffic_percent" in chosen else None,
                self.traffic_interval_minutes if "traffic_interval_minutes" in chosen else None,
            )
        return TrafficShift(self.traffic, self.traffic_percent, self.traffic_interval_minutes)

    @property
    def detection_minutes(self) -> float:
        return detection_seconds(AlarmTiming()) / 60

    @property
    def expected_deploy_minutes(self) -> float:
        return deploy_minutes(
            self.shift,
            green_ready_minutes=GREEN_READY_MINUTES,
            hook_minutes=HOOK_MINUTES,
            blue_wait_minutes=self.blue_termination_wait_minutes,
        )

    @property
    def bad_canary_minutes(self) -> float:
        return bad_canary_rollback_minutes(
            self.shift,
            green_ready_minutes=GREEN_READY_MINUTES,
            hook_minutes=HOOK_MINUTES,
            detection_minutes=self.detection_minutes,
        )

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        pre = self.pre_traffic
        if self.blue_green and pre is not None and pre.timeout_seconds > PRE_TRAFFIC_MAX_IN_HOOK_SECONDS:
            yield (
                "preTraffic.timeoutSeconds",
                f"{pre.timeout_seconds} is too long for strategy codedeploy: the task runs inside the hook function, "
                f"which Lambda stops after {LAMBDA_MAX_TIMEOUT_SECONDS} s and whose check needs 300 s of it; "
                f"allowed: up to {PRE_TRAFFIC_MAX_IN_HOOK_SECONDS}",
            )
        if not self.blue_green:
            for name in sorted(self.model_fields_set & set(CODEDEPLOY_ONLY)):
                alias = self.__class__.model_fields[name].alias or name
                yield alias, "applies only to strategy codedeploy; remove it or set strategy: codedeploy"
            return
        try:
            shift = self.shift
        except TrafficError as error:
            yield "traffic", str(error).replace("interval_minutes", "trafficIntervalMinutes")
            return
        try:
            bad_canary_rollback_minutes(
                shift,
                green_ready_minutes=GREEN_READY_MINUTES,
                hook_minutes=HOOK_MINUTES,
                detection_minutes=self.detection_minutes,
            )
        except TrafficError as error:
            yield "trafficIntervalMinutes", str(error)
        needed = math.ceil(self.expected_deploy_minutes)
        if self.deploy_timeout_minutes <= needed:
            yield (
                "deployTimeoutMinutes",
                (
                    f"{self.deploy_timeout_minutes} is not longer than a successful deploy takes (about {needed} min: "
                    f"{GREEN_READY_MINUTES:g} green start + {HOOK_MINUTES:g} hook + {shift.kind} shift + "
                    f"{self.blue_termination_wait_minutes} blue wait); every deploy would time out and roll back"
                ),
            )
        if self.eval_min_cosine > self.eval_mean_cosine:
            yield (
                "evalMinCosine",
                f"{self.eval_min_cosine} exceeds evalMeanCosine ({self.eval_mean_cosine}): "
                "the mean can never be below the minimum",
            )
        if self.smoke_body is not None and self.smoke_method != "POST":
            yield "smokeBody", "is sent only with smokeMethod: POST"
        if self.smoke_path is None and self.model_fields_set & {"smoke_method", "smoke_body", "smoke_expect_status"}:
            yield "smokePath", "is required when smokeMethod, smokeBody or smokeExpectStatus is set"

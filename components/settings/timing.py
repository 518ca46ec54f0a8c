"""CloudWatch alarms that stop a bad release: pure specs for `aws.cloudwatch.MetricAlarm`.

Per target group (the caller builds them for blue and for green, because the two swap roles on every
CodeDeploy deployment): the target 5xx rate (metric math over `HTTPCode_Target_5XX_Count` /
`RequestCount`), p99 `TargetResponseTime`, and `UnHealthyHostCount`, all in `AWS/ApplicationELB` with
the `TargetGroup` + `LoadBalancer` dimensions (the ARN suffixes). Plus the worker's own 5xx rate from
its EMF output (app/worker/metrics.py: namespace `METRICS_NAMESPACE`, default "Gantry/Worker",
metrics `Errors5xx` and `Requests`, dimension `Service` = `SERVICE_NAME`, default "gantry-worker").
The specs know nothing of CodeDeploy, so rolling deploys use the same alarms (ECS service deployment
`alarms`). Timing: with period P, M datapoints to alarm and about a minute of metric delivery delay, a
continuously bad release alarms after M x P + 60 s; the defaults (60 s, 2 of 3) give 3 minutes, inside
a 5-minute canary. Idle services do not alarm: missing data is not breaching and the rate expressions
read 0 below a minimum request count. Security stance: alarms only read metrics; they carry no actions
(the deployment group and ECS poll their state), so nothing here can be used to notify or act outside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ALB_NAMESPACE = "AWS/ApplicationELB"
# ALB metrics land in CloudWatch about a minute after the period they describe.
METRIC_DELAY_SECONDS = 60
WORKER_5XX_METRIC = "Errors5xx"
WORKER_REQUESTS_METRIC = "Requests"
WORKER_DIMENSION = "Service"

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ROLE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_DESCRIPTION_LIMIT = 1024


class AlarmError(ValueError):
    """An alarm setting is invalid; the message names it and says what is allowed."""


@dataclass(frozen=True)
class AlarmTiming:
    """How quickly an alarm reacts; shared by every rollback alarm so that one number bounds detection."""

    period_seconds: int = 60
    """Metric period. Default 60: ALB metrics have one-minute resolution, so nothing shorter is real.
    Allowed: a multiple of 60 up to 3600."""
    datapoints_to_alarm: int = 2
    """Breaching periods needed (M). Default 2: one bad minute can be a blip, two are a release."""
    evaluation_periods: int = 3
    """Periods looked at (N >= M). Default 3: M of N tolerates one good minute amid bad ones."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.period_seconds, bool)
            or not isinstance(self.period_seconds, int)
            or self.period_seconds % 60
            or not 60 <= self.period_seconds <= 3600
        ):
            raise AlarmError(
                f"alarm period_seconds={self.period_seconds!r} is invalid; allowed: a multiple of 60 from 60 to 3600"
            )
        if (
            not isinstance(self.datapoints_to_alarm, int)
            or not 1 <= self.datapoints_to_alarm <= self.evaluation_periods
        ):
            raise AlarmError(
                f"alarm datapoints_to_alarm={self.datapoints_to_alarm!r} is invalid; allowed: 1 to evaluation_periods "
                f"({self.evaluation_periods})"
            )
        if not isinstance(self.evaluation_periods, int) or not 1 <= self.evaluation_periods <= 10:
            raise AlarmError(f"alarm evaluation_periods={self.evaluation_periods!r} is invalid; allowed: 1 to 10")


def detection_seconds(timing: AlarmTiming) -> int:
    """Worst case from a release going bad (continuously) to its alarm firing: M x P + delivery delay."""
    return timing.datapoints_to_alarm * timing.period_seconds + METRIC_DELAY_SECONDS


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: `role` names the Pulumi resource (f"{component}-{role}"), `args` are its arguments."""

    role: str
    args: dict[str, Any]

    @property
    def name(self) -> str:
        return self.args["name"]


@dataclass(frozen=True)
class TargetGroupAlarmArgs:
    """The three ALB alarms of one target group."""

    prefix: str
    """Stable alarm-name prefix, e.g. "gantry-prod". Names are identity: the deployment group lists them."""
    role: str
    """"blue" or "green" (any lowercase word): which of the pair, part of every alarm name."""
    target_group_arn_suffix: Any
    """`TargetGroup` dimension: the target group's `arn_suffix` (a string or a Pulumi Output)."""
    load_balancer_arn_suffix: Any
    """`LoadBalancer` dimension: the load balancer's `arn_suffix` (a string or a Pulumi Output)."""
    max_5xx_percent: float = 5.0
    """Alarm above this share of target 5xx responses. Default 5 %: well above a healthy worker's ~0,
    low enough that a crashing model is caught at canary traffic."""
    min_requests: int = 10
    """Below this many requests in a period the rate reads 0. Default 10: one error in two requests
    is noise, not a rollback."""
    max_p99_seconds: float = 2.0
    """Alarm when p99 response time exceeds this. Default 2 s: several times an embeddings batch."""
    timing: AlarmTiming = field(default_factory=AlarmTiming)


@dataclass(frozen=True)
class WorkerAlarmArgs:
    """The worker's own 5xx-rate alarm, from the EMF metrics it writes every 10 s (even when idle)."""

    prefix: str
    """Stable alarm-name prefix, as for the target-group alarms."""
    namespace: str = "Gantry/Worker"
    """The worker's METRICS_NAMESPACE. Default: the worker's own default (app/worker/config.py)."""
    service_name: str = "gantry-worker"
    """The worker's SERVICE_NAME, the `Service` dimension. Default: the worker's own default."""
    max_5xx_percent: float = 5.0
    """Alarm above this share of 5xx answers (the worker counts 429/503 throttling apart). Default 5 %."""
    min_requests: int = 10
    """Below this many requests in a period the rate reads 0. Default 10, as for the ALB alarm."""
    timing: AlarmTiming = field(default_factory=AlarmTiming)


def _check_name_parts(prefix: str, role: str | None = None) -> None:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise AlarmError(
            f"alarm prefix={prefix!r} is invalid; allowed: 1-200 of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    if role is not None and (not isinstance(role, str) or not _ROLE.match(role)):
        raise AlarmError(
            f"alarm role={role!r} is invalid; allowed: 1-32 of a-z 0-9 - starting with a letter, e.g. blue"
        )


def _check_rate(max_percent: float, min_requests: int) -> None:
    if isinstance(max_percent, bool) or not isinstance(max_percent, (int, float)) or not 0 < max_percent < 100:
        raise AlarmError(f"alarm max_5xx_percent={max_percent!r} is invalid; allowed: a number between 0 and 100")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
        raise AlarmError(f"alarm min_requests={min_requests!r} is invalid; allowed: an integer >= 1")


def _timing_args(timing: AlarmTiming) -> dict[str, Any]:
    return {
        "evaluation_periods": timing.evaluation_periods,
        "datapoints_to_alarm": timing.datapoints_to_alarm,
        # No data means no traffic (an idle service, or the target group not in use between deploys).
        "treat_missing_data": "notBreaching",
    }


def _rate_queries(
    errors: dict[str, Any], requests: dict[str, Any], min_requests: int, label: str
) -> list[dict[str, Any]]:
    """Metric math: 100 x errors / requests, 0 below `min_requests`; FILL turns absent counts into 0
    (ALB publishes no HTTPCode_Target_5XX_Count datapoint for a minute without errors)."""
    return [
        {
            "id": "rate",
            "expression": f"IF(FILL(requests, 0) >= {min_requests}, 100 * FILL(errors, 0) / requests, 0)",
            "label": label,
            "return_data": True,
        },
        {"id": "errors", "metric": errors, "return_data": False},
        {"id": "requests", "metric": requests, "return_data": False},
    ]


def _describe(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _DESCRIPTION_LIMIT:
        raise AlarmError(
            f"alarm description is {len(text)} characters; CloudWatch allows {_DESCRIPTION_LIMIT}: "
            "shorten the names in it"
        )
    return text


def target_group_alarms(args: TargetGroupAlarmArgs) -> list[AlarmSpec]:
    """5xx rate, p99 latency and unhealthy hosts of one target group, named f"{prefix}-{role}-..."."""
    _check_name_parts(args.prefix, args.role)
    _check_rate(args.max_5xx_percent, args.min_requests)
    if (
        isinstance(args.max_p99_seconds, bool)
        or not isinstance(args.max_p99_seconds, (int, float))
        or not 0 < args.max_p99_seconds <= 60
    ):
        raise AlarmError(
            f"alarm max_p99_seconds={args.max_p99_seconds!r} is invalid; allowed: a number above 0 up to 60"
        )
    timing = args.timing
    dimensions = {"TargetGroup": args.target_group_arn_suffix, "LoadBalancer": args.load_balancer_arn_suffix}

    def alb(metric: str, stat: str) -> dict[str, Any]:
        return {
            "metric_name": metric,
            "namespace": ALB_NAMESPACE,
            "period": timing.period_seconds,
            "stat": stat,
            "dimensions": dimensions,
        }

    window = f"{timing.datapoints_to_alarm} of {timing.evaluation_periods} periods of {timing.period_seconds} s"
    rate_role = f"{args.role}-target-5xx-rate"
    latency_role = f"{args.role}-p99-latency"
    unhealthy_role = f"{args.role}-unhealthy-hosts"
    return [
        AlarmSpec(
            role=rate_role,
            args={
                "name": f"{args.prefix}-{rate_role}",
                "alarm_description": _describe(
                    f"""More than {args.max_5xx_percent:g} % of requests to the {args.role} target group got a 5xx from
                    the tasks ({window}, counted from {args.min_requests} requests a period). During a deploy this
                    rolls the deployment back. Check first: 1) the new tasks' logs for tracebacks or model-load
                    errors (CloudWatch Logs, the service's log group); 2) whether the 5xx are 503 queue-full
                    answers (worker Throttled metric): then the service is under-provisioned, not broken;
                    3) the task definition diff of the release (image, environment, secrets)."""
                ),
                "comparison_operator": "GreaterThanThreshold",
                "threshold": float(args.max_5xx_percent),
                "metric_queries": _rate_queries(
                    alb("HTTPCode_Target_5XX_Count", "Sum"),
                    alb("RequestCount", "Sum"),
                    args.min_requests,
                    "target 5xx %",
                ),
                **_timing_args(timing),
            },
        ),
        AlarmSpec(
            role=latency_role,
            args={
                "name": f"{args.prefix}-{latency_role}",
                "alarm_description": _describe(
                    f"""The {args.role} target group's p99 response time is above {args.max_p99_seconds:g} s
                    ({window}). During a deploy this rolls the deployment back. Check first: 1) the tasks'
                    CPU and the worker InFlight / QueuedInputs metrics: saturation means scale out, not roll
                    back; 2) the new release's batch settings (MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS,
                    INFERENCE_THREADS) against the task's vCPUs; 3) the worker Latency metric and request
                    sizes in the logs for unusually long inputs."""
                ),
                "comparison_operator": "GreaterThanThreshold",
                "threshold": float(args.max_p99_seconds),
                "metric_name": "TargetResponseTime",
                "namespace": ALB_NAMESPACE,
                "period": timing.period_seconds,
                "extended_statistic": "p99",
                "dimensions": dimensions,
                # Too few samples for a meaningful p99 (an idle minute, a 10 % canary at night): keep state.
                "evaluate_low_sample_count_percentiles": "ignore",
                **_timing_args(timing),
            },
        ),
        AlarmSpec(
            role=unhealthy_role,
            args={
                "name": f"{args.prefix}-{unhealthy_role}",
                "alarm_description": _describe(
                    f"""At least one target of the {args.role} target group failed its health checks ({window}).
                    During a deploy this rolls the deployment back. Check first: 1) the ECS service events and
                    stopped tasks' stop reasons (out of memory, essential container exited); 2) the task logs for
                    the /health state (it answers 503 until the model is loaded); 3) that the container port,
                    target group port and health-check port are one value and the task security group admits
                    the load balancer."""
                ),
                "comparison_operator": "GreaterThanOrEqualToThreshold",
                "threshold": 1.0,
                "metric_name": "UnHealthyHostCount",
                "namespace": ALB_NAMESPACE,
                "period": timing.period_seconds,
                "statistic": "Maximum",
                "dimensions": dimensions,
                **_timing_args(timing),
            },
        ),
    ]


def worker_5xx_alarm(args: WorkerAlarmArgs) -> AlarmSpec:
    """The worker's own 5xx rate (EMF `Errors5xx` / `Requests`, dimension `Service`), named PREFIX-worker-5xx-rate."""
    _check_name_parts(args.prefix)
    _check_rate(args.max_5xx_percent, args.min_requests)
    for name, value in (("namespace", args.namespace), ("service_name", args.service_name)):
        # The worker's own rule for these values (app/worker/config.py `_name`).
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", value):
            raise AlarmError(f"worker alarm {name}={value!r} is invalid; allowed: 1-255 of A-Z a-z 0-9 . _ / # : -")
    timing = args.timing
    dimensions = {WORKER_DIMENSION: args.service_name}

    def emf(metric: str) -> dict[str, Any]:
        return {
            "metric_name": metric,
            "namespace": args.namespace,
            "period": timing.period_seconds,
            "stat": "Sum",
            "dimensions": dimensions,
        }

    role = "worker-5xx-rate"
    window = f"{timing.datapoints_to_alarm} of {timing.evaluation_periods} periods of {timing.period_seconds} s"
    return AlarmSpec(
        role=role,
        args={
            "name": f"{args.prefix}-{role}",
            "alarm_description": _describe(
                f"""The worker service {args.service_name} answered more than {args.max_5xx_percent:g} % of requests
                with a 5xx by its own count ({args.namespace} Errors5xx / Requests, {window}, from
                {args.min_requests} requests a period). It covers blue and green together, so at canary traffic
                it fires only for a severe regression; the target-group alarms see green alone. Check first:
                1) the worker's error log events (event=request, status 5xx) for the failing path; 2) whether
                the model directory and manifest loaded (event=ready / failed at start); 3) recent changes to
                the task's secrets or environment."""
            ),
            "comparison_operator": "GreaterThanThreshold",
            "threshold": float(args.max_5xx_percent),
            "metric_queries": _rate_queries(
                emf(WORKER_5XX_METRIC), emf(WORKER_REQUESTS_METRIC), args.min_requests, "worker 5xx %"
            ),
            **_timing_args(timing),
        },
    )


def alarm_names(specs: Sequence[AlarmSpec]) -> list[str]:
    """The names to give a deployment group's `alarm_configuration` or an ECS service's deployment `alarms`;
    refuses duplicates, which would make two resources fight over one alarm."""
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AlarmError(f"duplicate alarm names {duplicates}; give each target group its own role (blue, green)")
    return names

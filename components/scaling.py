"""Target-tracking rules for an ECS service's task count, as pure specs (each has its own tests).

A rule names one signal and the value per task to hold it at; Application Auto Scaling adds tasks
when the signal is above target and removes them, slowly, when it is below. CPU catches compute-bound
load; requests per target catches load that waits on I/O. Security stance: nothing here grants
anything; scaling changes only the task count, inside the configured bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import AutoscalingSettings


@dataclass(frozen=True, kw_only=True)
class ScalingRule:
    name: str
    """Stable suffix of the policy's logical name (`<service>-scale-on-<name>`)."""
    target_value: float
    predefined_metric: str
    resource_label: pulumi.Input[str] | None = None
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int


def standard_rules(settings: AutoscalingSettings, request_count_label: pulumi.Input[str] | None) -> list[ScalingRule]:
    """CPU always; requests per target when the service sits behind a target group."""
    scale_in, scale_out = settings.scale_in_cooldown_seconds, settings.scale_out_cooldown_seconds
    rules = [
        ScalingRule(
            name="cpu",
            target_value=settings.cpu_target_percent,
            predefined_metric="ECSServiceAverageCPUUtilization",
            scale_in_cooldown_seconds=scale_in,
            scale_out_cooldown_seconds=scale_out,
        )
    ]
    if request_count_label is not None:
        rules.append(
            ScalingRule(
                name="requests",
                target_value=settings.requests_per_target,
                predefined_metric="ALBRequestCountPerTarget",
                resource_label=request_count_label,
                scale_in_cooldown_seconds=scale_in,
                scale_out_cooldown_seconds=scale_out,
            )
        )
    return rules


def target_tracking_configuration(
    rule: ScalingRule,
) -> aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgsDict:
    """The policy's `target_tracking_scaling_policy_configuration`."""
    metric: aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgsDict = {
        "predefined_metric_type": rule.predefined_metric
    }
    if rule.resource_label is not None:
        metric["resource_label"] = rule.resource_label
    return {
        "predefined_metric_specification": metric,
        "target_value": rule.target_value,
        "scale_in_cooldown": rule.scale_in_cooldown_seconds,
        "scale_out_cooldown": rule.scale_out_cooldown_seconds,
    }

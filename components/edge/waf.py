"""WebFirewall: the AWS WAF web ACL in front of the edge, its rules, and its logs.

One web ACL, scope CLOUDFRONT (created through the us-east-1 provider and attached by the distribution's
`web_acl_id`) or REGIONAL (associated with the public load balancer). Its rules, cheapest and most
certain first: AWS's IP reputation list, a rate limit per client IP (429), a body-size limit from the
`Content-Length` header (413), the known-bad-inputs and common rule sets. The rule documents are pure
functions (`web_acl_rules`, `content_length_above`) with their own tests. Security stance: every
threshold comes from config; `count` mode runs every rule without blocking for a first rollout; the
log group (named `aws-waf-logs-...`, as WAF requires) has retention, its resource policy admits only
log delivery for this account, and the `Authorization` header is redacted from every log record, so
the logs never hold an API key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.settings.edge import WafSettings

Scope = Literal["CLOUDFRONT", "REGIONAL"]

# The common rule set's SizeRestrictions_BODY blocks bodies over 8 KB ("Baseline rule groups",
# https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html): an
# embeddings batch is routinely larger. It counts instead, and `body-too-large` enforces the worker's
# own limit. WAF could not enforce that limit on the body itself: it sees only the first 8 KB (ALB) or
# 16 KB (CloudFront, up to 64 KB for a fee) of a body ("Considerations for managing body inspection",
# https://docs.aws.amazon.com/waf/latest/developerguide/web-acl-setting-body-inspection-limit.html), so
# the size rule reads the declared Content-Length, and the worker still bounds what it reads itself.
COUNTED_COMMON_RULES = ("SizeRestrictions_BODY",)
MANAGED_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesCommonRuleSet",
)
TOO_MANY_REQUESTS, TOO_LARGE = 429, 413


def content_length_above(limit: int) -> str:
    """A regex matching exactly the decimal integers greater than `limit` (leading zeros allowed), for
    a RegexMatchStatement on the content-length header: WAF compares strings, not numbers. Longer
    numbers are larger; among numbers as long as `limit`, one is larger when it first differs upward."""
    if limit < 0:
        raise ValueError("a body limit is a non-negative number of bytes")
    digits = str(limit)
    width = len(digits)
    branches = [f"[1-9][0-9]{{{width},}}"]
    for i, digit in enumerate(digits):
        if digit == "9":
            continue
        higher = "9" if digit == "8" else f"[{int(digit) + 1}-9]"
        rest = width - i - 1
        branches.append(digits[:i] + higher + (f"[0-9]{{{rest}}}" if rest else ""))
    return "^0*(" + "|".join(branches) + ")$"


@dataclass(frozen=True, kw_only=True)
class WafRuleSpec:
    """What the rules depend on."""

    settings: WafSettings
    max_body_bytes: int | None
    """The largest Content-Length allowed; None adds no size rule (a team's own image that sets none)."""
    metric_prefix: str
    """Prefixes every rule's CloudWatch metric name (gantry-<stack>)."""


def _visibility(metric: str) -> dict[str, Any]:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def web_acl_rules(spec: WafRuleSpec) -> list[dict[str, Any]]:
    """The web ACL's rules as pulumi_aws `WebAclRuleArgsDict`s, in priority order."""
    count = spec.settings.action == "count"

    def block(status: int) -> dict[str, Any]:
        return {"count": {}} if count else {"block": {"custom_response": {"response_code": status}}}

    def managed(name: str, counted: tuple[str, ...] = ()) -> dict[str, Any]:
        statement: dict[str, Any] = {"name": name, "vendor_name": "AWS"}
        if counted:
            statement["rule_action_overrides"] = [{"name": r, "action_to_use": {"count": {}}} for r in counted]
        return {
            "override_action": {"count": {}} if count else {"none": {}},
            "statement": {"managed_rule_group_statement": statement},
        }

    rules: list[dict[str, Any]] = [
        {"name": "ip-reputation", **managed(MANAGED_GROUPS[0])},
        {
            "name": "rate-per-ip",
            "action": block(TOO_MANY_REQUESTS),
            "statement": {
                "rate_based_statement": {
                    "limit": spec.settings.rate_limit_per_ip,
                    "aggregate_key_type": "IP",
                    "evaluation_window_sec": spec.settings.rate_window_seconds,
                }
            },
        },
    ]
    if spec.max_body_bytes is not None:
        rules.append(
            {
                "name": "body-too-large",
                "action": block(TOO_LARGE),
                "statement": {
                    "regex_match_statement": {
                        "regex_string": content_length_above(spec.max_body_bytes),
                        "field_to_match": {"single_header": {"name": "content-length"}},
                        "text_transformations": [{"priority": 0, "type": "NONE"}],
                    }
                },
            }
        )
    rules.append({"name": "known-bad-inputs", **managed(MANAGED_GROUPS[1])})
    rules.append({"name": "common", **managed(MANAGED_GROUPS[2], COUNTED_COMMON_RULES)})
    return [
        {**rule, "priority": priority, "visibility_config": _visibility(f"{spec.metric_prefix}-{rule['name']}")}
        for priority, rule in enumerate(rules)
    ]


def log_delivery_policy(env: AwsEnv, log_group_arn: str, region: str) -> dict[str, Any]:
    """The log group's resource policy: CloudWatch Logs delivery for this account may write it. Managed
    here because WAF otherwise edits one shared policy (AWSWAF-LOGS) per region, which fails once that
    policy outgrows its size limit (pulumi_aws WebAclLoggingConfiguration docs)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WafLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": env.account_id},
                    "ArnLike": {"aws:SourceArn": f"arn:{env.partition}:logs:{region}:{env.account_id}:*"},
                },
            }
        ],
    }


@dataclass(frozen=True, kw_only=True)
class WebFirewallArgs:
    env: AwsEnv
    settings: WafSettings
    scope: Scope
    """CLOUDFRONT (with the us-east-1 `provider`) or REGIONAL (the stack's region)."""
    max_body_bytes: int | None
    """See WafRuleSpec."""
    provider: aws.Provider | None = None
    """The us-east-1 provider for scope CLOUDFRONT, whose web ACLs and their logs live there."""


class WebFirewall(pulumi.ComponentResource):
    web_acl: aws.wafv2.WebAcl
    arn: pulumi.Output[str]
    log_group: aws.cloudwatch.LogGroup

    def __init__(self, name: str, args: WebFirewallArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:edge:WebFirewall", name, None, opts)
        if args.scope == "CLOUDFRONT" and args.provider is None:
            raise ValueError("a CLOUDFRONT web ACL needs the us-east-1 provider")
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        region = "us-east-1" if args.scope == "CLOUDFRONT" else args.env.region
        prefix = f"gantry-{args.env.stack}"

        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=prefix,
            scope=args.scope,
            description=f"gantry {args.env.stack}: managed rules, rate and size limits",
            default_action={"allow": {}},
            rules=cast(
                "list[aws.wafv2.WebAclRuleArgsDict]",
                web_acl_rules(
                    WafRuleSpec(settings=args.settings, max_body_bytes=args.max_body_bytes, metric_prefix=prefix)
                ),
            ),
            visibility_config=cast("aws.wafv2.WebAclVisibilityConfigArgsDict", _visibility(prefix)),
            opts=child,
        )
        # WAF accepts only destinations whose name starts with aws-waf-logs- (PutLoggingConfiguration).
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"aws-waf-logs-{prefix}",
            retention_in_days=args.settings.log_retention_days,
            opts=child,
        )
        policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-logs-policy",
            policy_name=f"{prefix}-waf-logs",
            policy_document=self.log_group.arn.apply(
                lambda arn: json.dumps(log_delivery_policy(args.env, arn, region))
            ),
            opts=child,
        )
        aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-logging",
            resource_arn=self.web_acl.arn,
            log_destination_configs=[self.log_group.arn],
            # Clients send their API key as a bearer token: never write it to a log.
            redacted_fields=[{"single_header": {"name": "authorization"}}],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[policy]),
        )
        self.arn = self.web_acl.arn
        self.register_outputs({"webAclArn": self.arn, "logGroupName": self.log_group.name})

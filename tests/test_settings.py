"""Pure tests of components/settings.py: config -> validated Settings, or one ConfigError listing it all.

The table of bad configs starts every row from the committed dev stack file (as the CLI would hand it
to __main__.py: only `gantry:*` keys, objects JSON-encoded, the region from `aws:region`, secret keys
marked) and makes one mutation. Each row asserts that exactly the expected key(s) are reported, and
that the line for the key shows the bad value and what is allowed, so a message that names the wrong
key, swallows the value or is drowned in follow-on noise fails here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from components.settings import (
    CONFIG_KEYS,
    ConfigError,
    SecretSpec,
    SecretValues,
    Settings,
    load_settings,
    partition_for_region,
    reference,
    required_interface_endpoints,
)
from components.settings.base import find_placeholders
from components.settings.workload import FARGATE_CPUS, fargate_memory_options
from tests.harness import ROOT, TEST_SECRET_VALUE, stack_config, with_test_secrets

ACCOUNT = "210987654321"
REGION = "eu-west-1"
SM_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry/upstream-token-Ab12Cd"
SSM_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/gantry/model-endpoint"
KMS_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALL_ENDPOINTS_BUT_SSM = ["ecr.api", "ecr.dkr", "logs", "secretsmanager"]
_UNSET = object()


# --------------------------------------------------------------------------------------------------
# Helpers: the config __main__.py would see, and small mutators for the table.
# --------------------------------------------------------------------------------------------------


def committed(stack: str) -> tuple[dict[str, Any], str, list[str]]:
    """A committed stack's full config (with the test secret value), its region and secret keys."""
    config, secret_keys = with_test_secrets(stack_config(stack))
    return copy.deepcopy(config), config["aws:region"], list(secret_keys)


def load(config: dict[str, Any], region: str | None, secret_keys: list[str], encode: bool = True) -> Settings:
    """Call load_settings exactly as __main__.py does: `gantry:*` keys only, JSON-encoded as the CLI does."""
    values = {k: v for k, v in config.items() if k.startswith("gantry:")}
    if encode:
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return load_settings(values, region=region, secret_keys=secret_keys)


def problem_key(problem: str) -> str:
    """`gantry:container.memory: 1024 MiB is ...` -> `gantry:container.memory`."""
    return problem.split(": ", 1)[0]


def _walk(config: dict[str, Any], path: str, create: bool) -> tuple[Any, str | int]:
    top, *rest = path.split(".")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in rest]
    node: Any = config
    key: str | int = f"gantry:{top}"
    for part in parts:
        if create and isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
        key = part
    return node, key


def put(path: str, value: Any) -> Callable[[dict], None]:
    """Set `container.port` (dots into objects, digits index lists) in the gantry config."""

    def mutate(config: dict[str, Any]) -> None:
        node, key = _walk(config, path, create=True)
        node[key] = value

    return mutate


def drop(path: str) -> Callable[[dict], None]:
    def mutate(config: dict[str, Any]) -> None:
        node, key = _walk(config, path, create=False)
        del node[key]

    return mutate


def add_secret(entry: dict[str, Any]) -> Callable[[dict], None]:
    """Append a secret after the committed API_KEYS one, so it is `secrets[1]`."""

    def mutate(config: dict[str, Any]) -> None:
        config["gantry:secrets"].append(entry)

    return mutate


def all_of(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(config: dict[str, Any]) -> None:
        for m in mutations:
            m(config)

    return mutate


def refuse(config: dict[str, Any], region: Any, secret_keys: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(config, region, secret_keys)
    return info.value


# --------------------------------------------------------------------------------------------------
# The table of bad configs.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    mutate: Callable[[dict], None]
    key: str
    """The exact key path the main problem line must name."""
    expect: tuple[str, ...]
    """Fragments that must all appear on one line for `key`: the bad value and what is allowed."""
    also: tuple[str, ...] = ()
    """Other keys the same mutation legitimately reports (no other key may be reported)."""
    region: Any = _UNSET
    secret_keys: Any = _UNSET
    hidden: tuple[str, ...] = ()
    """Strings that must NOT appear anywhere in the error (secret values)."""


PLACEHOLDER_HELP = "looks like a placeholder"

BAD: list[Bad] = [
    # Fargate CPU/memory matrix.
    Bad(
        "memory-too-small-for-cpu",
        all_of(put("container.cpu", 1024), put("container.memory", 1024)),
        "gantry:container.memory",
        ("1024 MiB", "cpu 1024", "2048, 3072, 4096"),
    ),
    Bad(
        "memory-too-big-for-cpu",
        all_of(put("container.cpu", 512), put("container.memory", 8192)),
        "gantry:container.memory",
        ("8192", "cpu 512", "1024, 2048, 3072, 4096"),
    ),
    Bad(
        "memory-off-step-16-vcpu",
        all_of(put("container.cpu", 16384), put("container.memory", 36864)),
        "gantry:container.memory",
        ("36864", "32768, 40960"),
    ),
    Bad(
        "unknown-cpu",
        put("container.cpu", 3000),
        "gantry:container.cpu",
        ("3000", "256, 512, 1024, 2048, 4096, 8192, 16384"),
    ),
    # Ports.
    Bad(
        "port-privileged",
        put("container.port", 80),
        "gantry:container.port",
        ("80 ", "between 1024 and 65535", "non-root"),
    ),
    Bad("port-too-high", put("container.port", 70000), "gantry:container.port", ("70000", "between 1024 and 65535")),
    Bad("port-string", put("container.port", "8000"), "gantry:container.port", ("'8000'", "whole number")),
    Bad("port-fractional", put("container.port", 8000.5), "gantry:container.port", ("8000.5", "whole number")),
    # Counts: min <= desired <= max.
    Bad(
        "desired-above-max",
        put("service.desiredCount", 5),
        "gantry:service.desiredCount",
        ("5 ", "minCapacity (1)", "maxCapacity (3)"),
    ),
    Bad(
        "desired-below-min",
        all_of(put("autoscaling.minCapacity", 2), put("service.desiredCount", 1)),
        "gantry:service.desiredCount",
        ("1 ", "minCapacity (2)"),
    ),
    Bad(
        "min-above-max",
        put("autoscaling.minCapacity", 4),
        "gantry:autoscaling.minCapacity",
        ("4 ", "maxCapacity (3)"),
        also=("gantry:service.desiredCount",),
    ),
    # CIDRs.
    Bad(
        "vpc-cidr-malformed",
        put("network.cidrBlock", "10.20.0.0/33"),
        "gantry:network.cidrBlock",
        ("'10.20.0.0/33'", "CIDR"),
    ),
    Bad(
        "vpc-cidr-host-bits",
        put("network.cidrBlock", "10.20.0.1/16"),
        "gantry:network.cidrBlock",
        ("'10.20.0.1/16'", "CIDR"),
    ),
    Bad(
        "vpc-cidr-public",
        put("network.cidrBlock", "52.20.0.0/16"),
        "gantry:network.cidrBlock",
        ("'52.20.0.0/16'", "private RFC 1918 range"),
    ),
    Bad(
        "vpc-cidr-too-small-2az",
        put("network.cidrBlock", "10.20.0.0/20"),
        "gantry:network.cidrBlock",
        ("'10.20.0.0/20'", "too small for 2 AZs", "/19"),
    ),
    Bad(
        "vpc-cidr-too-small-3az",
        all_of(put("network.availabilityZones", 3), put("network.cidrBlock", "10.20.0.0/18")),
        "gantry:network.cidrBlock",
        ("'10.20.0.0/18'", "too small for 3 AZs"),
    ),
    Bad(
        "one-az",
        put("network.availabilityZones", 1),
        "gantry:network.availabilityZones",
        ("1 ", "between 2 and 6", "two AZs"),
    ),
    Bad(
        "alb-cidr-host-bits",
        put("loadBalancer.ingressCidrs", ["0.0.0.0/0", "203.0.113.7/24"]),
        "gantry:loadBalancer.ingressCidrs[1]",
        ("'203.0.113.7/24'", "IPv4 CIDR", "host bits"),
    ),
    Bad(
        "alb-cidr-word",
        put("loadBalancer.ingressCidrs", ["internet"]),
        "gantry:loadBalancer.ingressCidrs[0]",
        ("'internet'", "IPv4 CIDR", "explicit prefix"),
    ),
    Bad(
        "alb-cidr-no-prefix",
        put("loadBalancer.ingressCidrs", ["203.0.113.7"]),
        "gantry:loadBalancer.ingressCidrs[0]",
        ("'203.0.113.7'", "explicit prefix"),
    ),
    Bad(
        "alb-cidr-twice",
        put("loadBalancer.ingressCidrs", ["100.64.0.0/24", "100.64.0.0/24"]),
        "gantry:loadBalancer.ingressCidrs",
        ("lists a range twice",),
    ),
    Bad(
        "alb-cidr-empty",
        put("loadBalancer.ingressCidrs", []),
        "gantry:loadBalancer.ingressCidrs",
        ("at least one CIDR", "0.0.0.0/0"),
    ),
    # ARNs.
    Bad(
        "sm-arn-short-account",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace(ACCOUNT, ACCOUNT[:-1])}),
        "gantry:secrets[1].secretsManagerArn",
        (
            SM_ARN.replace(ACCOUNT, ACCOUNT[:-1]),
            "not a well-formed secretsmanager ARN",
            f"arn:aws:secretsmanager:{REGION}:",
        ),
    ),
    Bad(
        "sm-arn-not-an-arn",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": "gantry/upstream-token"}),
        "gantry:secrets[1].secretsManagerArn",
        ("'gantry/upstream-token'", "not a well-formed secretsmanager ARN"),
    ),
    Bad(
        "sm-arn-partial",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.removesuffix("-Ab12Cd")}),
        "gantry:secrets[1].secretsManagerArn",
        (SM_ARN.removesuffix("-Ab12Cd"), "partial ARN", "6-character suffix"),
    ),
    Bad(
        "sm-arn-other-region",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace(REGION, "us-east-1")}),
        "gantry:secrets[1].secretsManagerArn",
        ("region us-east-1", f"stack's region {REGION}"),
    ),
    Bad(
        "sm-arn-other-partition",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace("arn:aws:", "arn:aws-us-gov:")}),
        "gantry:secrets[1].secretsManagerArn",
        ("partition aws-us-gov", f"{REGION} is in aws"),
    ),
    Bad(
        "sm-arn-no-account",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace(ACCOUNT, "")}),
        "gantry:secrets[1].secretsManagerArn",
        (SM_ARN.replace(ACCOUNT, ""), "12-digit account"),
    ),
    Bad(
        "ssm-arn-of-secretsmanager",
        add_secret({"name": "MODEL_ENDPOINT", "ssmParameterArn": SM_ARN}),
        "gantry:secrets[1].ssmParameterArn",
        (SM_ARN, "not a well-formed ssm ARN", "parameter/"),
    ),
    # The permissions boundary lets tasks read only gantry/... and gantry-... (bootstrap.documents).
    Bad(
        "sm-arn-outside-gantry",
        add_secret(
            {"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace("secret:gantry/", "secret:payroll/")}
        ),
        "gantry:secrets[1].secretsManagerArn",
        ("outside gantry's secrets", "gantry/... or gantry-...", "secret:gantry/<name>"),
    ),
    Bad(
        "sm-arn-gantry-lookalike",
        add_secret(
            {"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace("secret:gantry/", "secret:gantryx-")}
        ),
        "gantry:secrets[1].secretsManagerArn",
        ("outside gantry's secrets",),
    ),
    Bad(
        "ssm-arn-outside-gantry",
        add_secret({"name": "MODEL_ENDPOINT", "ssmParameterArn": SSM_ARN.replace("parameter/gantry/", "parameter/")}),
        "gantry:secrets[1].ssmParameterArn",
        ("outside gantry's parameters", "parameter/gantry/<name>"),
    ),
    Bad(
        "kms-arn-alias",
        put("secrets.0.kmsKeyArn", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/gantry"),
        "gantry:secrets[0].kmsKeyArn",
        (f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/gantry", "not a well-formed kms ARN", "key/"),
    ),
    Bad(
        "kms-arn-other-region",
        put("secrets.0.kmsKeyArn", KMS_ARN.replace(REGION, "eu-west-2")),
        "gantry:secrets[0].kmsKeyArn",
        ("region eu-west-2", f"stack's region {REGION}"),
    ),
    Bad(
        "secret-two-sources",
        put("secrets.0.secretsManagerArn", SM_ARN),
        "gantry:secrets[0]",
        ("API_KEYS", "exactly one", "create: true, secretsManagerArn"),
    ),
    # NAT and VPC endpoints.
    Bad(
        "nat-none-without-endpoints",
        put("network.natStrategy", "none"),
        "gantry:vpcEndpoints.interface",
        ("natStrategy is none", "add ecr.api, ecr.dkr, logs, secretsmanager"),
    ),
    Bad(
        "nat-none-missing-secretsmanager",
        all_of(put("network.natStrategy", "none"), put("vpcEndpoints.interface", ["ecr.api", "ecr.dkr", "logs"])),
        "gantry:vpcEndpoints.interface",
        ("natStrategy is none", "add secretsmanager"),
    ),
    Bad(
        "nat-none-ssm-secret-needs-ssm",
        all_of(
            put("network.natStrategy", "none"),
            put("vpcEndpoints.interface", ALL_ENDPOINTS_BUT_SSM),
            add_secret({"name": "MODEL_ENDPOINT", "ssmParameterArn": SSM_ARN}),
        ),
        "gantry:vpcEndpoints.interface",
        ("natStrategy is none", "add ssm"),
    ),
    Bad(
        "nat-none-without-s3-gateway",
        all_of(
            put("network.natStrategy", "none"),
            put("vpcEndpoints.interface", ALL_ENDPOINTS_BUT_SSM),
            put("vpcEndpoints.s3Gateway", False),
        ),
        "gantry:vpcEndpoints.s3Gateway",
        ("natStrategy is none", "S3", "s3Gateway: true"),
    ),
    Bad(
        "nat-none-with-codedeploy",
        all_of(
            put("network.natStrategy", "none"),
            put("vpcEndpoints.interface", ALL_ENDPOINTS_BUT_SSM),
            put("deployment.strategy", "codedeploy"),
        ),
        "gantry:deployment.strategy",
        ("codedeploy", "network.natStrategy single or per-az", "found none", "CodeDeploy API", "strategy rolling"),
    ),
    Bad(
        "nat-unknown",
        put("network.natStrategy", "nat-gateway"),
        "gantry:network.natStrategy",
        ("'nat-gateway'", "none, single, per-az"),
    ),
    Bad(
        "ssm-endpoint-without-ssm-secret",
        put("vpcEndpoints.interface", ["ssm"]),
        "gantry:vpcEndpoints.interface",
        ("ssm", "no secret references an SSM parameter"),
    ),
    Bad(
        "endpoint-unknown",
        put("vpcEndpoints.interface", ["sqs"]),
        "gantry:vpcEndpoints.interface[0]",
        ("'sqs'", "ecr.api, ecr.dkr, logs, secretsmanager, ssm"),
    ),
    # Retention values CloudWatch Logs accepts.
    Bad(
        "log-retention-10",
        put("logs.retentionDays", 10),
        "gantry:logs.retentionDays",
        ("10 ", "1, 3, 5, 7, 14, 30", "3653", "CloudWatch"),
    ),
    Bad("log-retention-never-expire", put("logs.retentionDays", 0), "gantry:logs.retentionDays", ("0 ", "1, 3, 5, 7")),
    Bad(
        "flow-log-retention-45",
        put("network.flowLogRetentionDays", 45),
        "gantry:network.flowLogRetentionDays",
        ("45 ", "30, 60, 90"),
    ),
    # Unknown keys and fields: a typo must not be silently ignored.
    Bad(
        "unknown-top-level-key",
        lambda c: c.__setitem__("gantry:netwrok", {"natStrategy": "none"}),
        "gantry:netwrok",
        ("did you mean 'network'", "Allowed:", "vpcEndpoints"),
    ),
    Bad(
        "unknown-container-field",
        put("container.prot", 8080),
        "gantry:container.prot",
        ("did you mean 'port'", "Allowed:", "stopTimeoutSeconds"),
    ),
    Bad(
        "unknown-health-check-field",
        put("loadBalancer.healthCheck.intervalSecond", 30),
        "gantry:loadBalancer.healthCheck.intervalSecond",
        ("did you mean 'intervalSeconds'", "timeoutSeconds"),
    ),
    Bad(
        "unknown-capacity-provider-field",
        put("service.capacityProviders.1.wieght", 5),
        "gantry:service.capacityProviders[1].wieght",
        ("did you mean 'weight'", "base, provider, weight"),
    ),
    Bad(
        "unknown-secret-field",
        put("secrets.0.kmsKeyID", KMS_ARN),
        "gantry:secrets[0].kmsKeyID",
        ("did you mean 'kmsKeyArn'",),
    ),
    # Placeholders, anywhere.
    Bad(
        "placeholder-env-value-replace-me",
        put("container.environment.UPSTREAM_URL", "https://REPLACE_ME/v1"),
        "gantry:container.environment.UPSTREAM_URL",
        (PLACEHOLDER_HELP, "REPLACE_ME"),
    ),
    Bad(
        "placeholder-env-key-todo",
        put("container.environment.TODO", "1"),
        "gantry:container.environment.TODO",
        ("'TODO'", PLACEHOLDER_HELP),
    ),
    Bad("placeholder-image-changeme", put("image.context", "CHANGEME"), "gantry:image.context", (PLACEHOLDER_HELP,)),
    Bad(
        "placeholder-health-path-todo",
        put("container.healthCheckPath", "/todo"),
        "gantry:container.healthCheckPath",
        (PLACEHOLDER_HELP,),
    ),
    Bad(
        "placeholder-alb-cidr-xxx",
        put("loadBalancer.ingressCidrs", ["xxx"]),
        "gantry:loadBalancer.ingressCidrs[0]",
        (PLACEHOLDER_HELP,),
    ),
    Bad(
        "placeholder-arn-doc-account",
        add_secret({"name": "UPSTREAM_TOKEN", "secretsManagerArn": SM_ARN.replace(ACCOUNT, "123456789012")}),
        "gantry:secrets[1].secretsManagerArn",
        (PLACEHOLDER_HELP, "123456789012"),
    ),
    Bad(
        "placeholder-kms-angle-brackets",
        put("secrets.0.kmsKeyArn", f"arn:aws:kms:{REGION}:<account-id>:key/abc"),
        "gantry:secrets[0].kmsKeyArn",
        (PLACEHOLDER_HELP, "<...>"),
    ),
    Bad(
        "placeholder-domain-example-com",
        put("domain", {"hostedZoneId": "Z0123456789ABCDEFGHIJ", "hostname": "api.example.com"}),
        "gantry:domain.hostname",
        (PLACEHOLDER_HELP, "example.com"),
    ),
    Bad(
        "placeholder-task-policy-resource",
        put(
            "taskRolePolicy",
            [{"sid": "ReadModels", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::models-123456789012/*"]}],
        ),
        "gantry:taskRolePolicy[0].resources[0]",
        (PLACEHOLDER_HELP,),
    ),
    # Environment: plain, non-secret, not gantry's own.
    Bad(
        "env-password",
        put("container.environment.DB_PASSWORD", "hunter2"),
        "gantry:container.environment.DB_PASSWORD",
        ("looks like a secret", "gantry:secrets"),
    ),
    Bad(
        "env-api-key",
        put("container.environment.OPENAI_API_KEY", "sk-live"),
        "gantry:container.environment.OPENAI_API_KEY",
        ("looks like a secret",),
    ),
    Bad(
        "env-token",
        put("container.environment.GITHUB_TOKEN", "ghp"),
        "gantry:container.environment.GITHUB_TOKEN",
        ("looks like a secret",),
    ),
    Bad(
        "env-lower-case",
        put("container.environment.github_token", "ghp"),
        "gantry:container.environment.github_token",
        ("upper-case",),
    ),
    Bad(
        "env-reserved-port",
        put("container.environment.PORT", "8080"),
        "gantry:container.environment.PORT",
        ("set by gantry", "PORT, DRAIN_TIMEOUT_SECONDS"),
    ),
    Bad(
        "env-reserved-drain",
        put("container.environment.DRAIN_TIMEOUT_SECONDS", 10),
        "gantry:container.environment.DRAIN_TIMEOUT_SECONDS",
        ("set by gantry",),
    ),
    Bad(
        "env-secret-also-in-environment",
        all_of(
            add_secret({"name": "MODEL_ENDPOINT", "ssmParameterArn": SSM_ARN}),
            put("container.environment.MODEL_ENDPOINT", "http://model"),
        ),
        "gantry:container.environment.MODEL_ENDPOINT",
        ("also declared as a secret", "never environment"),
    ),
    Bad(
        "env-value-object",
        put("container.environment.LIMITS", {"rpm": 1}),
        "gantry:container.environment.LIMITS",
        ('{"rpm": 1}', "string or number"),
    ),
    Bad(
        "env-bad-name",
        put("container.environment.MAX-QUEUE", "1"),
        "gantry:container.environment.MAX-QUEUE",
        ("not allowed as a name", "upper-case letters, digits and _"),
    ),
    # Secret values: encrypted, complete, no orphans, no placeholders, never echoed.
    Bad(
        "secret-values-plain-text",
        lambda c: None,
        "gantry:secretValues",
        ("plain text", "pulumi config set --secret"),
        secret_keys=[],
        hidden=(TEST_SECRET_VALUE,),
    ),
    Bad(
        "secret-values-missing",
        drop("secretValues"),
        "gantry:secretValues.API_KEYS",
        ("is missing", "pulumi config set --secret --path 'secretValues.API_KEYS'"),
    ),
    Bad(
        "secret-values-orphan",
        put("secretValues.OLD_TOKEN", "tok-9f8e7d6c"),
        "gantry:secretValues.OLD_TOKEN",
        ("no matching secrets entry", "declared: API_KEYS"),
        hidden=("tok-9f8e7d6c",),
    ),
    Bad(
        "secret-value-placeholder",
        put("secretValues.API_KEYS", '{"tenant-a": "REPLACE_ME-k3y-77"}'),
        "gantry:secretValues.API_KEYS",
        ("placeholder", "value not shown"),
        hidden=("REPLACE_ME-k3y-77",),
    ),
    Bad(
        "secret-value-empty",
        put("secretValues.API_KEYS", ""),
        "gantry:secretValues.API_KEYS",
        ("non-empty string", "value not shown"),
    ),
    Bad(
        "secret-value-not-string",
        put("secretValues.API_KEYS", {"tenant-a": "k-77aa91"}),
        "gantry:secretValues.API_KEYS",
        ("non-empty string",),
        hidden=("k-77aa91",),
    ),
    Bad(
        "secret-reserved-name",
        add_secret({"name": "PORT", "ssmParameterArn": SSM_ARN}),
        "gantry:secrets",
        ("PORT", "set by gantry itself"),
    ),
    Bad(
        "secret-declared-twice",
        add_secret({"name": "API_KEYS", "secretsManagerArn": SM_ARN}),
        "gantry:secrets",
        ("API_KEYS is declared twice",),
    ),
    # Load balancer and service rules.
    Bad(
        "health-timeout-equals-interval",
        put("loadBalancer.healthCheck.timeoutSeconds", 15),
        "gantry:loadBalancer.healthCheck.timeoutSeconds",
        ("15 ", "below intervalSeconds (15)"),
    ),
    Bad(
        "health-timeout-above-interval",
        all_of(put("loadBalancer.healthCheck.intervalSeconds", 10), put("loadBalancer.healthCheck.timeoutSeconds", 20)),
        "gantry:loadBalancer.healthCheck.timeoutSeconds",
        ("20 ", "below intervalSeconds (10)"),
    ),
    Bad(
        "max-percent-not-above-min-healthy",
        put("service.maxPercent", 100),
        "gantry:service.maxPercent",
        ("100 ", "minHealthyPercent (100)"),
    ),
    Bad(
        "two-providers-with-base",
        put("service.capacityProviders.1.base", 1),
        "gantry:service.capacityProviders",
        ("only one provider may have a base above 0",),
    ),
    Bad(
        "provider-unknown",
        put("service.capacityProviders.0.provider", "FARGATE_ON_DEMAND"),
        "gantry:service.capacityProviders[0].provider",
        ("'FARGATE_ON_DEMAND'", "FARGATE, FARGATE_SPOT"),
    ),
    Bad(
        "provider-twice",
        put("service.capacityProviders.1.provider", "FARGATE"),
        "gantry:service.capacityProviders",
        ("lists a provider twice",),
    ),
    Bad(
        "tls-policy-not-tls13",
        put("loadBalancer.tlsPolicy", "ELBSecurityPolicy-2016-08"),
        "gantry:loadBalancer.tlsPolicy",
        ("'ELBSecurityPolicy-2016-08'", "ELBSecurityPolicy-TLS13-1-2-2021-06", "TLS 1.3"),
    ),
    Bad(
        "desync-off",
        put("loadBalancer.desyncMitigationMode", "off"),
        "gantry:loadBalancer.desyncMitigationMode",
        ("'off'", "monitor, defensive, strictest"),
    ),
    Bad(
        "domain-without-zone",
        put("domain", {"hostname": "api.gantry.dev"}),
        "gantry:domain.hostedZoneId",
        ("required",),
    ),
    Bad(
        "domain-upper-case-hostname",
        put("domain", {"hostedZoneId": "Z0123456789ABCDEFGHIJ", "hostname": "API.gantry.dev"}),
        "gantry:domain.hostname",
        ("'API.gantry.dev'", "lower-case fully qualified"),
    ),
    # Task role policy: specific actions on ARNs only.
    Bad(
        "task-policy-star-action",
        put("taskRolePolicy", [{"actions": ["*"], "resources": ["arn:aws:s3:::models/*"]}]),
        "gantry:taskRolePolicy[0].actions",
        ("'*'", "service:Action"),
    ),
    Bad(
        "task-policy-service-star",
        put("taskRolePolicy", [{"actions": ["s3:*"], "resources": ["arn:aws:s3:::models/*"]}]),
        "gantry:taskRolePolicy[0].actions",
        ("'s3:*'", "'service:*'", "refused"),
    ),
    Bad(
        "task-policy-star-resource",
        put("taskRolePolicy", [{"actions": ["s3:GetObject"], "resources": ["*"]}]),
        "gantry:taskRolePolicy[0].resources",
        ("'*'", "must be an ARN"),
    ),
    Bad(
        "task-policy-bare-name",
        put("taskRolePolicy", [{"actions": ["s3:GetObject"], "resources": ["models-bucket"]}]),
        "gantry:taskRolePolicy[0].resources",
        ("'models-bucket'", "must be an ARN"),
    ),
    Bad(
        "task-policy-other-partition",
        put("taskRolePolicy", [{"actions": ["s3:GetObject"], "resources": ["arn:aws-cn:s3:::models/*"]}]),
        "gantry:taskRolePolicy[0].resources",
        ("'arn:aws-cn:s3:::models/*'", "partition aws"),
    ),
    Bad(
        "task-policy-no-actions",
        put("taskRolePolicy", [{"resources": ["arn:aws:s3:::models/*"]}]),
        "gantry:taskRolePolicy[0].actions",
        ("at least one action",),
    ),
    # Container rules.
    Bad(
        "stop-timeout-above-fargate-max",
        put("container.stopTimeoutSeconds", 121),
        "gantry:container.stopTimeoutSeconds",
        ("121 ", "120"),
    ),
    Bad(
        "stop-timeout-no-drain-window",
        put("container.stopTimeoutSeconds", 5),
        "gantry:container.stopTimeoutSeconds",
        ("5 ", "between 6 and 120"),
    ),
    Bad(
        "architecture-lower-case",
        put("container.architecture", "arm64"),
        "gantry:container.architecture",
        ("'arm64'", "ARM64, X86_64"),
    ),
    Bad("user-root", put("container.user", "0:0"), "gantry:container.user", ("'0:0'", "non-root")),
    Bad(
        "health-command-without-cmd",
        put("container.healthCheckCommand", ["curl", "-f", "localhost:8000/health"]),
        "gantry:container.healthCheckCommand",
        ("'curl'", "CMD (exec form) or CMD-SHELL"),
    ),
    # Wrong types.
    Bad(
        "type-list-where-object",
        lambda c: c.__setitem__("gantry:container", [8000, 1024]),
        "gantry:container",
        ("must be an object", "[8000, 1024]"),
    ),
    Bad(
        "type-object-where-list",
        lambda c: c.__setitem__("gantry:secrets", {"name": "API_KEYS", "create": True}),
        "gantry:secrets",
        ("must be a list",),
    ),
    Bad(
        "type-string-where-int",
        put("autoscaling.maxCapacity", "ten"),
        "gantry:autoscaling.maxCapacity",
        ("'ten'", "whole number"),
    ),
    Bad(
        "type-string-where-bool",
        put("loadBalancer.deletionProtection", "yes"),
        "gantry:loadBalancer.deletionProtection",
        ("'yes'", "true or false"),
    ),
    Bad("type-bool-where-int", put("image.keepImages", True), "gantry:image.keepImages", ("true", "whole number")),
    Bad(
        "type-nested-string-where-object",
        put("loadBalancer.healthCheck", "15s"),
        "gantry:loadBalancer.healthCheck",
        ("must be an object", "'15s'"),
    ),
    Bad(
        "type-unparseable-json",
        lambda c: c.__setitem__("gantry:network", "{natStrategy: none"),
        "gantry:network",
        ("not a structured value", "{natStrategy: none"),
    ),
    # Region.
    Bad("region-china", lambda c: None, "aws:region", ("cn-north-1", "not supported"), region="cn-north-1"),
    Bad("region-missing", lambda c: None, "aws:region", ("is not set", "pulumi config set aws:region"), region=None),
    Bad("region-not-a-region", lambda c: None, "aws:region", ("'Ireland'", "e.g. eu-west-1"), region="Ireland"),
]


def test_table_is_big_and_ids_are_unique():
    assert len(BAD) >= 35
    assert len({b.id for b in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_bad_config_is_refused_naming_key_value_and_allowed(bad: Bad):
    config, region, secret_keys = committed("dev")
    bad.mutate(config)
    error = refuse(
        config,
        region if bad.region is _UNSET else bad.region,
        secret_keys if bad.secret_keys is _UNSET else bad.secret_keys,
    )
    keys = {problem_key(p) for p in error.problems}
    assert keys == {bad.key, *bad.also}, error.problems
    lines = [p for p in error.problems if problem_key(p) == bad.key]
    assert any(all(fragment in line for fragment in bad.expect) for line in lines), (bad.expect, lines)
    message = str(error)
    assert all(line in message for line in error.problems)
    for hidden in bad.hidden:
        assert hidden not in message


# --------------------------------------------------------------------------------------------------
# Edge cases a review found (each was a real bug once).
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["s3cr3t-Value-91b", '["s3cr3t-Value-91b"]', '"s3cr3t-Value-91b"'])
def test_secret_values_given_as_a_bare_string_are_never_echoed(raw: str):
    # `pulumi config set --secret secretValues s3cr3t...` (forgetting --path) hands the program a string.
    with pytest.raises(ConfigError) as info:
        load_settings({"gantry:secretValues": raw}, region=REGION, secret_keys=["gantry:secretValues"])
    assert "s3cr3t-Value-91b" not in str(info.value)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "172.16.0.0/12"])
def test_vpc_cidr_larger_than_slash_16_is_refused(cidr: str):
    config, region, secret_keys = committed("dev")
    put("network.cidrBlock", cidr)(config)
    error = refuse(config, region, secret_keys)
    assert {problem_key(p) for p in error.problems} == {"gantry:network.cidrBlock"}


@pytest.mark.parametrize("cidr", ["127.0.0.0/16", "169.254.0.0/16", "198.18.0.0/16", "240.0.0.0/16"])
def test_vpc_cidr_outside_rfc1918_is_refused(cidr: str):
    config, region, secret_keys = committed("dev")
    put("network.cidrBlock", cidr)(config)
    error = refuse(config, region, secret_keys)
    assert any(problem_key(p) == "gantry:network.cidrBlock" and "RFC 1918" in p for p in error.problems)


def test_secret_key_env_var_is_refused():
    config, region, secret_keys = committed("dev")
    put("container.environment.SECRET_KEY", "s3cr3t-sign")(config)
    error = refuse(config, region, secret_keys)
    assert any(problem_key(p) == "gantry:container.environment.SECRET_KEY" for p in error.problems)


def test_task_policy_wildcard_arn_is_refused():
    config, region, secret_keys = committed("dev")
    put("taskRolePolicy", [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::*"]}])(config)
    refuse(config, region, secret_keys)


def test_placeholder_message_shows_the_value():
    config, region, secret_keys = committed("dev")
    put("image.context", "CHANGEME")(config)
    error = refuse(config, region, secret_keys)
    assert any("CHANGEME" in p for p in error.problems)


def test_iso_region_is_refused():
    with pytest.raises(ConfigError) as info:
        load_settings({}, region="us-iso-east-1")
    assert any(problem_key(p) == "aws:region" for p in info.value.problems)


# --------------------------------------------------------------------------------------------------
# Many problems at once.
# --------------------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_one_per_line():
    config, region, secret_keys = committed("dev")
    all_of(
        put("container.port", 80),
        put("container.cpu", 3000),
        put("logs.retentionDays", 10),
        put("taskRolePolicy", [{"actions": ["*"], "resources": ["arn:aws:s3:::models/*"]}]),
        put("loadBalancer.healthCheck.timeoutSeconds", 20),
        lambda c: c.__setitem__("gantry:netwrok", {}),
    )(config)
    error = refuse(config, region, secret_keys)
    expected = {
        "gantry:container.port",
        "gantry:container.cpu",
        "gantry:logs.retentionDays",
        "gantry:taskRolePolicy[0].actions",
        "gantry:loadBalancer.healthCheck.timeoutSeconds",
        "gantry:netwrok",
    }
    assert {problem_key(p) for p in error.problems} == expected
    lines = str(error).splitlines()
    assert "nothing was created" in lines[0]
    assert len(lines) == 1 + len(expected)
    assert all(line.startswith("  - gantry:") for line in lines[1:])


# --------------------------------------------------------------------------------------------------
# The committed stacks.
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev() -> Settings:
    return load(*committed("dev"))


@pytest.fixture(scope="module")
def prod() -> Settings:
    return load(*committed("prod"))


def test_committed_stacks_load_with_either_encoding():
    # The CLI hands objects JSON-encoded (PULUMI_CONFIG) or already decoded; both must mean the same.
    for stack in ("dev", "prod"):
        config, region, secret_keys = committed(stack)
        assert load(config, region, secret_keys, encode=True) == load(config, region, secret_keys, encode=False)


def test_committed_stacks_need_their_secret_value():
    for stack in ("dev", "prod"):
        config = stack_config(stack)
        error = refuse(config, config["aws:region"], [])
        assert {problem_key(p) for p in error.problems} == {"gantry:secretValues.API_KEYS"}


def test_dev_is_sized_for_cost_and_prod_for_availability(dev: Settings, prod: Settings):
    # NAT: one gateway in dev, one per AZ in prod (an AZ outage cannot take egress away).
    assert (dev.network.nat_strategy, prod.network.nat_strategy) == ("single", "per-az")
    # Endpoints: dev leans on NAT + the free S3 gateway; prod keeps image pulls, logs and secrets private.
    assert dev.endpoints.interface == ()
    assert dev.endpoints.s3_gateway and prod.endpoints.s3_gateway
    assert set(required_interface_endpoints(prod.secrets)) <= set(prod.endpoints.interface)
    # Spot: only dev, and dev keeps one on-demand task so it never loses its only task to Spot.
    dev_providers = {p.provider: p for p in dev.service.capacity_providers}
    assert dev_providers["FARGATE"].base >= 1 and dev_providers["FARGATE_SPOT"].weight > 0
    assert all(p.provider == "FARGATE" for p in prod.service.capacity_providers)
    # Protection and logging.
    assert (dev.load_balancer.deletion_protection, prod.load_balancer.deletion_protection) == (False, True)
    assert (dev.load_balancer.access_logs, prod.load_balancer.access_logs) == (False, True)
    assert prod.network.flow_logs
    # High availability: prod spans three AZs with at least one task in each at all times.
    assert dev.network.availability_zones == 2
    assert prod.network.availability_zones == 3
    assert prod.autoscaling.min_capacity >= prod.network.availability_zones
    assert prod.logs.retention_days > dev.logs.retention_days


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stack_invariants(stack: str, dev: Settings, prod: Settings):
    s = {"dev": dev, "prod": prod}[stack]
    # The app must finish draining before ECS's SIGKILL at stopTimeout.
    assert 0 < s.container.drain_timeout_seconds < s.container.stop_timeout_seconds
    assert s.container.memory in fargate_memory_options(s.container.cpu)
    assert s.autoscaling.min_capacity <= s.service.desired_count <= s.autoscaling.max_capacity
    assert s.load_balancer.health_check.timeout_seconds < s.load_balancer.health_check.interval_seconds
    # Secrets reach the container only through ECS secrets, and the created one has its value.
    assert [x.name for x in s.secrets] == ["API_KEYS"]
    assert not set(s.container.environment) & {x.name for x in s.secrets}
    assert s.secret_values["API_KEYS"] == TEST_SECRET_VALUE
    assert TEST_SECRET_VALUE not in repr(s)
    # No app permissions by default; nothing environment-specific beyond the region.
    assert s.task_policy == ()
    assert (s.region, s.partition) == ("eu-west-1", "aws")


def test_settings_are_frozen(dev: Settings):
    with pytest.raises(ValidationError, match="frozen"):
        dev.container.port = 80  # type: ignore[misc]
    with pytest.raises(TypeError):
        dev.container.environment["PORT"] = "80"  # type: ignore[index]


# --------------------------------------------------------------------------------------------------
# Defaults and Pulumi.yaml.
# --------------------------------------------------------------------------------------------------


# With no config at all a stack is HTTPS (CloudFront) with the WAF on; everything else at its default.
PLAIN_HTTP: dict[str, Any] = {}


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return load_settings(PLAIN_HTTP, region="eu-west-1")


def test_no_config_serves_plain_http_to_the_internet():
    settings = load_settings({}, region="eu-west-1")
    assert settings.edge.mode == "cloudfront" and settings.internal_load_balancer
    assert settings.listener_ingress_cidrs == () and settings.load_balancer_domain is None
    assert settings.edge.waf.enabled and settings.edge.waf.action == "block"
    # A public load balancer without a domain would be plain HTTP: refused, saying what to do instead.
    with pytest.raises(ConfigError) as info:
        load_settings({"gantry:edge": {"mode": "alb"}}, region="eu-west-1")
    (problem,) = info.value.problems
    assert problem.startswith("gantry:edge.mode: alb needs gantry:domain") and "edge.mode cloudfront" in problem
    with_domain = {
        "gantry:edge": {"mode": "alb"},
        "gantry:domain": {"hostedZoneId": "Z0123456789ABC", "hostname": "api.gantry-ai.dev"},
    }
    alb = load_settings(with_domain, region="eu-west-1")
    assert alb.load_balancer_domain == alb.domain and not alb.internal_load_balancer


def test_the_retired_plain_http_switch_is_refused_naming_what_replaced_it():
    with pytest.raises(ConfigError) as info:
        load_settings({"gantry:loadBalancer": {"allowPlainHttp": True}}, region="eu-west-1")
    (problem,) = info.value.problems  # refused once, as retired, not also as an unknown setting
    assert problem.startswith("gantry:loadBalancer.allowPlainHttp: was removed")
    assert "gantry:edge.mode" in problem and "CloudFront" in problem and "Delete the line" in problem


def test_defaults_are_the_documented_safe_ones(defaults: Settings):
    c = defaults.container
    assert (c.port, c.cpu, c.memory, c.architecture) == (8000, 1024, 2048, "ARM64")
    assert c.health_check_path == "/health"
    assert c.user.split(":")[0] != "0"
    assert defaults.network.nat_strategy == "single"
    assert defaults.network.availability_zones >= 2
    assert defaults.network.flow_logs
    assert defaults.endpoints.interface == () and defaults.endpoints.s3_gateway
    lb = defaults.load_balancer
    assert lb.deletion_protection and lb.access_logs
    assert lb.desync_mitigation_mode == "strictest"
    assert lb.tls_policy == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"  # AWS's recommended post-quantum policy
    assert lb.ingress_cidrs == ("0.0.0.0/0",)
    edge = defaults.edge
    assert (edge.mode, edge.origin_read_timeout_seconds, edge.minimum_protocol_version) == (
        "cloudfront",
        60,
        "TLSv1.2_2021",
    )
    assert edge.waf.enabled and edge.waf.action == "block" and edge.waf.log_retention_days == 30
    assert defaults.waf_max_body_bytes == 2 * 1024 * 1024  # the sample worker's MAX_REQUEST_BYTES default
    assert defaults.domain is None
    assert defaults.secrets == () and len(defaults.secret_values) == 0 and defaults.task_policy == ()
    assert [(p.provider, p.base) for p in defaults.service.capacity_providers] == [("FARGATE", 1)]
    assert defaults.logs.retention_days == 30
    # The defaults must themselves pass the cross-checks they impose on config.
    assert defaults.autoscaling.min_capacity <= defaults.service.desired_count <= defaults.autoscaling.max_capacity
    assert defaults.service.max_percent > defaults.service.min_healthy_percent
    assert c.memory in fargate_memory_options(c.cpu)


def _pulumi_yaml_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]


def test_configuration_doc_and_pulumi_yaml_are_generated_from_the_models():
    # Each setting is declared once; docs/configuration.md's table and Pulumi.yaml's descriptions are
    # renderings. The table has one home: a second, hand-kept copy (the README's, before docs/) would drift.
    assert reference.main([]) == 0, "run: python -m components.settings.reference --write"
    assert reference.REFERENCE_DOC == ROOT / "docs" / "configuration.md"
    table = reference.markdown_table()
    doc = reference.REFERENCE_DOC.read_text()
    assert f"{reference.BEGIN}\n{table}\n{reference.END}" in doc
    assert reference.BEGIN not in (ROOT / "README.md").read_text()
    for key, spec in CONFIG_KEYS.items():
        assert f"| `gantry:{key}` |" in table
        for name, field in spec.model.model_fields.items() if spec.model else ():
            assert f"`gantry:{key}{'[]' if spec.is_list else ''}.{field.alias or name}`" in table


def test_every_field_says_why():
    # The default is rendered from the field (tests/test_reference.py holds that the prose never restates it).
    for spec in CONFIG_KEYS.values():
        if spec.model is None:
            continue
        for path, _, _, why in reference.rows(spec.model, "x"):
            assert why, f"{path} has no docstring"


def test_a_documented_default_is_the_default_that_loads(defaults: Settings):
    table = reference.markdown_table()
    assert f"| `gantry:container.port` | integer, 1024 to 65535 | `{defaults.container.port}` |" in table
    assert (
        f'| `gantry:network.natStrategy` | none \\| single \\| per-az | `"{defaults.network.nat_strategy}"` |' in table
    )
    assert f"| `gantry:autoscaling.maxCapacity` | integer, 1 to 1000 | `{defaults.autoscaling.max_capacity}` |" in table
    assert (
        f"| `gantry:deployment.trafficPercent` | integer, 1 to 99 | `{defaults.deployment.traffic_percent}` |" in table
    )


def test_pulumi_yaml_declares_exactly_the_keys_settings_reads():
    declared = _pulumi_yaml_config()
    assert set(declared) == set(CONFIG_KEYS)
    for key, spec in declared.items():
        assert spec["type"] == ("array" if CONFIG_KEYS[key].is_list else "object"), key
        assert spec["default"] == ([] if CONFIG_KEYS[key].is_list else {}), key


def test_pulumi_yaml_refreshes_before_every_update():
    # After a failed rollout the state holds the new task definition while ECS runs the old one;
    # only a refresh makes the next `up` see the difference and deploy again.
    assert yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["options"] == {"refresh": "always"}


def test_pulumi_yaml_defaults_load_to_the_same_settings_as_no_config(defaults: Settings):
    declared = {f"gantry:{k}": json.dumps(v["default"]) for k, v in _pulumi_yaml_config().items()}
    declared.update({k: json.dumps(v) for k, v in PLAIN_HTTP.items()})
    assert load_settings(declared, region="eu-west-1") == defaults


# --------------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cpu, smallest, largest, step",
    [
        (512, 1024, 4096, 1024),
        (1024, 2048, 8192, 1024),
        (2048, 4096, 16384, 1024),
        (4096, 8192, 30720, 1024),
        (8192, 16384, 61440, 4096),
        (16384, 32768, 122880, 8192),
    ],
)
def test_fargate_memory_matrix(cpu: int, smallest: int, largest: int, step: int):
    options = fargate_memory_options(cpu)
    assert options == tuple(range(smallest, largest + 1, step))


def test_fargate_memory_quarter_vcpu_and_unknown_cpu():
    assert fargate_memory_options(256) == (512, 1024, 2048)
    assert 3072 not in fargate_memory_options(256)
    assert fargate_memory_options(3000) == ()
    assert fargate_memory_options(32768) == ()
    assert max(m for cpu in FARGATE_CPUS for m in fargate_memory_options(cpu)) == 120 * 1024


def test_find_placeholders_reports_paths_in_objects_lists_and_keys():
    value = {
        "environment": {"UPSTREAM": "https://api.example.com", "OK": "https://api.acme.io", "CHANGEME": "1"},
        "resources": ["arn:aws:s3:::models", "arn:aws:s3:::bucket-123456789012"],
        "notes": ["<your-account>", "xxx", "TBD", "todo"],
    }
    assert find_placeholders(value, "c") == [
        ("c.environment.UPSTREAM", "https://api.example.com"),
        ("c.environment.CHANGEME", "CHANGEME"),
        ("c.resources[1]", "arn:aws:s3:::bucket-123456789012"),
        ("c.notes[0]", "<your-account>"),
        ("c.notes[1]", "xxx"),
        ("c.notes[2]", "TBD"),
        ("c.notes[3]", "todo"),
    ]


@pytest.mark.parametrize(
    "clean",
    [
        "/health",
        "10.20.0.0/16",
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "TOKEN_BUDGET_PER_MINUTE",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry/api-keys-Ab12Cd",
        "todos-service",
        "api.examples.community",
        "xx",
        8000,
        True,
    ],
)
def test_find_placeholders_leaves_real_values_alone(clean: Any):
    assert find_placeholders(clean, "k") == []


def test_required_interface_endpoints():
    base = ("ecr.api", "ecr.dkr", "logs")
    created = SecretSpec(name="API_KEYS", create=True)
    referenced = SecretSpec(name="TOKEN", secrets_manager_arn=SM_ARN)
    parameter = SecretSpec(name="MODEL", ssm_parameter_arn=SSM_ARN, kms_key_arn=KMS_ARN)
    assert required_interface_endpoints([]) == base
    assert required_interface_endpoints([created]) == (*base, "secretsmanager")
    assert required_interface_endpoints([referenced]) == (*base, "secretsmanager")
    assert required_interface_endpoints([parameter]) == (*base, "ssm")
    assert required_interface_endpoints([created, parameter]) == (*base, "secretsmanager", "ssm")


def test_secret_values_never_show_their_values():
    values = SecretValues({"API_KEYS": "k-live-8c1d4e", "TOKEN": "t-live-77ab"})
    for text in (repr(values), str(values), f"{values}", repr({"v": values})):
        assert "k-live-8c1d4e" not in text and "t-live-77ab" not in text
    assert "API_KEYS" in repr(values)
    assert values["TOKEN"] == "t-live-77ab" and len(values) == 2 and set(values) == {"API_KEYS", "TOKEN"}


@pytest.mark.parametrize(
    "region, partition",
    [
        ("eu-west-1", "aws"),
        ("eu-central-2", "aws"),
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-gov-east-1", "aws-us-gov"),
    ],
)
def test_partition_for_region(region: str, partition: str):
    assert partition_for_region(region) == partition


def test_gov_cloud_region_loads_in_its_partition_and_needs_its_arns():
    settings = load_settings(PLAIN_HTTP, region="us-gov-west-1")
    assert settings.partition == "aws-us-gov"
    commercial = SM_ARN.replace(REGION, "us-gov-west-1")
    with pytest.raises(ConfigError) as info:
        load_settings(
            {**PLAIN_HTTP, "gantry:secrets": [{"name": "TOKEN", "secretsManagerArn": commercial}]},
            region="us-gov-west-1",
        )
    assert any("partition aws" in p and "aws-us-gov" in p for p in info.value.problems)

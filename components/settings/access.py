"""Settings of what the tasks may reach: `secrets`, `secretValues` and `taskRolePolicy`.

Security stance: a secret reaches the container only through ECS `secrets`, from a Secrets Manager
secret or SSM parameter named by its full ARN in the stack's own region and inside gantry's names
(`gantry/...` or `gantry-...`, the only ones the bootstrap's permissions boundary lets a task read,
bootstrap.documents.gantry_secret_arns); created secrets' values must
arrive encrypted (`pulumi config set --secret`) and are never echoed. The application's IAM
permissions name exact actions on exact resources: wildcards that grant a whole service's resources
(`secret:*`, `arn:aws:s3:::*/*`, `role/*`) or action families (`s3:Put*`) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator

from components.contract import PROGRAM_PREFIX
from components.settings.base import Section, Token, Where, parse_arn

# Actions whose resource is an IAM role that then acts with its own permissions: a wildcard there is
# privilege escalation, so it must name roles exactly.
_EXACT_RESOURCE_ACTIONS = frozenset({"iam:PassRole", "sts:AssumeRole"})


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError("must be an upper-case environment variable name such as API_KEYS")
    return value


class SecretSpec(Section):
    """One entry of `secrets`: an environment variable the container receives through ECS `secrets`."""

    name: Annotated[Token, AfterValidator(_env_name)]
    """The environment variable the container reads."""
    create: bool = False
    """Off, the secret must already exist (one of the ARNs below). On, the stack creates a Secrets Manager
    secret from `secretValues.<name>`."""
    secrets_manager_arn: Token | None = None
    """An existing Secrets Manager secret: its full ARN (ending in the 6-character suffix)."""
    ssm_parameter_arn: Token | None = None
    """An existing SSM parameter (SecureString): its ARN."""
    kms_key_arn: Token | None = None
    """The customer-managed KMS key the value is encrypted with, if any (grants kms:Decrypt on it)."""

    @property
    def source(self) -> Literal["create", "secretsmanager", "ssm"]:
        if self.create:
            return "create"
        return "secretsmanager" if self.secrets_manager_arn else "ssm"

    @property
    def arn(self) -> str | None:
        return self.secrets_manager_arn or self.ssm_parameter_arn

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        region, partition = where.region, where.partition
        sources = [
            label
            for label, present in (
                ("create: true", self.create),
                ("secretsManagerArn", self.secrets_manager_arn),
                ("ssmParameterArn", self.ssm_parameter_arn),
            )
            if present
        ]
        if len(sources) != 1:
            yield (
                "",
                (
                    f"{self.name}: set exactly one of create: true, secretsManagerArn or ssmParameterArn "
                    f"(got {', '.join(sources) or 'none'})"
                ),
            )
        for field, arn, service, prefix in (
            ("secretsManagerArn", self.secrets_manager_arn, "secretsmanager", "secret:"),
            ("ssmParameterArn", self.ssm_parameter_arn, "ssm", "parameter/"),
            ("kmsKeyArn", self.kms_key_arn, "kms", "key/"),
        ):
            if arn is not None:
                yield from ((field, p) for p in arn_problems(arn, service, prefix, region, partition))
        for field, arn, prefix in (
            ("secretsManagerArn", self.secrets_manager_arn, "secret:"),
            ("ssmParameterArn", self.ssm_parameter_arn, "parameter/"),
        ):
            problem = outside_gantry(arn, prefix) if arn is not None else None
            if problem:
                yield field, problem
        if (
            self.secrets_manager_arn
            and parse_arn(self.secrets_manager_arn)
            and not re.search(r"-[A-Za-z0-9]{6}$", self.secrets_manager_arn)
        ):
            # IAM matches the full ARN, which ends in a 6-character suffix; a partial ARN would grant nothing.
            yield (
                "secretsManagerArn",
                (
                    f"{self.secrets_manager_arn!r} is a partial ARN: use the full ARN ending "
                    "in the 6-character suffix Secrets Manager adds"
                ),
            )


def outside_gantry(arn: str, resource_prefix: str) -> str | None:
    """Why a referenced secret or parameter is one the tasks could not read, or None: the permissions
    boundary every gantry role carries allows only `<prefix>/...` and `<prefix>-...` names
    (bootstrap.documents.gantry_secret_arns, gantry_parameter_arns), so any other name would pass here and
    fail at task start with AccessDenied. A malformed ARN is arn_problems' to report."""
    parts = parse_arn(arn)
    if parts is None or not parts["resource"].startswith(resource_prefix):
        return None
    name = parts["resource"].removeprefix(resource_prefix)
    if name.startswith((f"{PROGRAM_PREFIX}/", f"{PROGRAM_PREFIX}-")):
        return None
    kind = "secret" if resource_prefix == "secret:" else "parameter"
    return (
        f"{arn!r} is outside gantry's {kind}s: the permissions boundary on gantry's roles lets tasks read "
        f"only {kind}s named {PROGRAM_PREFIX}/... or {PROGRAM_PREFIX}-... (allowed: "
        f"...:{resource_prefix}{PROGRAM_PREFIX}/<name>); store or copy the value under that prefix"
    )


def arn_problems(arn: str, service: str, resource_prefix: str, region: str, partition: str) -> list[str]:
    """Why `arn` is not an ARN of `service` in the stack's partition, region and a real account."""
    parts = parse_arn(arn)
    if parts is None or parts["service"] != service or not parts["resource"].startswith(resource_prefix):
        return [
            f"{arn!r} is not a well-formed {service} ARN (arn:{partition}:{service}:{region}:<account>:"
            f"{resource_prefix}...)"
        ]
    if parts["partition"] != partition:
        return [f"{arn!r} is in partition {parts['partition']}, but the stack's region {region} is in {partition}"]
    if parts["region"] != region:
        return [
            f"{arn!r} is in region {parts['region'] or '(none)'}, not the stack's region {region}: tasks "
            "would fetch it across regions, outside the VPC endpoints"
        ]
    if not re.fullmatch(r"\d{12}", parts["account"]):
        return [f"{arn!r} has no 12-digit account id"]
    if "*" in parts["resource"]:
        return [f"{arn!r} is a wildcard: name one {service} resource"]
    return []


def _sid(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]+", value):
        raise ValueError("must be alphanumeric (A-Z, a-z, 0-9)")
    return value


class PolicyStatement(Section):
    """One entry of `taskRolePolicy`: AWS calls the application makes at run time."""

    sid: Annotated[Token, AfterValidator(_sid)] | None = None
    """A unique alphanumeric statement id; unset, each statement is named App<index> by its position."""
    actions: tuple[Token, ...] = ()
    """At least one is required: exact actions (service:Action), no wildcards."""
    resources: tuple[Token, ...] = ()
    """At least one is required: exact resource ARNs; a wildcard only after a fixed
    resource name or prefix (the objects of one named bucket, `arn:aws:s3:::my-bucket/*`;
    `table/orders*`), never for a whole service or type."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        partition = where.partition
        if not self.actions:
            yield "actions", "must list at least one action, such as s3:GetObject"
        if not self.resources:
            yield "resources", "must list at least one resource ARN"
        for action in self.actions:
            if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action):
                yield (
                    "actions",
                    (
                        f"{action!r} is not allowed: name exact actions (service:Action); '*', "
                        "'service:*' and partial wildcards such as 's3:Put*' are refused"
                    ),
                )
        for resource in self.resources:
            problem = resource_too_broad(resource, exact=bool(_EXACT_RESOURCE_ACTIONS & set(self.actions)))
            if problem:
                yield "resources", f"{resource!r} is not allowed: {problem}"
            elif (parts := parse_arn(resource)) and parts["partition"] != partition:
                yield "resources", f"{resource!r} is not in the stack's partition {partition}"


def resource_too_broad(arn: str, *, exact: bool = False) -> str | None:
    """Why a task-role resource grants more than one named resource (or a named prefix of one), or None.

    `exact` (for iam:PassRole and sts:AssumeRole) refuses any wildcard at all."""
    parts = parse_arn(arn)
    if parts is None:
        return "must be an ARN; '*' is refused"
    if "*" in parts["region"] or "*" in parts["account"]:
        return "a wildcard region or account names every copy of the resource; name the region and account"
    resource = parts["resource"]
    if "*" not in resource and "?" not in resource:
        return None
    if exact:
        return "iam:PassRole and sts:AssumeRole must name exact role ARNs (a wildcard lets the app act as any role)"
    if parts["service"] == "s3":
        bucket = resource.partition("/")[0]
        if "*" in bucket or "?" in bucket:
            return "it names every bucket that matches; name the bucket (its keys may end in *)"
        return None
    # "secret:*", "table/*", "role/*", "log-group:*": a resource type followed only by a wildcard.
    name = re.split(r"[:/]", resource, maxsplit=1)
    if len(name) < 2 or not name[1] or name[1][0] in "*?":
        return f"it names every {parts['service']} resource of that type; list the ARNs the app uses"
    return None

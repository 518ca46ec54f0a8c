"""AppSecrets: the secrets a container receives, created by the stack or referenced by ARN.

A secret is either created here in Secrets Manager from a `pulumi config set --secret` value (so it is
encrypted in config and in state), or an existing Secrets Manager secret or SSM parameter referenced
by its full ARN. ECS reads a secret only when a task starts, so each reference carries the version it
stands for; the task definition records it (a docker label), and a changed value makes a new task
definition revision and so a rolling deploy: a rotated or revoked tenant key takes effect with one
`pulumi up`. The container's `valueFrom` stays the unversioned ARN, so a task that starts later (a
scale-out, a rollback to an older revision) always reads the current value, never a revoked one.
Security stance: values only ever travel as Pulumi secrets; the container gets them through ECS
`secrets` (fetched by the execution role at start), never through `environment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.settings import SecretSpec


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    """One secret as the task needs it."""

    name: str
    """The environment variable the container reads."""
    store: Literal["secretsmanager", "ssm"]
    arn: pulumi.Input[str]
    """The secret's ARN: the container's `valueFrom` and the execution role's resource. For a created
    secret it resolves only once the value exists, so no task can start before it."""
    version: pulumi.Input[str]
    """The version the value is at (Secrets Manager version id, SSM parameter version)."""
    kms_key_arn: str | None = None


@dataclass(frozen=True, kw_only=True)
class SecretRefs:
    """The secrets of one container, with the views the task definition and the roles need."""

    refs: tuple[SecretRef, ...] = ()

    def of_store(self, store: str) -> list[pulumi.Input[str]]:
        return [r.arn for r in self.refs if r.store == store]

    @property
    def kms_key_arns(self) -> list[str]:
        return sorted({r.kms_key_arn for r in self.refs if r.kms_key_arn})


def version_labels(versions: Mapping[str, str]) -> dict[str, str]:
    """Docker labels that pin the task definition to the secrets' versions: a new value, a new revision."""
    return {f"gantry.secret-version.{name}": version for name, version in sorted(versions.items())}


@dataclass(frozen=True, kw_only=True)
class AppSecretsArgs:
    specs: Sequence[SecretSpec]
    """Declared secrets (validated settings)."""
    values: Mapping[str, str]
    """Plaintext values for the specs with create: true (from encrypted config)."""
    recovery_window_days: int = 7
    """Days a deleted stack-created secret stays recoverable; default 7 (AWS allows 7-30)."""


class AppSecrets(pulumi.ComponentResource):
    refs: SecretRefs

    def __init__(self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:secrets:AppSecrets", name, None, opts)
        refs = [ref for spec in args.specs if (ref := self._ref(name, spec, args)) is not None]
        self.refs = SecretRefs(refs=tuple(refs))
        self.register_outputs({"names": sorted(r.name for r in refs)})

    def _ref(self, name: str, spec: SecretSpec, args: AppSecretsArgs) -> SecretRef | None:
        """One secret: created here (with its value), or an existing Secrets Manager secret or SSM parameter
        (None for a spec naming none, which validation refuses first)."""
        child = pulumi.ResourceOptions(parent=self)
        if spec.source == "create":
            logical = f"{name}-{spec.name.lower().replace('_', '-')}"
            secret = aws.secretsmanager.Secret(
                logical,
                description=f"gantry: {spec.name} for the service container",
                kms_key_id=spec.kms_key_arn,
                recovery_window_in_days=args.recovery_window_days,
                opts=child,
            )
            value = aws.secretsmanager.SecretVersion(
                f"{logical}-value",
                secret_id=secret.id,
                secret_string=pulumi.Output.secret(args.values[spec.name]),
                opts=child,
            )
            # Hand out the ARN only once the value exists: a task started earlier fails to fetch it.
            arn: pulumi.Input[str] = pulumi.Output.all(secret.arn, value.id).apply(lambda v: v[0])
            return SecretRef(
                name=spec.name,
                store="secretsmanager",
                arn=arn,
                version=value.version_id,
                kms_key_arn=spec.kms_key_arn,
            )
        if spec.secrets_manager_arn is not None:
            versions = aws.secretsmanager.get_secret_versions_output(
                secret_id=spec.secrets_manager_arn, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            return SecretRef(
                name=spec.name,
                store="secretsmanager",
                arn=spec.secrets_manager_arn,
                version=versions.versions.apply(current_version_id),
                kms_key_arn=spec.kms_key_arn,
            )
        if spec.ssm_parameter_arn is not None:
            # with_decryption=False: only the version is used; the value is never read by `pulumi up`.
            parameter = aws.ssm.get_parameter_output(
                name=spec.ssm_parameter_arn, with_decryption=False, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            return SecretRef(
                name=spec.name,
                store="ssm",
                arn=spec.ssm_parameter_arn,
                version=parameter.version.apply(str),
                kms_key_arn=spec.kms_key_arn,
            )
        return None


def current_version_id(versions: Sequence[aws.secretsmanager.outputs.GetSecretVersionsVersionResult]) -> str:
    """The version id labelled AWSCURRENT among a secret's versions (what a starting task reads)."""
    for version in versions:
        if "AWSCURRENT" in (version.version_stages or []):
            return version.version_id
    raise ValueError("the secret has no AWSCURRENT version: give it a value before deploying")

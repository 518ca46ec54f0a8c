"""AppSecrets: the secrets a container receives, created by the stack or referenced by ARN.

A secret is either created here in Secrets Manager from a `pulumi config set --secret` value (so it is
encrypted in config and in state), or an existing Secrets Manager secret or SSM parameter referenced
by its full ARN. Security stance: values only ever travel as Pulumi secrets; the container gets them
through ECS `secrets` (fetched by the execution role at start), never through `environment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import SecretSpec


@dataclass(frozen=True)
class AppSecretsArgs:
    specs: Sequence[SecretSpec]
    """Declared secrets (validated settings)."""
    values: Mapping[str, str]
    """Plaintext values for the specs with source "create" (from encrypted config)."""
    recovery_window_days: int = 7
    """Days a deleted stack-created secret stays recoverable; default 7 (AWS allows 7-30)."""


class AppSecrets(pulumi.ComponentResource):
    env_arns: dict[str, pulumi.Output[str]]
    """Environment variable name -> ARN, for the container's `secrets`."""
    secrets_manager_arns: list[pulumi.Input[str]]
    ssm_parameter_arns: list[pulumi.Input[str]]
    kms_key_arns: list[str]

    def __init__(self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:secrets:AppSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.env_arns = {}
        self.secrets_manager_arns = []
        self.ssm_parameter_arns = []
        self.kms_key_arns = sorted({s.kms_key_arn for s in args.specs if s.kms_key_arn})

        for spec in args.specs:
            if spec.source == "create":
                secret = aws.secretsmanager.Secret(
                    f"{name}-{spec.name.lower().replace('_', '-')}",
                    description=f"gantry: {spec.name} for the service container",
                    kms_key_id=spec.kms_key_arn,
                    recovery_window_in_days=args.recovery_window_days,
                    opts=child,
                )
                version = aws.secretsmanager.SecretVersion(
                    f"{name}-{spec.name.lower().replace('_', '-')}-value",
                    secret_id=secret.id,
                    secret_string=pulumi.Output.secret(args.values[spec.name]),
                    opts=child,
                )
                # Hand out the ARN only once the value exists: a task started earlier fails to fetch it.
                arn: pulumi.Output[str] = pulumi.Output.all(secret.arn, version.id).apply(lambda v: v[0])
                self.secrets_manager_arns.append(arn)
            else:
                arn = pulumi.Output.from_input(spec.arn)
                if spec.source == "secretsmanager":
                    self.secrets_manager_arns.append(spec.arn)
                else:
                    self.ssm_parameter_arns.append(spec.arn)
            self.env_arns[spec.name] = arn

        self.register_outputs({"names": sorted(self.env_arns)})

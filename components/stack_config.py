"""The program's one reader of `pulumi.Config`: raw `gantry:*` config -> AWS facts -> validated Settings.

Everything environment-specific enters here, before any resource is registered: the config as the CLI
passed it (however it passed it), what validation needs from AWS (looked up with invokes, which
create nothing), then `load_settings`. A bad config stops the program with every problem listed.
Security stance: secret keys stay marked secret, and no error echoes a secret value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.env import lookup_aws_facts
from components.settings import NAMESPACE, ConfigError, Settings, load_settings
from components.settings.migration import PreviousCutover

# The engine's built-in invoke behind StackReference (pulumi/pulumi pkg/resource/deploy/builtins.go,
# `readStackOutputs`; the Node SDK calls it synchronously for StackReference's sync outputs). Asked
# for this very stack, it returns the outputs of its last update: the state before this `pulumi up`.
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
CONTROLLER_OUTPUT = "deploymentController"
# Every gantry release before the `deploymentController` output used the ECS controller.
LEGACY_OUTPUT, LEGACY_CONTROLLER = "serviceName", "ECS"

PROJECT_DIR = Path(__file__).resolve().parents[1]


def raw_config() -> tuple[dict[str, Any], list[str]]:
    """Every `gantry:*` key the CLI passed in, and which keys are secret."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {k: v for k, v in merged.items() if k.startswith(f"{NAMESPACE}:")}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys.update(k for k in values if runtime_config.is_config_secret(k))
    return values, sorted(secret_keys)


def settings_from_stack_config() -> Settings:
    values, secret_keys = raw_config()
    region = pulumi.Config("aws").get("region")
    outputs = previous_outputs()
    try:
        return load_settings(
            values,
            region=region,
            secret_keys=secret_keys,
            aws_facts=dataclasses.replace(
                lookup_aws_facts(values, region),
                live_deployment_controller=controller_from_outputs(outputs),
                previous_cutover=PreviousCutover.from_outputs(outputs),
                previous_service_url=outputs.get("serviceUrl") if isinstance(outputs.get("serviceUrl"), str) else None,
            ),
            project_dir=PROJECT_DIR,
            stack=pulumi.get_stack(),
        )
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


def previous_outputs() -> Mapping[str, Any]:
    """The stack's own outputs from its last update (an invoke, so preview sees them too; empty for a new
    stack). Validation reads the live deployment controller from them (switching it would replace the
    service) and the cutover in progress (its legacy record must not vanish while it carries traffic)."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    try:
        result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
    except Exception as error:  # noqa: BLE001 - any failure: refuse rather than guess
        raise pulumi.RunError(
            f"gantry: cannot read stack {name}'s own outputs to check its live deployment controller and "
            f"cutover ({error}); nothing was created"
        ) from None
    return (result.value or {}).get("outputs") or {}


def controller_from_outputs(outputs: Mapping[str, Any]) -> str | None:
    """ECS or CODE_DEPLOY from the stack's last outputs; None for a stack that has never deployed a service."""
    controller = outputs.get(CONTROLLER_OUTPUT)
    if isinstance(controller, str) and controller:
        return controller
    return LEGACY_CONTROLLER if outputs.get(LEGACY_OUTPUT) else None

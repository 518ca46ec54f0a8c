"""The program's one reader of `pulumi.Config`: raw `gantry:*` config -> AWS facts -> validated Settings.

Everything environment-specific enters here, before any resource is registered: the config as the CLI
passed it (however it passed it), the commit being deployed (GITHUB_SHA or git), what validation needs
from AWS and from other stacks (looked up with invokes, which create nothing: AZs, the hosted zone, the
permissions boundary, a promoted image's source stack and its digest in ECR), then `load_settings`.
A bad config stops the program with every problem listed.
Security stance: secret keys stay marked secret, and no error echoes a secret value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.env import lookup_aws_facts
from components.settings import NAMESPACE, ConfigError, Settings, load_settings
from components.settings.invocation import alarm_override, provider_session
from components.settings.migration import PreviousCutover
from components.settings.promotion import (
    DIGEST_OUTPUT,
    REPOSITORY_OUTPUT,
    PromotionFacts,
    RevisionError,
    repository_name,
    source_revision,
)
from components.settings.workload import DIGEST

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
    aws_config = pulumi.Config("aws")
    region = aws_config.get("region")
    default_tags = _object(aws_config.get("defaultTags"))
    outputs = previous_outputs()
    try:
        source = source_revision(os.environ, _git)
    except RevisionError as error:
        raise pulumi.RunError(f"gantry: {error}; nothing was created") from None
    try:
        settings = load_settings(
            values,
            region=region,
            secret_keys=secret_keys,
            aws_facts=dataclasses.replace(
                lookup_aws_facts(values, region),
                live_deployment_controller=controller_from_outputs(outputs),
                previous_cutover=PreviousCutover.from_outputs(outputs),
                previous_service_url=outputs.get("serviceUrl") if isinstance(outputs.get("serviceUrl"), str) else None,
                promotion=promotion_lookup(values.get(f"{NAMESPACE}:image")),
            ),
            project_dir=PROJECT_DIR,
            stack=pulumi.get_stack(),
            default_tags=default_tags,
        )
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    override, problems = alarm_override(os.environ, blue_green=settings.deployment.blue_green)
    # The dynamic providers run only for CodeDeploy, a pre-traffic task or a promoted image's run tag; only
    # then must their session match.
    needed = (
        settings.deployment.blue_green
        or settings.deployment.pre_traffic is not None
        or settings.image.promote_from is not None
    )
    session, session_problems = provider_session(raw_aws_config(), needed=needed)
    if problems or session_problems:
        raise pulumi.RunError(str(ConfigError([*problems, *session_problems])))
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    return dataclasses.replace(
        settings,
        provider_tags=dict(default_tags["tags"]),
        source=source,
        alarm_override=override,
        provider_session=session,
    )


def _object(raw: str | None) -> Any:
    """A config value as the object the CLI JSON-encoded (None when unset); a value that is no JSON stays the
    string it is, for validation to refuse by name (pulumi.Config.get_object would raise a traceback)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def raw_aws_config() -> dict[str, Any]:
    """Every `aws:*` key the CLI passed in (objects JSON-encoded), for the dynamic providers' session."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {k: v for k, v in merged.items() if k.startswith("aws:")}


def _git(args: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def _read_stack_outputs(name: str) -> Mapping[str, Any] | None:
    """A stack's last outputs through the engine's built-in (what `pulumi.StackReference` reads), or None."""
    try:
        result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
    except Exception:  # noqa: BLE001 - no such stack or no access: the caller reports which
        return None
    return (result.value or {}).get("outputs") or {}


def qualified_stack(name: str) -> str:
    """`dev` -> `<organization>/<project>/dev`; an organization/project/stack name stays as it is."""
    return name if "/" in name else f"{pulumi.get_organization()}/{pulumi.get_project()}/{name}"


def promotion_lookup(raw_image: Any) -> PromotionFacts | None:
    """For image.promoteFrom: the source stack's repository and digest, and whether ECR holds that digest,
    looked up with invokes (nothing is created) so a bad promotion stops `pulumi preview`. The checks run
    at preview because invokes do (https://www.pulumi.com/docs/iac/concepts/resources/functions/); get_image
    fails with ImageNotFoundException for a digest the repository lacks (ECR DescribeImages,
    https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImages.html)."""
    try:
        image = json.loads(raw_image) if isinstance(raw_image, str) else (raw_image or {})
    except ValueError:
        return None  # validation reports the malformed section
    source, pinned = (image.get("promoteFrom"), image.get("digest")) if isinstance(image, dict) else (None, None)
    if not isinstance(source, str) or not source.strip():
        return None
    stack = qualified_stack(source)
    outputs = _read_stack_outputs(stack)
    if outputs is None:
        return PromotionFacts(stack=stack, outputs_read=False)
    url = outputs.get(REPOSITORY_OUTPUT) if isinstance(outputs.get(REPOSITORY_OUTPUT), str) else None
    digest = pinned if isinstance(pinned, str) else outputs.get(DIGEST_OUTPUT)
    digest = digest if isinstance(digest, str) else None
    name = repository_name(url) if url else None
    facts = PromotionFacts(stack=stack, outputs_read=True, repository_url=url, digest=digest)
    if name is None or digest is None or not DIGEST.fullmatch(digest):
        return facts
    try:
        arn = aws.ecr.get_repository(name=name).arn
    except Exception:  # noqa: BLE001 - RepositoryNotFoundException or no access: reported as missing
        return facts
    try:
        aws.ecr.get_image(repository_name=name, image_digest=digest)
    except Exception:  # noqa: BLE001 - ImageNotFoundException: reported as not in the repository
        return dataclasses.replace(facts, repository_arn=arn)
    return dataclasses.replace(facts, repository_arn=arn, image_found=True)


def previous_outputs() -> Mapping[str, Any]:
    """The stack's own outputs from its last update (an invoke, so preview sees them too; empty for a new
    stack). Validation reads the live deployment controller from them (switching it would replace the
    service) and the cutover in progress (its legacy record must not vanish while it carries traffic)."""
    name = qualified_stack(pulumi.get_stack())
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

"""The program's one reader of `pulumi.Config`: raw `gantry:*` config -> AWS facts -> validated Settings.

Everything environment-specific enters here, before any resource is registered: the config as the CLI
passed it (however it passed it), what validation needs from AWS (looked up with invokes, which
create nothing), then `load_settings`. A bad config stops the program with every problem listed.
Security stance: secret keys stay marked secret, and no error echoes a secret value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.env import lookup_aws_facts
from components.settings import NAMESPACE, ConfigError, Settings, load_settings

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
    try:
        return load_settings(
            values,
            region=region,
            secret_keys=secret_keys,
            aws_facts=lookup_aws_facts(values, region),
            project_dir=PROJECT_DIR,
        )
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None

"""Pulumi mocks harness for the tests: the offline engine (`gantry/offline.py`) plus test-only stacks.

The engine lives in `gantry.offline` so `python -m gantry.plan` runs the program exactly as the tests
do; this module re-exports what the tests import and adds OWN_SERVICE, a team's own service instead of
the sample worker, which the whole-stack checks also run on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gantry import offline
from gantry.offline import (
    ACCOUNT,
    AVAILABILITY_ZONES,
    AWSX_OUTPUTS,
    BOUNDARY_ARN,
    CLOUDFRONT_VPC_ORIGIN_SG,
    CLOUDFRONT_ZONE_ID,
    COMPUTED,
    CURRENT_RUN,
    DEV_REPOSITORY,
    DEV_REPOSITORY_URL,
    DEV_STACK,
    DIGEST,
    EARLIER_DIGEST,
    EARLIER_RUN,
    HOSTED_ZONES,
    PRIVATE_ROUTE_TABLES,
    PRIVATE_SUBNETS,
    PUBLIC_SUBNETS,
    REGION,
    ROOT,
    TEST_SECRET_VALUE,
    VERSION_ID,
    VPC_ID,
    CapturingMonitor,
    GantryMocks,
    Graph,
    Options,
    Res,
    run_component,
    run_with_mocks,
    set_config,
    with_test_secrets,
)

__all__ = [
    "ACCOUNT",
    "AVAILABILITY_ZONES",
    "AWSX_OUTPUTS",
    "CURRENT_RUN",
    "EARLIER_DIGEST",
    "EARLIER_RUN",
    "DEV_STACK",
    "DEV_REPOSITORY_URL",
    "DEV_REPOSITORY",
    "BOUNDARY_ARN",
    "CLOUDFRONT_VPC_ORIGIN_SG",
    "CLOUDFRONT_ZONE_ID",
    "COMPUTED",
    "DIGEST",
    "HOSTED_ZONES",
    "OWN_SERVICE",
    "OWN_SERVICE_CHANGES",
    "PRIVATE_ROUTE_TABLES",
    "PRIVATE_SUBNETS",
    "PUBLIC_SUBNETS",
    "REGION",
    "ROOT",
    "TEST_SECRET_VALUE",
    "VERSION_ID",
    "VPC_ID",
    "CapturingMonitor",
    "GantryMocks",
    "Graph",
    "Options",
    "Res",
    "run_component",
    "run_program",
    "run_with_mocks",
    "set_config",
    "stack_config",
    "with_test_secrets",
]

# A team's own service instead of the sample worker (tests/own_service: the image contract and nothing
# else): the dev stack with that image, its port, its health command and its own secret. The
# whole-stack checks run on it too, so they are about the contract, not about the sample.
OWN_SERVICE = "own-service"
OWN_SERVICE_CHANGES: dict[str, Any] = {
    "gantry:image": {"context": "tests/own_service", "dockerfile": "tests/own_service/Dockerfile", "keepImages": 10},
    # The batch consumer is the sample worker's second command; a team's own image has none.
    "gantry:queue": {"enabled": False},
    "gantry:container": {
        "port": 8080,
        "healthCheckPath": "/health",
        "healthCheckCommand": ["CMD", "python", "healthcheck.py"],
        "cpu": 512,
        "memory": 1024,
        "architecture": "X86_64",
        "stopTimeoutSeconds": 20,
        "environment": {"LOG_FORMAT": "json", "UPSTREAM_BASE_URL": "https://api.openai.com/v1"},
    },
    "gantry:secrets": [{"name": "UPSTREAM_TOKEN", "create": True}],
}


def stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """What the CLI passes for a committed stack (for OWN_SERVICE: the dev stack with its changes)."""
    if stack == OWN_SERVICE:
        config = {**offline.stack_config("dev", root), **OWN_SERVICE_CHANGES}
        # An own image writes none of the sample worker's metrics, so it scales without its targets.
        config["gantry:autoscaling"] = {
            k: v
            for k, v in config["gantry:autoscaling"].items()
            if k not in ("inFlightPerTask", "tokensPerMinutePerTask")
        }
        return config
    return offline.stack_config(stack, root)


def run_program(
    stack: str, config: dict[str, Any] | None = None, secret_keys: list[str] | None = None, graph: Graph | None = None
) -> Graph:
    """Run the real __main__.py under mocks for a committed stack file, OWN_SERVICE, or an explicit config."""
    if config is None:
        config, secret_keys = with_test_secrets(stack_config(stack))
    return offline.run_program(stack, config, secret_keys, graph)

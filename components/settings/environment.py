"""The container environment gantry sets itself: PORT and DRAIN_TIMEOUT_SECONDS, from the container settings.

One builder for the three places that need the same values: the task definition
(`components.workload.service.container_definitions`), and the loader's checks of the sample worker's
own limits and body size against what its container will really get (`components.settings.loader`).
Pure; no secrets pass through it. RESERVED_ENV (settings/workload.py) keeps these names out of
`container.environment`, so the values here cannot be overridden by config.
"""

from __future__ import annotations

from components.settings.workload import ContainerSettings


def gantry_environment(container: ContainerSettings, *, serves_port: bool = True) -> dict[str, str]:
    """PORT (the one port the container, target group and health check share; left out for a queue worker,
    which serves none) and DRAIN_TIMEOUT_SECONDS (stopTimeout minus the drain margin)."""
    port = {"PORT": str(container.port)} if serves_port else {}
    return {**port, "DRAIN_TIMEOUT_SECONDS": str(container.drain_timeout_seconds)}

"""gantry's settings: one pydantic model per config section, validated before any resource exists.

Data flows one way: stack config -> `load_settings` -> these frozen models -> component Args. No
component reads `pulumi.Config`. See `loader.py` for the loader and `reference.py` for the generated
docs (README table, Pulumi.yaml descriptions).
"""

from components.settings.access import PolicyStatement, SecretSpec
from components.settings.base import NAMESPACE, ConfigError
from components.settings.deployment import DeploymentSettings
from components.settings.edge import DomainSettings, HealthCheckSettings, LoadBalancerSettings
from components.settings.loader import (
    CONFIG_KEYS,
    AwsFacts,
    SecretValues,
    Settings,
    load_settings,
    partition_for_region,
    required_interface_endpoints,
)
from components.settings.network import EndpointSettings, NetworkSettings
from components.settings.operations import OperationsSettings, Subscribers
from components.settings.sample_worker import WorkerMetrics
from components.settings.tracing import TracingSettings
from components.settings.workload import (
    AutoscalingSettings,
    CapacityProvider,
    ContainerSettings,
    ImageSettings,
    LogsSettings,
    ScheduleSettings,
    ServiceSettings,
)

__all__ = [
    "CONFIG_KEYS",
    "NAMESPACE",
    "AutoscalingSettings",
    "AwsFacts",
    "CapacityProvider",
    "ConfigError",
    "ContainerSettings",
    "DeploymentSettings",
    "DomainSettings",
    "EndpointSettings",
    "HealthCheckSettings",
    "ImageSettings",
    "LoadBalancerSettings",
    "LogsSettings",
    "NetworkSettings",
    "OperationsSettings",
    "PolicyStatement",
    "SecretSpec",
    "SecretValues",
    "ScheduleSettings",
    "ServiceSettings",
    "Settings",
    "Subscribers",
    "TracingSettings",
    "WorkerMetrics",
    "load_settings",
    "partition_for_region",
    "required_interface_endpoints",
]

"""Settings of the `tracing` section: the AWS Distro for OpenTelemetry collector, on demand.

Off by default: tracing costs a sidecar's memory in every task and X-Ray's per-trace price, and it adds
the only `*`-resource permissions the task role can hold. On, every task runs the collector beside the
app, the app exports OTLP spans to it on localhost, and the collector forwards them to X-Ray.
Security stance: the collector image is pinned (a version tag or a digest, never `latest`), because
the sidecar runs with the task role's credentials and a floating tag would change what holds them
without any change here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from components.settings.base import Section, Token

# The ADOT collector's own repository on ECR Public, as the ADOT ECS docs reference it
# (https://aws-observability.github.io/observability-best-practices/guides/containers/oss/ecs/best-practices-metrics-collection-2/).
# v0.45.1 is the release the collector repository's VERSION file names
# (github.com/aws-observability/aws-otel-collector/blob/main/VERSION). No registry is reachable from
# where this was written, so the default is that tag rather than a digest nobody here could check;
# pin `collectorImage` to `...@sha256:<digest>` once you have pulled and reviewed the image.
DEFAULT_COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1"
_IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:(?P<digest>[a-f0-9]{64}))$"
)


def pinned_image(value: str) -> str:
    """registry/repository:tag or registry/repository@sha256:<64 hex>; `latest` and no tag are refused."""
    m = _IMAGE.match(value)
    if not m:
        raise ValueError(
            "must be registry/repository:tag or registry/repository@sha256:<64 hex digits>, such as "
            f"{DEFAULT_COLLECTOR_IMAGE}"
        )
    if m.group("tag") == "latest":
        raise ValueError("must pin a version or digest, not latest: the sidecar holds the task role's credentials")
    return value


class TracingSettings(Section):
    enabled: bool = False
    """Opt-in. Off, there is no collector, no X-Ray permissions, no OTEL_* variables; the task definition and
    roles are exactly those of a stack without tracing. True adds the ADOT collector sidecar, the
    task role's X-Ray write actions, and OTEL_EXPORTER_OTLP_ENDPOINT/OTEL_SERVICE_NAME for the app."""
    collector_image: Annotated[Token, AfterValidator(pinned_image)] = DEFAULT_COLLECTOR_IMAGE
    """ADOT's ECR Public image at the release its repository names: a version tag or a digest, never latest."""
    collector_memory_reservation_mib: int = Field(64, ge=32, le=1024)
    """MiB: the collector's soft reservation inside the task's memory (a traces-only
    pipeline with a 1 s batch holds little); it may use more while the app leaves room."""

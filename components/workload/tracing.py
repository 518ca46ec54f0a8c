"""Tracing on demand: the ADOT collector sidecar, the app's OTLP variables and the X-Ray write policy, as pure specs.

With `tracing.enabled`, each task runs the AWS Distro for OpenTelemetry collector beside the app; the
app sends OTLP/HTTP to it on localhost:4318 (containers of an awsvpc task share one network
namespace), and the collector's `awsxray` exporter writes the spans to X-Ray with the task role.
The collector runs the image's bundled traces-only pipeline, /etc/ecs/ecs-xray.yaml (OTLP receiver
-> resourcedetection -> batch -> awsxray; the image copies the repository's config/ into /etc,
github.com/aws-observability/aws-otel-collector config/ecs/ecs-xray.yaml and cmd/awscollector/Dockerfile),
rather than ecs-default-config.yaml: that one also runs the awsemf metrics exporter, which would need
CloudWatch Logs write permissions the app's metrics already have another path for (EMF on stdout).
The collector is not essential: if it dies, the app keeps serving and its exporter drops spans.
Security stance: the task role gains exactly AWSXrayWriteOnlyAccess's five actions, on Resource "*"
because X-Ray's actions take no resource ARN (Service Authorization Reference, AWS X-Ray: no
resource types for PutTraceSegments, PutTelemetryRecords, GetSampling*); the sidecar runs as a
non-root user with a read-only root filesystem and no Linux capabilities, and publishes no port (the
task security group admits only the load balancer, on the app's port).
"""

from __future__ import annotations

from typing import Any

from components.settings import TracingSettings

COLLECTOR_CONTAINER_NAME = "otel-collector"
COLLECTOR_CONFIG = "/etc/ecs/ecs-xray.yaml"
COLLECTOR_LOG_STREAM_PREFIX = "otel-collector"
# The OTLP/HTTP receiver of ecs-xray.yaml (0.0.0.0:4318); the app appends /v1/traces per the OTLP
# exporter spec (OTEL_EXPORTER_OTLP_ENDPOINT is the base URL for all signals).
OTLP_ENDPOINT = "http://localhost:4318"
# The ADOT image's own health probe binary (it queries the health_check extension ecs-xray.yaml enables).
COLLECTOR_HEALTH_COMMAND = ("CMD", "/healthcheck")
# The non-root uid:gid the sidecar runs as: the image is FROM scratch with no USER, and the collector
# needs no root (it binds ports above 1024 and writes no files).
COLLECTOR_USER = "10001:10001"
# AWSXrayWriteOnlyAccess, verbatim (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSXrayWriteOnlyAccess.html).
XRAY_WRITE_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
)


def app_environment(settings: TracingSettings, service_name: str) -> dict[str, str]:
    """The standard OpenTelemetry variables the app reads; none when tracing is off."""
    if not settings.enabled:
        return {}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_ENDPOINT, "OTEL_SERVICE_NAME": service_name}


def collector_container(settings: TracingSettings, *, log_group_name: str, region: str) -> dict[str, Any]:
    """The collector's container definition, as ECS's JSON."""
    return {
        "name": COLLECTOR_CONTAINER_NAME,
        "image": settings.collector_image,
        # Not essential: a crashed collector must not stop the task (the app would go down with it).
        "essential": False,
        "command": [f"--config={COLLECTOR_CONFIG}"],
        "memoryReservation": settings.collector_memory_reservation_mib,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": region,
                "awslogs-stream-prefix": COLLECTOR_LOG_STREAM_PREFIX,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
        "healthCheck": {
            "command": list(COLLECTOR_HEALTH_COMMAND),
            "interval": 30,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 10,
        },
        "readonlyRootFilesystem": True,
        "user": COLLECTOR_USER,
        "linuxParameters": {"capabilities": {"drop": ["ALL"]}},
    }


def xray_write_policy() -> dict[str, Any]:
    """The task role's only addition when tracing is on: write spans, read sampling rules."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "XRayWriteTraces",
                "Effect": "Allow",
                "Action": list(XRAY_WRITE_ACTIONS),
                # X-Ray's write and sampling actions accept no narrower resource.
                "Resource": "*",
            }
        ],
    }

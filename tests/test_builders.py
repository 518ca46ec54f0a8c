"""The pure builders the component constructors name as steps: the container environment gantry sets, the
TLS-only bucket statement every bucket policy carries, and the checks constructors run before any resource.

Each recipe had two or three copies before (issue 20); a test here fails when one builder drifts from what
its callers must all produce.
"""

from __future__ import annotations

import pytest

from components import policies
from components.edge.load_balancer import check_listeners
from components.env import AwsEnv
from components.settings import ContainerSettings, DomainSettings
from components.settings.environment import gantry_environment
from components.workload.service import check_deployment_controller, container_definitions

CONTAINER = ContainerSettings(
    port=9000,
    health_check_path="/ready",
    cpu=512,
    memory=1024,
    architecture="X86_64",
    stop_timeout_seconds=60,
)
ENV = AwsEnv(account_id="123456789012", region="eu-west-1", partition="aws", stack="dev")
BUCKET = "arn:aws:s3:::gantry-logs"


def test_gantry_environment_is_the_port_and_the_drain_window() -> None:
    # DRAIN_TIMEOUT_SECONDS is stopTimeout minus the 5 s margin (components/settings/workload.py).
    assert gantry_environment(CONTAINER) == {"PORT": "9000", "DRAIN_TIMEOUT_SECONDS": "55"}
    assert gantry_environment(CONTAINER, serves_port=False) == {"DRAIN_TIMEOUT_SECONDS": "55"}


@pytest.mark.parametrize("command", [(), ("python", "-m", "worker.consumer")])
def test_the_task_definition_sets_exactly_what_gantry_environment_says(command: tuple[str, ...]) -> None:
    [app] = container_definitions(
        image="repo@sha256:" + "0" * 64,
        container=CONTAINER,
        secrets={},
        secret_versions={},
        log_group_name="logs",
        region="eu-west-1",
        health_check_start_period=60,
        command=command,
    )
    variables = {v["name"]: v["value"] for v in app["environment"]}
    expected = gantry_environment(CONTAINER, serves_port=not command)
    assert {k: variables.get(k) for k in ("PORT", "DRAIN_TIMEOUT_SECONDS")} == {
        "PORT": expected.get("PORT"),
        "DRAIN_TIMEOUT_SECONDS": expected["DRAIN_TIMEOUT_SECONDS"],
    }


def test_every_bucket_policy_carries_the_one_tls_only_statement() -> None:
    statement = policies.tls_only_bucket_statement(BUCKET)
    # "aws:SecureTransport ... false" denies plain HTTP (Amazon S3 User Guide, security best practices).
    assert statement == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [BUCKET, f"{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    documents = [
        policies.alb_access_log_bucket_policy(ENV, bucket_arn=BUCKET, prefix="alb"),
        policies.cloudfront_log_bucket_policy(ENV, bucket_arn=BUCKET, delivery_region="us-east-1"),
        policies.batch_bucket_policy(BUCKET),
    ]
    for document in documents:
        assert statement in document["Statement"]


def test_a_controller_gantry_does_not_know_is_refused_by_name() -> None:
    check_deployment_controller("ECS")
    check_deployment_controller("CODE_DEPLOY")
    with pytest.raises(ValueError, match=r"deployment_controller='EXTERNAL' is invalid; allowed: ECS, CODE_DEPLOY"):
        check_deployment_controller("EXTERNAL")


class _Args:
    def __init__(self, *, domain: DomainSettings | None, internal: bool, port: int | None, roles: tuple[str, ...]):
        self.domain, self.internal, self.test_listener_port, self.target_group_roles = domain, internal, port, roles


def test_listener_layouts_that_cannot_be_safe_are_refused_before_any_resource() -> None:
    domain = DomainSettings(hosted_zone_id="Z123", hostname="api.example.com")
    check_listeners(_Args(domain=None, internal=True, port=None, roles=("main",)))  # type: ignore[arg-type]
    check_listeners(_Args(domain=domain, internal=False, port=9001, roles=("blue", "green")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a public load balancer needs a domain"):
        check_listeners(_Args(domain=None, internal=False, port=None, roles=("main",)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a test listener needs a second target group"):
        check_listeners(_Args(domain=domain, internal=False, port=9001, roles=("blue",)))  # type: ignore[arg-type]

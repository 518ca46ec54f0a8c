"""Ordering and resource options on the whole program, for both committed stacks (and a domain variant).

Pulumi's mocks never show `new_resource` a resource's dependencies or options; the harness's
`CapturingMonitor` records them from each RegisterResourceRequest. Each test here guards an ordering
or option whose loss a real first `pulumi up` (or a later one) would hit: tasks that start before their
listener, role policy or secret value exist; an HTTPS listener before its certificate is valid; an ALB
before ELB may write its log bucket; a `pulumi up` that resets autoscaled capacity or deletes the
image a rollback needs; a refactor that replaces the live cluster.
"""

from __future__ import annotations

import pytest

from components.settings.deployment import DeploymentSettings
from tests.harness import HOSTED_ZONES, VPC_ID, Graph, Res, run_program, stack_config, with_test_secrets

STACKS = ["dev", "prod"]


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def graph(stack) -> Graph:
    return run_program(stack)


def through_input(res: Res, prop: str, other: Res) -> bool:
    """`other` reaches `res` through the input `prop` (so the engine orders them, and the value waits)."""
    return other.urn in res.opts.property_dependencies.get(prop, frozenset())


def test_tasks_start_only_after_the_listener_the_endpoints_and_the_capacity_providers(graph, stack):
    service = graph.one("aws:ecs/service:Service", "gantry-service")
    # ECS refuses a target group that no listener forwards to.
    assert service.depends_on(graph.named("gantry-lb-http"))
    assert service.depends_on(graph.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"))
    endpoints = [r for r in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")]
    assert endpoints and all(service.depends_on(e) for e in endpoints)


def test_the_execution_role_is_handed_out_only_after_its_policy(graph):
    task_definition = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task")
    assert through_input(task_definition, "executionRoleArn", graph.named("gantry-roles-execution-policy"))
    assert through_input(task_definition, "executionRoleArn", graph.named("gantry-roles-execution"))


def test_the_secret_arn_reaches_the_task_only_after_the_value_exists(graph):
    task_definition = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task")
    value = graph.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert through_input(task_definition, "containerDefinitions", value)
    # The execution role's read permission names the same secret, and waits for it the same way.
    assert through_input(graph.named("gantry-roles-execution-policy"), "policy", value)


def test_the_alb_waits_for_its_log_bucket_policy():
    g = run_program("prod")
    alb = g.one("aws:lb/loadBalancer:LoadBalancer")
    policy = g.one("aws:s3/bucketPolicy:BucketPolicy", "gantry-lb-access-logs-policy")
    assert alb.depends_on(policy)  # ELB test-writes the bucket when logging is switched on
    assert policy.depends_on(
        g.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "gantry-lb-access-logs-public-access")
    )


def test_the_edge_log_delivery_waits_for_its_bucket_policy():
    g = run_program("prod")
    policy = g.named("gantry-edge-access-logs-policy")
    # The delivery is checked against the bucket policy when created; the policy waits for the block.
    assert g.one("aws:cloudwatch/logDelivery:LogDelivery").depends_on(policy)
    assert policy.depends_on(g.named("gantry-edge-access-logs-public-access"))


def test_the_https_listener_waits_for_a_validated_certificate():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    [zone] = HOSTED_ZONES
    config["gantry:domain"] = {"hostedZoneId": zone, "hostname": "embed.acme.io"}
    config["gantry:edge"] = {"mode": "alb"}
    g = run_program("dev", config, secret_keys)
    https = g.named("gantry-lb-https")
    assert through_input(https, "certificateArn", g.one("aws:acm/certificateValidation:CertificateValidation"))
    assert g.one("aws:ecs/service:Service", "gantry-service").depends_on(https)


def test_the_distribution_waits_for_its_validated_us_east_1_certificate():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    [zone] = HOSTED_ZONES
    config["gantry:domain"] = {"hostedZoneId": zone, "hostname": "embed.acme.io"}
    g = run_program("dev", config, secret_keys)
    distribution = g.one("aws:cloudfront/distribution:Distribution")
    assert through_input(
        distribution, "viewerCertificate", g.one("aws:acm/certificateValidation:CertificateValidation")
    )
    provider = g.named("gantry-edge-us-east-1")
    for certificate_part in ("aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation"):
        assert g.one(certificate_part).opts.provider.startswith(provider.urn)


def test_the_cloudfront_path_into_the_load_balancer_opens_after_the_vpc_origin_exists(graph):
    # CloudFront creates its VPC-origin security group with the first VPC origin: looked up before that,
    # it does not exist and the first `pulumi up` fails. The rule's group id comes from a look-up that
    # waits for the origin, so the dependency shows on the rule.
    rule = graph.named("gantry-edge-alb-from-cloudfront")
    assert rule.depends_on(graph.one("aws:cloudfront/vpcOrigin:VpcOrigin"))
    ((_, lookup),) = [c for c in graph.call_args if c[0] == "aws:ec2/getSecurityGroup:getSecurityGroup"]
    assert lookup["filters"] == [{"name": "group-name", "values": ["CloudFront-VPCOrigins-Service-SG"]}]
    assert lookup["vpcId"] == VPC_ID


DEFAULT_STRATEGY = DeploymentSettings.model_fields["strategy"].default


def test_pulumi_up_leaves_the_task_count_to_autoscaling(graph, stack):
    ignored = graph.one("aws:ecs/service:Service", "gantry-service").opts.ignore_changes
    assert ignored[0] == "desiredCount"
    # A stack file states the strategy only where it departs from the default (components/settings/pinned.py).
    strategy = stack_config(stack).get("gantry:deployment", {}).get("strategy", DEFAULT_STRATEGY)
    if strategy == "rolling":
        assert ignored == ("desiredCount",)


def test_pushed_images_are_never_deleted_by_pulumi():
    # dev builds (prod promotes dev's images and builds nothing: tests/test_promotion.py).
    image = run_program("dev").one("docker-build:index:Image")
    assert image.opts.retain_on_delete is True
    assert image.name == "gantry-image-image"  # stable: a new tag updates it, never replaces it


def test_the_cluster_keeps_its_identity_across_the_cluster_service_split(graph, stack):
    # Before the split the cluster's parent was the top-level FargateService "gantry"; the engine names a
    # top-level resource urn:pulumi:<stack>::<project>::<type>::<name> (the mock monitor prefixes the
    # root stack's type, so its own URNs are not compared here).
    old_parent = f"urn:pulumi:{stack}::gantry::gantry:ecs:FargateService::gantry"
    services = [r for r in graph.components() if r.typ == "gantry:ecs:FargateService"]
    assert [r.name for r in services if not r.opts.parent.endswith("gantry:batch:BatchJobs::gantry-batch")] == [
        "gantry"
    ]
    cluster = next(r for r in graph.components() if r.typ == "gantry:ecs:Cluster")
    for res in (
        graph.one("aws:ecs/cluster:Cluster"),
        graph.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"),
    ):
        assert res.name in ("gantry-cluster", "gantry-capacity-providers")  # logical names unchanged
        (alias,) = res.opts.aliases
        assert alias.spec.parentUrn == old_parent
        assert res.opts.parent == cluster.urn  # now under the shared Cluster component


def test_nothing_is_protected_or_replaced_by_surprise(graph):
    # Deletion protection lives where AWS enforces it (the ALB, per stack); Pulumi's `protect` would
    # block `pulumi destroy` of dev as well, so no resource sets it.
    assert not [r.name for r in graph.resources if r.opts.protect]
    assert not [r.name for r in graph.resources if r.opts.delete_before_replace]

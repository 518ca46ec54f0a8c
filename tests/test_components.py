"""Each component built alone under mocks, with Args a stack would not use, plus the pure helpers
the components are made of (container definitions, service options, digest pinning, .dockerignore)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.edge.load_balancer import ServiceLoadBalancer, ServiceLoadBalancerArgs, listener_ports
from components.env import AwsEnv
from components.network.endpoints import VpcEndpoints, VpcEndpointsArgs
from components.network.security_groups import ServiceSecurityGroups, ServiceSecurityGroupsArgs, allow
from components.network.vpc import Network, NetworkArgs
from components.settings import (
    AutoscalingSettings,
    CapacityProvider,
    ContainerSettings,
    DomainSettings,
    EndpointSettings,
    HealthCheckSettings,
    ImageSettings,
    LoadBalancerSettings,
    LogsSettings,
    NetworkSettings,
    PolicyStatement,
    SecretSpec,
    ServiceSettings,
)
from components.workload.cluster import Cluster
from components.workload.dockerignore import context_files, excluded, parse
from components.workload.registry import ImageRepository, ImageRepositoryArgs, content_tag, pinned_uri
from components.workload.roles import TaskRoles, TaskRolesArgs
from components.workload.scaling import (
    MetricQuery,
    RequestCounts,
    ScalingRule,
    standard_rules,
    target_tracking_configuration,
)
from components.workload.secrets import AppSecrets, AppSecretsArgs, SecretRef, SecretRefs, version_labels
from components.workload.service import (
    FargateService,
    FargateServiceArgs,
    TargetAttachment,
    container_definitions,
)
from tests.harness import ACCOUNT, DIGEST, PRIVATE_SUBNETS, REGION, ROOT, VERSION_ID, run_component

SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db-password-Xy12Zw"
PARAM_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/gantry/hf-token"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11112222-3333-4444-5555-666677778888"
ENV = AwsEnv(account_id=ACCOUNT, region=REGION, partition="aws", stack="test")

LB_SETTINGS = LoadBalancerSettings(
    ingress_cidrs=("203.0.113.0/24",),
    idle_timeout_seconds=60,
    deletion_protection=True,
    access_logs=False,
    access_log_retention_days=30,
    desync_mitigation_mode="strictest",
    tls_policy="ELBSecurityPolicy-TLS13-1-3-2021-06",
    deregistration_delay_seconds=20,
    health_check=HealthCheckSettings(
        interval_seconds=10, timeout_seconds=4, healthy_threshold=2, unhealthy_threshold=3
    ),
)
CONTAINER = ContainerSettings(
    port=9000,
    health_check_path="/ready",
    health_check_command=("CMD", "python", "-m", "worker.healthcheck"),
    cpu=512,
    memory=1024,
    architecture="X86_64",
    stop_timeout_seconds=60,
    user="10001:10001",
    environment={"LOG_LEVEL": "info"},
)


@dataclass(frozen=True)
class FakeVpc:
    vpc_id: str = "vpc-1"
    public_subnet_ids: Sequence[str] = ("subnet-pub-a", "subnet-pub-b")
    private_subnet_ids: Sequence[str] = ("subnet-a", "subnet-b")
    private_route_table_ids: Sequence[str] = ("rtb-a", "rtb-b")


@dataclass(frozen=True)
class FakeImage:
    image_uri: str = f"repo@{DIGEST}"
    repository_arn: str = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/svc"


def test_network_without_flow_logs_or_nat():
    g = run_component(
        lambda: Network(
            "net",
            NetworkArgs(
                env=ENV,
                settings=NetworkSettings(
                    cidr_block="10.50.0.0/16", availability_zones=3, nat_strategy="none", flow_logs=False
                ),
            ),
        )
    )
    vpc = g.one("awsx:ec2:Vpc").inputs
    assert vpc["natGateways"] == {"strategy": "None"}
    assert vpc["numberOfAvailabilityZones"] == 3 and vpc["cidrBlock"] == "10.50.0.0/16"
    assert vpc["enableDnsHostnames"] is True and vpc["enableDnsSupport"] is True
    assert [(s["type"], s["cidrMask"]) for s in vpc["subnetSpecs"]] == [("Public", 24), ("Private", 20)]
    assert not g.of_type("aws:ec2/flowLog:FlowLog") and not g.of_type("aws:cloudwatch/logGroup:LogGroup")
    # Private route tables are found by their association with the private subnets, not guessed.
    ((token, args),) = [c for c in g.call_args if c[0].endswith("getRouteTables")]
    assert args["filters"] == [{"name": "association.subnet-id", "values": PRIVATE_SUBNETS}]


def test_endpoints_admit_each_client_and_give_each_client_egress_only_to_them():
    g = run_component(
        lambda: VpcEndpoints(
            "ep",
            VpcEndpointsArgs(
                env=AwsEnv(account_id=ACCOUNT, region="us-east-2", partition="aws", stack="test"),
                vpc=FakeVpc(),
                settings=EndpointSettings(interface=("ecr.api", "ssm"), s3_gateway=True),
                clients={"api": "sg-api", "worker": "sg-worker"},
            ),
        )
    )
    sg = g.named("ep-sg").outputs["id"]
    ingress = sorted(r.inputs["referencedSecurityGroupId"] for r in g.of_type(SG_INGRESS))
    assert ingress == ["sg-api", "sg-worker"]
    egress = sorted(
        (r.inputs["securityGroupId"], r.inputs.get("referencedSecurityGroupId") or r.inputs["prefixListId"])
        for r in g.of_type(SG_EGRESS)
    )
    pl = g.named("ep-s3").outputs["prefixListId"]
    assert egress == sorted([("sg-api", sg), ("sg-worker", sg), ("sg-api", pl), ("sg-worker", pl)])
    names = sorted(e.inputs["serviceName"] for e in g.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"))
    assert names == ["com.amazonaws.us-east-2.ecr.api", "com.amazonaws.us-east-2.s3", "com.amazonaws.us-east-2.ssm"]
    assert g.named("ep-s3").inputs["routeTableIds"] == ["rtb-a", "rtb-b"]


def test_s3_gateway_only_needs_no_endpoint_security_group():
    g = run_component(
        lambda: VpcEndpoints(
            "ep",
            VpcEndpointsArgs(
                env=ENV, vpc=FakeVpc(), settings=EndpointSettings(s3_gateway=True), clients={"service": "sg-task"}
            ),
        )
    )
    assert [r.inputs.get("prefixListId") for r in g.of_type(SG_EGRESS)] == ["pl-6da54004"]
    assert not g.of_type("aws:ec2/securityGroup:SecurityGroup") and not g.of_type(SG_INGRESS)


def test_security_groups_open_every_listener_to_every_range_and_nothing_else():
    g = run_component(
        lambda: ServiceSecurityGroups(
            "sg",
            ServiceSecurityGroupsArgs(
                vpc_id="vpc-1",
                container_port=9000,
                listener_ports=(80, 443),
                ingress_cidrs=("203.0.113.0/24", "198.51.100.0/24"),
                https_egress_to_internet=False,
            ),
        )
    )
    alb = g.named("sg-alb").outputs["id"]
    rules = sorted(
        (r.inputs["fromPort"], r.inputs["cidrIpv4"])
        for r in g.of_type(SG_INGRESS)
        if r.inputs["securityGroupId"] == alb
    )
    assert rules == [(80, "198.51.100.0/24"), (80, "203.0.113.0/24"), (443, "198.51.100.0/24"), (443, "203.0.113.0/24")]
    assert not [r for r in g.of_type(SG_EGRESS) if r.inputs.get("cidrIpv4")]


def test_roles_grant_ssm_and_kms_only_when_declared():
    g = run_component(
        lambda: TaskRoles(
            "roles",
            TaskRolesArgs(
                env=ENV,
                repository_arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/svc",
                log_group_arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:svc",
                secrets=SecretRefs(
                    refs=(SecretRef(name="HF_TOKEN", store="ssm", arn=PARAM_ARN, version="3", kms_key_arn=KEY_ARN),)
                ),
            ),
        )
    )
    policy = g.named("roles-execution-policy").json("policy")
    by_action = {
        a: s for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert by_action["ssm:GetParameters"]["Resource"] == [PARAM_ARN]
    assert by_action["kms:Decrypt"]["Resource"] == [KEY_ARN]
    assert "secretsmanager:GetSecretValue" not in by_action
    assert not [p for p in g.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "roles-task-policy"]


def test_app_secrets_create_or_reference_and_carry_each_version():
    specs = (
        SecretSpec(name="API_KEYS", create=True, kms_key_arn=KEY_ARN),
        SecretSpec(name="DB_PASSWORD", secrets_manager_arn=SECRET_ARN),
        SecretSpec(name="HF_TOKEN", ssm_parameter_arn=PARAM_ARN, kms_key_arn=KEY_ARN),
    )
    built: dict = {}

    def build():
        built["s"] = AppSecrets("sec", AppSecretsArgs(specs=specs, values={"API_KEYS": "{}"}))
        refs = built["s"].refs.refs
        return pulumi.Output.all(
            arns=pulumi.Output.all(*[r.arn for r in refs]), versions=pulumi.Output.all(*[r.version for r in refs])
        ).apply(built.update)

    g = run_component(build)
    created = g.one("aws:secretsmanager/secret:Secret")
    version = g.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert created.inputs["kmsKeyId"] == KEY_ARN and created.inputs["recoveryWindowInDays"] == 7
    assert built["arns"] == [created.outputs["arn"], SECRET_ARN, PARAM_ARN]
    # Created: the new version's id; referenced: AWSCURRENT's id (never the value); SSM: the version.
    assert built["versions"] == [version.outputs["versionId"], VERSION_ID, "4"]
    refs = built["s"].refs
    assert refs.of_store("ssm") == [PARAM_ARN]
    assert refs.kms_key_arns == [KEY_ARN]
    assert len(refs.of_store("secretsmanager")) == 2
    ((_, ssm_args),) = [c for c in g.call_args if c[0] == "aws:ssm/getParameter:getParameter"]
    assert ssm_args["withDecryption"] is False


def test_version_labels_make_a_new_value_a_new_revision():
    assert version_labels({"B": "2", "A": "v1"}) == {"gantry.secret-version.A": "v1", "gantry.secret-version.B": "2"}
    assert version_labels({"A": "v1"}) != version_labels({"A": "v2"})


def test_image_repository_keeps_every_pushed_image():
    g = run_component(
        lambda: ImageRepository(
            "img",
            ImageRepositoryArgs(
                settings=ImageSettings(context="app", dockerfile="app/Dockerfile", keep_images=5, force_delete=True),
                platform="linux/amd64",
                project_dir=ROOT,
            ),
        )
    )
    image = g.one("docker-build:index:Image")
    assert image.inputs["platforms"] == ["linux/amd64"]
    assert image.inputs["context"] == {"location": "app"}
    assert image.inputs["buildOnPreview"] is False
    repo = g.one("aws:ecr/repository:Repository")
    assert repo.inputs["forceDelete"] is True
    # Pushed by digest only: an immutable tag could never be pushed again for a redeploy of that build.
    assert not image.inputs.get("tags") and image.inputs["push"] is False
    ((export,),) = [image.inputs["exports"]]
    assert export["registry"]["names"] == [repo.outputs["repositoryUrl"]]
    assert export["registry"]["pushByDigest"] is True
    content = content_tag(ROOT / "app", ROOT / "app/Dockerfile", "linux/amd64")
    assert image.inputs["labels"] == {"gantry.build-context": content}
    # One stable logical name, never deleted by Pulumi: a new tag updates it, and the previous image
    # stays in ECR for rollbacks until the lifecycle policy expires it.
    assert image.name == "img-image"
    assert image.opts.retain_on_delete is True
    (registry,) = image.inputs["registries"]
    assert registry["address"] == repo.outputs["repositoryUrl"] and registry["username"] == "AWS"


def test_the_image_inputs_do_not_depend_on_where_the_project_is_checked_out(tmp_path):
    """Each CI run checks out into a new absolute path: the image's inputs must not carry it, or every run
    would see a changed build and push again."""

    def image_inputs(project_dir):
        g = run_component(
            lambda: ImageRepository(
                "img",
                ImageRepositoryArgs(
                    settings=ImageSettings(context="app", dockerfile="app/Dockerfile"),
                    platform="linux/arm64",
                    project_dir=project_dir,
                ),
            )
        )
        return g.one("docker-build:index:Image").inputs

    elsewhere = tmp_path / "runner" / "work" / "gantry"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.symlink_to(ROOT, target_is_directory=True)
    here, there = image_inputs(ROOT), image_inputs(elsewhere)
    assert here == there
    assert str(ROOT) not in json.dumps(here) and str(tmp_path) not in json.dumps(there)


def test_content_tag_changes_exactly_with_what_the_build_sees(tmp_path):
    context = tmp_path / "app"
    (context / "worker" / "__pycache__").mkdir(parents=True)
    (context / "tests").mkdir()
    (context / ".venv" / "lib").mkdir(parents=True)
    (context / "worker" / "api.py").write_text("v1")
    (context / ".dockerignore").write_text("**/__pycache__\ntests/\n*.md\n.venv\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text("FROM scratch")
    first = content_tag(context, dockerfile, "linux/arm64")
    assert first == content_tag(context, dockerfile, "linux/arm64")
    assert len(first) <= 128 and first.startswith("build-")
    # What .dockerignore leaves out never changes the tag...
    (context / "worker" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"cache")
    (context / "tests" / "test_api.py").write_text("assert True")
    (context / "README.md").write_text("# notes")
    (context / ".venv" / "lib" / "site.py").write_text("x = 1")
    assert content_tag(context, dockerfile, "linux/arm64") == first
    # ...but a README below the top level is sent (`*.md` is top-level only in Docker's rules).
    (context / "worker" / "NOTES.md").write_text("sent")
    second = content_tag(context, dockerfile, "linux/arm64")
    assert second != first
    assert content_tag(context, dockerfile, "linux/amd64") != second
    (context / "worker" / "api.py").write_text("v2")
    third = content_tag(context, dockerfile, "linux/arm64")
    assert third != second
    (context / "worker" / "api.py").rename(context / "worker" / "app.py")
    assert content_tag(context, dockerfile, "linux/arm64") != third  # a rename is a change too
    dockerfile.write_text("FROM scratch\nUSER 10001")
    assert content_tag(context, dockerfile, "linux/arm64") != third


@pytest.mark.parametrize(
    "path, ignored",
    [
        ("tests/test_api.py", True),
        ("README.md", True),
        ("worker/README.md", False),
        ("worker/__pycache__/api.cpython-311.pyc", True),
        ("worker/api.pyc", True),
        ("bench/benchmark.py", True),
        ("worker/api.py", False),
        ("requirements.txt", False),
        (".venv/bin/python", True),
        ("worker/keep.md", False),
    ],
)
def test_the_sample_workers_dockerignore_follows_dockers_rules(path: str, ignored: bool):
    rules = parse((ROOT / "app" / ".dockerignore").read_text())
    assert excluded(path, rules) is ignored


def test_dockerignore_exceptions_and_double_star():
    rules = parse("# comment\n\n**/*.log\n!keep/important.log\ndata/\n/build\nmodel?.bin\n")
    assert excluded("a/b/c.log", rules) and excluded("c.log", rules)
    assert not excluded("keep/important.log", rules)
    assert excluded("data/x/y", rules) and excluded("build/z", rules)
    assert excluded("model1.bin", rules) and not excluded("model10.bin", rules)
    assert not excluded("src/data.py", rules)


def test_the_sample_worker_context_sends_the_worker_and_its_lock():
    sent = {name for name, _ in context_files(ROOT / "app")}
    assert "worker/api.py" in sent and "requirements.txt" in sent
    assert not any(name.startswith(("tests/", "bench/")) or name.endswith(".pyc") for name in sent)


def test_pinned_uri_refuses_anything_but_a_sha256_digest():
    assert pinned_uri("repo", DIGEST) == f"repo@{DIGEST}"
    for bad in ("latest", "sha256:abc", "md5:" + "a" * 64):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            pinned_uri("repo", bad)


def test_load_balancer_can_own_a_blue_green_pair_and_a_test_listener():
    built = {}

    def build():
        built["lb"] = ServiceLoadBalancer(
            "lb",
            ServiceLoadBalancerArgs(
                env=ENV,
                vpc=FakeVpc(),
                security_group_id="sg-alb",
                container=CONTAINER,
                settings=LB_SETTINGS,
                domain=DomainSettings(hosted_zone_id="Z111111111", hostname="api.acme.io"),
                target_group_roles=("blue", "green"),
                test_listener_port=8443,
            ),
        )

    g = run_component(build)
    blue, green = g.named("lb-blue"), g.named("lb-green")
    for tg in (blue, green):
        assert tg.inputs["port"] == 9000 and tg.inputs["healthCheck"]["port"] == "9000"
        assert tg.inputs["healthCheck"]["path"] == "/ready"
        assert tg.inputs["deregistrationDelay"] == 20
    assert g.named("lb-https").inputs["defaultActions"][0]["targetGroupArn"] == blue.outputs["arn"]
    assert g.named("lb-https").inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-3-2021-06"
    test = g.named("lb-test").inputs
    assert test["port"] == 8443 and test["defaultActions"][0]["targetGroupArn"] == green.outputs["arn"]
    assert set(built["lb"].target_groups) == {"blue", "green"}
    assert g.one("aws:lb/loadBalancer:LoadBalancer").inputs["subnets"] == list(FakeVpc().public_subnet_ids)


def test_a_test_listener_needs_a_second_target_group():
    def build():
        ServiceLoadBalancer(
            "lb",
            ServiceLoadBalancerArgs(
                env=ENV,
                vpc=FakeVpc(),
                security_group_id="sg-alb",
                container=CONTAINER,
                settings=LB_SETTINGS,
                domain=None,
                internal=True,
                test_listener_port=8443,
            ),
        )

    with pytest.raises(ValueError, match="second target group"):
        run_component(build)


def test_listener_ports_follow_the_domain():
    assert listener_ports(None) == (80,)
    assert listener_ports(DomainSettings(hosted_zone_id="Z1", hostname="a.b.dev")) == (80, 443)


def test_container_definition_derives_port_and_drain_and_keeps_secrets_out_of_environment():
    (c,) = container_definitions(
        image=f"repo@{DIGEST}",
        container=CONTAINER,
        secrets={"Z_KEY": SECRET_ARN, "A_TOKEN": PARAM_ARN},
        secret_versions={"Z_KEY": "v9", "A_TOKEN": "3"},
        log_group_name="svc-logs",
        region=REGION,
        health_check_start_period=60,
    )
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env == {"LOG_LEVEL": "info", "PORT": "9000", "DRAIN_TIMEOUT_SECONDS": "55"}
    assert c["secrets"] == [{"name": "A_TOKEN", "valueFrom": PARAM_ARN}, {"name": "Z_KEY", "valueFrom": SECRET_ARN}]
    assert c["portMappings"] == [{"name": "http", "containerPort": 9000, "protocol": "tcp"}]
    assert c["dockerLabels"] == {"gantry.secret-version.A_TOKEN": "3", "gantry.secret-version.Z_KEY": "v9"}
    assert c["healthCheck"]["startPeriod"] == 60
    assert c["stopTimeout"] == 60


AUTOSCALING = AutoscalingSettings(
    min_capacity=2,
    max_capacity=8,
    cpu_target_percent=50,
    requests_per_target=1200,
    scale_in_cooldown_seconds=600,
    scale_out_cooldown_seconds=30,
)


def service_args(**changes) -> FargateServiceArgs:
    defaults = dict(
        env=ENV,
        vpc=FakeVpc(),
        security_group_id="sg-task",
        image=FakeImage(),
        container=CONTAINER,
        service=ServiceSettings(
            desired_count=4,
            min_healthy_percent=50,
            max_percent=150,
            health_check_grace_period_seconds=90,
            capacity_providers=(CapacityProvider(provider="FARGATE_SPOT", base=0, weight=1),),
        ),
        autoscaling=AUTOSCALING,
        logs=LogsSettings(retention_days=7),
    )
    return FargateServiceArgs(**{**defaults, **changes})


def test_fargate_service_alone_wires_roles_secrets_and_scaling():
    def build():
        cluster = Cluster("shared")
        listener = aws.lb.Listener("listener", load_balancer_arn="arn:lb", port=80, default_actions=[])
        attachment = TargetAttachment(
            target_group_arn="arn:tg",
            container_port=9000,
            listener=listener,
        )
        FargateService(
            "svc",
            service_args(
                cluster=cluster,
                secrets=SecretRefs(
                    refs=(SecretRef(name="DB_PASSWORD", store="secretsmanager", arn=SECRET_ARN, version="v2"),)
                ),
                task_statements=(
                    PolicyStatement(sid="Read", actions=("s3:GetObject",), resources=("arn:aws:s3:::corpus/*",)),
                ),
                load_balancer=attachment,
                scaling_rules=standard_rules(
                    AUTOSCALING, RequestCounts(load_balancer="app/lb/1", target_groups=("targetgroup/tg/2",))
                ),
            ),
        )

    g = run_component(build)
    svc = g.one("aws:ecs/service:Service")
    inputs = svc.inputs
    assert (inputs["desiredCount"], inputs["deploymentMinimumHealthyPercent"], inputs["deploymentMaximumPercent"]) == (
        4,
        50,
        150,
    )
    assert inputs["capacityProviderStrategies"] == [{"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 1}]
    # A strategy change is refused by the provider without a forced deployment.
    assert inputs["forceNewDeployment"] is True
    assert inputs["loadBalancers"] == [{"targetGroupArn": "arn:tg", "containerName": "app", "containerPort": 9000}]
    assert inputs["cluster"] == g.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert svc.depends_on(g.named("listener")) and svc.depends_on(
        g.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    )
    td = g.one("aws:ecs/taskDefinition:TaskDefinition")
    assert td.inputs["family"] == "svc-test"
    (container,) = td.json("containerDefinitions")
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": SECRET_ARN}]
    assert container["dockerLabels"] == {"gantry.secret-version.DB_PASSWORD": "v2"}
    assert td.inputs["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert (td.inputs["cpu"], td.inputs["memory"]) == ("512", "1024")
    assert g.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 7
    task_policy = g.named("svc-roles-task-policy").json("policy")
    assert task_policy["Statement"][0]["Resource"] == ["arn:aws:s3:::corpus/*"]
    assert td.inputs["taskRoleArn"] == g.named("svc-roles-task").outputs["arn"]
    target = g.one("aws:appautoscaling/target:Target").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 8)
    requests = g.named("svc-scale-on-requests").inputs["targetTrackingScalingPolicyConfiguration"]
    assert requests["predefinedMetricSpecification"]["resourceLabel"] == "app/lb/1/targetgroup/tg/2"
    assert requests["targetValue"] == 1200 and requests["scaleOutCooldown"] == 30


def test_a_service_without_a_load_balancer_has_no_target_group_and_no_request_scaling():
    def build():
        FargateService(
            "worker",
            service_args(cluster=Cluster("shared"), scaling_rules=standard_rules(AUTOSCALING, None)),
        )

    g = run_component(build)
    inputs = g.one("aws:ecs/service:Service").inputs
    assert not inputs.get("loadBalancers")
    assert "healthCheckGracePeriodSeconds" not in inputs  # ECS allows it only with a load balancer
    assert inputs["networkConfiguration"]["assignPublicIp"] is False
    policies = [p.name for p in g.of_type("aws:appautoscaling/policy:Policy")]
    assert policies == ["worker-scale-on-cpu"]


def test_two_services_share_one_cluster():
    def build():
        cluster = Cluster("shared")
        FargateService("api", service_args(cluster=cluster))
        FargateService("worker", service_args(cluster=cluster))

    g = run_component(build)
    cluster = g.one("aws:ecs/cluster:Cluster")
    services = g.of_type("aws:ecs/service:Service")
    assert len(services) == 2 and {s.inputs["cluster"] for s in services} == {cluster.outputs["arn"]}
    assert {t.inputs["family"] for t in g.of_type("aws:ecs/taskDefinition:TaskDefinition")} == {
        "api-test",
        "worker-test",
    }


def test_cluster_resources_keep_their_identity_across_the_split():
    g = run_component(lambda: Cluster("gantry"))
    for res in (g.one("aws:ecs/cluster:Cluster"), g.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")):
        # The same logical names as when they were children of FargateService("gantry"); the alias
        # names that old parent, so a live stack moves them without a replacement.
        assert res.name in ("gantry-cluster", "gantry-capacity-providers")
        (alias,) = res.opts.aliases
        assert alias.spec.parentUrn == "urn:pulumi:test::gantry::gantry:ecs:FargateService::gantry"


def test_scaling_rules_are_specs_of_the_target_tracking_policy():
    settings = AutoscalingSettings(cpu_target_percent=55, requests_per_target=900)
    cpu, requests = standard_rules(
        settings, RequestCounts(load_balancer="app/lb/1", target_groups=("targetgroup/tg/2",))
    )
    assert target_tracking_configuration(cpu) == {
        "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
        "target_value": 55,
        "scale_in_cooldown": 300,
        "scale_out_cooldown": 60,
    }
    # One target group (a rolling stack): AWS's own metric, for the group its label names.
    assert target_tracking_configuration(requests)["predefined_metric_specification"] == {
        "predefined_metric_type": "ALBRequestCountPerTarget",
        "resource_label": "app/lb/1/targetgroup/tg/2",
    }
    assert [r.name for r in standard_rules(settings, None)] == ["cpu"]


def test_blue_green_requests_per_target_read_both_target_groups():
    # AWS: "The ALBRequestCountPerTarget metric for target tracking scaling policies is not supported for
    # the blue/green deployment type" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/
    # service-autoscaling-targettracking.html): production moves between the groups on every deploy.
    settings = AutoscalingSettings(requests_per_target=900)
    groups = ("targetgroup/blue/1", "targetgroup/green/2")
    _, requests = standard_rules(settings, RequestCounts(load_balancer="app/lb/1", target_groups=groups))
    config: Any = target_tracking_configuration(requests)  # plain values here, not the Input unions
    assert "predefined_metric_specification" not in config and config["target_value"] == 900
    metrics = config["customized_metric_specification"]["metrics"]
    stats = {m["id"]: m["metric_stat"] for m in metrics if "metric_stat" in m}
    read = {
        (s["metric"]["metric_name"], s["stat"], tuple((d["name"], d["value"]) for d in s["metric"]["dimensions"]))
        for s in stats.values()
    }
    assert read == {
        (name, stat, (("LoadBalancer", "app/lb/1"), ("TargetGroup", group)))
        for name, stat in (("RequestCount", "Sum"), ("HealthyHostCount", "Average"))
        for group in groups
    }
    assert all(s["metric"]["namespace"] == "AWS/ApplicationELB" for s in stats.values())
    (returned,) = [m for m in metrics if m["return_data"]]
    assert returned["expression"] == (
        "(FILL(requests_0, 0) + FILL(requests_1, 0)) / (FILL(healthy_0, 0) + FILL(healthy_1, 0))"
    )

    # The expression's arithmetic, per minute: production on either group gives the same signal, and an
    # idle group that publishes no RequestCount (FILL) neither hides the traffic nor halves it.
    def evaluate(values: dict[str, float | None]) -> float:
        filled = {k: 0.0 if v is None else v for k, v in values.items()}
        expression = returned["expression"].replace("FILL(", "(").replace(", 0)", ")")
        return eval(expression, {}, filled)  # noqa: S307 - the expression built above, over numbers only

    blue_live = {"requests_0": 3600.0, "requests_1": None, "healthy_0": 4.0, "healthy_1": 0.0}
    green_live = {"requests_0": None, "requests_1": 3600.0, "healthy_0": 0.0, "healthy_1": 4.0}
    assert evaluate(blue_live) == evaluate(green_live) == 900.0


def test_scaling_rules_name_exactly_one_signal_and_one_returned_series():
    stat = MetricQuery(id="visible", namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible")
    per_task = MetricQuery(id="perTask", expression="visible / 2", returns=True)

    def rule(name: str, **signal: Any) -> ScalingRule:
        return ScalingRule(
            name=name, target_value=5, scale_in_cooldown_seconds=300, scale_out_cooldown_seconds=60, **signal
        )

    rule("ok", metric_queries=(stat, per_task))
    with pytest.raises(ValueError, match="either a predefined metric or metric queries"):
        rule("both", predefined_metric="X", metric_queries=(per_task,))
    with pytest.raises(ValueError, match="either a predefined metric or metric queries"):
        rule("neither")
    with pytest.raises(ValueError, match="exactly one metric query must return"):
        rule("none-returned", metric_queries=(stat,))
    with pytest.raises(ValueError, match="start with a lower-case letter"):
        MetricQuery(id="PerTask", expression="visible / 2")
    with pytest.raises(ValueError, match="either an expression or a namespace"):
        MetricQuery(id="m", expression="visible", metric_name="X", namespace="Y")
    with pytest.raises(ValueError, match="needs its namespace"):
        MetricQuery(id="m", metric_name="X")


def test_allow_writes_both_halves_of_one_path():
    def build():
        allow(
            source="sg-a",
            target="sg-b",
            port=5432,
            egress_name="a-to-b",
            ingress_name="b-from-a",
            source_label="the app",
            target_label="the database",
            opts=pulumi.ResourceOptions(),
        )

    g = run_component(build)
    egress, ingress = g.named("a-to-b").inputs, g.named("b-from-a").inputs
    assert (egress["securityGroupId"], egress["referencedSecurityGroupId"]) == ("sg-a", "sg-b")
    assert (ingress["securityGroupId"], ingress["referencedSecurityGroupId"]) == ("sg-b", "sg-a")
    assert {(r["fromPort"], r["toPort"], r["ipProtocol"]) for r in (egress, ingress)} == {(5432, 5432, "tcp")}
    assert egress["description"] == "to the database on port 5432"
    assert ingress["description"] == "from the app on port 5432"


def test_aws_env_builds_arns_of_its_own_account_and_partition():
    gov = AwsEnv(account_id=ACCOUNT, region="us-gov-west-1", partition="aws-us-gov", stack="prod")
    assert gov.arn("ecs", "*") == f"arn:aws-us-gov:ecs:us-gov-west-1:{ACCOUNT}:*"
    assert ENV.arn("iam", "role/x", regional=False) == f"arn:aws:iam::{ACCOUNT}:role/x"

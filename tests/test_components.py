"""Each component built alone under mocks, with Args a stack would not use, plus the pure helpers
the components are made of (container definitions, service options, digest pinning)."""

from __future__ import annotations

from types import MappingProxyType

import pulumi
import pytest

from components.endpoints import VpcEndpoints, VpcEndpointsArgs
from components.load_balancer import PublicLoadBalancer, PublicLoadBalancerArgs, listener_ports
from components.network import Network, NetworkArgs
from components.registry import ImageRepository, ImageRepositoryArgs, content_tag, image_digest
from components.roles import TaskRoles, TaskRolesArgs
from components.secrets import AppSecrets, AppSecretsArgs
from components.security_groups import ServiceSecurityGroups, ServiceSecurityGroupsArgs
from components.service import (
    FargateService,
    FargateServiceArgs,
    container_definitions,
    service_resource_options,
)
from components.settings import (
    AutoscalingSettings,
    CapacityProvider,
    ContainerSettings,
    DomainSettings,
    HealthCheckSettings,
    LoadBalancerSettings,
    PolicyStatement,
    SecretSpec,
    ServiceSettings,
)
from harness import ACCOUNT, DIGEST, REGION, run_component

SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db-password-Xy12Zw"
PARAM_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/gantry/hf-token"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11112222-3333-4444-5555-666677778888"

LB_SETTINGS = LoadBalancerSettings(
    ingress_cidrs=("203.0.113.0/24",),
    idle_timeout_seconds=60,
    deletion_protection=True,
    access_logs=False,
    access_log_retention_days=30,
    desync_mitigation_mode="strictest",
    tls_policy="ELBSecurityPolicy-TLS13-1-3-2021-06",
    deregistration_delay_seconds=20,
    health_check=HealthCheckSettings(10, 4, 2, 3),
    allow_plain_http=False,
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
    environment=MappingProxyType({"LOG_LEVEL": "info"}),
)


def test_network_without_flow_logs_or_nat():
    g = run_component(
        lambda: Network(
            "net",
            NetworkArgs(
                cidr_block="10.50.0.0/16",
                availability_zones=3,
                nat_strategy="none",
                flow_logs=False,
                flow_log_retention_days=30,
                account_id=ACCOUNT,
                region=REGION,
                partition="aws",
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
    assert args["filters"] == [{"name": "association.subnet-id", "values": ["subnet-private-a", "subnet-private-b", "subnet-private-c"]}]


def test_endpoints_admit_each_client_and_give_each_client_egress_only_to_them():
    g = run_component(
        lambda: VpcEndpoints(
            "ep",
            VpcEndpointsArgs(
                vpc_id="vpc-1",
                region="us-east-2",
                subnet_ids=["subnet-a", "subnet-b"],
                route_table_ids=["rtb-a", "rtb-b"],
                interface_services=("ecr.api", "ssm"),
                s3_gateway=True,
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
            VpcEndpointsArgs("vpc-1", REGION, ["subnet-a"], ["rtb-a"], (), True, {"service": "sg-task"}),
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
    rules = sorted((r.inputs["fromPort"], r.inputs["cidrIpv4"]) for r in g.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == alb)
    assert rules == [(80, "198.51.100.0/24"), (80, "203.0.113.0/24"), (443, "198.51.100.0/24"), (443, "203.0.113.0/24")]
    assert not [r for r in g.of_type(SG_EGRESS) if r.inputs.get("cidrIpv4")]


def test_roles_grant_ssm_and_kms_only_when_declared():
    g = run_component(
        lambda: TaskRoles(
            "roles",
            TaskRolesArgs(
                account_id=ACCOUNT,
                region=REGION,
                partition="aws",
                repository_arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/svc",
                log_group_arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:svc",
                ssm_parameter_arns=[PARAM_ARN],
                kms_key_arns=[KEY_ARN],
            ),
        )
    )
    policy = g.named("roles-execution-policy").json("policy")
    by_action = {a: s for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert by_action["ssm:GetParameters"]["Resource"] == [PARAM_ARN]
    assert by_action["kms:Decrypt"]["Resource"] == [KEY_ARN]
    assert "secretsmanager:GetSecretValue" not in by_action
    assert not [p for p in g.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "roles-task-policy"]


def test_app_secrets_create_or_reference_and_collect_arns_by_store():
    specs = (
        SecretSpec("API_KEYS", "create", None, KEY_ARN),
        SecretSpec("DB_PASSWORD", "secretsmanager", SECRET_ARN, None),
        SecretSpec("HF_TOKEN", "ssm", PARAM_ARN, KEY_ARN),
    )
    built = {}

    def build():
        built["s"] = AppSecrets("sec", AppSecretsArgs(specs=specs, values={"API_KEYS": "{}"}))
        return pulumi.Output.all(**built["s"].env_arns).apply(built.update)

    g = run_component(build)
    created = g.one("aws:secretsmanager/secret:Secret")
    assert created.inputs["kmsKeyId"] == KEY_ARN and created.inputs["recoveryWindowInDays"] == 7
    assert built["API_KEYS"] == created.outputs["arn"]
    assert built["DB_PASSWORD"] == SECRET_ARN and built["HF_TOKEN"] == PARAM_ARN
    assert built["s"].ssm_parameter_arns == [PARAM_ARN]
    assert built["s"].kms_key_arns == [KEY_ARN]
    assert len(built["s"].secrets_manager_arns) == 2


def test_image_repository_builds_for_the_given_platform():
    g = run_component(
        lambda: ImageRepository(
            "img", ImageRepositoryArgs("svc", "svc/Dockerfile", "linux/amd64", 5, "build-abc", force_delete=True)
        )
    )
    image = g.one("awsx:ecr:Image").inputs
    assert (image["context"], image["dockerfile"], image["platform"]) == ("svc", "svc/Dockerfile", "linux/amd64")
    assert image["imageTag"] == "build-abc"
    assert g.one("aws:ecr/repository:Repository").inputs["forceDelete"] is True


def test_content_tag_changes_with_anything_the_build_sees(tmp_path):
    context = tmp_path / "app"
    (context / "worker" / "__pycache__").mkdir(parents=True)
    (context / "worker" / "api.py").write_text("v1")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text("FROM scratch")
    first = content_tag(context, dockerfile, "linux/arm64")
    assert first == content_tag(context, dockerfile, "linux/arm64")
    assert len(first) <= 128 and first.startswith("build-")
    (context / "worker" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"cache")
    assert content_tag(context, dockerfile, "linux/arm64") == first  # bytecode caches are not build input
    assert content_tag(context, dockerfile, "linux/amd64") != first
    (context / "worker" / "api.py").write_text("v2")
    second = content_tag(context, dockerfile, "linux/arm64")
    assert second != first
    (context / "worker" / "api.py").rename(context / "worker" / "app.py")
    assert content_tag(context, dockerfile, "linux/arm64") != second  # a rename is a change too


def test_image_digest_refuses_tag_only_uris():
    assert image_digest(f"repo@{DIGEST}") == DIGEST
    with pytest.raises(ValueError, match="does not pin a sha256 digest"):
        image_digest("repo:latest")


def test_load_balancer_can_own_a_blue_green_pair_and_a_test_listener():
    built = {}

    def build():
        built["lb"] = PublicLoadBalancer(
            "lb",
            PublicLoadBalancerArgs(
                vpc_id="vpc-1",
                public_subnet_ids=["subnet-a", "subnet-b"],
                security_group_id="sg-alb",
                container_port=9000,
                health_check_path="/ready",
                settings=LB_SETTINGS,
                domain=DomainSettings("Z111111111", "api.gantry-ai.dev"),
                account_id=ACCOUNT,
                region=REGION,
                partition="aws",
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


def test_a_test_listener_needs_a_second_target_group():
    def build():
        PublicLoadBalancer(
            "lb",
            PublicLoadBalancerArgs(
                "vpc-1", ["subnet-a"], "sg-alb", 9000, "/ready", LB_SETTINGS, None, ACCOUNT, REGION, "aws",
                test_listener_port=8443,
            ),
        )

    with pytest.raises(ValueError, match="second target group"):
        run_component(build)


def test_listener_ports_follow_the_domain():
    assert listener_ports(None) == (80,)
    assert listener_ports(DomainSettings("Z1", "a.b.dev")) == (80, 443)


def test_service_options_leave_desired_count_to_autoscaling():
    seen = {}

    def build():
        seen["parent"] = pulumi.ComponentResource("test:index:Parent", "parent")
        seen["dependency"] = pulumi.ComponentResource("test:index:Listener", "listener")
        seen["options"] = service_resource_options(seen["parent"], [seen["dependency"]])

    run_component(build)
    options = seen["options"]
    assert options.ignore_changes == ["desiredCount"]
    assert options.depends_on == [seen["dependency"]] and options.parent is seen["parent"]


def test_container_definition_derives_port_and_drain_and_keeps_secrets_out_of_environment():
    (c,) = container_definitions(
        image=f"repo@{DIGEST}",
        container=CONTAINER,
        secrets={"Z_KEY": SECRET_ARN, "A_TOKEN": PARAM_ARN},
        log_group_name="svc-logs",
        region=REGION,
        health_check_start_period=60,
    )
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env == {"LOG_LEVEL": "info", "PORT": "9000", "DRAIN_TIMEOUT_SECONDS": "55"}
    assert c["secrets"] == [{"name": "A_TOKEN", "valueFrom": PARAM_ARN}, {"name": "Z_KEY", "valueFrom": SECRET_ARN}]
    assert c["portMappings"] == [{"name": "http", "containerPort": 9000, "protocol": "tcp"}]
    assert c["healthCheck"]["startPeriod"] == 60
    assert c["stopTimeout"] == 60


def test_fargate_service_alone_wires_roles_secrets_and_scaling():
    def build():
        FargateService(
            "svc",
            FargateServiceArgs(
                family="svc-test",
                account_id=ACCOUNT,
                region=REGION,
                partition="aws",
                subnet_ids=["subnet-a", "subnet-b"],
                security_group_id="sg-task",
                image_uri=f"repo@{DIGEST}",
                repository_arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/svc",
                container=CONTAINER,
                service=ServiceSettings(4, 50, 150, 90, (CapacityProvider("FARGATE_SPOT", 0, 1),)),
                autoscaling=AutoscalingSettings(2, 8, 50, 1200, 600, 30),
                log_retention_days=7,
                target_group_arn="arn:tg",
                request_count_resource_label="app/lb/1/targetgroup/tg/2",
                secrets={"DB_PASSWORD": SECRET_ARN},
                secrets_manager_arns=[SECRET_ARN],
                task_statements=(PolicyStatement("Read", ("s3:GetObject",), ("arn:aws:s3:::corpus/*",)),),
            ),
        )

    g = run_component(build)
    svc = g.one("aws:ecs/service:Service").inputs
    assert (svc["desiredCount"], svc["deploymentMinimumHealthyPercent"], svc["deploymentMaximumPercent"]) == (4, 50, 150)
    assert svc["capacityProviderStrategies"] == [{"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 1}]
    assert svc["loadBalancers"] == [{"targetGroupArn": "arn:tg", "containerName": "app", "containerPort": 9000}]
    td = g.one("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = td.json("containerDefinitions")
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": SECRET_ARN}]
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

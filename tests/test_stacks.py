"""Whole-stack tests: the real __main__.py, run for each committed stack file, checked against the
production checklist (seed 003) on the resource graph. Each test guards a property that a real
mistake (a wrong port, a public subnet, a wildcard ARN, a lost rollback) would break."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.settings.loader import CONFIG_KEYS
from components.settings.pinned import with_defaults
from tests.harness import (
    ACCOUNT,
    CLOUDFRONT_VPC_ORIGIN_SG,
    DEV_REPOSITORY_URL,
    DIGEST,
    HOSTED_ZONES,
    OWN_SERVICE,
    PRIVATE_ROUTE_TABLES,
    PRIVATE_SUBNETS,
    PUBLIC_SUBNETS,
    REGION,
    TEST_SECRET_VALUE,
    VERSION_ID,
    Graph,
    run_program,
    stack_config,
    with_test_secrets,
)

# The committed stacks, and a team's own (non-worker) service on the dev stack: every check below is
# about gantry's contract, so it must hold for all three.
STACKS = ["dev", "prod", OWN_SERVICE]
# The stacks that build their image into their own repository; prod promotes dev's (tests/test_promotion.py).
BUILDING = ["dev", OWN_SERVICE]
[ZONE_ID] = HOSTED_ZONES
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
TEST_PORT = 9000


def stack_values(stack: str, key: str) -> Any:
    """Section `key` as the stack deploys it (a stack file lists only its departures from the defaults)."""
    values = stack_config(stack).get(f"gantry:{key}")
    return values if CONFIG_KEYS[key].is_list else with_defaults(key, values)


def secret_name(stack: str) -> str:
    (spec,) = stack_values(stack, "secrets")
    return spec["name"]


def container_def(g: Graph) -> dict:
    defs = g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").json("containerDefinitions")
    assert len(defs) == 1
    return defs[0]


def pulled_repository(g: Graph) -> tuple[str, str]:
    """ARN and URL of the repository the tasks pull from: the stack's own, or dev's for a promoting stack."""
    own = g.of_type("aws:ecr/repository:Repository")
    if own:
        return own[0].outputs["arn"], own[0].outputs["repositoryUrl"]
    return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/gantry-image-repo", DEV_REPOSITORY_URL


def statements(document: dict) -> list[dict]:
    return document["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def production_tg(g: Graph):
    """The target group production traffic reaches first: `main` (rolling) or `blue` (blue/green)."""
    [tg] = [r for r in g.of_type("aws:lb/targetGroup:TargetGroup") if r.name in ("gantry-lb-main", "gantry-lb-blue")]
    return tg


def sg_ids(g: Graph) -> tuple[str, str, str | None]:
    """ALB, task and (with interface endpoints) endpoint security group ids."""
    alb = g.named("gantry-sg-alb").outputs["id"]
    task = g.named("gantry-sg-task").outputs["id"]
    endpoints = [r.outputs["id"] for r in g.resources if r.name == "gantry-endpoints-sg"]
    return alb, task, endpoints[0] if endpoints else None


@pytest.fixture(params=STACKS)
def stack(request):
    return request.param


@pytest.fixture
def graph(stack) -> Graph:
    return run_program(stack)


def test_tasks_run_in_private_subnets_without_public_ip(graph):
    net = graph.one("aws:ecs/service:Service", "gantry-service").inputs["networkConfiguration"]
    assert net["subnets"] == PRIVATE_SUBNETS
    assert not set(net["subnets"]) & set(PUBLIC_SUBNETS)
    assert net["assignPublicIp"] is False
    # Behind CloudFront (every committed stack) the load balancer has no public address either.
    lb = graph.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["subnets"] == PRIVATE_SUBNETS and lb["internal"] is True


def test_task_security_group_admits_only_the_alb_on_the_container_port(graph, stack):
    port = stack_values(stack, "container")["port"]
    alb, task, _ = sg_ids(graph)
    assert graph.one("aws:ecs/service:Service", "gantry-service").inputs["networkConfiguration"]["securityGroups"] == [
        task
    ]
    into_task = [r.inputs for r in graph.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == task]
    assert into_task == [
        {
            "securityGroupId": task,
            "ipProtocol": "tcp",
            "fromPort": port,
            "toPort": port,
            "referencedSecurityGroupId": alb,
            "description": f"from the ALB on port {port}",
        }
    ]
    # The ALB may send only to the task group, only on the container port.
    from_alb = [r.inputs for r in graph.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == alb]
    assert [(e["referencedSecurityGroupId"], e["fromPort"], e["toPort"]) for e in from_alb] == [(task, port, port)]


def test_the_load_balancer_admits_only_cloudfronts_vpc_origin_and_the_hook(graph):
    alb, _, _ = sg_ids(graph)
    into_alb = [r.inputs for r in graph.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == alb]
    assert not [r for r in into_alb if "cidrIpv4" in r or "cidrIpv6" in r or "prefixListId" in r]
    # CloudFront's VPC-origin group on the origin listener's port; the blue/green hook on the test port.
    hooks = [r.outputs["id"] for r in graph.resources if r.name == "gantry-sg-hook"]
    assert sorted((r["fromPort"], r["toPort"], r["referencedSecurityGroupId"]) for r in into_alb) == sorted(
        [(80, 80, CLOUDFRONT_VPC_ORIGIN_SG), *((TEST_PORT, TEST_PORT, hook) for hook in hooks)]
    )


def test_one_port_for_container_target_group_and_health_check(graph, stack):
    port = stack_values(stack, "container")["port"]
    container = container_def(graph)
    tg = production_tg(graph)
    service_lb = graph.one("aws:ecs/service:Service", "gantry-service").inputs["loadBalancers"]
    assert [m["containerPort"] for m in container["portMappings"]] == [port]
    # Every group (blue and green alike: they swap roles) checks and serves the container's one port.
    for group in graph.of_type("aws:lb/targetGroup:TargetGroup"):
        assert group.inputs["port"] == port
        assert group.inputs["healthCheck"]["port"] == str(port)
        assert group.inputs["healthCheck"]["path"] == stack_values(stack, "container")["healthCheckPath"]
        assert group.inputs["targetType"] == "ip"
    assert service_lb == [
        {"targetGroupArn": tg.outputs["arn"], "containerName": container["name"], "containerPort": port}
    ]
    assert {"name": "PORT", "value": str(port)} in container["environment"]


def test_the_production_listener_forwards_to_the_services_target_group(graph):
    tg_arn = production_tg(graph).outputs["arn"]
    listener = graph.named("gantry-lb-http").inputs
    assert listener["defaultActions"] == [{"type": "forward", "targetGroupArn": tg_arn}]
    assert listener["loadBalancerArn"] == graph.one("aws:lb/loadBalancer:LoadBalancer").outputs["arn"]


def test_secrets_reach_the_container_only_through_ecs_secrets(graph, stack):
    secret = graph.one("aws:secretsmanager/secret:Secret")
    version = graph.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.inputs["secretId"] == secret.outputs["id"]
    container = container_def(graph)
    # valueFrom is the unversioned ARN (a task started later reads the current value, never a revoked
    # one); the version the deploy saw is a label, so a new value is a new task definition revision.
    name = secret_name(stack)
    assert container["secrets"] == [{"name": name, "valueFrom": secret.outputs["arn"]}]
    assert container["dockerLabels"] == {f"gantry.secret-version.{name}": version.outputs["versionId"]}
    assert name not in {e["name"] for e in container["environment"]}
    # The value appears in exactly one resource input: the secret version.
    holders = [r.name for r in graph.resources if "k-test-only-4f9c2e" in json.dumps(r.inputs, default=str)]
    assert holders == [version.name]


def test_a_new_secret_value_rolls_the_service():
    # ECS reads secrets only when a task starts: a rotated or revoked key must change the task
    # definition, or running tasks keep the old value forever.
    def task_definition(value: str) -> dict:
        config, secret_keys = with_test_secrets(stack_config("dev"))
        config["gantry:secretValues"] = {"API_KEYS": value}
        (container,) = (
            run_program("dev", config, secret_keys)
            .one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task")
            .json("containerDefinitions")
        )
        return container

    before, after = task_definition(TEST_SECRET_VALUE), task_definition('{"tenant-a": "k-rotated-9d8c7b6a5f"}')
    assert before["dockerLabels"] != after["dockerLabels"]
    assert before["secrets"] == after["secrets"]  # still the unversioned ARN: later starts read the current value


def test_execution_role_policy_names_exact_arns(graph):
    repo_arn, _ = pulled_repository(graph)
    log_arn = graph.named("gantry-logs").outputs["arn"]
    secret_arn = graph.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    policy = graph.named("gantry-roles-execution-policy")
    assert policy.inputs["role"] == graph.named("gantry-roles-execution").outputs["id"]
    grants = {}
    for st in statements(policy.json("policy")):
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            grants[action] = as_list(st["Resource"])
    assert grants == {
        "ecr:GetAuthorizationToken": ["*"],
        "ecr:BatchCheckLayerAvailability": [repo_arn],
        "ecr:BatchGetImage": [repo_arn],
        "ecr:GetDownloadUrlForLayer": [repo_arn],
        "logs:CreateLogStream": [log_arn, f"{log_arn}:log-stream:*"],
        "logs:PutLogEvents": [log_arn, f"{log_arn}:log-stream:*"],
        "secretsmanager:GetSecretValue": [secret_arn],
    }
    assert not graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_task_role_has_no_permissions_by_default(graph):
    task_role = graph.named("gantry-roles-task")
    assert not task_role.inputs.get("managedPolicyArns")
    # Nothing but the Batch API's own policy when the stack runs a queue (tests/test_batch_stack.py holds it).
    assert [
        p.name
        for p in graph.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == task_role.outputs["id"] and p.name != "gantry-roles-task-batch"
    ] == []
    td = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").inputs
    assert td["taskRoleArn"] == task_role.outputs["arn"]
    assert td["executionRoleArn"] == graph.named("gantry-roles-execution").outputs["arn"]
    assert td["taskRoleArn"] != td["executionRoleArn"]


def test_each_role_has_the_trust_aws_documents_for_it(graph):
    (task,) = statements(graph.named("gantry-roles-task").json("assumeRolePolicy"))
    assert task["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert task["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert task["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"}
    # The execution role is assumed by the ECS agent, for which AWS documents no such conditions.
    (execution,) = statements(graph.named("gantry-roles-execution").json("assumeRolePolicy"))
    assert execution["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert "Condition" not in execution


def test_every_log_group_has_retention(graph, stack):
    groups = graph.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups and all(g.inputs.get("retentionInDays") for g in groups)
    assert graph.named("gantry-logs").inputs["retentionInDays"] == stack_values(stack, "logs")["retentionDays"]
    logs = container_def(graph)["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == graph.named("gantry-logs").outputs["name"]
    assert logs["options"]["awslogs-region"] == REGION


def test_rolling_deploys_roll_back_and_fail_the_up(graph, stack):
    if stack_values(stack, "deployment")["strategy"] != "rolling":
        return  # blue/green: tests/test_blue_green_stack.py
    svc = graph.one("aws:ecs/service:Service", "gantry-service").inputs
    assert svc["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert svc["waitForSteadyState"] is True
    assert svc["deploymentController"] == {"type": "ECS"}
    assert svc["platformVersion"] == "LATEST"
    assert svc["taskDefinition"] == graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").outputs["arn"]


def test_container_insights_on(graph):
    cluster = graph.one("aws:ecs/cluster:Cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]
    assert graph.one("aws:ecs/service:Service", "gantry-service").inputs["cluster"] == cluster.outputs["arn"]


@pytest.mark.parametrize("stack", BUILDING)
def test_ecr_is_immutable_scanned_encrypted_and_pruned(graph, stack):
    repo = graph.one("aws:ecr/repository:Repository")
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    lifecycle = graph.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert lifecycle.inputs["repository"] == repo.outputs["name"]
    run_rule, evaluated_rule, rule = lifecycle.json("policy")["rules"]
    assert run_rule["selection"]["tagPrefixList"] == ["run-"]  # what promoting stacks run: kept apart
    assert evaluated_rule["selection"]["tagPrefixList"] == ["evaluated-"]  # what prod may still promote
    assert rule["selection"]["countNumber"] == stack_values(stack, "image")["keepImages"]
    assert rule["action"] == {"type": "expire"}


@pytest.mark.parametrize("stack", BUILDING)
def test_image_is_built_for_the_task_architecture_and_deployed_by_digest(graph, stack):
    arch = stack_values(stack, "container")["architecture"]
    image = graph.one("docker-build:index:Image")
    repo_url = graph.one("aws:ecr/repository:Repository").outputs["repositoryUrl"]
    assert image.inputs["platforms"] == [{"ARM64": "linux/arm64", "X86_64": "linux/amd64"}[arch]]
    ((export,),) = [image.inputs["exports"]]
    assert export["registry"] == {"names": [repo_url], "pushByDigest": True, "ociMediaTypes": True}
    assert image.inputs["labels"]["gantry.build-context"].startswith("build-")  # what the build sees
    settings = {"context": "app", "dockerfile": "app/Dockerfile", **stack_values(stack, "image")}
    # Relative to the project directory (the program's working directory), never the checkout's path.
    assert image.inputs["context"] == {"location": settings["context"]}
    assert image.inputs["dockerfile"] == {"location": settings["dockerfile"]}
    assert [r["address"] for r in image.inputs["registries"]] == [repo_url]
    td = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").inputs
    assert td["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": arch}
    assert container_def(graph)["image"].endswith(f"@{DIGEST}")
    assert graph.exports["imageDigest"] == DIGEST


def test_task_definition_hardening(graph, stack):
    cfg = stack_values(stack, "container")
    td = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").inputs
    assert (td["cpu"], td["memory"]) == (str(cfg["cpu"]), str(cfg["memory"]))
    assert td["networkMode"] == "awsvpc" and td["requiresCompatibilities"] == ["FARGATE"]
    assert td["family"] == f"gantry-{stack}"
    c = container_def(graph)
    assert c["readonlyRootFilesystem"] is True
    assert c["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert td["volumes"] == [{"name": "tmp"}]
    assert c["user"] == "10001:10001"
    assert c["linuxParameters"]["initProcessEnabled"] is True
    assert c["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert c["stopTimeout"] == cfg["stopTimeoutSeconds"]
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert int(env["DRAIN_TIMEOUT_SECONDS"]) < cfg["stopTimeoutSeconds"]
    assert c["healthCheck"]["command"][0] == "CMD"


def test_autoscaling_bounds_and_signals_follow_config(graph, stack):
    cfg = stack_values(stack, "autoscaling")
    cluster = graph.one("aws:ecs/cluster:Cluster").outputs["name"]
    service = graph.one("aws:ecs/service:Service", "gantry-service").outputs["name"]
    target = graph.one("aws:appautoscaling/target:Target", "gantry-scaling").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (cfg["minCapacity"], cfg["maxCapacity"])
    assert target["resourceId"] == f"service/{cluster}/{service}"
    assert target["scalableDimension"] == "ecs:service:DesiredCount"
    policies = {
        p.name: p.inputs["targetTrackingScalingPolicyConfiguration"]
        for p in graph.of_type("aws:appautoscaling/policy:Policy")
        if p.inputs["resourceId"] == target["resourceId"]
    }
    cpu = policies["gantry-scale-on-cpu"]
    assert cpu["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert cpu["targetValue"] == cfg["cpuTargetPercent"]
    requests = policies["gantry-scale-on-requests"]
    alb = graph.one("aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]
    if stack_values(stack, "deployment")["strategy"] == "rolling":
        tg = production_tg(graph).outputs["arnSuffix"]
        assert requests["predefinedMetricSpecification"] == {
            "predefinedMetricType": "ALBRequestCountPerTarget",
            "resourceLabel": f"{alb}/{tg}",
        }
    else:
        # CodeDeploy moves production between blue and green on every deploy, and AWS does not support
        # ALBRequestCountPerTarget with blue/green (it reads one group): the signal reads both.
        assert "predefinedMetricSpecification" not in requests
        metrics = requests["customizedMetricSpecification"]["metrics"]
        read = {
            (m["metricStat"]["metric"]["metricName"], d["value"])
            for m in metrics
            if "metricStat" in m
            for d in m["metricStat"]["metric"]["dimensions"]
            if d["name"] == "TargetGroup"
        }
        groups = {g.outputs["arnSuffix"] for g in graph.of_type("aws:lb/targetGroup:TargetGroup")}
        assert len(groups) == 2
        assert read == {(metric, g) for metric in ("RequestCount", "HealthyHostCount") for g in groups}
        assert all(
            {"name": "LoadBalancer", "value": alb} in m["metricStat"]["metric"]["dimensions"]
            for m in metrics
            if "metricStat" in m
        )
        assert [m["id"] for m in metrics if m["returnData"]] == ["requests_per_target"]
    assert requests["targetValue"] == cfg["requestsPerTarget"]
    assert all(p["scaleInCooldown"] == cfg["scaleInCooldownSeconds"] for p in policies.values())
    svc = graph.one("aws:ecs/service:Service", "gantry-service").inputs
    assert cfg["minCapacity"] <= svc["desiredCount"] <= cfg["maxCapacity"]


def test_endpoint_security_group_admits_only_the_task_group(graph, stack):
    _, task, endpoints = sg_ids(graph)
    hooks = [r.outputs["id"] for r in graph.resources if r.name == "gantry-sg-hook"]
    if not stack_values(stack, "vpcEndpoints")["interface"]:
        assert endpoints is None  # no interface endpoints, no group to leave open
        return
    into = [r.inputs for r in graph.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == endpoints]
    # The tasks, and the blue/green hook (Secrets Manager for the eval's key) when there is one.
    assert sorted(
        (r["referencedSecurityGroupId"], r["fromPort"], r["toPort"], r["ipProtocol"]) for r in into
    ) == sorted((client, 443, 443, "tcp") for client in [task, *hooks])
    assert not [r for r in into if "cidrIpv4" in r]
    for ep in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"):
        if ep.inputs["vpcEndpointType"] == "Interface":
            assert ep.inputs["securityGroupIds"] == [endpoints]
            assert ep.inputs["subnetIds"] == PRIVATE_SUBNETS
            assert ep.inputs["privateDnsEnabled"] is True
        else:
            assert ep.inputs["serviceName"] == f"com.amazonaws.{REGION}.s3"
            # The route tables are looked up by their association with the PRIVATE subnets (a lookup
            # by VPC alone would attach the gateway to the public route table too).
            assert ep.inputs["routeTableIds"] == PRIVATE_ROUTE_TABLES
            ((_, lookup),) = [c for c in graph.call_args if c[0] == "aws:ec2/getRouteTables:getRouteTables"]
            assert lookup["filters"] == [{"name": "association.subnet-id", "values": PRIVATE_SUBNETS}]


def test_default_security_group_is_stripped(graph):
    default = graph.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default.get("ingress", []) == [] and default.get("egress", []) == []


def test_flow_logs_go_to_a_retained_log_group_through_a_scoped_role(graph):
    flow = graph.one("aws:ec2/flowLog:FlowLog").inputs
    group = graph.named("gantry-network-flow-logs")
    role = graph.named("gantry-network-flow-logs-role")
    assert flow["logDestination"] == group.outputs["arn"] and flow["iamRoleArn"] == role.outputs["arn"]
    assert flow["trafficType"] == "ALL"
    (st,) = statements(role.json("assumeRolePolicy"))
    assert st["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert st["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    policy = graph.named("gantry-network-flow-logs-policy").json("policy")
    writes = [s for s in statements(policy) if "logs:PutLogEvents" in as_list(s["Action"])]
    assert [as_list(s["Resource"]) for s in writes] == [[group.outputs["arn"], f"{group.outputs['arn']}:log-stream:*"]]


def test_alb_protections(graph, stack):
    cfg = stack_values(stack, "loadBalancer")
    lb = graph.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["dropInvalidHeaderFields"] is True
    assert lb["desyncMitigationMode"] == cfg["desyncMitigationMode"]
    assert lb["enableDeletionProtection"] is cfg["deletionProtection"]
    assert lb["securityGroups"] == [sg_ids(graph)[0]]
    for group in graph.of_type("aws:lb/targetGroup:TargetGroup"):
        assert group.inputs["deregistrationDelay"] == cfg["deregistrationDelaySeconds"]
        assert group.inputs["healthCheck"]["interval"] == cfg["healthCheck"]["intervalSeconds"]
    svc = graph.one("aws:ecs/service:Service", "gantry-service").inputs
    assert svc["healthCheckGracePeriodSeconds"] == stack_values(stack, "service")["healthCheckGracePeriodSeconds"]


def test_stack_outputs(graph):
    distribution = graph.one("aws:cloudfront/distribution:Distribution").outputs
    assert graph.exports["serviceUrl"] == "https://" + distribution["domainName"]
    assert graph.exports["edgeName"] == distribution["id"]
    assert graph.exports["clusterName"] == graph.one("aws:ecs/cluster:Cluster").outputs["name"]
    assert graph.exports["serviceName"] == graph.one("aws:ecs/service:Service", "gantry-service").outputs["name"]
    assert graph.exports["logGroupName"] == graph.named("gantry-logs").outputs["name"]
    assert graph.exports["repositoryUrl"] == pulled_repository(graph)[1]
    # What the next `pulumi up` reads back to refuse a surprise switch of the deployment controller.
    assert (
        graph.exports["deploymentController"]
        == graph.one("aws:ecs/service:Service", "gantry-service").inputs["deploymentController"]["type"]
    )


# ---- dev vs prod -------------------------------------------------------------------------------


def test_dev_and_prod_differ_where_cost_and_resilience_trade_off():
    dev, prod = run_program("dev"), run_program("prod")

    def nat(g):
        return g.one("awsx:ec2:Vpc").inputs["natGateways"]["strategy"]

    def interface_endpoints(g):
        return sorted(
            e.inputs["serviceName"].rsplit(".", 2)[-2] + "." + e.inputs["serviceName"].rsplit(".", 1)[-1]
            if e.inputs["serviceName"].endswith((".api", ".dkr"))
            else e.inputs["serviceName"].rsplit(".", 1)[-1]
            for e in g.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
            if e.inputs["vpcEndpointType"] == "Interface"
        )

    def providers(g):
        return {
            p["capacityProvider"]
            for p in g.one("aws:ecs/service:Service", "gantry-service").inputs["capacityProviderStrategies"]
        }

    assert (nat(dev), nat(prod)) == ("Single", "OnePerAz")
    assert dev.one("awsx:ec2:Vpc").inputs["numberOfAvailabilityZones"] == 2
    assert prod.one("awsx:ec2:Vpc").inputs["numberOfAvailabilityZones"] == 3
    assert interface_endpoints(dev) == []
    assert interface_endpoints(prod) == ["ecr.api", "ecr.dkr", "logs", "secretsmanager"]
    assert providers(dev) == {"FARGATE", "FARGATE_SPOT"} and providers(prod) == {"FARGATE"}
    assert dev.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is False
    assert prod.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is True
    assert not dev.one("aws:lb/loadBalancer:LoadBalancer").inputs.get("accessLogs")
    assert [b.name for b in dev.of_type("aws:s3/bucket:Bucket")] == ["gantry-batch-files"]  # no access-log bucket


def test_prod_access_logs_land_in_a_private_encrypted_expiring_bucket():
    g = run_program("prod")
    bucket = g.one("aws:s3/bucket:Bucket", "gantry-lb-access-logs").outputs
    logs = g.one("aws:lb/loadBalancer:LoadBalancer").inputs["accessLogs"]
    assert logs == {"bucket": bucket["bucket"], "prefix": "alb", "enabled": True}
    block = g.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "gantry-lb-access-logs-public-access"
    ).inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = g.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "gantry-lb-access-logs-encryption",
    ).inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    (rule,) = g.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "gantry-lb-access-logs-lifecycle"
    ).inputs["rules"]
    assert rule["expiration"]["days"] == stack_values("prod", "loadBalancer")["accessLogRetentionDays"]
    policy = g.one("aws:s3/bucketPolicy:BucketPolicy", "gantry-lb-access-logs-policy").json("policy")
    allow, deny = statements(policy)
    assert allow["Principal"] == {"AWS": "arn:aws:iam::156460612806:root"}  # ELB's eu-west-1 account
    assert allow["Resource"] == f"{bucket['arn']}/alb/AWSLogs/{ACCOUNT}/*"
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ---- variants of the committed stacks ----------------------------------------------------------


def variant(stack: str, **changes) -> Graph:
    config, secret_keys = with_test_secrets(stack_config(stack))
    for key, value in changes.items():
        config[f"gantry:{key}"] = value
    return run_program(stack, config, secret_keys)


def test_domain_on_the_alb_brings_tls13_https_redirect_and_alias():
    g = variant("dev", domain={"hostedZoneId": ZONE_ID, "hostname": "embed.acme.io"}, edge={"mode": "alb"})
    https = g.named("gantry-lb-https").inputs
    validation = g.one("aws:acm/certificateValidation:CertificateValidation")
    cert = g.one("aws:acm/certificate:Certificate")
    assert https["protocol"] == "HTTPS" and https["port"] == 443
    assert https["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    # That the listener waits for the validated certificate is held in test_ordering.py.
    assert https["defaultActions"][0]["targetGroupArn"] == g.one("aws:lb/targetGroup:TargetGroup").outputs["arn"]
    assert cert.inputs == {"domainName": "embed.acme.io", "validationMethod": "DNS"}
    http = g.named("gantry-lb-http").inputs
    assert http["defaultActions"] == [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
    ]
    alias = g.named("gantry-lb-alias").inputs
    lb = g.one("aws:lb/loadBalancer:LoadBalancer").outputs
    assert alias["aliases"] == [{"name": lb["dnsName"], "zoneId": lb["zoneId"], "evaluateTargetHealth": True}]
    assert alias["zoneId"] == ZONE_ID and alias["name"] == "embed.acme.io"
    record = g.named("gantry-lb-certificate-validation").inputs
    assert validation.inputs["validationRecordFqdns"] == [record["name"]]
    alb, _, _ = sg_ids(g)
    ports = sorted(r.inputs["fromPort"] for r in g.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == alb)
    assert ports == [80, 443]
    assert g.exports["serviceUrl"] == "https://embed.acme.io"
    assert g.exports["edgeName"] == lb["dnsName"]
    lb_inputs = g.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb_inputs["internal"] is False and lb_inputs["subnets"] == PUBLIC_SUBNETS
    assert not g.of_type("aws:cloudfront/distribution:Distribution")


def test_no_nat_keeps_tasks_on_endpoints_only():
    network = {**stack_values("prod", "network"), "natStrategy": "none"}
    # Rolling: codedeploy's hook needs NAT for the CodeDeploy and EC2 APIs (refused without it).
    g = variant("prod", network=network, deployment={"strategy": "rolling"})
    _, task, endpoints = sg_ids(g)
    out_of_task = [r.inputs for r in g.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == task]
    assert not [e for e in out_of_task if e.get("cidrIpv4")]
    assert {e.get("referencedSecurityGroupId") or e.get("prefixListId") for e in out_of_task} == {
        endpoints,
        g.named("gantry-endpoints-s3").outputs["prefixListId"],
    }
    assert all((e["fromPort"], e["toPort"]) == (443, 443) for e in out_of_task)


def test_nat_stacks_let_tasks_out_on_https_only(graph):
    _, task, _ = sg_ids(graph)
    out = [
        r.inputs for r in graph.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == task and r.inputs.get("cidrIpv4")
    ]
    assert [(e["cidrIpv4"], e["fromPort"], e["toPort"], e["ipProtocol"]) for e in out] == [
        ("0.0.0.0/0", 443, 443, "tcp")
    ]


def test_declared_task_permissions_and_existing_secrets_are_granted_exactly():
    secret_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry/openai-key-Q1w2E3"
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    bucket = "arn:aws:s3:::gantry-corpus-eu/*"
    g = variant(
        "dev",
        secrets=[
            {"name": "API_KEYS", "create": True},
            {"name": "OPENAI_API_KEY", "secretsManagerArn": secret_arn, "kmsKeyArn": key_arn},
        ],
        taskRolePolicy=[{"sid": "ReadCorpus", "actions": ["s3:GetObject"], "resources": [bucket]}],
    )
    container = container_def(g)
    assert {"name": "OPENAI_API_KEY", "valueFrom": secret_arn} in container["secrets"]
    # The referenced secret's AWSCURRENT version is looked up (never its value) and labels the revision.
    assert container["dockerLabels"]["gantry.secret-version.OPENAI_API_KEY"] == VERSION_ID
    execution = statements(g.named("gantry-roles-execution-policy").json("policy"))
    read = next(s for s in execution if s["Action"] == "secretsmanager:GetSecretValue")
    assert sorted(read["Resource"]) == sorted([secret_arn, g.one("aws:secretsmanager/secret:Secret").outputs["arn"]])
    decrypt = next(s for s in execution if s["Action"] == "kms:Decrypt")
    assert decrypt["Resource"] == [key_arn]
    task_policy = g.named("gantry-roles-task-policy")
    assert task_policy.inputs["role"] == g.named("gantry-roles-task").outputs["id"]
    assert statements(task_policy.json("policy")) == [
        {"Sid": "ReadCorpus", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [bucket]}
    ]


# ---- bad config stops everything ---------------------------------------------------------------


def test_invalid_config_fails_before_any_resource_is_registered():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:container"] = {**stack_values("dev", "container"), "memory": 1000}
    graph = Graph()
    with pytest.raises(pulumi.RunError) as err:
        run_program("dev", config, secret_keys, graph)
    # Only the look-ups validation needs ran; nothing was created.
    assert graph.resources == []
    assert set(graph.calls) <= {
        "aws:index/getAvailabilityZones:getAvailabilityZones",
        "aws:route53/getZone:getZone",
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:iam/getPolicy:getPolicy",
        "pulumi:pulumi:readStackOutputs",
    }
    assert "gantry:container.memory" in str(err.value)
    assert "1000" in str(err.value) and "2048" in str(err.value)


def test_committed_stack_without_its_secret_value_names_the_command_to_run():
    with pytest.raises(pulumi.RunError) as err:
        run_program("prod", stack_config("prod"), [])
    assert "gantry:secretValues.API_KEYS" in str(err.value)
    assert "pulumi config set --secret --path 'secretValues.API_KEYS'" in str(err.value)


@pytest.mark.parametrize(
    "key, first", [("network", "cidrBlock"), ("container", "healthCheckPath"), ("loadBalancer", "desyncMitigationMode")]
)
def test_a_placeholder_in_a_stack_file_is_refused(key, first):
    for stack in STACKS:
        config, secret_keys = with_test_secrets(stack_config(stack))
        # A string setting, whether or not this stack file departs from its default.
        values = dict(config.get(f"gantry:{key}", {}))
        values[first] = "REPLACE_ME"
        config[f"gantry:{key}"] = values
        with pytest.raises(pulumi.RunError) as err:
            run_program(stack, config, secret_keys)
        assert f"gantry:{key}.{first}" in str(err.value)

"""Whole-stack tests of the deployment strategies: prod (CodeDeploy blue/green) and dev (ECS rolling).

The real __main__.py under mocks, through the capturing monitor, so options (ignore_changes, aliases)
and dependencies are asserted on the program itself. Each test guards what a real mistake would
break: a Pulumi-reset listener, a replaced live target group, a deployment group naming groups or
alarms that do not exist, a CodeDeploy role with the managed policy's breadth, a test listener open to
the internet, a hook shipped without its references, a dev rollout no 5xx alarm can stop, and a
strategy switch that silently replaces the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.harness import ACCOUNT, PRIVATE_SUBNETS, REGION, Graph, Res, run_program, stack_config, with_test_secrets

SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
GROUP = "aws:codedeploy/deploymentGroup:DeploymentGroup"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DEPLOY = "pulumi-python:dynamic:Resource"


def rollback_alarms(graph: Graph) -> list:
    """The rollback alarms (the operations layer adds alarms of its own, which roll nothing back)."""
    [component] = graph.of_type("gantry:observability:RollbackAlarms")
    return [a for a in graph.children_of(component) if a.typ == ALARM]


@pytest.fixture
def prod() -> Graph:
    return run_program("prod")


@pytest.fixture
def dev() -> Graph:
    return run_program("dev")


def grants(document: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            out.setdefault(action, set()).update(resources)
    return out


def alarm_dimension(alarm: Res, name: str) -> set[str]:
    """Every value of one dimension an alarm reads (plain metric or inside its metric math)."""
    found = set()
    if "dimensions" in alarm.inputs:
        found.add(alarm.inputs["dimensions"].get(name))
    for query in alarm.inputs.get("metricQueries", []):
        if "metric" in query:
            found.add(query["metric"]["dimensions"].get(name))
    return found - {None}


# ---- prod: CodeDeploy blue/green ---------------------------------------------------------------


def test_prod_service_hands_deployments_to_codedeploy(prod):
    service = prod.one(SERVICE, "gantry-service")
    assert service.inputs["deploymentController"] == {"type": "CODE_DEPLOY"}
    # CodeDeploy owns these after creation; Pulumi resetting them would fight (or fail) every deployment.
    assert set(service.opts.ignore_changes) == {
        "desiredCount",
        "taskDefinition",
        "loadBalancers",
        "networkConfiguration",
        "platformVersion",
        "capacityProviderStrategies",
    }
    # What the API refuses (or ignores) for CODE_DEPLOY is not sent at all.
    for refused in ("deploymentCircuitBreaker", "alarms", "forceNewDeployment", "waitForSteadyState"):
        assert refused not in service.inputs, refused
    blue = prod.named("gantry-lb-blue")
    assert [lb["targetGroupArn"] for lb in service.inputs["loadBalancers"]] == [blue.outputs["arn"]]


def test_prod_target_group_pair_keeps_the_live_group(prod):
    blue, green = prod.named("gantry-lb-blue"), prod.named("gantry-lb-green")
    assert {r.name for r in prod.of_type("aws:lb/targetGroup:TargetGroup")} == {blue.name, green.name}
    for key in ("port", "protocol", "targetType", "healthCheck", "deregistrationDelay"):
        assert blue.inputs[key] == green.inputs[key], key
    # The rolling stack's `main` group is blue's former identity: the live group is never replaced.
    assert any("gantry-lb-main" in str(alias) for alias in blue.opts.aliases)
    assert not any("gantry-lb-main" in str(alias) for alias in green.opts.aliases)


def test_prod_listeners_leave_their_actions_to_codedeploy(prod):
    production, test = prod.named("gantry-lb-http"), prod.named("gantry-lb-test")
    assert production.opts.ignore_changes == ("defaultActions",)
    assert test.opts.ignore_changes == ("defaultActions",)
    assert test.inputs["port"] == stack_config("prod")["gantry:deployment"].get("testListenerPort", 9000)
    assert test.inputs["defaultActions"][0]["targetGroupArn"] == prod.named("gantry-lb-green").outputs["arn"]


def test_prod_test_listener_is_reachable_only_from_the_hook(prod):
    alb = prod.named("gantry-sg-alb").outputs["id"]
    hook = prod.named("gantry-sg-hook").outputs["id"]
    port = prod.named("gantry-lb-test").inputs["port"]
    into_test_port = [r.inputs for r in prod.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == alb]
    into_test_port = [r for r in into_test_port if r["fromPort"] <= port <= r["toPort"]]
    assert into_test_port and all(r.get("referencedSecurityGroupId") == hook for r in into_test_port)
    assert not [r for r in into_test_port if "cidrIpv4" in r]
    # The hook may send only to the test listener and HTTPS (AWS APIs through NAT and the endpoints).
    out = [r.inputs for r in prod.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == hook]
    assert {(r["fromPort"], r.get("referencedSecurityGroupId")) for r in out if r["fromPort"] != 443} == {(port, alb)}
    assert all(r["fromPort"] == r["toPort"] == 443 for r in out if r["fromPort"] != port)


def test_prod_deployment_group_names_what_exists_in_the_graph(prod):
    group = prod.one(GROUP).inputs
    blue, green = prod.named("gantry-lb-blue"), prod.named("gantry-lb-green")
    pair = group["loadBalancerInfo"]["targetGroupPairInfo"]
    assert pair["targetGroups"] == [{"name": blue.outputs["name"]}, {"name": green.outputs["name"]}]
    assert pair["prodTrafficRoute"]["listenerArns"] == [prod.named("gantry-lb-http").outputs["arn"]]
    assert pair["testTrafficRoute"]["listenerArns"] == [prod.named("gantry-lb-test").outputs["arn"]]
    assert group["deploymentStyle"] == {"deploymentOption": "WITH_TRAFFIC_CONTROL", "deploymentType": "BLUE_GREEN"}
    assert group["autoRollbackConfiguration"] == {
        "enabled": True,
        "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
    }
    assert group["ecsService"] == {
        "clusterName": prod.one("aws:ecs/cluster:Cluster").outputs["name"],
        "serviceName": prod.one(SERVICE, "gantry-service").outputs["name"],
    }
    assert group["deploymentConfigName"] == "CodeDeployDefault.ECSCanary10Percent5Minutes"
    assert group["blueGreenDeploymentConfig"]["terminateBlueInstancesOnDeploymentSuccess"] == {
        "action": "TERMINATE",
        "terminationWaitTimeInMinutes": 5,
    }
    assert group["serviceRoleArn"] == prod.named("gantry-deploy-codedeploy-role").outputs["arn"]
    # Every rollback alarm exists, and blue, green and the worker are all watched.
    alarms = {a.inputs["name"]: a for a in rollback_alarms(prod)}
    assert group["alarmConfiguration"]["enabled"] is True
    assert sorted(group["alarmConfiguration"]["alarms"]) == sorted(alarms) and len(alarms) == 7
    watched = set().union(*(alarm_dimension(a, "TargetGroup") for a in alarms.values()))
    assert watched == {blue.outputs["arnSuffix"], green.outputs["arnSuffix"]}
    assert any(alarm_dimension(a, "Service") == {"gantry-worker"} for a in alarms.values())
    assert prod.one(GROUP).depends_on(prod.named("gantry-deploy-codedeploy-policy"))


def test_prod_codedeploy_role_is_scoped_to_this_service(prod):
    role = prod.named("gantry-deploy-codedeploy-role")
    trust = role.json("assumeRolePolicy")["Statement"]
    assert [(s["Principal"], s["Condition"]) for s in trust] == [
        ({"Service": "codedeploy.amazonaws.com"}, {"StringEquals": {"aws:SourceAccount": ACCOUNT}})
    ]
    assert not prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")  # no AWSCodeDeployRoleForECS
    document = prod.named("gantry-deploy-codedeploy-policy").json("policy")
    cluster = prod.one("aws:ecs/cluster:Cluster").outputs["name"]
    service = prod.one(SERVICE, "gantry-service").outputs["name"]
    listeners = sorted(prod.named(n).outputs["arn"] for n in ("gantry-lb-http", "gantry-lb-test"))
    hook = prod.named("gantry-deploy-hook").outputs["arn"]
    roles = sorted(prod.named(n).outputs["arn"] for n in ("gantry-roles-execution", "gantry-roles-task"))
    ecs = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
    alarms = sorted(f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{a.inputs['name']}" for a in rollback_alarms(prod))
    assert grants(document) == {
        "ecs:DescribeServices": {f"{ecs}:service/{cluster}/{service}"},
        "ecs:CreateTaskSet": {f"{ecs}:service/{cluster}/{service}", f"{ecs}:task-set/{cluster}/{service}/*"},
        "ecs:DeleteTaskSet": {f"{ecs}:service/{cluster}/{service}", f"{ecs}:task-set/{cluster}/{service}/*"},
        "ecs:UpdateServicePrimaryTaskSet": {
            f"{ecs}:service/{cluster}/{service}",
            f"{ecs}:task-set/{cluster}/{service}/*",
        },
        "elasticloadbalancing:DescribeListeners": {"*"},
        "elasticloadbalancing:DescribeRules": {"*"},
        "elasticloadbalancing:DescribeTargetGroups": {"*"},
        "elasticloadbalancing:ModifyListener": set(listeners),
        "elasticloadbalancing:ModifyRule": {arn.replace(":listener/", ":listener-rule/") + "/*" for arn in listeners},
        "cloudwatch:DescribeAlarms": set(alarms),
        "lambda:InvokeFunction": {hook, f"{hook}:*"},
        "iam:PassRole": set(roles),
    }
    [pass_role] = [s for s in document["Statement"] if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # DescribeAlarms scoped to alarm ARNs cannot read composite alarms (CloudWatch API Reference,
    # DescribeAlarms: those need the permission on "*"), so every alarm the group watches is a metric alarm.
    watched = prod.one("aws:codedeploy/deploymentGroup:DeploymentGroup").inputs["alarmConfiguration"]["alarms"]
    metric_alarms = {a.inputs.get("name") for a in prod.of_type(ALARM)}
    assert watched and set(watched) <= metric_alarms
    assert not prod.of_type("aws:cloudwatch/compositeAlarm:CompositeAlarm")


def test_prod_hook_is_packaged_with_its_data_in_the_private_subnets(prod):
    function = prod.named("gantry-deploy-hook").inputs
    archive = function["code"]
    assert isinstance(archive, pulumi.AssetArchive)
    assert set(archive.assets) == {"handler.py", "golden.json"}
    asset = archive.assets["golden.json"]
    assert isinstance(asset, pulumi.FileAsset)
    golden = json.loads(Path(asset.path).read_text())
    assert golden["texts"] and len(golden["embeddings"]) == len(golden["texts"])
    assert function["handler"] == "handler.handler"
    assert function["vpcConfig"] == {
        "subnetIds": PRIVATE_SUBNETS,
        "securityGroupIds": [prod.named("gantry-sg-hook").outputs["id"]],
    }
    env = function["environment"]["variables"]
    deployment = stack_config("prod")["gantry:deployment"]
    assert env["CHECK"] == "eval"
    assert (env["EVAL_MIN_TOP1"], env["EVAL_MIN_COSINE"], env["EVAL_MEAN_COSINE"]) == ("0.95", "0.97", "0.985")
    assert env["API_KEY_SECRET_ARN"] == prod.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    assert env["API_KEY_TENANT"] == deployment.get("evalTenant", "gantry-eval")
    assert env["TEST_LOAD_BALANCER"] == prod.one("aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]
    assert env["TEST_URL"].endswith(":9000")
    logs = prod.named("gantry-deploy-hook-logs")
    assert function["loggingConfig"]["logGroup"] == logs.outputs["name"]
    assert logs.inputs["retentionInDays"] == stack_config("prod")["gantry:logs"]["retentionDays"]
    policy = grants(prod.named("gantry-deploy-hook-policy").json("policy"))
    group_arn = f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:gantry-deploy-app/gantry-prod"
    assert policy["codedeploy:PutLifecycleEventHookExecutionStatus"] == {group_arn}
    assert policy["secretsmanager:GetSecretValue"] == {env["API_KEY_SECRET_ARN"]}


def test_prod_deploy_resource_waits_for_the_service_and_the_group(prod):
    deploy = prod.named("gantry-deploy-deploy")
    assert deploy.typ == DEPLOY
    assert deploy.depends_on(prod.one(SERVICE, "gantry-service")) and deploy.depends_on(prod.one(GROUP))
    task_definition = prod.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").outputs["arn"]
    assert deploy.inputs["task_definition_arn"] == task_definition
    appspec = json.loads(deploy.inputs["appspec_content"])
    properties = appspec["Resources"][0]["TargetService"]["Properties"]
    assert properties["TaskDefinition"] == task_definition
    assert properties["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert properties["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == PRIVATE_SUBNETS
    assert appspec["Hooks"] == [{"AfterAllowTestTraffic": prod.named("gantry-deploy-hook").outputs["arn"]}]
    assert deploy.inputs["timeout_seconds"] == 45 * 60
    assert sorted(deploy.inputs["alarm_names"]) == sorted(a.inputs["name"] for a in rollback_alarms(prod))


# ---- dev: ECS rolling with the same alarms ----------------------------------------------------


def test_dev_rolls_with_alarms_that_roll_back(dev):
    service = dev.one(SERVICE, "gantry-service").inputs
    assert service["deploymentController"] == {"type": "ECS"}
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    alarms = {a.inputs["name"]: a for a in rollback_alarms(dev)}
    assert service["alarms"]["enable"] is True and service["alarms"]["rollback"] is True
    assert sorted(service["alarms"]["alarmNames"]) == sorted(alarms) and len(alarms) == 4
    main = dev.named("gantry-lb-main")
    assert set().union(*(alarm_dimension(a, "TargetGroup") for a in alarms.values())) == {main.outputs["arnSuffix"]}
    assert any(alarm_dimension(a, "Service") == {"gantry-worker"} for a in alarms.values())
    # Nothing of CodeDeploy, and the listener stays Pulumi's.
    assert not dev.of_type(GROUP) and not [r for r in dev.resources if r.name.startswith("gantry-deploy-")]
    assert not dev.named("gantry-lb-http").opts.ignore_changes
    assert not [r for r in dev.resources if r.name in ("gantry-lb-test", "gantry-sg-hook")]


# ---- switching strategy on a live stack --------------------------------------------------------


def run_with_previous(stack: str, previous: dict[str, Any], deployment: dict[str, Any] | None = None) -> Graph:
    config, secret_keys = with_test_secrets(stack_config(stack))
    if deployment is not None:
        config["gantry:deployment"] = deployment
    graph = Graph(previous_outputs=previous)
    return run_program(stack, config, secret_keys, graph)


def test_switching_a_live_rolling_stack_to_codedeploy_is_refused_with_the_way_to_migrate():
    # A stack deployed before the deploymentController output existed ran the ECS controller.
    for previous in ({"serviceName": "gantry-service-1a2b3c"}, {"deploymentController": "ECS"}):
        graph = Graph(previous_outputs=previous)
        config, secret_keys = with_test_secrets(stack_config("prod"))
        with pytest.raises(pulumi.RunError) as err:
            run_program("prod", config, secret_keys, graph)
        message = str(err.value)
        assert "gantry:deployment.strategy" in message and "replace the service" in message
        assert "replaceServiceOnStrategyChange: true" in message
        assert graph.resources == []


def test_the_other_way_round_is_refused_too_and_unchanged_or_acknowledged_stacks_deploy():
    with pytest.raises(pulumi.RunError, match="CODE_DEPLOY deployment controller"):
        run_with_previous("dev", {"deploymentController": "CODE_DEPLOY"})
    assert run_with_previous("prod", {"deploymentController": "CODE_DEPLOY"}).of_type(GROUP)
    assert run_with_previous("dev", {"deploymentController": "ECS"}).of_type(SERVICE)
    acknowledged = {**stack_config("prod")["gantry:deployment"], "replaceServiceOnStrategyChange": True}
    assert run_with_previous("prod", {"serviceName": "x"}, acknowledged).of_type(GROUP)

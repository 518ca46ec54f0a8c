"""The rollback drill's orchestration against botocore's Stubber and a fake Pulumi CLI: a rolling stack
whose faulty deploy is rolled back by ECS, a CodeDeploy stack whose eval hook rolls it back, and the
ways it must fail: an `up` that succeeds (the fault went live), a deployment that was not rolled back,
a service that does not come back, and an `up` that failed before any deployment started. The fault
switch must be removed in every case."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import boto3
import pytest
from botocore.stub import Stubber

from gantry.drill import FAULT_PATH, Drill, DrillError, DrillFailed, main
from tests.harness import ACCOUNT, REGION

CLUSTER, SERVICE = "gantry-1a2b", "gantry-service-3c4d"
GOOD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-dev:7"
BAD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-dev:8"
TG = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/gantry-lb-main/73e2d6bc24d8a067"
DEPLOYMENT = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/{CLUSTER}/{SERVICE}/abc123"
START = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


class FakeCli:
    """Records Pulumi CLI calls; `up` answers as configured."""

    def __init__(self, controller: str, up_results: Sequence[tuple[int, str]]):
        self.calls: list[list[str]] = []
        self.controller = controller
        self.up_results = list(up_results)

    def __call__(self, args: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(args))
        if args[1:3] == ["stack", "output"]:
            return 0, json.dumps(
                {"clusterName": CLUSTER, "serviceName": SERVICE, "deploymentController": self.controller}
            )
        if args[1] == "up":
            return self.up_results.pop(0)
        return 0, ""

    def fault_left_set(self) -> bool:
        sets = [c for c in self.calls if c[1:3] == ["config", "set"]]
        removed = [c for c in self.calls if c[1:3] == ["config", "rm"]]
        return len(sets) != len(removed) or any(FAULT_PATH not in c for c in sets + removed)


def ecs_service(task_definition: str, *, settled: bool = True) -> dict:
    deployments = [
        {"status": "PRIMARY", "taskDefinition": task_definition, "rolloutState": "COMPLETED", "runningCount": 2}
    ]
    if not settled:
        deployments[0]["rolloutState"] = "IN_PROGRESS"
    return {
        "services": [
            {
                "status": "ACTIVE",
                "desiredCount": 2,
                "taskDefinition": task_definition,
                "deployments": deployments,
                "loadBalancers": [{"targetGroupArn": TG, "containerName": "app", "containerPort": 8000}],
            }
        ],
        "failures": [],
    }


def codedeploy_service(task_definition: str) -> dict:
    task_set = {
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "stabilityStatus": "STEADY_STATE",
        "runningCount": 2,
        "loadBalancers": [{"targetGroupArn": TG}],
    }
    return {"services": [{"status": "ACTIVE", "desiredCount": 2, "taskSets": [task_set]}], "failures": []}


HEALTHY = {"TargetHealthDescriptions": [{"TargetHealth": {"State": "healthy"}}, {"TargetHealth": {"State": "healthy"}}]}
DESCRIBE = {"cluster": CLUSTER, "services": [SERVICE]}


def clients():
    made = {
        name: boto3.client(name, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        for name in ("ecs", "elbv2", "codedeploy")
    }
    stubbers = {name: Stubber(client) for name, client in made.items()}
    for stubber in stubbers.values():
        stubber.activate()
    return made, stubbers


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.seconds += seconds


def drill(cli: FakeCli, made: dict, **kwargs) -> Drill:
    clock = Clock()
    return Drill(
        stack="dev",
        run=cli,
        log=lambda _: None,
        sleep=clock.sleep,
        clock=clock,
        now=lambda: START,
        **made,
        **kwargs,
    )


def stub_ecs_deployment(stub, status: str) -> None:
    """ECS lists one deployment since the drill began, which ended in `status`."""
    stub["ecs"].add_response(
        "list_service_deployments", {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT}]}, None
    )
    stub["ecs"].add_response(
        "describe_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": status}]},
        None,
    )


def test_rolling_stack_rolled_back_by_ecs_passes_and_reports_the_recovery_time():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    stub["ecs"].add_response(
        "list_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT}]},
        {"cluster": CLUSTER, "service": SERVICE, "createdAt": {"after": START}},
    )
    stub["ecs"].add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [
                {
                    "serviceDeploymentArn": DEPLOYMENT,
                    "status": "ROLLBACK_SUCCESSFUL",
                    "rollback": {"reason": "ECS deployment circuit breaker: tasks failed to start."},
                    "finishedAt": START + dt.timedelta(seconds=412),
                }
            ]
        },
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )
    # The first look finds the rollback still settling; the second finds the good revision healthy.
    stub["ecs"].add_response("describe_services", ecs_service(GOOD, settled=False), DESCRIBE)
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    cli = FakeCli("ECS", [(255, "error: circuit breaker"), (0, "")])
    report = drill(cli, made).rollback()
    assert report.fault == "5xx" and report.good_revision == GOOD
    assert "circuit breaker" in report.rollback
    assert report.seconds_to_recovery == 412
    assert ["pulumi", "config", "set", "--path", FAULT_PATH, "5xx", "-s", "dev"] in cli.calls
    assert not cli.fault_left_set()
    # The final `up` restores the stack once the switch is off.
    ups = [i for i, c in enumerate(cli.calls) if c[1] == "up"]
    removed = next(i for i, c in enumerate(cli.calls) if c[1:3] == ["config", "rm"])
    assert len(ups) == 2 and ups[0] < removed < ups[1]
    for stubber in stub.values():
        stubber.assert_no_pending_responses()


def test_codedeploy_stack_rolled_back_after_a_failed_eval_passes():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", codedeploy_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    stub["codedeploy"].add_response(
        "get_deployment",
        {
            "deploymentInfo": {
                "deploymentId": "d-ABCDEF123",
                "status": "Failed",
                "errorInformation": {"code": "HOOK_FAILED", "message": "AfterAllowTestTraffic hook failed"},
                "rollbackInfo": {"rollbackDeploymentId": "d-ZYXWVU987"},
                "completeTime": START + dt.timedelta(seconds=300),
            }
        },
        {"deploymentId": "d-ABCDEF123"},
    )
    stub["ecs"].add_response("describe_services", codedeploy_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    cli = FakeCli("CODE_DEPLOY", [(255, "CodeDeploy deployment d-ABCDEF123 Failed"), (0, "")])
    report = drill(cli, made).rollback()
    assert report.fault == "bad-embeddings" and "AfterAllowTestTraffic" in report.rollback
    assert report.seconds_to_recovery == 300 and not cli.fault_left_set()


def test_an_up_that_succeeds_means_the_rollback_did_not_happen():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    cli = FakeCli("ECS", [(0, "update complete"), (0, "")])
    with pytest.raises(DrillFailed, match="rollback did not happen: `pulumi up` succeeded"):
        drill(cli, made).rollback()
    assert not cli.fault_left_set()
    assert [c[1] for c in cli.calls].count("up") == 2  # the faulty revision is replaced at once


def test_a_deployment_that_was_not_rolled_back_fails_the_drill():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    stub_ecs_deployment(stub, "ROLLBACK_FAILED")
    cli = FakeCli("ECS", [(255, "error"), (0, "")])
    with pytest.raises(DrillFailed, match="ended ROLLBACK_FAILED, not ROLLBACK_SUCCESSFUL"):
        drill(cli, made).rollback()
    assert not cli.fault_left_set()


def test_a_service_stuck_on_the_faulty_revision_fails_the_drill():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    stub_ecs_deployment(stub, "ROLLBACK_SUCCESSFUL")
    # 60 s of patience at one look every 15 s: five looks, all on the faulty revision.
    for _ in range(5):
        stub["ecs"].add_response("describe_services", ecs_service(BAD, settled=False), DESCRIBE)
    cli = FakeCli("ECS", [(255, "error"), (0, "")])
    with pytest.raises(DrillFailed, match="serves gantry-dev:8 .*not gantry-dev:7 healthy"):
        drill(cli, made, recovery_timeout_seconds=60).rollback()


def test_an_up_that_failed_before_any_deployment_does_not_count_as_a_rollback():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response("describe_target_health", HEALTHY, {"TargetGroupArn": TG})
    stub["ecs"].add_response("list_service_deployments", {"serviceDeployments": []}, None)
    cli = FakeCli("ECS", [(255, "error: docker build failed"), (0, "")])
    with pytest.raises(DrillFailed, match="before ECS started a deployment"):
        drill(cli, made).rollback()


def test_an_unhealthy_service_or_a_production_stack_is_not_drilled():
    made, stub = clients()
    stub["ecs"].add_response("describe_services", ecs_service(GOOD), DESCRIBE)
    stub["elbv2"].add_response(
        "describe_target_health", {"TargetHealthDescriptions": [{"TargetHealth": {"State": "unhealthy"}}]}, None
    )
    cli = FakeCli("ECS", [])
    with pytest.raises(DrillError, match="not settled and healthy before the drill"):
        drill(cli, made).rollback()
    assert not [c for c in cli.calls if c[1] in ("up", "config")]
    prod = Drill(stack="prod", run=cli, ecs=None, elbv2=None, codedeploy=None)
    with pytest.raises(DrillError, match="production"):
        prod.rollback()


def test_the_command_line_needs_a_stack(capsys):
    with pytest.raises(SystemExit):
        main(["rollback"])
    assert "--stack" in capsys.readouterr().err

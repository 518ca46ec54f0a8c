"""The deploy resource's logic against botocore's Stubber (every call and its parameters checked against
the AWS models) and against moto where moto implements the calls. Sleep and clock are fakes: no test waits.
"""

from __future__ import annotations

import botocore.session
import pytest
from botocore.stub import Stubber

from components.blue_green import provider
from components.blue_green.appspec import AppSpecArgs, appspec_content
from components.blue_green.provider import (
    BlueGreenDeployer,
    BlueGreenDeployProvider,
    DeployError,
    DeploymentFailed,
    DeployRequest,
    deploy_needed,
)

REGION, ACCOUNT = "eu-west-1", "210987654321"
OLD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-prod:41"
NEW = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-prod:42"
ALARMS = ("gantry-prod-green-target-5xx-rate", "gantry-prod-worker-5xx-rate")
CONTENT = appspec_content(
    AppSpecArgs(
        task_definition_arn=NEW,
        container_name="worker",
        container_port=8000,
        subnets=("subnet-0a1",),
        security_groups=("sg-0b2",),
    )
)
PROPS = {
    "region": REGION,
    "cluster": "gantry-prod",
    "service": "worker",
    "application_name": "gantry-prod",
    "deployment_group_name": "worker",
    "task_definition_arn": NEW,
    "appspec_content": CONTENT,
    "description": "gantry git 0a1b2c3 image sha256:feedface",
    "alarm_names": list(ALARMS),
    "timeout_seconds": 600,
    "other_timeout_seconds": 600,
    "poll_seconds": 15,
}
GROUP = {"applicationName": "gantry-prod", "deploymentGroupName": "worker"}
TARGET = "gantry-prod:worker"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Rig:
    """Three stubbed clients, a fake clock and the collected log lines."""

    def __init__(self) -> None:
        session = botocore.session.get_session()
        make = lambda name: session.create_client(  # noqa: E731
            name, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
        )
        self.ecs, self.codedeploy, self.cloudwatch = make("ecs"), make("codedeploy"), make("cloudwatch")
        self.stubs = {name: Stubber(getattr(self, name)) for name in ("ecs", "codedeploy", "cloudwatch")}
        self.time = FakeTime()
        self.logs: list[str] = []
        self.deployer = BlueGreenDeployer(
            ecs=self.ecs,
            codedeploy=self.codedeploy,
            cloudwatch=self.cloudwatch,
            log=self.logs.append,
            sleep=self.time.sleep,
            clock=self.time.clock,
        )

    def __enter__(self) -> Rig:
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc) -> None:
        for stub in self.stubs.values():
            stub.deactivate()
        if exc[0] is None:
            for stub in self.stubs.values():
                stub.assert_no_pending_responses()

    def cd(self, method: str, response: dict, expected: dict) -> None:
        self.stubs["codedeploy"].add_response(method, response, expected)

    def no_active(self) -> None:
        self.cd("list_deployments", {"deployments": []}, {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES})

    def service_on(self, task_definition: str) -> None:
        self.stubs["ecs"].add_response(
            "describe_services",
            {
                "services": [
                    {
                        "serviceName": "worker",
                        "status": "ACTIVE",
                        "taskDefinition": OLD,
                        "taskSets": [
                            {"id": "ecs-svc/2", "status": "ACTIVE", "taskDefinition": "ignored-active-set"},
                            {"id": "ecs-svc/1", "status": "PRIMARY", "taskDefinition": task_definition},
                        ],
                    }
                ],
                "failures": [],
            },
            {"cluster": "gantry-prod", "services": ["worker"]},
        )

    def create(self, deployment_id: str = "d-NEW") -> None:
        self.cd(
            "create_deployment",
            {"deploymentId": deployment_id},
            {
                **GROUP,
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": CONTENT}},
                "description": PROPS["description"],
            },
        )

    def poll(self, deployment_id: str, status: str, *, events=(), green=None, first=False, **info) -> None:
        self.cd(
            "get_deployment",
            {"deploymentInfo": {"deploymentId": deployment_id, "status": status, **info}},
            {"deploymentId": deployment_id},
        )
        if first:
            self.cd("list_deployment_targets", {"targetIds": [TARGET]}, {"deploymentId": deployment_id})
        ecs_target = {
            "deploymentId": deployment_id,
            "targetId": TARGET,
            "lifecycleEvents": [{"lifecycleEventName": name, "status": st} for name, st in events],
        }
        if green is not None:
            ecs_target["taskSetsInfo"] = [
                {"identifer": "ecs-svc/1", "taskSetLabel": "Blue", "trafficWeight": 100.0 - green},
                {"identifer": "ecs-svc/2", "taskSetLabel": "Green", "trafficWeight": float(green)},
            ]
        self.cd(
            "get_deployment_target",
            {"deploymentTarget": {"deploymentTargetType": "ECSTarget", "ecsTarget": ecs_target}},
            {"deploymentId": deployment_id, "targetId": TARGET},
        )

    def alarms(self, names: list[str]) -> None:
        self.stubs["cloudwatch"].add_response(
            "describe_alarms",
            {
                "MetricAlarms": [
                    {"AlarmName": n, "StateValue": "ALARM", "StateReason": "Threshold Crossed"} for n in names
                ]
            },
            {"AlarmNames": list(ALARMS), "StateValue": "ALARM"},
        )

    def deploy(self):
        return self.deployer.deploy(DeployRequest.from_props(PROPS))


def test_succeeded_deployment_is_recorded_and_its_progress_logged():
    with Rig() as rig:
        rig.no_active()
        rig.service_on(OLD)
        rig.create()
        rig.poll(
            "d-NEW",
            "InProgress",
            first=True,
            events=[("BeforeInstall", "Succeeded"), ("AfterAllowTestTraffic", "InProgress")],
            green=0,
        )
        rig.poll(
            "d-NEW",
            "InProgress",
            events=[("AfterAllowTestTraffic", "Succeeded"), ("AllowTraffic", "InProgress")],
            green=10,
        )
        rig.poll("d-NEW", "Succeeded", events=[("AfterAllowTraffic", "Succeeded")], green=100)
        outcome = rig.deploy()
    assert outcome.outputs() == {
        "deployed_task_definition_arn": NEW,
        "deployed_appspec_content": CONTENT,
        "deployment_id": "d-NEW",
        "console_url": "https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-NEW?region=eu-west-1",
    }
    text = "\n".join(rig.logs)
    assert "d-NEW started (gantry-prod:41 -> gantry-prod:42)" in text
    assert "codedeploy/deployments/d-NEW?region=eu-west-1" in text
    for line in (
        "AfterAllowTestTraffic Succeeded",
        "10 % of production traffic on green",
        "100 % of production traffic on green",
    ):
        assert line in text
    # Each status and weight once, not every poll.
    assert sum("AfterAllowTestTraffic Succeeded" in line for line in rig.logs) == 1
    assert rig.time.sleeps == [15, 15]


def failure(rig: Rig, status: str, **info) -> str:
    rig.no_active()
    rig.service_on(OLD)
    rig.create()
    rig.poll("d-NEW", status, first=True, **info)
    with pytest.raises(DeploymentFailed) as caught:
        rig.deploy()
    message = str(caught.value)
    assert "d-NEW" in message and status in message
    assert "https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-NEW" in message
    assert "stays on gantry-prod:41" in message and "next `pulumi up` tries it again" in message
    return message


def test_rolled_back_by_alarm_names_the_alarm():
    with Rig() as rig:
        rig.alarms(["gantry-prod-green-target-5xx-rate"])
        message = failure(
            rig,
            "Stopped",
            events=[("AllowTraffic", "Failed")],
            green=10,
            errorInformation={"code": "ALARM_ACTIVE", "message": "Activated alarms: gantry-prod-green-target-5xx-rate"},
            rollbackInfo={"rollbackMessage": "Rolled back by alarm", "rollbackDeploymentId": "d-ROLLBACK"},
        )
    assert "error ALARM_ACTIVE" in message
    assert "alarms in ALARM: gantry-prod-green-target-5xx-rate (Threshold Crossed)" in message
    assert "rollback deployment: d-ROLLBACK" in message


def test_failed_hook_reports_codedeploys_error():
    with Rig() as rig:
        rig.alarms([])
        message = failure(
            rig,
            "Failed",
            events=[("AfterAllowTestTraffic", "Failed")],
            errorInformation={"code": "HOOK_EXECUTION_FAILURE", "message": "The hook reported Failed"},
        )
    assert "error HOOK_EXECUTION_FAILURE: The hook reported Failed" in message
    assert "alarms in ALARM" not in message
    assert any("AfterAllowTestTraffic Failed" in line for line in rig.logs)


def test_stopped_by_hand_fails_the_up():
    with Rig() as rig:
        rig.alarms([])
        message = failure(rig, "Stopped", errorInformation={"code": "MANUAL_STOP", "message": "stopped by a user"})
    assert "MANUAL_STOP" in message


def test_timeout_stops_with_rollback_and_fails():
    with Rig() as rig:
        rig.no_active()
        rig.service_on(OLD)
        rig.create()
        rig.poll("d-NEW", "InProgress", first=True, green=10)
        for _ in range(40):  # 600 s / 15 s polls
            rig.poll("d-NEW", "InProgress", green=10)
        rig.cd("stop_deployment", {"status": "Pending"}, {"deploymentId": "d-NEW", "autoRollbackEnabled": True})
        with pytest.raises(DeploymentFailed, match="timed out after 600 s and was stopped with rollback"):
            rig.deploy()
    assert rig.time.now == 600
    assert all(s <= 15 for s in rig.time.sleeps)


def test_already_on_that_revision_is_a_no_op():
    with Rig() as rig:
        rig.no_active()
        rig.service_on(NEW)
        outcome = rig.deploy()
    assert outcome.outputs()["deployment_id"] is None and outcome.outputs()["console_url"] is None
    assert rig.logs == ["worker already runs gantry-prod:42 as intended; no deployment needed"]


def test_waits_for_a_deployment_in_progress_then_finds_it_deployed_the_revision():
    """An interrupted `up` left its deployment running: the next `up` waits for it and deploys nothing more."""
    with Rig() as rig:
        rig.cd(
            "list_deployments",
            {"deployments": ["d-OLD"], "nextToken": "t"},
            {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES},
        )
        rig.cd(
            "list_deployments",
            {"deployments": []},
            {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES, "nextToken": "t"},
        )
        rig.poll("d-OLD", "InProgress", first=True, green=10)
        rig.poll("d-OLD", "Succeeded", green=100)
        rig.service_on(NEW)
        outcome = rig.deploy()
    assert outcome.deployment_id is None
    assert any("d-OLD is already in progress" in line for line in rig.logs)
    assert any("d-OLD ended Succeeded" in line for line in rig.logs)


def test_another_deployment_outlasting_the_timeout_fails_clearly_without_stopping_it():
    with Rig() as rig:
        rig.cd(
            "list_deployments", {"deployments": ["d-OTHER"]}, {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES}
        )
        rig.poll("d-OTHER", "InProgress", first=True)
        for _ in range(40):
            rig.poll("d-OTHER", "InProgress")
        with pytest.raises(DeploymentFailed) as caught:
            rig.deploy()
    message = str(caught.value)
    assert "d-OTHER (not started by this run) is still in progress after 600 s; nothing was deployed" in message
    assert "aws deploy stop-deployment --deployment-id d-OTHER" in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"timeout_seconds": 30}, "timeout_seconds"),
        ({"poll_seconds": 1}, "poll_seconds"),
        ({"task_definition_arn": OLD}, "does not deploy task_definition_arn"),
        ({"service": ""}, "missing"),
        ({"description": "x" * 1025}, "1024"),
    ],
)
def test_bad_inputs_are_refused(change, needle):
    with pytest.raises(DeployError, match=needle):
        DeployRequest.from_props({**PROPS, **change})


def test_diff_asks_for_an_update_when_the_recorded_revision_is_not_the_intended_one():
    recorded = {
        **PROPS,
        "deployed_task_definition_arn": NEW,
        "deployed_appspec_content": CONTENT,
        "deployment_id": "d-NEW",
    }
    assert not deploy_needed(recorded, PROPS)
    assert deploy_needed({**recorded, "deployed_task_definition_arn": OLD}, PROPS)
    assert deploy_needed(recorded, {**PROPS, "timeout_seconds": 900})
    result = BlueGreenDeployProvider().diff("gantry-prod/worker", recorded, PROPS)
    assert (result.changes, result.replaces) == (False, [])


def test_failed_update_raises_so_pulumi_keeps_the_old_outputs(monkeypatch):
    """A dynamic provider reports an update failure by raising (the host turns it into a gRPC error); it
    must not return outputs naming the failed revision."""
    rig = Rig()
    monkeypatch.setattr(
        provider,
        "_clients",
        lambda region, session: {"ecs": rig.ecs, "codedeploy": rig.codedeploy, "cloudwatch": rig.cloudwatch},
    )
    with rig:
        rig.alarms([])
        rig.no_active()
        rig.service_on(OLD)
        rig.create()
        rig.poll(
            "d-NEW", "Failed", first=True, errorInformation={"code": "HOOK_EXECUTION_FAILURE", "message": "eval failed"}
        )
        olds = {**PROPS, "task_definition_arn": OLD, "deployed_task_definition_arn": OLD, "deployment_id": "d-1"}
        with pytest.raises(DeploymentFailed, match="HOOK_EXECUTION_FAILURE"):
            BlueGreenDeployProvider().update("gantry-prod/worker", olds, PROPS)


def test_first_up_create_records_the_running_revision(monkeypatch):
    rig = Rig()
    monkeypatch.setattr(
        provider,
        "_clients",
        lambda region, session: {"ecs": rig.ecs, "codedeploy": rig.codedeploy, "cloudwatch": rig.cloudwatch},
    )
    with rig:
        rig.no_active()
        rig.service_on(NEW)
        result = BlueGreenDeployProvider().create({**PROPS, "__provider": "serialized"})
    assert result.id == "gantry-prod/worker" and result.outs is not None
    assert result.outs["deployed_task_definition_arn"] == NEW and result.outs["deployment_id"] is None
    assert "__provider" not in result.outs


def test_delete_is_a_no_op():
    # No client is ever made: a delete that called AWS would fail here without credentials or stubs.
    BlueGreenDeployProvider().delete("gantry-prod/worker", PROPS)


# --- moto: real request/response handling of the calls moto implements --------------------------


@pytest.fixture
def moto_clients(monkeypatch):
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        yield {name: boto3.client(name, region_name=REGION) for name in ("ecs", "codedeploy", "cloudwatch")}


def moto_service(ecs) -> tuple[str, str]:
    """A CODE_DEPLOY service whose PRIMARY task set runs revision 1, with revision 2 registered."""
    ecs.create_cluster(clusterName="gantry-prod")
    container = [{"name": "worker", "image": "worker:1", "memory": 512, "portMappings": [{"containerPort": 8000}]}]
    first = ecs.register_task_definition(family="gantry-prod", containerDefinitions=container)["taskDefinition"][
        "taskDefinitionArn"
    ]
    second = ecs.register_task_definition(family="gantry-prod", containerDefinitions=container)["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs.create_service(
        cluster="gantry-prod",
        serviceName="worker",
        taskDefinition=first,
        desiredCount=1,
        deploymentController={"type": "CODE_DEPLOY"},
    )
    task_set = ecs.create_task_set(cluster="gantry-prod", service="worker", taskDefinition=first)["taskSet"]
    ecs.update_service_primary_task_set(cluster="gantry-prod", service="worker", primaryTaskSet=task_set["taskSetArn"])
    return first, second


def test_moto_primary_task_set_decides_and_no_op_creates_nothing(moto_clients):
    first, second = moto_service(moto_clients["ecs"])
    codedeploy = moto_clients["codedeploy"]
    codedeploy.create_application(applicationName="gantry-prod", computePlatform="ECS")
    logs: list[str] = []
    deployer = BlueGreenDeployer(**moto_clients, log=logs.append, sleep=lambda s: None)
    request = DeployRequest.from_props(
        {**PROPS, "task_definition_arn": first, "appspec_content": CONTENT.replace(NEW, first)}
    )
    assert deployer.running_task_definition(request) == first
    assert deployer.deploy(request).deployment_id is None
    assert codedeploy.list_deployments(applicationName="gantry-prod", deploymentGroupName="worker")["deployments"] == []
    other = DeployRequest.from_props(
        {**PROPS, "task_definition_arn": second, "appspec_content": CONTENT.replace(NEW, second)}
    )
    assert deployer.running_task_definition(other) == first


def test_moto_lists_a_created_deployment_as_active(moto_clients):
    codedeploy = moto_clients["codedeploy"]
    codedeploy.create_application(applicationName="gantry-prod", computePlatform="ECS")
    codedeploy.create_deployment_group(
        applicationName="gantry-prod",
        deploymentGroupName="worker",
        serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/codedeploy",
        deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
    )
    created = codedeploy.create_deployment(
        **GROUP, revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": CONTENT}}
    )["deploymentId"]
    deployer = BlueGreenDeployer(**moto_clients, log=lambda line: None)
    assert deployer._active_deployments(DeployRequest.from_props(PROPS)) == [created]

"""The deploy resource's logic against botocore's Stubber (every call and its parameters checked against
the AWS models) and against moto where moto implements the calls. Sleep and clock are fakes: no test waits.
"""

from __future__ import annotations

import io

import botocore.session
import pytest
from botocore.stub import Stubber

from components.blue_green import provider
from components.blue_green.appspec import AppSpecArgs, CapacityProviderItem, appspec_content, changed_properties
from components.blue_green.provider import (
    BlueGreenDeployer,
    BlueGreenDeployProvider,
    DeployError,
    DeploymentFailed,
    DeployRequest,
    deploy_needed,
)
from components.provider_runtime import progress

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


# --- the AppSpec's target decides, not only the task definition (issue 18) -----------------------


def content_with(**changes) -> str:
    args = {
        "task_definition_arn": NEW,
        "container_name": "worker",
        "container_port": 8000,
        "subnets": ("subnet-0a1",),
        "security_groups": ("sg-0b2",),
        **changes,
    }
    return appspec_content(AppSpecArgs(**args))


RECORDED = {**PROPS, "deployed_task_definition_arn": NEW, "deployed_appspec_content": CONTENT, "deployment_id": "d-1"}


def update_through_provider(monkeypatch, olds: dict, news: dict, *, created: str | None) -> dict:
    """The provider's update against stubs: `created` is the AppSpec its CreateDeployment must carry
    (None: the stubs allow no CreateDeployment at all)."""
    rig = Rig()
    monkeypatch.setattr(
        provider,
        "_clients",
        lambda region, session: {"ecs": rig.ecs, "codedeploy": rig.codedeploy, "cloudwatch": rig.cloudwatch},
    )
    with rig:
        rig.no_active()
        rig.service_on(NEW)
        if created is not None:
            rig.cd(
                "create_deployment",
                {"deploymentId": "d-2"},
                {
                    **GROUP,
                    "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": created}},
                    "description": news["description"],
                },
            )
            rig.poll("d-2", "Succeeded", first=True, green=100)
        result = BlueGreenDeployProvider().update("gantry-prod/worker", olds, news)
    assert result.outs is not None
    return result.outs


@pytest.mark.parametrize(
    ("change", "property_name"),
    [
        ({"subnets": ("subnet-0c3", "subnet-0d4")}, "NetworkConfiguration"),  # an AZ change: new subnets
        ({"security_groups": ("sg-0e5",)}, "NetworkConfiguration"),
        (
            {"capacity_provider_strategy": (CapacityProviderItem("FARGATE_SPOT", weight=1),)},
            "CapacityProviderStrategy",
        ),
        ({"platform_version": "1.4.0"}, "PlatformVersion"),
        ({"container_port": 8080}, "LoadBalancerInfo"),
    ],
)
def test_an_appspec_change_on_the_same_task_definition_deploys_the_new_values(monkeypatch, change, property_name):
    content = content_with(**change)
    news = {**PROPS, "appspec_content": content}
    assert BlueGreenDeployProvider().diff("gantry-prod/worker", RECORDED, news).changes is True
    outs = update_through_provider(monkeypatch, RECORDED, news, created=content)
    assert outs["deployment_id"] == "d-2" and outs["deployed_appspec_content"] == content
    assert outs["console_url"].endswith("/deployments/d-2?region=eu-west-1")
    assert changed_properties(CONTENT, content) == [property_name]


def test_an_unchanged_appspec_starts_no_deployment_and_keeps_the_last_one(monkeypatch):
    assert BlueGreenDeployProvider().diff("gantry-prod/worker", RECORDED, PROPS).changes is False
    # Reordered subnets are the same set to ECS; a longer timeout changes the diff but not the target.
    reordered = content_with(subnets=("subnet-0b2", "subnet-0a1"))
    olds = {**RECORDED, "appspec_content": reordered, "deployed_appspec_content": reordered}
    news = {**PROPS, "appspec_content": content_with(subnets=("subnet-0a1", "subnet-0b2")), "timeout_seconds": 900}
    outs = update_through_provider(monkeypatch, {**olds, "console_url": "link-1"}, news, created=None)
    assert (outs["deployment_id"], outs["console_url"]) == ("d-1", "link-1")


def test_a_state_without_a_recorded_appspec_deploys_once(monkeypatch):
    """A stack whose earlier release dropped a network change: its state cannot say what ECS runs."""
    olds = {key: value for key, value in RECORDED.items() if key != "deployed_appspec_content"}
    assert BlueGreenDeployProvider().diff("gantry-prod/worker", olds, PROPS).changes is True
    assert update_through_provider(monkeypatch, olds, PROPS, created=CONTENT)["deployment_id"] == "d-2"


def test_a_deployment_left_running_that_deployed_this_appspec_is_not_repeated():
    with Rig() as rig:
        rig.cd(
            "list_deployments", {"deployments": ["d-OLD"]}, {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES}
        )
        rig.poll(
            "d-OLD",
            "Succeeded",
            first=True,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": CONTENT}},
        )
        rig.service_on(NEW)
        outcome = rig.deployer.deploy(DeployRequest.from_props(PROPS), content_with(subnets=("subnet-0f6",)))
    assert outcome.deployment_id is None
    assert rig.logs[-1] == "worker already runs gantry-prod:42 as intended (deployed by d-OLD); no deployment needed"


# --- hotfix: one `up` that ignores the rollback alarms -----------------------------------------------

REASON = "INC-42: fix for the 5xx alarm"


def test_hotfix_creates_the_deployment_with_alarm_polling_off_and_says_so():
    description = provider.deployment_description("prod", NEW, "git 0a1b2c3", REASON)
    assert description.endswith("[rollback alarms overridden: INC-42: fix for the 5xx alarm]")
    props = {**PROPS, "alarm_override": REASON, "description": description}
    with Rig() as rig:
        rig.no_active()
        rig.service_on(OLD)
        rig.cd(
            "create_deployment",
            {"deploymentId": "d-FIX"},
            {
                **GROUP,
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": CONTENT}},
                "description": description,
                # CodeDeploy API, CreateDeployment: an override "that turns off alarm polling".
                "overrideAlarmConfiguration": {"enabled": False},
            },
        )
        rig.poll("d-FIX", "Succeeded", first=True)
        rig.deployer.deploy(DeployRequest.from_props(props))
    assert any("NOT watched" in line and REASON in line for line in rig.logs)
    # A long description gives way to the reason, never the other way round.
    assert provider.deployment_description("prod", NEW, "x" * 2000, REASON).endswith(provider.override_note(REASON))
    assert len(provider.deployment_description("prod", NEW, "x" * 2000, REASON)) == provider.DESCRIPTION_LIMIT


def test_an_override_the_description_does_not_record_is_refused():
    with pytest.raises(DeployError, match="does not record alarm_override"):
        DeployRequest.from_props({**PROPS, "alarm_override": REASON})


def test_the_override_and_the_session_alone_start_no_update():
    for change in ({"alarm_override": REASON}, {"aws_profile": "prod-admin"}):
        assert BlueGreenDeployProvider().diff("gantry-prod/worker", RECORDED, {**PROPS, **change}).changes is False


# --- separate deadlines: someone else's deployment, and one's own ---------------------------------


def test_waiting_for_another_deployment_has_its_own_deadline():
    with Rig() as rig:
        rig.cd(
            "list_deployments", {"deployments": ["d-OTHER"]}, {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES}
        )
        rig.poll("d-OTHER", "InProgress", first=True)
        for _ in range(20):  # 300 s / 15 s polls
            rig.poll("d-OTHER", "InProgress")
        with pytest.raises(DeploymentFailed, match="still in progress after 300 s"):
            rig.deployer.deploy(DeployRequest.from_props({**PROPS, "other_timeout_seconds": 300}))
    assert rig.time.now == 300


def test_ones_own_deadline_starts_when_ones_own_deployment_does():
    """500 s spent waiting for someone else leave the own deployment its whole 600 s."""
    with Rig() as rig:
        rig.cd(
            "list_deployments", {"deployments": ["d-OTHER"]}, {**GROUP, "includeOnlyStatuses": provider.ACTIVE_STATUSES}
        )
        rig.poll("d-OTHER", "InProgress", first=True)
        for _ in range(33):
            rig.poll("d-OTHER", "InProgress")
        rig.poll("d-OTHER", "Stopped")
        rig.service_on(OLD)
        rig.create()
        rig.poll("d-NEW", "InProgress", first=True)
        for _ in range(40):
            rig.poll("d-NEW", "InProgress")
        rig.cd("stop_deployment", {"status": "Pending"}, {"deploymentId": "d-NEW", "autoRollbackEnabled": True})
        with pytest.raises(DeploymentFailed, match="timed out after 600 s"):
            rig.deployer.deploy(DeployRequest.from_props(PROPS))
    assert rig.time.now == 34 * 15 + 600


@pytest.mark.parametrize("key", ["other_timeout_seconds", "timeout_seconds"])
def test_deadlines_outside_the_allowed_range_are_refused(key):
    with pytest.raises(DeployError, match=f"{key}=59 is invalid; allowed: 60 to 21600"):
        DeployRequest.from_props({**PROPS, key: 59})


# --- progress: lines while the deployment runs ------------------------------------------------------


def test_progress_lines_come_at_each_transition_while_waiting():
    with Rig() as rig:
        seen_at_sleep: list[int] = []
        sleep = rig.deployer.sleep

        def recording_sleep(seconds: float) -> None:
            seen_at_sleep.append(len(rig.logs))
            sleep(seconds)

        rig.deployer.sleep = recording_sleep
        rig.no_active()
        rig.service_on(OLD)
        rig.create()
        rig.poll("d-NEW", "Created", first=True)
        rig.poll("d-NEW", "InProgress", events=[("BeforeInstall", "Succeeded")], green=0)
        rig.poll("d-NEW", "InProgress", events=[("BeforeInstall", "Succeeded")], green=0)  # nothing new
        rig.poll("d-NEW", "InProgress", events=[("AfterAllowTestTraffic", "Succeeded")], green=10)
        rig.poll("d-NEW", "Succeeded", green=100)
        rig.deploy()
    # Each poll that saw something new logged it before the next sleep; the quiet poll logged nothing.
    assert seen_at_sleep == [2, 5, 5, 7]
    assert rig.logs[1] == "d-NEW: Created" and rig.logs[2:5] == [
        "d-NEW: InProgress",
        "d-NEW: BeforeInstall Succeeded",
        "d-NEW: 0 % of production traffic on green",
    ]


def test_the_default_sink_writes_each_line_to_stdout_and_flushes_it():
    class Stream(io.StringIO):
        flushed: list[str] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    stream = Stream()
    progress("d-1: InProgress", stream)
    progress("d-1: Succeeded", stream)
    # Flushed line by line: a piped stdout would otherwise hold them until the deployment ends.
    assert stream.flushed == ["d-1: InProgress\n", "d-1: InProgress\nd-1: Succeeded\n"]
    assert BlueGreenDeployer(ecs=None, codedeploy=None, cloudwatch=None).log is progress

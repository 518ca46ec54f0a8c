"""One-off tasks before traffic: the runner against botocore's Stubber (success, non-zero exit, never
started, timeout), its IAM document, and the whole program: in rolling mode the task runs from the new
task definition with no public IP, and the service update waits for it (CapturingMonitor)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from components.pre_traffic import (
    STARTED_BY,
    OneOffTask,
    OneOffTaskFailed,
    OneOffTaskRunner,
    log_stream,
    logs_url,
    one_off_task_policy,
    run_task_request,
)
from components.pre_traffic_provider import run_needed, task_from_props
from tests.harness import ACCOUNT, PRIVATE_SUBNETS, REGION, run_program, stack_config, with_test_secrets

CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gantry"
TASK_DEF = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-dev:8"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gantry/0123456789abcdef0123456789abcdef"
DYNAMIC = "pulumi-python:dynamic:Resource"
TASK = OneOffTask(
    region=REGION,
    cluster=CLUSTER,
    task_definition_arn=TASK_DEF,
    container_name="app",
    command=("python", "-m", "migrate", "--to", "head"),
    subnets=("subnet-0a0a0a01",),
    security_groups=("sg-0123456789abcdef0",),
    log_group="gantry-logs-1a2b3c",
    log_stream_prefix="service",
    timeout_seconds=120,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def stubbed(*answers: tuple[str, dict, dict | None]):
    ecs = boto3.client("ecs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ecs)
    for method, response, params in answers:
        stubber.add_response(method, response, params)
    stubber.activate()
    return ecs, stubber


def described(status: str, exit_code: int | None = None, reason: str | None = None, stopped: str | None = None):
    container: dict = {"name": "app", "lastStatus": status}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    task: dict = {"taskArn": TASK_ARN, "lastStatus": status, "containers": [container]}
    if stopped:
        task["stoppedReason"] = stopped
    return {"tasks": [task], "failures": []}


DESCRIBE = {"cluster": CLUSTER, "tasks": [TASK_ARN]}


def runner(ecs, messages: list[str], clock: Clock) -> OneOffTaskRunner:
    return OneOffTaskRunner(ecs, log=messages.append, sleep=clock.sleep, clock=clock)


def test_runs_the_new_revision_in_the_private_network_and_waits_for_exit_0():
    ecs, stubber = stubbed(
        ("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, run_task_request(TASK)),
        ("describe_tasks", described("PROVISIONING"), DESCRIBE),
        ("describe_tasks", described("RUNNING"), DESCRIBE),
        ("describe_tasks", described("STOPPED", 0, stopped="Essential container in task exited"), DESCRIBE),
    )
    messages: list[str] = []
    assert runner(ecs, messages, Clock()).run(TASK) == {"task_arn": TASK_ARN, "exit_code": 0}
    stubber.assert_no_pending_responses()
    request = run_task_request(TASK)
    assert request["taskDefinition"] == TASK_DEF and request["launchType"] == "FARGATE"
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert request["overrides"] == {"containerOverrides": [{"name": "app", "command": list(TASK.command)}]}
    assert request["startedBy"] == STARTED_BY
    # The person waiting sees each state change and where the logs are.
    assert any("logs:" in m for m in messages) and any("RUNNING" in m for m in messages)


def test_a_non_zero_exit_fails_with_exit_code_stop_reason_and_logs_link():
    ecs, _ = stubbed(
        ("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, None),
        ("describe_tasks", described("STOPPED", 3, stopped="Essential container in task exited"), DESCRIBE),
    )
    with pytest.raises(OneOffTaskFailed) as err:
        runner(ecs, [], Clock()).run(TASK)
    message = str(err.value)
    assert "exit code 3" in message and "Essential container in task exited" in message
    assert logs_url(REGION, TASK.log_group, log_stream(TASK, TASK_ARN)) in message
    assert "gantry-dev:8" in message


def test_a_task_that_never_ran_names_why():
    ecs, _ = stubbed(
        ("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, None),
        (
            "describe_tasks",
            described("STOPPED", reason="CannotPullContainerError: pull access denied", stopped="Task failed to start"),
            DESCRIBE,
        ),
    )
    with pytest.raises(OneOffTaskFailed, match="none \\(the container never ran\\).*Task failed to start / CannotPull"):
        runner(ecs, [], Clock()).run(TASK)


def test_run_task_failures_fail_at_once():
    ecs, _ = stubbed(("run_task", {"tasks": [], "failures": [{"arn": CLUSTER, "reason": "MISSING"}]}, None))
    with pytest.raises(OneOffTaskFailed, match="could not start: .*MISSING"):
        runner(ecs, [], Clock()).run(TASK)


def test_a_task_past_its_timeout_is_stopped_and_fails():
    # 120 s at one look every 10 s: 13 looks (t = 0 ... 120), then the stop.
    running = [("describe_tasks", described("RUNNING"), DESCRIBE)] * 13
    ecs, stubber = stubbed(
        ("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, None),
        *running,
        (
            "stop_task",
            {"task": {"taskArn": TASK_ARN}},
            {"cluster": CLUSTER, "task": TASK_ARN, "reason": f"{STARTED_BY}: timed out"},
        ),
    )
    with pytest.raises(OneOffTaskFailed, match="longer than 120 s and was stopped"):
        runner(ecs, [], Clock()).run(TASK)
    stubber.assert_no_pending_responses()


def test_only_a_revision_arn_is_accepted():
    with pytest.raises(ValueError, match="with its revision"):
        OneOffTask(**{**TASK.__dict__, "task_definition_arn": TASK_DEF.rsplit(":", 1)[0]})


def test_logs_link_escapes_like_the_console():
    assert logs_url("eu-west-1", "/ecs/g", "service/app/abc").endswith(
        "#logsV2:log-groups/log-group/$252Fecs$252Fg/log-events/service$252Fapp$252Fabc"
    )


def test_policy_is_this_family_on_this_cluster_and_exactly_the_two_roles():
    roles = [f"arn:aws:iam::{ACCOUNT}:role/exec", f"arn:aws:iam::{ACCOUNT}:role/task"]
    doc = one_off_task_policy(
        family_arn_prefix=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-dev",
        cluster_arn=CLUSTER,
        task_role_arns=roles,
    )
    run, passrole, watch = doc["Statement"]
    assert run["Action"] == "ecs:RunTask" and run["Resource"].endswith("task-definition/gantry-dev:*")
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER}}
    assert passrole["Resource"] == sorted(roles)
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    assert watch["Resource"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gantry/*"


def test_provider_runs_again_only_for_a_new_revision_or_command():
    props = {
        "region": REGION, "cluster": CLUSTER, "task_definition_arn": TASK_DEF, "container_name": "app",
        "command": ["python", "-m", "migrate"], "subnets": ["subnet-1"], "security_groups": ["sg-1"],
        "log_group": "g", "log_stream_prefix": "service", "timeout_seconds": 600,
    }  # fmt: skip
    assert task_from_props(props).task_definition_arn == TASK_DEF
    assert not run_needed(props, dict(props))
    assert run_needed(props, {**props, "task_definition_arn": TASK_DEF.replace(":8", ":9")})
    assert run_needed(props, {**props, "command": ["python", "-m", "other"]})
    with pytest.raises(ValueError, match="command"):
        task_from_props({**props, "command": []})


def with_pre_traffic(stack: str, strategy: str | None = None):
    config, secret_keys = with_test_secrets(stack_config(stack))
    deployment = dict(config.get("gantry:deployment") or {})
    deployment["preTraffic"] = {"command": ["python", "-m", "migrate"], "timeoutSeconds": 300}
    config["gantry:deployment"] = deployment
    return run_program(stack, config, secret_keys)


def test_rolling_stack_runs_the_new_task_definition_before_the_service_update():
    g = with_pre_traffic("dev")
    [task] = [r for r in g.of_type(DYNAMIC) if r.name == "gantry-pre-traffic"]
    task_definition = g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task")
    service = g.one("aws:ecs/service:Service", "gantry-service")
    assert task.inputs["task_definition_arn"] == task_definition.outputs["arn"]
    assert task.inputs["subnets"] == PRIVATE_SUBNETS == service_subnets(g)
    assert task.inputs["security_groups"] == [g.named("gantry-sg-task").outputs["id"]]
    assert task.inputs["log_group"] == g.one("aws:cloudwatch/logGroup:LogGroup", "gantry-logs").outputs["name"]
    assert task.inputs["command"] == ["python", "-m", "migrate"] and task.inputs["timeout_seconds"] == 300
    assert task.depends_on(task_definition)
    assert service.depends_on(task)
    # No public IP is not an input of the dynamic resource: the runner always sends DISABLED (tested above).
    assert service.inputs["networkConfiguration"]["assignPublicIp"] is False


def test_without_pre_traffic_nothing_runs():
    g = run_program("dev")
    assert [r for r in g.of_type(DYNAMIC) if r.name == "gantry-pre-traffic"] == []


def service_subnets(g):
    return g.one("aws:ecs/service:Service", "gantry-service").inputs["networkConfiguration"]["subnets"]


# --- codedeploy: the hook runs the task of the revision its deployment installs ---------------------

HOOK_EVENT = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": "exec-1"}


def hook_env(**extra: str) -> dict[str, str]:
    return {
        "AWS_REGION": REGION,
        "CHECK": "smoke",
        "TEST_URL": "http://127.0.0.1:9",
        "PRE_TRAFFIC_COMMAND": '["python", "-m", "migrate"]',
        "PRE_TRAFFIC_TIMEOUT_SECONDS": "120",
        "PRE_TRAFFIC_CLUSTER": CLUSTER,
        "PRE_TRAFFIC_CONTAINER": "app",
        "PRE_TRAFFIC_SUBNETS": "subnet-0a0a0a01,subnet-0b0b0b01",
        "PRE_TRAFFIC_SECURITY_GROUPS": "sg-0123456789abcdef0",
        "PRE_TRAFFIC_LOG_GROUP": "gantry-logs-1a2b3c",
        "PRE_TRAFFIC_LOG_STREAM_PREFIX": "service",
        **extra,
    }


def appspec_for(task_definition: str) -> str:
    return json.dumps(
        {
            "Resources": [
                {"TargetService": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": task_definition}}}
            ]
        }
    )


def test_hook_reports_a_failed_pre_traffic_task_with_its_exit_code_and_never_checks_green():
    from components.blue_green.hook import handler

    codedeploy = boto3.client("codedeploy", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    ecs, ecs_stub = stubbed(
        (
            "run_task",
            {"tasks": [{"taskArn": TASK_ARN}], "failures": []},
            {
                **run_task_request(
                    OneOffTask(
                        **{
                            **TASK.__dict__,
                            "command": ("python", "-m", "migrate"),
                            "subnets": ("subnet-0a0a0a01", "subnet-0b0b0b01"),
                        }
                    )
                )
            },
        ),
        ("describe_tasks", described("STOPPED", 2, stopped="Essential container in task exited"), DESCRIBE),
    )
    with Stubber(codedeploy) as cd_stub:
        cd_stub.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
                    "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec_for(TASK_DEF)}}
                }
            },
            {"deploymentId": "d-ABCDEF123"},
        )
        cd_stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": "exec-1"},
            {"deploymentId": "d-ABCDEF123", "lifecycleEventHookExecutionId": "exec-1", "status": "Failed"},
        )
        logs: list[str] = []
        # TEST_URL points at a closed port: reaching the smoke check would raise, so the verdict proves it did not.
        result = handler.run(
            HOOK_EVENT, hook_env(), codedeploy=codedeploy, ecs=ecs, log=logs.append, sleep=lambda s: None
        )
        cd_stub.assert_no_pending_responses()
    ecs_stub.assert_no_pending_responses()
    assert result["status"] == "Failed"
    assert "exit code 2" in result["summary"] and "Essential container in task exited" in result["summary"]
    assert "#logsV2:log-groups/log-group/gantry-logs-1a2b3c/log-events/service$252Fapp$252F" in result["summary"]


def test_hook_task_definition_comes_from_the_deployments_own_appspec():
    from components.blue_green.hook import handler

    codedeploy = boto3.client("codedeploy", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(codedeploy) as stub:
        stub.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
                    "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec_for(TASK_DEF)}}
                }
            },
            {"deploymentId": "d-ABCDEF123"},
        )
        assert handler.deployed_task_definition(codedeploy, "d-ABCDEF123") == TASK_DEF
        stub.add_response("get_deployment", {"deploymentInfo": {}}, None)
        with pytest.raises(handler.CheckError, match="no AppSpec content"):
            handler.deployed_task_definition(codedeploy, "d-ABCDEF123")


def test_codedeploy_stack_hands_the_task_to_the_hook_with_exactly_its_permissions():
    g = with_pre_traffic("prod")
    assert [r for r in g.of_type(DYNAMIC) if r.name == "gantry-pre-traffic"] == []
    function = g.named("gantry-deploy-hook").inputs
    env = function["environment"]["variables"]
    assert json.loads(env["PRE_TRAFFIC_COMMAND"]) == ["python", "-m", "migrate"]
    assert env["PRE_TRAFFIC_SECURITY_GROUPS"] == g.named("gantry-sg-task").outputs["id"]
    assert env["PRE_TRAFFIC_SUBNETS"] == ",".join(PRIVATE_SUBNETS)
    assert env["PRE_TRAFFIC_LOG_GROUP"] == g.one("aws:cloudwatch/logGroup:LogGroup", "gantry-logs").outputs["name"]
    assert env["PRE_TRAFFIC_CLUSTER"] == g.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert function["timeout"] == 300 + 300
    assert set(function["code"].assets) == {"handler.py", "golden.json", "pre_traffic.py"}
    statements = {s["Sid"]: s for s in g.named("gantry-deploy-hook-policy").json("policy")["Statement"]}
    family = g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").inputs["family"]
    assert (
        statements["RunThisFamilyOnThisCluster"]["Resource"]
        == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:*"
    )
    roles = {g.named(n).outputs["arn"] for n in ("gantry-roles-execution", "gantry-roles-task")}
    assert set(statements["PassTheTaskRoles"]["Resource"]) == roles
    assert statements["ReadOwnDeployment"]["Action"] == "codedeploy:GetDeployment"


def test_codedeploy_stack_without_pre_traffic_grants_the_hook_nothing_more():
    g = run_program("prod")
    sids = {s["Sid"] for s in g.named("gantry-deploy-hook-policy").json("policy")["Statement"]}
    assert not sids & {"RunThisFamilyOnThisCluster", "PassTheTaskRoles", "WatchItsTasks", "ReadOwnDeployment"}
    assert "PRE_TRAFFIC_COMMAND" not in g.named("gantry-deploy-hook").inputs["environment"]["variables"]

"""The deploy resource: a Pulumi dynamic provider that runs one CodeDeploy blue/green deployment per change.

With the CODE_DEPLOY deployment controller, ECS ignores task-definition changes made to the service;
a new revision reaches users only through a CodeDeploy deployment. This resource is that deployment,
inside `pulumi up`: on create or update it compares the intended task definition with what the
service's PRIMARY task set runs and, when they differ, creates a deployment with the given AppSpec and
waits for it, logging the deployment id, lifecycle events and the share of traffic on green. The first
`pulumi up` finds the service already on its revision and does nothing; destroy does nothing (the
service owns the tasks). A rolled back, failed, stopped or timed-out deployment raises: the Python
dynamic provider host turns the exception into a gRPC error (pulumi/dynamic/__main__.py
`_abort_with_traceback`), and the engine then keeps the resource's previous inputs and outputs, so the
failed revision is never recorded as deployed and the next `pulumi up` diffs and tries again. The logic
lives in `BlueGreenDeployer`, which takes boto3 clients, a log function, a sleep and a clock, so it is
tested with botocore's Stubber and moto without waiting. Security stance: the provider uses the
credentials of whoever runs `pulumi up` and needs only codedeploy:CreateDeployment / GetDeployment /
ListDeployments / ListDeploymentTargets / GetDeploymentTarget / StopDeployment on this deployment group,
ecs:DescribeServices on this service and cloudwatch:DescribeAlarms on its rollback alarms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
ACTIVE_STATUSES = ["Created", "Queued", "InProgress", "Ready"]
# Polling more often than every 5 s only spends API quota; less often than every 60 s hides progress.
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 5, 60
INPUT_KEYS = (
    "region",
    "cluster",
    "service",
    "application_name",
    "deployment_group_name",
    "task_definition_arn",
    "appspec_content",
    "description",
    "alarm_names",
    "timeout_seconds",
    "poll_seconds",
)


DESCRIPTION_LIMIT = 1024  # CodeDeploy CreateDeployment's description length limit


def deployment_description(stack: str, task_definition_arn: str, source: str | None) -> str:
    """What the CodeDeploy console shows for a deployment: the stack, the commit it deploys (`source`, a
    SourceRevision's description; None when unknown) and the task-definition revision."""
    commit = f" from {source}" if source else ""
    text = f"gantry {stack}{commit}: {task_definition_arn}"
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3] + "..."


class DeployError(ValueError):
    """A deploy-resource input is invalid; the message names it and says what is allowed."""


class DeploymentFailed(RuntimeError):
    """A deployment did not succeed; the message carries everything needed to act on it."""


@dataclass(frozen=True)
class DeployRequest:
    """What one deploy resource asks for: the plain values of its inputs."""

    region: str
    cluster: str
    service: str
    application_name: str
    deployment_group_name: str
    task_definition_arn: str
    appspec_content: str
    """The AppSpec JSON from appspec.appspec_content (its TaskDefinition must equal task_definition_arn)."""
    description: str
    """Deployment description shown in the console: put the git SHA and image digest here."""
    alarm_names: tuple[str, ...]
    """The deployment group's rollback alarms, read to name the one that fired."""
    timeout_seconds: int = 3600
    """Give up (stop with rollback, fail the up) after this long. Default one hour: a 15-minute canary
    plus green start-up, the hook and the wait before blue is terminated fit with room to spare."""
    poll_seconds: int = 15
    """Seconds between progress checks, 5-60. Default 15: a canary step is minutes long."""

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> DeployRequest:
        missing = [key for key in INPUT_KEYS if props.get(key) in (None, "")]
        if missing:
            raise DeployError(f"deploy resource inputs {missing} are missing")
        request = cls(
            region=str(props["region"]),
            cluster=str(props["cluster"]),
            service=str(props["service"]),
            application_name=str(props["application_name"]),
            deployment_group_name=str(props["deployment_group_name"]),
            task_definition_arn=str(props["task_definition_arn"]),
            appspec_content=str(props["appspec_content"]),
            description=str(props["description"]),
            alarm_names=tuple(str(n) for n in props["alarm_names"]),
            timeout_seconds=int(props["timeout_seconds"]),
            poll_seconds=int(props["poll_seconds"]),
        )
        if not 60 <= request.timeout_seconds <= 6 * 3600:
            raise DeployError(f"timeout_seconds={request.timeout_seconds} is invalid; allowed: 60 to 21600")
        if not MIN_POLL_SECONDS <= request.poll_seconds <= MAX_POLL_SECONDS:
            raise DeployError(
                f"poll_seconds={request.poll_seconds} is invalid; allowed: {MIN_POLL_SECONDS} to {MAX_POLL_SECONDS}"
            )
        if f'"TaskDefinition":"{request.task_definition_arn}"' not in request.appspec_content:
            raise DeployError("appspec_content does not deploy task_definition_arn; build both from the same value")
        if len(request.description) > DESCRIPTION_LIMIT:
            raise DeployError(
                f"description is {len(request.description)} characters; CodeDeploy allows {DESCRIPTION_LIMIT}"
            )
        return request


@dataclass(frozen=True)
class DeployOutcome:
    """What the resource records: the revision the service now runs and the deployment that put it there."""

    task_definition_arn: str
    deployment_id: str | None

    def outputs(self) -> dict[str, Any]:
        return {"deployed_task_definition_arn": self.task_definition_arn, "deployment_id": self.deployment_id}


def console_url(region: str, deployment_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}?region={region}"


class BlueGreenDeployer:
    """Create-and-wait logic over boto3 clients; the sleep, clock and log sink are injectable for tests."""

    def __init__(
        self,
        *,
        ecs: Any,
        codedeploy: Any,
        cloudwatch: Any,
        log: Callable[[str], None] = pulumi.log.info,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ecs, self.codedeploy, self.cloudwatch = ecs, codedeploy, cloudwatch
        self.log, self.sleep, self.clock = log, sleep, clock

    def running_task_definition(self, request: DeployRequest) -> str:
        """The task definition of the service's PRIMARY task set (the one production traffic reaches)."""
        answer = self.ecs.describe_services(cluster=request.cluster, services=[request.service])
        services = [s for s in answer.get("services", []) if s.get("status") == "ACTIVE"]
        if not services:
            reasons = [f.get("reason") for f in answer.get("failures", [])]
            raise DeploymentFailed(f"ECS service {request.service} in cluster {request.cluster} not found ({reasons})")
        service = services[0]
        primary = [ts for ts in service.get("taskSets", []) if ts.get("status") == "PRIMARY"]
        if primary:
            return primary[0]["taskDefinition"]
        # A CODE_DEPLOY service without task sets has not started yet; its own field is the revision it starts on.
        return service["taskDefinition"]

    def deploy(self, request: DeployRequest) -> DeployOutcome:
        deadline = self.clock() + request.timeout_seconds
        self._wait_for_others(request, deadline)
        current = self.running_task_definition(request)
        if current == request.task_definition_arn:
            self.log(f"{request.service} already runs {_short(current)}; no CodeDeploy deployment needed")
            return DeployOutcome(current, None)
        created = self.codedeploy.create_deployment(
            applicationName=request.application_name,
            deploymentGroupName=request.deployment_group_name,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": request.appspec_content}},
            description=request.description,
        )
        deployment_id = created["deploymentId"]
        self.log(
            f"CodeDeploy deployment {deployment_id} started: {_short(current)} -> "
            f"{_short(request.task_definition_arn)}; "
            f"watch it at {console_url(request.region, deployment_id)}"
        )
        info = self._wait(deployment_id, request, deadline, own=True)
        if info["status"] != "Succeeded":
            raise DeploymentFailed(self._failure_message(info, request, current))
        self.log(
            f"CodeDeploy deployment {deployment_id} succeeded: {request.service} runs "
            f"{_short(request.task_definition_arn)}"
        )
        return DeployOutcome(request.task_definition_arn, deployment_id)

    def _wait_for_others(self, request: DeployRequest, deadline: float) -> None:
        """Wait for deployments already running in the group (another `up`, a console redeploy, or one an
        interrupted `up` left behind): CodeDeploy runs one deployment per group at a time."""
        for deployment_id in self._active_deployments(request):
            self.log(
                f"CodeDeploy deployment {deployment_id} is already in progress in {request.deployment_group_name}; "
                f"waiting for it before deploying ({console_url(request.region, deployment_id)})"
            )
            info = self._wait(deployment_id, request, deadline, own=False)
            self.log(f"CodeDeploy deployment {deployment_id} ended {info['status']}")

    def _active_deployments(self, request: DeployRequest) -> list[str]:
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "applicationName": request.application_name,
            "deploymentGroupName": request.deployment_group_name,
            "includeOnlyStatuses": ACTIVE_STATUSES,
        }
        while True:
            page = self.codedeploy.list_deployments(**kwargs)
            ids.extend(page.get("deployments", []))
            if not page.get("nextToken"):
                return ids
            kwargs["nextToken"] = page["nextToken"]

    def _wait(self, deployment_id: str, request: DeployRequest, deadline: float, *, own: bool) -> dict[str, Any]:
        seen_events: dict[str, str] = {}
        last_status, last_weight = None, None
        target_ids: list[str] = []
        while True:
            info = self.codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
            status = info["status"]
            if status != last_status:
                self.log(f"{deployment_id}: {status}")
                last_status = status
            if not target_ids:
                target_ids = self.codedeploy.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
            for target_id in target_ids:
                target = self.codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target_id)
                ecs_target = target.get("deploymentTarget", {}).get("ecsTarget", {})
                for event in ecs_target.get("lifecycleEvents", []):
                    name, event_status = event.get("lifecycleEventName"), event.get("status")
                    if name and event_status not in (None, "Pending") and seen_events.get(name) != event_status:
                        seen_events[name] = event_status
                        self.log(f"{deployment_id}: {name} {event_status}")
                weight = _green_weight(ecs_target)
                if weight is not None and weight != last_weight:
                    last_weight = weight
                    self.log(f"{deployment_id}: {weight:g} % of production traffic on green")
            if status in TERMINAL_STATUSES:
                return info
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._give_up(deployment_id, request, own=own)
            self.sleep(min(request.poll_seconds, remaining))

    def _give_up(self, deployment_id: str, request: DeployRequest, *, own: bool) -> None:
        link = console_url(request.region, deployment_id)
        if not own:
            raise DeploymentFailed(
                f"CodeDeploy deployment {deployment_id} (not started by this run) is still in progress after "
                f"{request.timeout_seconds} s; nothing was deployed. Wait for it, or stop it with "
                f"`aws deploy stop-deployment --deployment-id {deployment_id} --auto-rollback-enabled`, then run "
                f"`pulumi up` again. {link}"
            )
        # Stop with rollback so the failed revision does not finish going live behind the failed `up`.
        self.codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
        raise DeploymentFailed(
            f"CodeDeploy deployment {deployment_id} timed out after {request.timeout_seconds} s and was stopped with "
            f"rollback; {request.service} stays on its previous revision and the next `pulumi up` tries "
            f"{_short(request.task_definition_arn)} again. {link}"
        )

    def _failure_message(self, info: Mapping[str, Any], request: DeployRequest, previous: str) -> str:
        deployment_id = info["deploymentId"]
        parts = [f"CodeDeploy deployment {deployment_id} {info['status']}"]
        error = info.get("errorInformation") or {}
        if error:
            parts.append(f"error {error.get('code', '?')}: {error.get('message', '')}".strip())
        rollback = info.get("rollbackInfo") or {}
        if rollback.get("rollbackMessage"):
            parts.append(f"rollback: {rollback['rollbackMessage']}")
        if rollback.get("rollbackDeploymentId"):
            parts.append(f"rollback deployment: {rollback['rollbackDeploymentId']}")
        fired = self._alarms_in_alarm(request)
        if fired:
            parts.append("alarms in ALARM: " + "; ".join(fired))
        parts.append(
            f"{request.service} stays on {_short(previous)}; {_short(request.task_definition_arn)} is not recorded as "
            f"deployed, so the next `pulumi up` tries it again"
        )
        parts.append(console_url(request.region, deployment_id))
        return "\n  ".join(parts)

    def _alarms_in_alarm(self, request: DeployRequest) -> list[str]:
        if not request.alarm_names:
            return []
        answer = self.cloudwatch.describe_alarms(AlarmNames=list(request.alarm_names), StateValue="ALARM")
        return [f"{a['AlarmName']} ({a.get('StateReason', '')})" for a in answer.get("MetricAlarms", [])]


def _green_weight(ecs_target: Mapping[str, Any]) -> float | None:
    for task_set in ecs_target.get("taskSetsInfo", []):
        if task_set.get("taskSetLabel") == "Green":
            return float(task_set.get("trafficWeight", 0.0))
    return None


def _short(task_definition_arn: str) -> str:
    """family:revision of a task definition ARN, the part people recognise."""
    return task_definition_arn.rsplit("/", 1)[-1]


def _clients(region: str) -> dict[str, Any]:
    import boto3  # Only the deploying machine needs boto3; importing it here keeps `import components` light.

    session = boto3.session.Session(region_name=region)
    return {name: session.client(name) for name in ("ecs", "codedeploy", "cloudwatch")}


# Import path pinned: every stack's state pickles this class by reference as its module and name
# (tests/test_dynamic_provider_pickling.py PINNED_IMPORT_PATHS). Renaming or moving it breaks `up`,
# `refresh` and `destroy` of existing stacks; a move must leave a re-export under this path.
class BlueGreenDeployProvider(pulumi.dynamic.ResourceProvider):
    """Create/update deploy when the revision differs; diff on any input; delete is a no-op."""

    def _run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        request = DeployRequest.from_props(props)
        outcome = BlueGreenDeployer(**_clients(request.region)).deploy(request)
        return {**{key: props[key] for key in INPUT_KEYS}, **outcome.outputs()}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._run(props)
        return pulumi.dynamic.CreateResult(id_=f"{outs['cluster']}/{outs['service']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=deploy_needed(olds, news), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: a finished deployment has no resource of its own, and the service keeps its tasks."""


def deploy_needed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """An update runs when any input changed or the recorded revision is not the intended one."""
    if olds.get("deployed_task_definition_arn") != news.get("task_definition_arn"):
        return True
    return any(olds.get(key) != news.get(key) for key in INPUT_KEYS)


@dataclass(frozen=True)
class BlueGreenDeployArgs:
    """Inputs of the deploy resource (strings or Pulumi Outputs)."""

    region: pulumi.Input[str]
    cluster: pulumi.Input[str]
    """Cluster name."""
    service: pulumi.Input[str]
    """Service name; the service must use the CODE_DEPLOY deployment controller."""
    application_name: pulumi.Input[str]
    deployment_group_name: pulumi.Input[str]
    task_definition_arn: pulumi.Input[str]
    appspec_content: pulumi.Input[str]
    description: pulumi.Input[str]
    alarm_names: pulumi.Input[Sequence[str]]
    timeout_seconds: int = 3600
    poll_seconds: int = 15


class BlueGreenDeploy(pulumi.dynamic.Resource):
    """One CodeDeploy deployment per task-definition change, awaited inside `pulumi up`."""

    deployed_task_definition_arn: pulumi.Output[str]
    deployment_id: pulumi.Output[str | None]

    def __init__(self, name: str, args: BlueGreenDeployArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {key: getattr(args, key) for key in INPUT_KEYS}
        super().__init__(
            BlueGreenDeployProvider(),
            name,
            {**props, "deployed_task_definition_arn": None, "deployment_id": None},
            opts,
        )

"""The deploy resource: a Pulumi dynamic provider that runs one CodeDeploy blue/green deployment per change.

With the CODE_DEPLOY deployment controller, ECS ignores task-definition, network, capacity and
platform changes made to the service; they reach users only through a CodeDeploy deployment. This
resource is that deployment, inside `pulumi up`: it creates a deployment with the given AppSpec when
the service's PRIMARY task set runs another task definition, or when the AppSpec's target (task
definition, container and port, subnets, security groups, public IP, capacity provider strategy,
platform version) differs from the one it last recorded as deployed, and waits for it, printing the
deployment id, its console link, each status, lifecycle event and the share of traffic on green as
they happen (components.provider_runtime.progress; `deploymentId` and `consoleUrl` are outputs). The
first `pulumi up` finds the service just created on its revision and AppSpec and does nothing;
destroy does nothing (the service owns the tasks). A state written before the AppSpec was recorded
deploys once, so a change an earlier release dropped reaches ECS. `alarm_override` (an incident
hotfix, components.settings.hotfix) creates the deployment with CodeDeploy's alarm polling turned
off, and says so in its description. A rolled back, failed, stopped or timed-out deployment raises: the Python
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

from components.blue_green.appspec import changed_properties, target_properties
from components.provider_runtime import progress, session_for
from components.settings.invocation import SESSION_KEYS, ProviderSession

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
    "other_timeout_seconds",
    "poll_seconds",
)
# Inputs that may be None: the hotfix reason and the session (an unset profile or role is None).
OPTIONAL_KEYS = ("alarm_override", *SESSION_KEYS)
# What decides whether an update runs; the session and the override only say how a deployment is made.
DIFF_KEYS = INPUT_KEYS
TIMEOUT_RANGE = (60, 6 * 3600)


DESCRIPTION_LIMIT = 1024  # CodeDeploy CreateDeployment's description length limit


def override_note(alarm_override: str) -> str:
    """The part of a deployment's description that records an alarm override and its reason."""
    return f" [rollback alarms overridden: {alarm_override}]"


def deployment_description(
    stack: str, task_definition_arn: str, source: str | None, alarm_override: str | None = None
) -> str:
    """What the CodeDeploy console shows for a deployment: the stack, the commit it deploys (`source`, a
    SourceRevision's description; None when unknown), the task-definition revision and, for a hotfix,
    the alarm override's reason (kept whole: the rest is shortened first)."""
    commit = f" from {source}" if source else ""
    note = override_note(alarm_override) if alarm_override else ""
    text = f"gantry {stack}{commit}: {task_definition_arn}"
    room = DESCRIPTION_LIMIT - len(note)
    return (text if len(text) <= room else text[: room - 3] + "...") + note


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
    """Give up on this run's own deployment (stop it with rollback, fail the up) after this long, counted
    from its creation. Default one hour: a 15-minute canary plus green start-up, the hook and the wait
    before blue is terminated fit with room to spare."""
    other_timeout_seconds: int = 3600
    """Give up waiting for a deployment this run did not start (left running, fail the up) after this
    long. Default one hour: another `up`'s whole deployment fits."""
    poll_seconds: int = 15
    """Seconds between progress checks, 5-60. Default 15: a canary step is minutes long."""
    alarm_override: str | None = None
    """The incident reason of a hotfix: the deployment ignores the rollback alarms. Default none."""
    session: ProviderSession = ProviderSession()
    """The stack's profile and assumed role; default none (boto3's default chain)."""

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
            other_timeout_seconds=int(props["other_timeout_seconds"]),
            poll_seconds=int(props["poll_seconds"]),
            alarm_override=str(props["alarm_override"]) if props.get("alarm_override") else None,
            session=ProviderSession.from_props(props),
        )
        low, high = TIMEOUT_RANGE
        for name in ("timeout_seconds", "other_timeout_seconds"):
            if not low <= getattr(request, name) <= high:
                raise DeployError(f"{name}={getattr(request, name)} is invalid; allowed: {low} to {high}")
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
        # An override nobody can see afterwards is how an incident's exception becomes the rule.
        if request.alarm_override and override_note(request.alarm_override) not in request.description:
            raise DeployError("description does not record alarm_override; build it with deployment_description")
        return request


@dataclass(frozen=True)
class DeployOutcome:
    """What the resource records: the revision and AppSpec the service now runs and the deployment that put
    them there (None when this run started none)."""

    task_definition_arn: str
    appspec_content: str
    deployment_id: str | None
    region: str

    def outputs(self) -> dict[str, Any]:
        return {
            "deployed_task_definition_arn": self.task_definition_arn,
            "deployed_appspec_content": self.appspec_content,
            "deployment_id": self.deployment_id,
            "console_url": console_url(self.region, self.deployment_id) if self.deployment_id else None,
        }


def console_url(region: str, deployment_id: str) -> str:
    """The CodeDeploy console page of one deployment in `region`."""
    return f"https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}?region={region}"


class BlueGreenDeployer:
    """Create-and-wait logic over boto3 clients; the sleep, clock and log sink are injectable for tests."""

    def __init__(
        self,
        *,
        ecs: Any,
        codedeploy: Any,
        cloudwatch: Any,
        log: Callable[[str], None] = progress,
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

    def deploy(self, request: DeployRequest, deployed_appspec: str | None = None) -> DeployOutcome:
        """Deploy `request` unless the service already runs it. `deployed_appspec`: the AppSpec the last
        successful run recorded; None on create, where the service was just created with this very
        network, capacity and platform, so only its task definition can differ; "" when nothing usable
        was recorded (every target property then counts as changed)."""
        others = self._wait_for_others(request, self.clock() + request.other_timeout_seconds)
        current = self.running_task_definition(request)
        outcome = DeployOutcome(current, request.appspec_content, None, request.region)
        if current == request.task_definition_arn:
            changed = [] if deployed_appspec is None else changed_properties(deployed_appspec, request.appspec_content)
            intended = target_properties(request.appspec_content)
            done_by = [i["deploymentId"] for i in others if _succeeded_with(i, intended)]
            if not changed or done_by:
                by = f" (deployed by {done_by[0]})" if done_by else ""
                self.log(f"{request.service} already runs {_short(current)} as intended{by}; no deployment needed")
                return outcome
            reason = f"its AppSpec changed: {', '.join(changed)}"
        else:
            reason = f"{_short(current)} -> {_short(request.task_definition_arn)}"
        kwargs: dict[str, Any] = {}
        if request.alarm_override:
            # "set its alarm configuration to turn off alarm polling ... ensures that the new deployment proceeds
            # without being blocked by the alarm" (CodeDeploy API, CreateDeployment overrideAlarmConfiguration).
            kwargs["overrideAlarmConfiguration"] = {"enabled": False}
            self.log(f"rollback alarms are NOT watched for this deployment: {request.alarm_override}")
        created = self.codedeploy.create_deployment(
            applicationName=request.application_name,
            deploymentGroupName=request.deployment_group_name,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": request.appspec_content}},
            description=request.description,
            **kwargs,
        )
        deployment_id = created["deploymentId"]
        self.log(
            f"CodeDeploy deployment {deployment_id} started ({reason}); "
            f"watch it at {console_url(request.region, deployment_id)}"
        )
        info = self._wait(deployment_id, request, self.clock() + request.timeout_seconds, own=True)
        if info["status"] != "Succeeded":
            raise DeploymentFailed(self._failure_message(info, request, current))
        self.log(
            f"CodeDeploy deployment {deployment_id} succeeded: {request.service} runs "
            f"{_short(request.task_definition_arn)}"
        )
        return DeployOutcome(request.task_definition_arn, request.appspec_content, deployment_id, request.region)

    def _wait_for_others(self, request: DeployRequest, deadline: float) -> list[dict[str, Any]]:
        """Wait for deployments already running in the group (another `up`, a console redeploy, or one an
        interrupted `up` left behind): CodeDeploy runs one deployment per group at a time. Returns how
        each ended."""
        ended = []
        for deployment_id in self._active_deployments(request):
            self.log(
                f"CodeDeploy deployment {deployment_id} is already in progress in {request.deployment_group_name}; "
                f"waiting for it before deploying ({console_url(request.region, deployment_id)})"
            )
            info = self._wait(deployment_id, request, deadline, own=False)
            self.log(f"CodeDeploy deployment {deployment_id} ended {info['status']}")
            ended.append(info)
        return ended

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
                f"{request.other_timeout_seconds} s; nothing was deployed. Wait for it, or stop it with "
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


def _succeeded_with(info: Mapping[str, Any], intended: dict[str, Any] | None) -> bool:
    """Whether a deployment succeeded with an AppSpec whose target is `intended` (its revision content)."""
    content = ((info.get("revision") or {}).get("appSpecContent") or {}).get("content")
    return info.get("status") == "Succeeded" and intended is not None and target_properties(content) == intended


def _green_weight(ecs_target: Mapping[str, Any]) -> float | None:
    for task_set in ecs_target.get("taskSetsInfo", []):
        if task_set.get("taskSetLabel") == "Green":
            return float(task_set.get("trafficWeight", 0.0))
    return None


def _short(task_definition_arn: str) -> str:
    """family:revision of a task definition ARN, the part people recognise."""
    return task_definition_arn.rsplit("/", 1)[-1]


def _clients(region: str, session: ProviderSession) -> dict[str, Any]:
    aws = session_for(region, session)
    return {name: aws.client(name) for name in ("ecs", "codedeploy", "cloudwatch")}


# Import path pinned: every stack's state pickles this class by reference as its module and name
# (tests/test_dynamic_provider_pickling.py PINNED_IMPORT_PATHS). Renaming or moving it breaks `up`,
# `refresh` and `destroy` of existing stacks; a move must leave a re-export under this path.
class BlueGreenDeployProvider(pulumi.dynamic.ResourceProvider):
    """Create/update deploy when the revision or the AppSpec's target differs; delete is a no-op."""

    def _run(self, props: Mapping[str, Any], olds: Mapping[str, Any] | None) -> dict[str, Any]:
        request = DeployRequest.from_props(props)
        deployed = None if olds is None else str(olds.get("deployed_appspec_content") or "")
        outcome = BlueGreenDeployer(**_clients(request.region, request.session)).deploy(request, deployed)
        outs = {**{key: props.get(key) for key in (*INPUT_KEYS, *OPTIONAL_KEYS)}, **outcome.outputs()}
        if outcome.deployment_id is None and olds is not None:
            # Nothing ran this time: the deployment that put this revision in place is still the last one.
            outs["deployment_id"], outs["console_url"] = olds.get("deployment_id"), olds.get("console_url")
        return outs

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._run(props, None)
        return pulumi.dynamic.CreateResult(id_=f"{outs['cluster']}/{outs['service']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=deploy_needed(olds, news), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._run(news, olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: a finished deployment has no resource of its own, and the service keeps its tasks."""


def deploy_needed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """An update runs when an input that shapes the deployment changed, or the recorded revision or
    AppSpec target is not the intended one. The override and the session alone start nothing: they
    only say how the next deployment is made (and who makes it)."""
    if olds.get("deployed_task_definition_arn") != news.get("task_definition_arn"):
        return True
    # Nothing recorded (a state from before the AppSpec was) counts as changed; so does a preview's unknown.
    deployed = target_properties(olds.get("deployed_appspec_content"))
    if deployed is None or deployed != target_properties(news.get("appspec_content")):
        return True
    return any(olds.get(key) != news.get(key) for key in DIFF_KEYS)


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
    """See DeployRequest.timeout_seconds (default one hour)."""
    other_timeout_seconds: int = 3600
    """See DeployRequest.other_timeout_seconds (default one hour)."""
    poll_seconds: int = 15
    alarm_override: str | None = None
    """A hotfix's incident reason (components.settings.hotfix); default none: the alarms roll back."""
    session: ProviderSession = ProviderSession()
    """The stack's aws:profile and assumed role (components.provider_runtime); default none."""


class BlueGreenDeploy(pulumi.dynamic.Resource):
    """One CodeDeploy deployment per change of the revision or AppSpec target, awaited inside `pulumi up`."""

    deployed_task_definition_arn: pulumi.Output[str]
    deployed_appspec_content: pulumi.Output[str]
    deployment_id: pulumi.Output[str | None]
    """The last deployment this resource ran; None until one ran."""
    console_url: pulumi.Output[str | None]
    """That deployment's CodeDeploy console page."""

    def __init__(self, name: str, args: BlueGreenDeployArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {key: getattr(args, key) for key in INPUT_KEYS}
        props.update(alarm_override=args.alarm_override, **args.session.inputs())
        outputs = dict.fromkeys(
            ("deployed_task_definition_arn", "deployed_appspec_content", "deployment_id", "console_url")
        )
        super().__init__(BlueGreenDeployProvider(), name, {**props, **outputs}, opts)

"""The rollback drill: prove on a real, disposable stack that a bad release is rolled back by itself.

`python -m gantry.drill rollback -s dev` deploys the sample worker with its fault switch on
(`container.environment.FAULT_INJECT`, which config validation refuses on production stacks): `5xx`
for a rolling stack (its /health fails, so ECS's circuit breaker and the rollback alarms act),
`bad-embeddings` for a CodeDeploy stack (only the eval hook can tell). It then checks three things:
that `pulumi up` failed, that it failed because the deploy was rolled back (ECS: the service deployment
of the faulty revision ended ROLLBACK_SUCCESSFUL; CodeDeploy: the deployment ended Failed or Stopped
with a rollback), and that the service serves the previous revision healthily again (the primary
revision is the one from before, every task is running and every registered target is healthy). It
reports the time from the start of the deploy to traffic being back on the good revision, removes the
fault switch and, unless `--no-restore`, runs `pulumi up` once more so state and config agree again.
The Pulumi CLI runs as a subprocess (`pulumi config set/rm --path`, `pulumi up`, `pulumi stack
output`); the checks use boto3. `Drill` takes the clients, the CLI runner, a sleep and a clock, so its
logic is tested with botocore's Stubber. Exit status: 0 when the rollback path works, 1 when it does not
(the report says which check failed), 2 when the drill could not start. Security stance: it needs the
deploy role's credentials for the stack plus read-only ECS/ELB/CodeDeploy describes; it refuses to run on
a stack whose name marks it as production, and it never leaves the fault switch set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.settings.migration import FAULT_SWITCH, production_stack

FAULT_FOR_CONTROLLER = {"ECS": "5xx", "CODE_DEPLOY": "bad-embeddings"}
FAULT_PATH = f"gantry:container.environment.{FAULT_SWITCH}"
# The deploy resource names the CodeDeploy deployment it waited for (components.blue_green.provider).
_DEPLOYMENT_ID = re.compile(r"\bd-[A-Z0-9]{9}\b")
POLL_SECONDS = 15

Runner = Callable[[Sequence[str]], tuple[int, str]]


class DrillFailed(RuntimeError):
    """The rollback path did not work; the message says which check failed."""


class DrillError(RuntimeError):
    """The drill could not start (no stack outputs, an unhealthy service before the drill, ...)."""


@dataclass(frozen=True, kw_only=True)
class Revision:
    """What production traffic reaches: the revision, and whether it is fully up and healthy."""

    task_definition: str
    target_groups: tuple[str, ...]
    settled: bool
    """Every desired task runs on this revision and no other deployment is in progress."""


@dataclass(frozen=True, kw_only=True)
class DrillReport:
    stack: str
    controller: str
    fault: str
    good_revision: str
    rollback: str
    """What showed that the deploy was rolled back (the AWS status and reason)."""
    seconds_to_recovery: float
    """From the start of the faulty deploy to traffic back on the good revision, healthy."""

    def summary(self) -> str:
        return (
            f"rollback drill on {self.stack} ({self.controller}, fault {self.fault}): passed. {self.rollback}; "
            f"{_short(self.good_revision)} serves again, healthy, {self.seconds_to_recovery:.0f} s after the "
            "faulty deploy started"
        )


def cli_runner(cwd: str) -> Runner:
    """Run the Pulumi CLI, streaming nothing, returning (exit status, combined output)."""

    def run(args: Sequence[str]) -> tuple[int, str]:
        done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
        return done.returncode, done.stdout + done.stderr

    return run


class Drill:
    def __init__(
        self,
        *,
        stack: str,
        run: Runner,
        ecs: Any,
        elbv2: Any,
        codedeploy: Any,
        log: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        clock: Callable[[], float] = time.monotonic,
        recovery_timeout_seconds: int = 1800,
        restore: bool = True,
    ) -> None:
        self.stack, self.run_cli = stack, run
        self.ecs, self.elbv2, self.codedeploy = ecs, elbv2, codedeploy
        self.log, self.sleep, self.now, self.clock = log, sleep, now, clock
        self.recovery_timeout_seconds, self.restore = recovery_timeout_seconds, restore

    # --- the drill -------------------------------------------------------------------------------

    def rollback(self) -> DrillReport:
        if production_stack(self.stack, deletion_protection=False):
            raise DrillError(f"stack {self.stack!r} is named as a production stack; drill a disposable one")
        outputs = self.stack_outputs()
        controller = str(outputs.get("deploymentController") or "ECS")
        if controller not in FAULT_FOR_CONTROLLER:
            raise DrillError(f"unknown deploymentController output {controller!r}")
        cluster, service = str(outputs["clusterName"]), str(outputs["serviceName"])
        fault = FAULT_FOR_CONTROLLER[controller]
        before = self.revision(cluster, service, controller)
        if not before.settled or not self.targets_healthy(before.target_groups):
            raise DrillError(f"{service} is not settled and healthy before the drill; fix that first")
        self.log(f"drill: {service} serves {_short(before.task_definition)}; deploying it with {FAULT_SWITCH}={fault}")

        self.cli("config", "set", "--path", FAULT_PATH, fault)
        started = self.now()
        try:
            status, output = self.run_cli(["pulumi", "up", "--yes", "--skip-preview", "-s", self.stack])
        finally:
            self.cli("config", "rm", "--path", FAULT_PATH)
        try:
            if status == 0:
                raise DrillFailed(
                    f"rollback did not happen: `pulumi up` succeeded with {FAULT_SWITCH}={fault}, so the faulty "
                    "revision went live. Check the circuit breaker, the rollback alarms and the eval hook"
                )
            self.log("drill: `pulumi up` failed, as it should; checking why")
            if controller == "ECS":
                rollback, finished = self.ecs_rollback(cluster, service, started, before.task_definition)
            else:
                rollback, finished = self.codedeploy_rollback(output)
            back = self.wait_until_back(cluster, service, controller, before.task_definition)
            # AWS's own end of the rollback is exact; the first healthy poll is the fallback.
            recovered = finished or back
            return DrillReport(
                stack=self.stack,
                controller=controller,
                fault=fault,
                good_revision=before.task_definition,
                rollback=rollback,
                seconds_to_recovery=(recovered - started).total_seconds(),
            )
        finally:
            if self.restore:
                self.log("drill: fault switch removed; `pulumi up` to bring state and config back together")
                restored, restore_output = self.run_cli(["pulumi", "up", "--yes", "--skip-preview", "-s", self.stack])
                if restored != 0:
                    self.log(f"drill: the restoring `pulumi up` failed; run it by hand:\n{restore_output[-2000:]}")

    # --- AWS checks ------------------------------------------------------------------------------

    def revision(self, cluster: str, service: str, controller: str) -> Revision:
        answer = self.ecs.describe_services(cluster=cluster, services=[service])
        found = [s for s in answer.get("services", []) if s.get("status") == "ACTIVE"]
        if not found:
            raise DrillError(f"ECS service {service} not found in {cluster}")
        svc = found[0]
        if controller == "CODE_DEPLOY":
            sets = svc.get("taskSets", [])
            primary = [t for t in sets if t.get("status") == "PRIMARY"]
            if not primary:
                return Revision(task_definition=svc.get("taskDefinition", ""), target_groups=(), settled=False)
            task_set = primary[0]
            return Revision(
                task_definition=task_set["taskDefinition"],
                target_groups=tuple(lb["targetGroupArn"] for lb in task_set.get("loadBalancers", [])),
                settled=len(sets) == 1
                and task_set.get("stabilityStatus") == "STEADY_STATE"
                and task_set.get("runningCount") == svc.get("desiredCount"),
            )
        deployments = svc.get("deployments", [])
        primary = [d for d in deployments if d.get("status") == "PRIMARY"]
        if not primary:
            return Revision(task_definition=svc.get("taskDefinition", ""), target_groups=(), settled=False)
        deployment = primary[0]
        return Revision(
            task_definition=deployment["taskDefinition"],
            target_groups=tuple(lb["targetGroupArn"] for lb in svc.get("loadBalancers", [])),
            settled=len(deployments) == 1
            and deployment.get("rolloutState") == "COMPLETED"
            and deployment.get("runningCount") == svc.get("desiredCount"),
        )

    def targets_healthy(self, target_groups: Sequence[str]) -> bool:
        """True when every target group has targets and all of them are healthy."""
        if not target_groups:
            return False
        for arn in target_groups:
            states = [
                t["TargetHealth"]["State"]
                for t in self.elbv2.describe_target_health(TargetGroupArn=arn).get("TargetHealthDescriptions", [])
            ]
            if not states or any(state != "healthy" for state in states):
                return False
        return True

    def ecs_rollback(
        self, cluster: str, service: str, started: dt.datetime, good: str
    ) -> tuple[str, dt.datetime | None]:
        """The service deployment the faulty `up` started, which must have been rolled back."""
        listed = self.ecs.list_service_deployments(cluster=cluster, service=service, createdAt={"after": started})
        arns = [d["serviceDeploymentArn"] for d in listed.get("serviceDeployments", [])]
        if not arns:
            raise DrillFailed(
                "the `pulumi up` failed before ECS started a deployment, so the rollback path was not exercised "
                "(a config, build or permission error?); see the `pulumi up` output"
            )
        deployments = self.ecs.describe_service_deployments(serviceDeploymentArns=arns).get("serviceDeployments", [])
        for deployment in deployments:
            status = deployment.get("status")
            if status == "ROLLBACK_SUCCESSFUL":
                reason = (deployment.get("rollback") or {}).get("reason") or deployment.get("statusReason") or ""
                return f"ECS deployment rolled back ({reason})".replace(" ()", ""), deployment.get("finishedAt")
        statuses = ", ".join(str(d.get("status")) for d in deployments)
        raise DrillFailed(
            f"rollback did not happen: the faulty deployment ended {statuses}, not ROLLBACK_SUCCESSFUL, while "
            f"{_short(good)} should serve again"
        )

    def codedeploy_rollback(self, output: str) -> tuple[str, dt.datetime | None]:
        """The CodeDeploy deployment the deploy resource reported, which must have ended with a rollback."""
        ids = list(dict.fromkeys(_DEPLOYMENT_ID.findall(output)))
        if not ids:
            raise DrillFailed(
                "the `pulumi up` failed without starting a CodeDeploy deployment, so the rollback path was not "
                "exercised; see the `pulumi up` output"
            )
        info = self.codedeploy.get_deployment(deploymentId=ids[0])["deploymentInfo"]
        status = info.get("status")
        rollback = info.get("rollbackInfo") or {}
        if status not in ("Failed", "Stopped") or not (
            rollback.get("rollbackDeploymentId") or rollback.get("rollbackMessage")
        ):
            raise DrillFailed(
                f"rollback did not happen: CodeDeploy deployment {ids[0]} ended {status} without a rollback"
            )
        error = (info.get("errorInformation") or {}).get("message", "")
        return f"CodeDeploy deployment {ids[0]} {status} and rolled back ({error})".replace(" ()", ""), info.get(
            "completeTime"
        )

    def wait_until_back(self, cluster: str, service: str, controller: str, good: str) -> dt.datetime:
        """The moment the good revision serves again, settled, with every target healthy."""
        deadline = self.clock() + self.recovery_timeout_seconds
        while True:
            current = self.revision(cluster, service, controller)
            if current.task_definition == good and current.settled and self.targets_healthy(current.target_groups):
                return self.now()
            if self.clock() >= deadline:
                raise DrillFailed(
                    f"rollback did not happen: after {self.recovery_timeout_seconds} s {service} serves "
                    f"{_short(current.task_definition)} (settled: {current.settled}), not {_short(good)} healthy"
                )
            self.log(f"drill: waiting for {_short(good)} to serve again (now {_short(current.task_definition)})")
            self.sleep(POLL_SECONDS)

    # --- the CLI ---------------------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        status, output = self.run_cli(["pulumi", *args, "-s", self.stack])
        if status != 0:
            raise DrillError(f"`pulumi {' '.join(args)}` failed: {output[-1000:]}")
        return output

    def stack_outputs(self) -> Mapping[str, Any]:
        output = self.cli("stack", "output", "--json")
        try:
            outputs = json.loads(output)
        except ValueError:
            raise DrillError(f"`pulumi stack output --json` did not print JSON: {output[:200]!r}") from None
        missing = [k for k in ("clusterName", "serviceName") if not outputs.get(k)]
        if missing:
            raise DrillError(f"stack {self.stack} has no {', '.join(missing)} output: deploy it before drilling")
        return outputs


def _short(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gantry.drill", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rollback = commands.add_parser("rollback", help="deploy a faulty revision and prove it is rolled back")
    rollback.add_argument("-s", "--stack", required=True, help="a disposable stack (never prod)")
    rollback.add_argument("--cwd", default=".", help="the gantry project directory (default: .)")
    rollback.add_argument("--region", help="AWS region (default: the CLI's/environment's)")
    rollback.add_argument("--recovery-timeout", type=int, default=1800, help="seconds to wait for recovery")
    rollback.add_argument("--no-restore", action="store_true", help="skip the final reconciling `pulumi up`")
    args = parser.parse_args(argv)

    import boto3

    session = boto3.session.Session(region_name=args.region)
    drill = Drill(
        stack=args.stack,
        run=cli_runner(args.cwd),
        ecs=session.client("ecs"),
        elbv2=session.client("elbv2"),
        codedeploy=session.client("codedeploy"),
        recovery_timeout_seconds=args.recovery_timeout,
        restore=not args.no_restore,
    )
    try:
        report = drill.rollback()
    except DrillError as error:
        print(f"drill could not run: {error}", file=sys.stderr)
        return 2
    except DrillFailed as error:
        print(f"rollback drill FAILED: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    print(json.dumps({**report.__dict__, "passed": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

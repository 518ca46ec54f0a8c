"""Scaffold a team's own service: `python -m gantry.init --stack my-api --context ../my-api ...`.

From a few flags (the build context, port, health path and command, Fargate size, secret names, the
environment tag) this writes `Pulumi.<stack>.yaml` holding only what departs from gantry's defaults plus
what an own image must say itself (its health command; no batch consumer, which only the sample worker
has). Before writing, the file's config goes through the very validator the program runs
(`load_settings`, as `components/stack_config.py` calls it), so a bad flag stops here, exit 2, naming the
config key and the flag; nothing is written. Then it runs the offline plan on the new file (`gantry.plan`:
the real program under mocks, the policy pack's rules, the fixed monthly cost). When the default monthly
budget is below that fixed cost, the file gets a budget a quarter above it, and is planned again. It ends
with the commands still to run: the bootstrap or its opt-out, one `pulumi config set --secret` per
secret, and `pulumi up`. Exit status: 0 written and planned clean, 1 written but a mandatory policy rule
has findings, 2 nothing written (a bad flag, an existing file without --force, or a refused config).
Security stance: secret values never pass through here (only names; the values go straight to `pulumi
config set --secret`, encrypted in the stack file), and an existing stack file is never overwritten
without --force.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.settings import ConfigError, load_settings
from components.settings.sample_worker import builds_sample_worker
from components.settings.workload import FARGATE_CPUS, ContainerSettings
from gantry.cost import BUDGET_KEY, budget_shortfall, estimate
from gantry.offline import ROOT, ConfigRefused, StackFileError, Synthesis, synthesize
from gantry.plan import EXIT_ERROR, EXIT_MANDATORY, EXIT_OK, Plan, make_plan, policy_levels

DEFAULT_REGION = "eu-west-1"
# A budget this much above the fixed cost leaves room for traffic (requests, data, scale-out tasks).
BUDGET_HEADROOM = 1.25
# Pulumi's stack names: letters, digits, -, _ and . (https://www.pulumi.com/docs/iac/concepts/stacks/).
STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Which flag sets which config key: a refusal names both.
FLAGS: Mapping[str, str] = {
    "gantry:image.context": "--context",
    "gantry:image.dockerfile": "--dockerfile",
    "gantry:container.port": "--port",
    "gantry:container.healthCheckPath": "--health-path",
    "gantry:container.healthCheckCommand": "--health-command",
    "gantry:container.cpu": "--cpu",
    "gantry:container.memory": "--memory",
    "gantry:container.architecture": "--architecture",
    "gantry:secrets": "--secret",
    "gantry:secretValues": "--secret",
    "gantry:operations.page": "--alarm-email",
    "gantry:operations.ticket": "--alarm-email",
    "aws:region": "--region",
    "aws:defaultTags": "--environment",
}


class InitError(ValueError):
    """Nothing was written: the message says which flag to change."""


@dataclass(frozen=True, kw_only=True)
class Choices:
    """What the flags say, before anything is checked."""

    stack: str
    context: str
    dockerfile: str | None = None
    """Default none: `<context>/Dockerfile`."""
    port: int | None = None
    health_path: str | None = None
    health_command: str | None = None
    """A command line (`python healthcheck.py`), written in exec form; `CMD-SHELL <line>` for a shell."""
    cpu: int | None = None
    memory: int | None = None
    architecture: str | None = None
    secrets: tuple[str, ...] = ()
    environment: str | None = None
    """Default: the stack's name. The `environment` tag every resource carries and the budget counts."""
    region: str = DEFAULT_REGION
    alarm_emails: tuple[str, ...] = ()
    without_permissions_boundary: bool = False


def health_check(command: str) -> list[str]:
    """A command line as ECS's exec form: ["CMD", executable, args...], or ["CMD-SHELL", line]."""
    line = command.strip()
    if line.startswith("CMD-SHELL"):
        return ["CMD-SHELL", line[len("CMD-SHELL") :].strip()]
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise InitError(f"--health-command {command!r} is not a command line ({error})") from None
    return words if words[:1] == ["CMD"] else ["CMD", *words]


def stack_document(choices: Choices) -> dict[str, Any]:
    """The stack file's `config:`: what departs from the defaults, and what an own image must say."""
    defaults = ContainerSettings()
    image: dict[str, Any] = {"context": choices.context}
    if choices.dockerfile is not None:
        image["dockerfile"] = choices.dockerfile
    container: dict[str, Any] = {}
    for key, value, default in (
        ("port", choices.port, defaults.port),
        ("healthCheckPath", choices.health_path, defaults.health_check_path),
        ("cpu", choices.cpu, defaults.cpu),
        ("memory", choices.memory, defaults.memory),
        ("architecture", choices.architecture, defaults.architecture),
    ):
        if value is not None and value != default:
            container[key] = value
    if choices.health_command is not None:
        container["healthCheckCommand"] = health_check(choices.health_command)
    config: dict[str, Any] = {
        "aws:region": choices.region,
        "aws:defaultTags": {"tags": {"project": "gantry", "environment": choices.environment or choices.stack}},
        "gantry:image": image,
        "gantry:container": container,
    }
    if not builds_sample_worker(choices.context):
        # The batch consumer runs `python -m worker.consumer`, which only the sample worker's image has.
        config["gantry:queue"] = {"enabled": False}
    if choices.secrets:
        config["gantry:secrets"] = [{"name": name, "create": True} for name in choices.secrets]
    if choices.alarm_emails:
        config["gantry:operations"] = {"page": {"emails": list(choices.alarm_emails)}}
    if choices.without_permissions_boundary:
        config["gantry:iam"] = {"withoutPermissionsBoundary": True}
    return {key: value for key, value in config.items() if value != {}}


def with_budget(config: Mapping[str, Any], usd: int) -> dict[str, Any]:
    operations = {**config.get("gantry:operations", {}), "monthlyBudgetUsd": usd}
    return {**config, "gantry:operations": operations}


def budget_for(fixed_usd: float) -> int:
    """The monthly budget to write: the fixed cost plus a quarter, rounded up to ten dollars."""
    return int(math.ceil(fixed_usd * BUDGET_HEADROOM / 10) * 10)


def with_flags(problems: Sequence[str]) -> list[str]:
    """Each refusal line, with the flag that sets its key."""
    out = []
    for problem in problems:
        key = problem.split(": ", 1)[0]
        flag = next((f for k, f in FLAGS.items() if key == k or key.startswith((f"{k}.", f"{k}["))), None)
        out.append(f"{problem} (flag {flag})" if flag else problem)
    return out


def validate(config: Mapping[str, Any], stack: str, project_dir: Path) -> None:
    """Refuse the config as the program would (components/stack_config.py), naming key and flag."""
    if not STACK_NAME.match(stack):
        raise InitError(f"--stack {stack!r} is not a Pulumi stack name: letters, digits, -, _ and . (at most 100)")
    raw = {k: json.dumps(v) for k, v in config.items() if k.startswith("gantry:")}
    # A new stack has no secret values yet: stand-ins of the right shape, as the offline plan gives them.
    names = [s["name"] for s in config.get("gantry:secrets", [])]
    raw["gantry:secretValues"] = json.dumps({name: f"init-stand-in-{i:04d}-0123456789" for i, name in enumerate(names)})
    try:
        load_settings(
            raw,
            region=config.get("aws:region"),
            secret_keys=["gantry:secretValues"],
            project_dir=project_dir,
            stack=stack,
            default_tags=config.get("aws:defaultTags"),
        )
    except ConfigError as error:
        raise InitError("\n".join(["invalid flags (nothing was written):", *with_flags(error.problems)])) from None


def render(config: Mapping[str, Any], choices: Choices) -> str:
    header = [
        f"# {choices.stack}: a team's own service, written by `python -m gantry.init` (edit freely: every key and",
        "# its default are in the configuration reference). Check it offline: `python -m gantry.plan "
        f"{choices.stack} --no-diff`.",
    ]
    body = yaml.safe_dump({"config": dict(config)}, sort_keys=False, default_flow_style=None, width=100)
    return "\n".join(header) + "\n" + body


def next_commands(config: Mapping[str, Any], stack: str) -> list[str]:
    """What is left before the first `pulumi up`, in order, as commands with a comment each."""
    commands = []
    if not config.get("gantry:iam", {}).get("withoutPermissionsBoundary"):
        commands.append(
            "# once per AWS account, by an administrator: the bootstrap (bootstrap/README.md) creates the\n"
            "# permissions boundary every role of this stack carries; for an account without it, rerun init\n"
            "# with --without-permissions-boundary instead"
        )
    commands.append(f"pulumi stack init {stack}")
    for secret in config.get("gantry:secrets", []):
        commands.append(f"pulumi config set --secret --path 'secretValues.{secret['name']}' '<value>' -s {stack}")
    commands.append(f"pulumi up -s {stack}")
    return commands


def summary(plan: Plan) -> list[str]:
    mandatory = plan.mandatory_findings
    lines = [
        f"offline plan of {plan.stack}: {plan.resources} resources, policy pack: "
        + ("every mandatory rule passes" if not mandatory else f"{mandatory} mandatory finding(s)")
    ]
    if not isinstance(plan.cost, str) and plan.cost is not None:
        lines.append(f"fixed monthly cost: {plan.cost.total:.2f} USD ({plan.cost.region} list prices)")
    lines += [f"finding: {v.rule}: {f}" for v in plan.verdicts if v.level == "mandatory" for f in v.findings]
    lines += [f"warning: {w}" for w in plan.warnings]
    return lines


def _plan(stack: str, project_dir: Path) -> tuple[Synthesis, Plan]:
    synthesis = synthesize(stack, project_dir)
    region = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text())["config"]["aws:region"]
    return synthesis, make_plan(synthesis, policy_levels(None), None, region)


def scaffold(choices: Choices, *, force: bool = False, project_dir: Path = ROOT) -> tuple[Path, Plan]:
    """Validate, write and plan the stack file; returns its path and plan. Raises InitError before writing."""
    path = project_dir / f"Pulumi.{choices.stack}.yaml"
    if path.exists() and not force:
        raise InitError(f"{path.name} exists; nothing was written (pass --force to replace it)")
    config = stack_document(choices)
    validate(config, choices.stack, project_dir)
    path.write_text(render(config, choices))
    try:
        synthesis, plan = _plan(choices.stack, project_dir)
        fixed = estimate(synthesis.graph.resources, choices.region)
        if budget_shortfall(synthesis.graph.resources, fixed, choices.stack):
            config = with_budget(config, budget_for(fixed.total))
            path.write_text(render(config, choices))
            synthesis, plan = _plan(choices.stack, project_dir)
    except (StackFileError, ConfigRefused) as error:
        path.unlink()
        raise InitError(f"the program refused the new stack file, which was removed: {error}") from None
    return path, plan


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gantry.init", description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", required=True, help="the new stack's name (writes Pulumi.<stack>.yaml)")
    p.add_argument(
        "--context", required=True, help="the build context: relative to this directory (../my-api) or absolute"
    )
    p.add_argument("--dockerfile", help="the Dockerfile (default <context>/Dockerfile), relative to this directory")
    p.add_argument("--port", type=int, help="the one port the container listens on ($PORT; 1024 or above)")
    p.add_argument("--health-path", help="the path answering 200 when the task can serve (default /health)")
    p.add_argument(
        "--health-command",
        help='the health command your image ships, such as "python healthcheck.py" (written in exec form)',
    )
    p.add_argument("--cpu", type=int, help=f"task CPU units: {', '.join(map(str, FARGATE_CPUS))} (default 1024)")
    p.add_argument("--memory", type=int, help="task memory in MiB, a size Fargate pairs with --cpu (default 2048)")
    p.add_argument("--architecture", help="ARM64 (default) or X86_64: the platform the image is built for")
    p.add_argument(
        "--secret", action="append", default=[], metavar="NAME", help="a secret the stack creates (repeatable)"
    )
    p.add_argument("--environment", help="the environment tag every resource carries (default: the stack name)")
    p.add_argument("--region", default=DEFAULT_REGION, help=f"the AWS region (default {DEFAULT_REGION})")
    p.add_argument(
        "--alarm-email", action="append", default=[], metavar="ADDRESS", help="who page alarms notify (repeatable)"
    )
    p.add_argument(
        "--without-permissions-boundary",
        action="store_true",
        help="for an account without the bootstrap: roles carry no permissions boundary",
    )
    p.add_argument("--force", action="store_true", help="replace an existing Pulumi.<stack>.yaml")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    choices = Choices(
        stack=args.stack,
        context=args.context,
        dockerfile=args.dockerfile,
        port=args.port,
        health_path=args.health_path,
        health_command=args.health_command,
        cpu=args.cpu,
        memory=args.memory,
        architecture=args.architecture,
        secrets=tuple(args.secret),
        environment=args.environment,
        region=args.region,
        alarm_emails=tuple(args.alarm_email),
        without_permissions_boundary=args.without_permissions_boundary,
    )
    try:
        path, plan = scaffold(choices, force=args.force)
    except InitError as error:
        print(f"gantry.init: {error}", file=sys.stderr)
        return EXIT_ERROR
    config = yaml.safe_load(path.read_text())["config"]
    print(f"wrote {path.name}")
    print("\n".join(summary(plan)))
    budget = config.get("gantry:operations", {}).get("monthlyBudgetUsd")
    if budget is not None:
        print(f"{BUDGET_KEY} set to {budget}: the default was below the fixed cost; this is that cost + 25 %")
    print("\nnext:")
    print("\n".join(next_commands(config, choices.stack)))
    return EXIT_MANDATORY if plan.mandatory_findings else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

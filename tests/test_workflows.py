"""The GitHub workflows (.github/workflows): schema-valid, zizmor-clean, pinned, least-privileged, runnable.

Offline like the rest of the suite: check-jsonschema validates each file against the GitHub workflow
schema it vendors, zizmor audits it with `--offline` (no finding at medium severity or above), and the
properties a reviewer would check by hand are asserted on the parsed YAML: every third-party action
pinned by a 40-hex commit with a `# vX.Y.Z` comment, `permissions: {}` at the top and the minimum per
job, checkouts without persisted credentials, no pull_request_target or workflow_run, no secret and no
`${{ }}` expression inside a shell script, one never-cancelled concurrency group per stack, and every
script, module and file a workflow calls present in the repository. Steps of a local composite action
(.github/actions/*/action.yml) count as steps of the job that uses it. Every job that runs the program
(dev, prod, the rollback drill) uses the one shared setup action on the same runner, with the `.venv`
Python; each job that assumes an AWS role has a timeout and requests a session exactly that long, within
the role's maximum (bootstrap/identity.py), and prod's timeout covers the longest `up` its stack config
allows; a cancelled job releases the stack lock; prod's post-deploy eval pages when it fails; and each
concurrency decision (one pending job per group, GitHub cancels the older pending one) is asserted.
Each check is also run on a mutated workflow to prove it fails.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.identity import DEPLOY_SESSION_SECONDS, PREVIEW_SESSION_SECONDS
from components.settings import load_settings
from components.settings.invocation import DIGEST_VARIABLE, RUN_VARIABLE
from tests.harness import REGION, ROOT, stack_config, with_test_secrets

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTIONS = ROOT / ".github" / "actions"
ACTION_FILES = sorted(ACTIONS.glob("*/action.yml"))
SETUP = "./.github/actions/deploy-setup"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")
# Repository paths a command may name: scripts, CI entry points, policy files, the Dockerfile.
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:scripts|\.ci|policy|app)/[\w./-]+)")
STACKS = ("dev", "prod")


def load_text(text: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def load(path: Path) -> dict[str, Any]:
    return load_text(path.read_text())


def local_action(uses: str, root: Path = ROOT) -> dict[str, Any]:
    """A local composite action (`uses: ./path`), parsed from its action.yml."""
    document: dict[str, Any] = yaml.safe_load((root / uses / "action.yml").read_text())
    return document


def job_steps(job: dict[str, Any], root: Path = ROOT) -> list[dict[str, Any]]:
    """The job's steps with each local composite action's steps in its place (what the runner runs)."""
    expanded: list[dict[str, Any]] = []
    for step in job.get("steps", []):
        uses = step.get("uses", "")
        if uses.startswith("./") and (root / uses / "action.yml").is_file():
            expanded.extend(local_action(uses, root)["runs"]["steps"])
        else:
            expanded.append(step)
    return expanded


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for step in job_steps(job):
            yield job_name, step


# ------------------------------------------------------------------------------------------------------
# Pure checks: each returns what is wrong (empty when the workflow is right).


def unpinned(text: str) -> list[str]:
    """`uses:` lines that are neither local nor `owner/repo@<40-hex sha> # vX.Y.Z`."""
    wrong = []
    for line in text.splitlines():
        match = re.match(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if not match or match.group(1).startswith("./"):
            continue
        if not PINNED.match(match.group(1)) or not VERSION_COMMENT.search(match.group(2)):
            wrong.append(line.strip())
    return wrong


def triggers(workflow: dict[str, Any]) -> set[str]:
    on = workflow["on"]
    return {on} if isinstance(on, str) else set(on)


def permission_problems(workflow: dict[str, Any]) -> list[str]:
    """Top level `permissions: {}`; each job only contents: read plus the writes its steps need."""
    problems = [] if workflow.get("permissions") == {} else ["top-level permissions is not {}"]
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        if not isinstance(granted, dict):
            problems.append(f"{name}: permissions not declared as a mapping")
            continue
        uses = [s.get("uses", "") for s in job_steps(job)]
        needed = {"contents": "read"}
        if any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses):
            needed["id-token"] = "write"
        comments = any(u.startswith("marocchino/sticky-pull-request-comment@") for u in uses) or any(
            s.get("with", {}).get("comment-on-pr") for s in job_steps(job)
        )
        if comments:
            needed["pull-requests"] = "write"
        if granted != needed:
            problems.append(f"{name}: permissions {granted}, needs exactly {needed}")
    return problems


def checkout_problems(workflow: dict[str, Any]) -> list[str]:
    return [
        f"{job}: checkout persists credentials"
        for job, step in steps(workflow)
        if step.get("uses", "").startswith("actions/checkout@")
        and step.get("with", {}).get("persist-credentials") is not False
    ]


def script_problems(workflow: dict[str, Any]) -> list[str]:
    """No expression and no secret inside a shell script: values reach scripts through `env:`."""
    return [
        f"{job}: run script holds {marker!r}"
        for job, step in steps(workflow)
        for marker in ("${{", "secrets.")
        if marker in step.get("run", "")
    ]


def secrets_used(text: str) -> list[str]:
    return re.findall(r"secrets\.[A-Za-z_]+", text)


def concurrency_problems(workflow: dict[str, Any]) -> list[str]:
    """Every job deploying to an environment is in that stack's own group, never cancelled."""
    problems: list[str] = []
    groups: dict[str, list[str]] = {}
    for name, job in workflow["jobs"].items():
        environment = job.get("environment")
        if environment is None or previews_only(job):
            continue
        group = job.get("concurrency") or {}
        if group.get("cancel-in-progress") is not False:
            problems.append(f"{name}: deploy to {environment} may be cancelled")
        if environment not in str(group.get("group", "")):
            problems.append(f"{name}: concurrency group {group.get('group')!r} is not {environment}'s")
        groups.setdefault(str(group.get("group")), []).append(environment)
    problems += [f"group {g} shared by {envs}" for g, envs in groups.items() if len(envs) > 1]
    top = workflow.get("concurrency")
    if groups and isinstance(top, dict) and top.get("cancel-in-progress") is not False:
        problems.append("a workflow-level group may cancel a deploy")
    return problems


def previews_only(job: dict[str, Any]) -> bool:
    """A pull request's preview job: its environment (`<env>-preview`, bootstrap/identity.py) gates a
    read-only role, so it is no deploy; it runs `pulumi preview` and neither `up` nor the program."""
    runs = [s for s in job_steps(job) if s.get("uses", "").startswith("pulumi/actions@")]
    return (
        str(job.get("environment", "")).endswith("-preview")
        and bool(runs)
        and all(s.get("with", {}).get("command") == "preview" for s in runs)
        and not any("run" in s and "pulumi" in s["run"] for s in job_steps(job))
    )


def commands(workflow: dict[str, Any]) -> list[str]:
    return [step["run"] for _, step in steps(workflow) if "run" in step]


def commands_of_everything() -> list[str]:
    """Every `run:` of every workflow, local actions' steps included (job_steps expands them)."""
    return [c for f in FILES for c in commands(load(f))]


def missing_paths(text: str) -> list[str]:
    """Repository paths and `python -m` modules a command names that do not exist."""
    missing = [p for p in REPO_PATH.findall(text) if not (ROOT / p.rstrip(".")).exists()]
    for module in re.findall(r"-m\s+((?:gantry|worker|components)\.[\w.]+)", text):
        base = ROOT / "app" if module.startswith("worker.") else ROOT
        if not (base / (module.replace(".", "/") + ".py")).is_file():
            missing.append(module)
    for tool in re.findall(r"\.venv/bin/([\w-]+)", text):
        if tool not in {"python", "hadolint"}:
            missing.append(f".venv/bin/{tool} (not installed by a lock)")
    return missing


def input_paths(workflow: dict[str, Any]) -> list[str]:
    keys = ("context", "file", "policyPacks", "policyPackConfigs")
    return [
        f"{job}: {step['with'][k]}"
        for job, step in steps(workflow)
        for k in keys
        if k in step.get("with", {}) and not (ROOT / step["with"][k]).exists()
    ]


def local_workflows_missing(workflow: dict[str, Any]) -> list[str]:
    return [job["uses"] for job in workflow["jobs"].values() if "uses" in job and not (ROOT / job["uses"]).is_file()]


# ------------------------------------------------------------------------------------------------------
# On the committed workflows


def test_the_workflows_exist() -> None:
    assert [f.name for f in FILES] == ["checks.yml", "deploy.yml", "pull-request.yml", "rollback-drill.yml"]


def run_tool(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-actions", *ACTION_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    result = run_tool("zizmor", "--offline", "--no-progress", "--min-severity", "medium", WORKFLOWS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_properties(path: Path) -> None:
    text = path.read_text()
    workflow = load(path)
    assert unpinned(text) == []
    assert not triggers(workflow) & {"pull_request_target", "workflow_run"}
    assert permission_problems(workflow) == []
    assert checkout_problems(workflow) == []
    assert script_problems(workflow) == []
    assert secrets_used(text) == []
    assert concurrency_problems(workflow) == []
    assert missing_paths("\n".join(commands(workflow))) == []
    assert input_paths(workflow) == []
    assert local_workflows_missing(workflow) == []


def test_the_scripts_the_workflows_call_name_only_what_exists() -> None:
    scripts = [p for p in (ROOT / "scripts" / "ci").iterdir() if p.suffix == ".sh"]
    called = {p for f in FILES for c in commands(load(f)) for p in REPO_PATH.findall(c)}
    assert {f"scripts/ci/{p.name}" for p in scripts} <= called | {"scripts/ci/smoke.sh"}
    # Every Python script of scripts/ci is run by a workflow step (the setup action's count) or a script.
    named = "\n".join([*commands_of_everything(), *(p.read_text() for p in scripts)])
    for script in (ROOT / "scripts" / "ci").glob("*.py"):
        assert script.name in named, f"{script.name} is run by nothing"
    for script in scripts:
        assert missing_paths(script.read_text()) == [], script.name
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_the_pipeline_order_and_gates() -> None:
    pr, deploy = load(WORKFLOWS / "pull-request.yml"), load(WORKFLOWS / "deploy.yml")
    assert triggers(pr) == {"pull_request"} and triggers(deploy) == {"push"}
    assert deploy["on"]["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert jobs["dev"]["needs"] == "checks" and jobs["prod"]["needs"] == "dev"
    assert {jobs[s]["environment"] for s in STACKS} == set(STACKS)
    dev_steps = [s.get("name", s.get("uses", "")) for s in jobs["dev"]["steps"]]
    assert dev_steps.index("pulumi up dev with the policy pack") < dev_steps.index("Smoke check")
    assert dev_steps.index("Smoke check") < dev_steps.index("Eval gate against dev")
    # The preview runs with credentials only for this repository's branches; forks get the offline plan.
    fork_guard = "github.event.pull_request.head.repo.full_name == github.repository"
    assert all(pr["jobs"][f"preview-{stack}"]["if"] == fork_guard for stack in STACKS)
    assert "if" not in pr["jobs"]["offline-plan"]
    for workflow in (pr, deploy):
        for _, step in steps(workflow):
            if step.get("uses", "").startswith("pulumi/actions@"):
                if "command" not in step["with"]:
                    # The setup action's CLI install: it runs nothing.
                    assert set(step["with"]) == {"pulumi-version"}
                    continue
                assert step["with"]["policyPacks"] == "policy"
                assert step["with"]["command"] in {"preview", "up"}


# ------------------------------------------------------------------------------------------------------
# The checks fail on mutated workflows


def mutated(name: str, change: Any) -> tuple[str, dict[str, Any]]:
    text = (WORKFLOWS / name).read_text()
    workflow = copy.deepcopy(load(WORKFLOWS / name))
    if callable(change):
        change(workflow)
        return text, workflow
    old, new = change
    assert old in text
    text = text.replace(old, new, 1)
    return text, load_text(text)


CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"


def test_an_unpinned_or_uncommented_action_fails() -> None:
    text = (WORKFLOWS / "checks.yml").read_text()
    assert unpinned(text.replace(CHECKOUT, "actions/checkout@v7", 1)) == ["- uses: actions/checkout@v7"]
    assert len(unpinned(text.replace(CHECKOUT, CHECKOUT.split(" #")[0], 1))) == 1


def test_a_dangerous_trigger_and_broad_permissions_fail() -> None:
    _, workflow = mutated("pull-request.yml", ("  pull_request:\n", "  pull_request_target:\n"))
    assert "pull_request_target" in triggers(workflow)
    _, workflow = mutated("deploy.yml", lambda w: w.update(permissions="write-all"))
    assert permission_problems(workflow) == ["top-level permissions is not {}"]
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["dev"]["permissions"].update(packages="write"))
    assert any(p.startswith("dev: permissions") for p in permission_problems(workflow))
    _, workflow = mutated("checks.yml", lambda w: w["jobs"]["test"]["permissions"].update({"id-token": "write"}))
    assert any(p.startswith("test: permissions") for p in permission_problems(workflow))


def test_persisted_credentials_and_expressions_in_scripts_fail() -> None:
    _, workflow = mutated("checks.yml", ("persist-credentials: false", "persist-credentials: true"))
    assert checkout_problems(workflow) == ["test: checkout persists credentials"]
    _, workflow = mutated("deploy.yml", ('scripts/ci/smoke.sh "$SERVICE_URL"', "scripts/ci/smoke.sh ${{ env.X }}"))
    assert script_problems(workflow) == ["dev: run script holds '${{'"]


def test_a_cancellable_or_shared_deploy_group_fails() -> None:
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["prod"]["concurrency"].update({"cancel-in-progress": True}))
    assert concurrency_problems(workflow) == ["prod: deploy to prod may be cancelled"]
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["prod"].update(concurrency=w["jobs"]["dev"]["concurrency"]))
    assert "prod: concurrency group 'gantry-stack-dev' is not prod's" in concurrency_problems(workflow)


def test_a_missing_script_module_or_input_path_fails() -> None:
    assert missing_paths("scripts/ci/nope.sh x && python -m gantry.nope && .venv/bin/curl") == [
        "scripts/ci/nope.sh",
        "gantry.nope",
        ".venv/bin/curl (not installed by a lock)",
    ]
    _, workflow = mutated("checks.yml", ("file: app/Dockerfile", "file: app/Dockerfile.missing"))
    assert input_paths(workflow) == ["image: app/Dockerfile.missing"]


def write_mutant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (WORKFLOWS / name).read_text()
    assert old in text
    target = tmp_path / ".github" / "workflows" / name
    target.parent.mkdir(parents=True)
    target.write_text(text.replace(old, new, 1))
    return target


def test_the_schema_check_fails_on_an_invalid_workflow(tmp_path: Path) -> None:
    target = write_mutant(tmp_path, "checks.yml", "      contents: read\n", "      contents: admin\n")
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", target)
    assert result.returncode == 1 and "admin" in result.stdout


def test_zizmor_fails_on_a_template_injection(tmp_path: Path) -> None:
    target = write_mutant(
        tmp_path,
        "pull-request.yml",
        'run: scripts/ci/offline_plan.sh "$STACK" "plan-$STACK.md"',
        "run: echo ${{ github.event.pull_request.title }}",
    )
    result = run_tool("zizmor", "--offline", "--no-progress", "--min-severity", "medium", target.parent)
    assert result.returncode != 0 and "template-injection" in result.stdout


def test_shell_lines_of_the_workflows_parse() -> None:
    for path in FILES:
        for command in commands(load(path)):
            shlex.split(command.replace("\n", " "))
            assert subprocess.run(["bash", "-n", "-c", command], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------------------------------
# One setup for every job that runs the program


def setup_users(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Job -> the `with:` it passes to the shared setup action (jobs that do not use it are left out)."""
    return {
        name: step.get("with", {})
        for name, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        if step.get("uses") == SETUP
    }


PROGRAM_JOBS = {("deploy.yml", "dev"), ("deploy.yml", "prod"), ("rollback-drill.yml", "drill")}


def setup_problems(workflows: dict[str, dict[str, Any]]) -> list[str]:
    """The jobs that run the program use the shared setup, after their checkout, on deploy's runner, and
    set nothing up themselves (no own pip install, credentials, CLI or buildx: those live in the action)."""
    problems = []
    deploy_runner = workflows["deploy.yml"]["jobs"]["dev"]["runs-on"]
    for file, name in sorted(PROGRAM_JOBS):
        job = workflows[file]["jobs"][name]
        own = job.get("steps", [])
        uses = [s.get("uses", "") for s in own]
        if SETUP not in uses:
            problems.append(f"{file} {name}: does not use {SETUP}")
            continue
        if not uses[0].startswith("actions/checkout@"):
            problems.append(f"{file} {name}: a local action needs the checkout first")
        if job["runs-on"] != deploy_runner:
            problems.append(f"{file} {name}: runs on {job['runs-on']}, the deploy jobs on {deploy_runner}")
        for step in own:
            run, used = step.get("run", ""), step.get("uses", "")
            if "pip install" in run or used.split("@")[0] in SET_UP_BY_THE_ACTION:
                problems.append(f"{file} {name}: sets up {used or run.split()[0]} itself")
    return problems


SET_UP_BY_THE_ACTION = {
    "actions/setup-python",
    "aws-actions/configure-aws-credentials",
    "docker/setup-buildx-action",
    "docker/setup-qemu-action",
}


def python_problems(workflow: dict[str, Any], job: str) -> list[str]:
    """Every Python the job's own commands start is .venv's, where the lock and Pulumi.yaml put the program."""
    problems = []
    for step in workflow["jobs"][job].get("steps", []):
        for command in re.split(r"[\n;&|]+", step.get("run", "")):
            words = shlex.split(command)
            while words and "=" in words[0]:
                words = words[1:]
            if words and re.fullmatch(r"(.*/)?python3?(\.\d+)?", words[0]) and words[0] != ".venv/bin/python":
                problems.append(f"{job}: {words[0]} is not .venv/bin/python")
    return problems


def all_workflows() -> dict[str, dict[str, Any]]:
    return {f.name: load(f) for f in FILES}


def test_the_deploy_jobs_and_the_drill_share_one_setup() -> None:
    workflows = all_workflows()
    assert setup_problems(workflows) == []
    # The same action, by the same path, in all three; and no other job runs the program.
    assert {(f, j) for f, w in workflows.items() for j in setup_users(w)} == PROGRAM_JOBS
    assert python_problems(workflows["rollback-drill.yml"], "drill") == []
    drill = [s.get("run", "") for s in workflows["rollback-drill.yml"]["jobs"]["drill"]["steps"]]
    assert ".venv/bin/python -m gantry.drill rollback -s dev" in "\n".join(drill)
    assert setup_users(workflows["rollback-drill.yml"])["drill"]["pulumi-cli"] == "true"


def test_the_setup_action_installs_the_locks_the_cli_buildx_and_credentials() -> None:
    action = local_action(SETUP)
    assert action["runs"]["using"] == "composite"
    run_steps = action["runs"]["steps"]
    runs = "\n".join(s.get("run", "") for s in run_steps)
    assert "--require-hashes -r requirements.txt" in runs and "python -m venv .venv" in runs
    assert "python scripts/policy_venv.py" in runs
    by_action = {s["uses"].split("@")[0]: s for s in run_steps if "uses" in s}
    assert by_action["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert by_action["pulumi/actions"]["with"]["pulumi-version"] == "3.272.0"
    assert by_action["pulumi/actions"]["if"] == "inputs.pulumi-cli == 'true'"
    assert "docker/setup-buildx-action" in by_action
    # Emulation only when the runner's arch is not the image's (scripts/ci/image_platform.py decides).
    assert by_action["docker/setup-qemu-action"]["if"] == "steps.platform.outputs.emulate == 'true'"
    assert by_action["docker/setup-qemu-action"]["with"]["platforms"] == "${{ steps.platform.outputs.platform }}"
    credentials = by_action["aws-actions/configure-aws-credentials"]["with"]
    assert credentials["role-duration-seconds"] == "${{ inputs.duration-seconds }}"
    assert credentials["role-to-assume"] == "${{ inputs.role-arn }}"
    # The session is assumed last, so it outlives the job's timeout by the setup time (cleanup holds it).
    assert run_steps[-1] is by_action["aws-actions/configure-aws-credentials"]
    assert set(action["inputs"]) == {
        "stack",
        "role-arn",
        "session-name",
        "duration-seconds",
        "aws-region",
        "pulumi-cli",
    }


@pytest.mark.parametrize("path", ACTION_FILES, ids=lambda p: p.parent.name)
def test_local_action_properties(path: Path) -> None:
    text = path.read_text()
    action = yaml.safe_load(text)
    assert unpinned(text) == []
    uses = [s["uses"] for s in action["runs"]["steps"] if "uses" in s]
    assert uses and all(PINNED.match(u) for u in uses)
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", "") and "secrets." not in step.get("run", "")
        assert "run" not in step or step.get("shell") == "bash"
    assert missing_paths("\n".join(s.get("run", "") for s in action["runs"]["steps"])) == []


def test_the_setup_checks_fail_on_a_drifted_drill() -> None:
    workflows = all_workflows()
    drill = workflows["rollback-drill.yml"]["jobs"]["drill"]
    drifted = copy.deepcopy(workflows)
    drifted["rollback-drill.yml"]["jobs"]["drill"]["runs-on"] = "ubuntu-24.04"
    assert setup_problems(drifted) == [
        "rollback-drill.yml drill: runs on ubuntu-24.04, the deploy jobs on ubuntu-24.04-arm"
    ]
    drifted = copy.deepcopy(workflows)
    own_setup = [{"run": "python -m pip install --require-hashes -r requirements.txt"}]
    drifted["rollback-drill.yml"]["jobs"]["drill"]["steps"] = [drill["steps"][0], *own_setup, *drill["steps"][2:]]
    assert setup_problems(drifted) == ["rollback-drill.yml drill: does not use ./.github/actions/deploy-setup"]
    drifted["rollback-drill.yml"]["jobs"]["drill"]["steps"] = [*drill["steps"], *own_setup]
    assert setup_problems(drifted) == ["rollback-drill.yml drill: sets up python itself"]
    system = {"jobs": {"drill": {"steps": [{"run": "python -m gantry.drill rollback -s dev"}]}}}
    assert python_problems(system, "drill") == ["drill: python is not .venv/bin/python"]
    system["jobs"]["drill"]["steps"] = [{"run": 'PATH="$PWD/bin:$PATH" python3 -m gantry.drill rollback'}]
    assert python_problems(system, "drill") == ["drill: python3 is not .venv/bin/python"]


def test_the_image_platform_script_agrees_with_the_settings_model() -> None:
    from components.settings.workload import ARCHITECTURES, ContainerSettings

    spec = importlib.util.spec_from_file_location("image_platform", ROOT / "scripts" / "ci" / "image_platform.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ARCHITECTURES == ARCHITECTURES
    assert ContainerSettings.model_fields["architecture"].default == module.DEFAULT_ARCHITECTURE
    for stack in STACKS:
        platform = module.image_platform(ROOT / f"Pulumi.{stack}.yaml")
        assert platform == "linux/arm64"
        # deploy's runner is arm64: no emulation; an x86 runner would need it.
        assert module.needs_emulation(platform, "ARM64") is False
        assert module.needs_emulation(platform, "X64") is True


# ------------------------------------------------------------------------------------------------------
# Session length: the job's timeout, within the role's maximum


# Which role maximum (bootstrap/identity.py) a role variable's role has.
ROLE_MAXIMUM = {"PREVIEW": PREVIEW_SESSION_SECONDS, "DEPLOY": DEPLOY_SESSION_SECONDS}
# configure-aws-credentials' default session for OIDC when role-duration-seconds is not given (its README).
DEFAULT_SESSION_SECONDS = 3600
TIMEOUTS = {
    ("deploy.yml", "dev"): 60,
    ("deploy.yml", "prod"): 120,
    ("rollback-drill.yml", "drill"): 90,
    ("pull-request.yml", "preview-dev"): 60,
    ("pull-request.yml", "preview-prod"): 60,
}


def sessions(workflow: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Job -> (role variable, requested session seconds), through the setup action or directly."""
    found = {}
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            given = step.get("with", {})
            if step.get("uses") == SETUP:
                found[name] = (given["role-arn"], int(given["duration-seconds"]))
            elif step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                found[name] = (
                    given["role-to-assume"],
                    int(given.get("role-duration-seconds", DEFAULT_SESSION_SECONDS)),
                )
    return found


def session_problems(workflow: dict[str, Any]) -> list[str]:
    """Each job that assumes a role stops (timeout-minutes) before its session ends and asks for no more
    than the role allows: AssumeRoleWithWebIdentity refuses a DurationSeconds above the role's
    MaxSessionDuration (IAM User Guide, "Use IAM roles": maximum session duration)."""
    problems = []
    for name, (role, seconds) in sessions(workflow).items():
        timeout = workflow["jobs"][name].get("timeout-minutes")
        maximum = next(m for kind, m in ROLE_MAXIMUM.items() if kind in role)
        if not isinstance(timeout, int):
            problems.append(f"{name}: assumes {role} without timeout-minutes (GitHub's default is 360)")
            continue
        if seconds != timeout * 60:
            problems.append(f"{name}: session {seconds} s, timeout {timeout} min: request exactly {timeout * 60}")
        if seconds > maximum:
            problems.append(f"{name}: session {seconds} s exceeds the role's maximum {maximum} s")
    return problems


@pytest.mark.parametrize("name", ["deploy.yml", "rollback-drill.yml", "pull-request.yml"])
def test_every_assumed_session_lasts_the_job_and_fits_the_role(name: str) -> None:
    workflow = load(WORKFLOWS / name)
    assert session_problems(workflow) == []
    assert {(name, job): workflow["jobs"][job]["timeout-minutes"] for job in sessions(workflow)} == {
        key: minutes for key, minutes in TIMEOUTS.items() if key[0] == name
    }


def test_a_short_session_a_missing_timeout_or_an_excess_over_the_role_fails() -> None:
    _, workflow = mutated("deploy.yml", ("duration-seconds: 7200", "duration-seconds: 3600"))
    assert session_problems(workflow) == ["prod: session 3600 s, timeout 120 min: request exactly 7200"]
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["dev"].pop("timeout-minutes"))
    assert session_problems(workflow) == [
        "dev: assumes ${{ vars.GANTRY_DEPLOY_ROLE_ARN_DEV }} without timeout-minutes (GitHub's default is 360)"
    ]
    _, workflow = mutated("rollback-drill.yml", ("timeout-minutes: 90", "timeout-minutes: 150"))
    workflow["jobs"]["drill"]["steps"][1]["with"]["duration-seconds"] = "9000"
    assert session_problems(workflow) == ["drill: session 9000 s exceeds the role's maximum 7200 s"]
    preview = {
        "jobs": {
            "preview": {
                "timeout-minutes": 90,
                "steps": [
                    {
                        "uses": "aws-actions/configure-aws-credentials@x",
                        "with": {"role-to-assume": "vars.GANTRY_PREVIEW_ROLE_ARN"},
                    }
                ],
            }
        }
    }
    assert session_problems(preview) == ["preview: session 3600 s, timeout 90 min: request exactly 5400"]


# What a prod job spends outside the deploy resource's waits, in minutes: the shared setup (the locks,
# policy/venv, buildx, session) 5, `refresh: always` plus the update of everything but the deployment 7,
# the post-deploy eval (pull the image, embed the golden set) and a page 3.
PROD_OVERHEAD_MINUTES = 5 + 7 + 3


def prod_deploy_minutes() -> tuple[float, int, int]:
    """From Pulumi.prod.yaml through the settings model: (a prod deployment's own worst case: green start +
    pre-traffic task + hook + canary + blue wait; its deploy timeout; the most the deploy resource may
    wait in all: for another deployment, then its own, before failing)."""
    config, secret_keys = with_test_secrets(stack_config("prod"))
    gantry = {k: v for k, v in config.items() if k.startswith("gantry:")}
    deployment = load_settings(gantry, region=REGION, secret_keys=secret_keys).deployment
    pre_traffic = deployment.pre_traffic.timeout_seconds / 60 if deployment.pre_traffic else 0
    own = deployment.expected_deploy_minutes + pre_traffic
    # components/blue_green/provider.py: _wait_for_others up to otherDeployTimeoutMinutes, then its own
    # deployment up to deployTimeoutMinutes (stopped with rollback after that, and `up` fails).
    waits = deployment.other_deploy_timeout_minutes + deployment.deploy_timeout_minutes
    return own, deployment.deploy_timeout_minutes, waits


def test_prod_timeout_covers_the_longest_up_its_config_allows() -> None:
    own, deploy_timeout, waits = prod_deploy_minutes()
    # Canary, bake and pre-traffic fit inside the deploy timeout, so the two waits bound the `up`.
    assert own <= deploy_timeout
    timeout = load(WORKFLOWS / "deploy.yml")["jobs"]["prod"]["timeout-minutes"]
    assert waits + PROD_OVERHEAD_MINUTES <= timeout, (waits, timeout)
    # Today: 60 (otherDeployTimeoutMinutes, default) + 45 (deployTimeoutMinutes) + 15 = 120, no slack.
    assert (own, waits, timeout) == (14, 105, 120)


# ------------------------------------------------------------------------------------------------------
# Cancel releases the lock; the prod eval pages; concurrency decisions


def lock_release_problems(workflow: dict[str, Any]) -> list[str]:
    """A job that runs `pulumi up` (the action's, or the drill's) ends with an `if: cancelled()` step that
    releases its own lock of the same stack, with the backend URL it deployed to."""
    problems = []
    for name, job in workflow["jobs"].items():
        if name not in {j for _, j in PROGRAM_JOBS}:
            continue
        stack = setup_users(workflow)[name]["stack"]
        last = job["steps"][-1]
        expected = f".venv/bin/python scripts/ci/stack_lock.py release --stack {stack}"
        if not str(last.get("if", "")).startswith("cancelled()") or last.get("run") != expected:
            problems.append(f"{name}: does not end with an if: cancelled() `{expected}`")
        env = {**workflow.get("env", {}), **job.get("env", {}), **last.get("env", {})}
        if env.get("PULUMI_BACKEND_URL") != "${{ vars.PULUMI_BACKEND_URL }}":
            problems.append(f"{name}: the release step does not get PULUMI_BACKEND_URL")
        setup_id = next(s.get("id") for s in job["steps"] if s.get("uses") == SETUP)
        if env.get("GANTRY_JOB_STARTED_AT") != f"${{{{ steps.{setup_id}.outputs.started-at }}}}":
            problems.append(f"{name}: the release step does not get the job's start from the setup")
    return problems


@pytest.mark.parametrize("name", ["deploy.yml", "rollback-drill.yml"])
def test_a_cancelled_job_releases_its_stack_lock(name: str) -> None:
    assert lock_release_problems(load(WORKFLOWS / name)) == []


def test_a_missing_or_unconditional_lock_release_fails() -> None:
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["prod"]["steps"][-1].pop("if"))
    assert lock_release_problems(workflow) == [
        "prod: does not end with an if: cancelled() `.venv/bin/python scripts/ci/stack_lock.py release --stack prod`"
    ]
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["dev"]["steps"][-1]["env"].pop("PULUMI_BACKEND_URL"))
    assert lock_release_problems(workflow) == ["dev: the release step does not get PULUMI_BACKEND_URL"]
    _, workflow = mutated("rollback-drill.yml", lambda w: w["jobs"]["drill"]["steps"][-1].pop("env"))
    assert lock_release_problems(workflow) == ["drill: the release step does not get the job's start from the setup"]
    _, workflow = mutated("rollback-drill.yml", ("release --stack dev", "release --stack prod"))
    assert len(lock_release_problems(workflow)) == 1


def test_the_prod_eval_is_a_post_deploy_check_that_pages() -> None:
    prod = load(WORKFLOWS / "deploy.yml")["jobs"]["prod"]["steps"]
    names = [s.get("name", s.get("uses", "")) for s in prod]
    up = names.index("pulumi up prod with the policy pack")
    evaluation = names.index("Post-deploy eval against prod")
    page = names.index("Page on-call when the post-deploy eval failed")
    assert up < evaluation < page
    assert prod[evaluation]["id"] == "eval"
    # Pages only when the eval itself failed (not when the up did: that already rolled back).
    assert prod[page]["if"] == "failure() && steps.eval.outcome == 'failure'"
    assert ".venv/bin/python scripts/ci/page.py --stack prod" in prod[page]["run"]
    assert prod[page]["env"]["IMAGE_REF"] == prod[evaluation]["env"]["IMAGE_REF"]
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "A post-deploy check, not a gate" in text


def concurrency_decision_problems(workflows: dict[str, dict[str, Any]]) -> list[str]:
    """GitHub keeps one running and one pending job per group (names case-insensitive) and a newly queued
    job cancels the pending one (https://docs.github.com/en/actions/using-jobs/using-concurrency).
    Decided: a dev or prod deploy may supersede its own stack's pending deploy (the newer run contains it
    and deploys what it evaluated); a drill shares a group with no deploy, and waits for the stack lock."""
    problems = []
    deploy_groups = {}
    for name in ("dev", "prod"):
        group = workflows["deploy.yml"]["jobs"][name]["concurrency"]
        deploy_groups[name] = str(group["group"]).lower()
        if group != {"group": f"gantry-stack-{name}", "cancel-in-progress": False}:
            problems.append(f"{name}: concurrency {group}")
    drill = workflows["rollback-drill.yml"]["jobs"]["drill"]
    drill_group = str(drill["concurrency"]["group"]).lower()
    if drill_group in deploy_groups.values():
        problems.append(f"drill: shares {drill_group} with a deploy, so one pending job would cancel the other")
    if drill["concurrency"].get("cancel-in-progress") is not False:
        problems.append("drill: a running drill may be cancelled")
    runs = [s.get("run", "") for s in drill["steps"]]
    wait = next((i for i, r in enumerate(runs) if "stack_lock.py wait --stack dev" in r), None)
    first_drill = next((i for i, r in enumerate(runs) if "gantry.drill" in r), None)
    if wait is None or first_drill is None or wait > first_drill:
        problems.append("drill: does not wait for the dev stack's lock before the drill")
    return problems


def test_the_concurrency_decisions() -> None:
    workflows = all_workflows()
    assert concurrency_decision_problems(workflows) == []
    comment = (WORKFLOWS / "deploy.yml").read_text().split("name: deploy")[0]
    assert "at most one running and one pending job per group" in comment
    assert "never cancelled" not in comment or "running deploy is never cancelled" in comment


def test_a_drill_in_a_deploy_group_or_without_its_wait_fails() -> None:
    workflows = all_workflows()
    shared = copy.deepcopy(workflows)
    shared["rollback-drill.yml"]["jobs"]["drill"]["concurrency"]["group"] = "Gantry-Stack-Dev"
    assert concurrency_decision_problems(shared) == [
        "drill: shares gantry-stack-dev with a deploy, so one pending job would cancel the other"
    ]
    unwaited = copy.deepcopy(workflows)
    drill_steps = unwaited["rollback-drill.yml"]["jobs"]["drill"]["steps"]
    drill_steps[:] = [s for s in drill_steps if "stack_lock.py wait" not in s.get("run", "")]
    assert concurrency_decision_problems(unwaited) == ["drill: does not wait for the dev stack's lock before the drill"]


# ------------------------------------------------------------------------------------------------------
# Prod deploys the digest this run's dev job evaluated (components.settings.promotion)

MARK = ".venv/bin/python scripts/ci/mark_evaluated.py"
NEEDS_OUTPUT = re.compile(r"^\$\{\{\s*needs\.dev\.outputs\.([A-Za-z_][\w-]*)\s*\}\}$")
STEP_OUTPUT = re.compile(r"^\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}$")


def promotion_problems(workflow: dict[str, Any]) -> list[str]:
    """The digest dev evaluated travels dev -> prod as job outputs: dev's mark step runs after its eval gate
    (only when it passed) and before the final lock release, on the digest the gate evaluated; dev's
    outputs are the mark's; prod's `up` reads GANTRY_PROMOTE_DIGEST/RUN from needs.dev.outputs and nothing
    else (not a stack output, which a later run may have changed); no output carries the repository URL,
    which holds the masked account id (GitHub drops a job output holding a masked value)."""
    problems: list[str] = []
    dev, prod = workflow["jobs"]["dev"], workflow["jobs"]["prod"]
    names = [s.get("name", s.get("uses", "")) for s in dev["steps"]]
    marks = [i for i, s in enumerate(dev["steps"]) if str(s.get("run", "")).startswith(MARK)]
    if len(marks) != 1:
        return [f"dev: {len(marks)} mark steps, needs one"]
    (at,) = marks
    mark = dev["steps"][at]
    gate = names.index("Eval gate against dev") if "Eval gate against dev" in names else -1
    if not gate < at < len(dev["steps"]) - 1:
        problems.append("dev: the mark step does not run after the eval gate and before the lock release")
    if mark.get("if") not in (None, "success()"):
        problems.append(f"dev: the mark step runs with `if: {mark.get('if')}`, so also when the eval failed")
    gate_ref = dev["steps"][gate].get("env", {}).get("IMAGE_REF", "") if gate >= 0 else ""
    if not str(gate_ref).endswith(str(mark.get("env", {}).get("IMAGE_DIGEST"))):
        problems.append("dev: the mark step's IMAGE_DIGEST is not the digest the eval gate evaluated")
    outputs = dev.get("outputs") or {}
    for name, value in outputs.items():
        source = STEP_OUTPUT.match(str(value))
        if not source or source.group(1) != mark.get("id") or source.group(2) != name:
            problems.append(f"dev: output {name} is {value!r}, not the mark step's {name}")
        if "repository" in str(value).lower() or "repository" in name.lower():
            problems.append(f"dev: output {name} carries the repository URL (masked account id)")
    up: dict[str, Any] = next((s for s in prod["steps"] if s.get("id") == "up"), {})
    env = up.get("env") or {}
    for variable in (DIGEST_VARIABLE, RUN_VARIABLE):
        read = NEEDS_OUTPUT.match(str(env.get(variable, "")))
        if not read:
            problems.append(f"prod: {variable} is {env.get(variable)!r}, not a needs.dev.outputs value")
        elif read.group(1) not in outputs:
            problems.append(f"prod: {variable} reads needs.dev.outputs.{read.group(1)}, which dev does not output")
    needs = prod.get("needs")
    if "dev" not in ([needs] if isinstance(needs, str) else list(needs or [])):
        problems.append("prod: does not need dev, so needs.dev.outputs is empty")
    return problems


def test_prod_deploys_the_digest_its_run_s_dev_job_evaluated() -> None:
    workflow = load(WORKFLOWS / "deploy.yml")
    assert promotion_problems(workflow) == []
    dev, prod = workflow["jobs"]["dev"], workflow["jobs"]["prod"]
    assert dev["outputs"] == {"digest": "${{ steps.mark.outputs.digest }}", "run": "${{ steps.mark.outputs.run }}"}
    (up,) = [s for s in prod["steps"] if s.get("id") == "up"]
    assert up["with"]["command"] == "up" and up["with"]["stack-name"] == "prod"
    assert up["env"] == {
        "GANTRY_PROMOTE_DIGEST": "${{ needs.dev.outputs.digest }}",
        "GANTRY_PROMOTE_RUN": "${{ needs.dev.outputs.run }}",
    }
    (mark,) = [s for s in dev["steps"] if s.get("id") == "mark"]
    assert mark["env"] == {
        "REPOSITORY_URL": "${{ steps.up.outputs.repositoryUrl }}",
        "IMAGE_DIGEST": "${{ steps.up.outputs.imageDigest }}",
    }


def test_a_prod_digest_from_a_stack_output_or_an_unmarked_one_fails() -> None:
    def prod_env(w: dict[str, Any]) -> dict[str, Any]:
        return next(s for s in w["jobs"]["prod"]["steps"] if s.get("id") == "up")["env"]

    # The race the issue names: prod reads dev's *current* digest when its approval comes.
    _, workflow = mutated("deploy.yml", ("${{ needs.dev.outputs.digest }}", "${{ steps.up.outputs.imageDigest }}"))
    assert promotion_problems(workflow) == [
        "prod: GANTRY_PROMOTE_DIGEST is '${{ steps.up.outputs.imageDigest }}', not a needs.dev.outputs value"
    ]
    _, workflow = mutated("deploy.yml", lambda w: prod_env(w).pop("GANTRY_PROMOTE_RUN"))
    assert promotion_problems(workflow) == ["prod: GANTRY_PROMOTE_RUN is None, not a needs.dev.outputs value"]
    _, workflow = mutated("deploy.yml", lambda w: w["jobs"]["dev"]["outputs"].pop("run"))
    assert promotion_problems(workflow) == [
        "prod: GANTRY_PROMOTE_RUN reads needs.dev.outputs.run, which dev does not output"
    ]
    _, workflow = mutated("deploy.yml", ("${{ steps.mark.outputs.digest }}", "${{ steps.up.outputs.imageDigest }}"))
    assert promotion_problems(workflow) == [
        "dev: output digest is '${{ steps.up.outputs.imageDigest }}', not the mark step's digest"
    ]
    _, workflow = mutated(
        "deploy.yml",
        lambda w: w["jobs"]["dev"]["outputs"].update(repository="${{ steps.up.outputs.repositoryUrl }}"),
    )
    assert "dev: output repository carries the repository URL (masked account id)" in promotion_problems(workflow)


def test_a_mark_before_the_eval_gate_or_regardless_of_it_fails() -> None:
    def move_mark_before_gate(w: dict[str, Any]) -> None:
        steps_ = w["jobs"]["dev"]["steps"]
        mark = next(s for s in steps_ if s.get("id") == "mark")
        steps_.remove(mark)
        steps_.insert([s.get("name") for s in steps_].index("Eval gate against dev"), mark)

    _, workflow = mutated("deploy.yml", move_mark_before_gate)
    assert promotion_problems(workflow) == [
        "dev: the mark step does not run after the eval gate and before the lock release"
    ]

    def move_mark_last(w: dict[str, Any]) -> None:
        steps_ = w["jobs"]["dev"]["steps"]
        mark = next(s for s in steps_ if s.get("id") == "mark")
        steps_.remove(mark)
        steps_.append(mark)

    _, workflow = mutated("deploy.yml", move_mark_last)
    assert promotion_problems(workflow) == [
        "dev: the mark step does not run after the eval gate and before the lock release"
    ]
    _, workflow = mutated(
        "deploy.yml",
        lambda w: next(s for s in w["jobs"]["dev"]["steps"] if s.get("id") == "mark").update({"if": "always()"}),
    )
    assert promotion_problems(workflow) == ["dev: the mark step runs with `if: always()`, so also when the eval failed"]
    _, workflow = mutated(
        "deploy.yml",
        ("IMAGE_DIGEST: ${{ steps.up.outputs.imageDigest }}", "IMAGE_DIGEST: ${{ steps.setup.outputs.started-at }}"),
    )
    assert promotion_problems(workflow) == [
        "dev: the mark step's IMAGE_DIGEST is not the digest the eval gate evaluated"
    ]


def shipping_problems(workflows: dict[str, dict[str, Any]]) -> list[str]:
    """Build once, from dev on: the only image that ships is the one dev's `pulumi up` builds and pushes by
    digest, which dev's eval gate checks deployed and prod promotes. The checks a pull request runs build
    and evaluate the same Dockerfile as a local container, and never push it: a pull request's job must not
    write to the repository prod promotes from (a same-repository pull request can edit its workflow)."""
    problems = []
    for name in ("pull-request.yml", "checks.yml"):
        for job, step in steps(workflows[name]):
            with_ = step.get("with", {})
            if step.get("uses", "").startswith("docker/build-push-action@") and with_.get("push") is not False:
                problems.append(f"{name} {job}: builds with push {with_.get('push')!r}")
            if step.get("uses", "").startswith("aws-actions/amazon-ecr-login@") or re.search(
                r"\bdocker\s+push\b|\becr\s+get-login", step.get("run", "")
            ):
                problems.append(f"{name} {job}: logs in to or pushes to a registry")
            if step.get("with", {}).get("command") == "up":
                problems.append(f"{name} {job}: runs pulumi up")
    return problems


def test_pull_request_checks_never_push_the_image_they_evaluate() -> None:
    assert shipping_problems(all_workflows()) == []
    workflows = all_workflows()
    image = workflows["checks.yml"]["jobs"]["image"]["steps"]
    build = next(s for s in image if s.get("uses", "").startswith("docker/build-push-action@"))
    build["with"]["push"] = True
    assert shipping_problems(workflows) == ["checks.yml image: builds with push True"]


# The repository is one installable package (pyproject.toml): `components`, `gantry`, `bootstrap`, `policy`
# and `worker` import only from its editable install, never from a path fix. --require-hashes cannot take
# a local editable project, so the install is a second command with the lock's setuptools (no isolation).
EDITABLE_INSTALL = re.compile(r"pip install [^\n]*--no-deps --no-build-isolation -e \.(?:\s|$)")
LOCK_INSTALL = re.compile(r"pip install [^\n]*--require-hashes [^\n]*-r (requirements(?:-dev)?\.txt)")


def editable_install_problems(name: str, runs: list[str]) -> list[str]:
    """Each run step that installs the program's or the dev lock must then install the repository."""
    problems = []
    for run in runs:
        for lock in LOCK_INSTALL.finditer(run):
            if not EDITABLE_INSTALL.search(run[lock.end() :]):
                problems.append(f"{name}: installs {lock.group(1)} but not the repository (-e . after it)")
    return problems


def every_run() -> dict[str, list[str]]:
    runs = {f.name: [s.get("run", "") for j in load(f)["jobs"].values() for s in j.get("steps", [])] for f in FILES}
    for path in ACTION_FILES:
        steps = yaml.safe_load(path.read_text())["runs"]["steps"]
        runs[str(path.relative_to(ROOT))] = [s.get("run", "") for s in steps]
    return runs


def test_every_lock_install_also_installs_the_repository() -> None:
    runs = every_run()
    assert [p for name, steps in runs.items() for p in editable_install_problems(name, steps)] == []
    # Four installs today: the three pull-request jobs and the deploy setup every deploy job shares.
    assert sum(len(LOCK_INSTALL.findall(r)) for steps in runs.values() for r in steps) >= 4
    ci = (ROOT / ".ci" / "run").read_text()
    assert editable_install_problems(".ci/run", [ci]) == [] and LOCK_INSTALL.search(ci)


def test_the_editable_install_check_fails_without_it() -> None:
    lock_only = ".venv/bin/python -m pip install --disable-pip-version-check --require-hashes -r requirements.txt"
    assert editable_install_problems("job", [lock_only]) == [
        "job: installs requirements.txt but not the repository (-e . after it)"
    ]
    before = ".venv/bin/python -m pip install --no-deps --no-build-isolation -e .\n" + lock_only
    assert editable_install_problems("job", [before]) != []
    isolated = lock_only + "\n.venv/bin/python -m pip install -e ."
    assert editable_install_problems("job", [isolated]) != []

"""The GitHub workflows (.github/workflows): schema-valid, zizmor-clean, pinned, least-privileged, runnable.

Offline like the rest of the suite: check-jsonschema validates each file against the GitHub workflow
schema it vendors, zizmor audits it with `--offline` (no finding at medium severity or above), and the
properties a reviewer would check by hand are asserted on the parsed YAML: every third-party action
pinned by a 40-hex commit with a `# vX.Y.Z` comment, `permissions: {}` at the top and the minimum per
job, checkouts without persisted credentials, no pull_request_target or workflow_run, no secret and no
`${{ }}` expression inside a shell script, one never-cancelled concurrency group per stack, and every
script, module and file a workflow calls present in the repository. Each check is also run on a
mutated workflow to prove it fails.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
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


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
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
        uses = [s.get("uses", "") for s in job.get("steps", [])]
        needed = {"contents": "read"}
        if any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses):
            needed["id-token"] = "write"
        comments = any(u.startswith("marocchino/sticky-pull-request-comment@") for u in uses) or any(
            s.get("with", {}).get("comment-on-pr") for s in job.get("steps", [])
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
        if environment is None:
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


def commands(workflow: dict[str, Any]) -> list[str]:
    return [step["run"] for _, step in steps(workflow) if "run" in step]


def missing_paths(text: str) -> list[str]:
    """Repository paths and `python -m` modules a command names that do not exist."""
    missing = [p for p in REPO_PATH.findall(text) if not (ROOT / p.rstrip(".")).exists()]
    for module in re.findall(r"-m\s+(gantry\.[\w.]+|worker\.[\w.]+)", text):
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


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    result = run_tool("zizmor", "--offline", "--no-progress", "--min-severity", "medium", WORKFLOWS)
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
    assert pr["jobs"]["preview"]["if"] == fork_guard
    assert "if" not in pr["jobs"]["offline-plan"]
    for workflow in (pr, deploy):
        for _, step in steps(workflow):
            if step.get("uses", "").startswith("pulumi/actions@"):
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


def test_the_rollback_drill_waits_for_the_dev_deploys_and_uses_their_role():
    drill, deploy = load(WORKFLOWS / "rollback-drill.yml"), load(WORKFLOWS / "deploy.yml")
    dev_groups = {job.get("concurrency", {}).get("group") for job in deploy["jobs"].values()}
    group = drill["jobs"]["drill"]["concurrency"]["group"]
    assert group in dev_groups and group.endswith("-dev")
    assert "vars.GANTRY_DEPLOY_ROLE_ARN_DEV" in (WORKFLOWS / "rollback-drill.yml").read_text()

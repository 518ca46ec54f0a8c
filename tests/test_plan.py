"""`python -m gantry.plan`: the offline plan on both committed stacks, its diff against a git ref, and secrets.

The command runs in a throwaway git copy of this checkout (so `--against` has commits to compare), once
unchanged (no differences: the synthesis is deterministic) and once after a deliberate change (a
retention, the flow logs switched off, a new secret value), whose every effect must be reported and
whose secret must not be. The renderings are checked on the graphs of dev and prod in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry import plan
from gantry.offline import STAND_IN_PREFIX, TEST_SECRET_VALUE, synthesize
from policy.rules import RULES
from tests.harness import ROOT
from tests.inprocess import run_plan as run_plan_here

NEW_SECRET = "k-plan-test-never-printed-91c3"
NEW_CIPHERTEXT = "v1:cGxhbnRlc3Q=:bmV2ZXItcHJpbnRlZC05MWMz"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git repository holding this checkout's files as one commit: (its path, that commit)."""
    copy = tmp_path_factory.mktemp("checkout")
    files = _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_symlink() or source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    _git(copy, "init", "-q", "-b", "main")
    _git(copy, "add", "-A")
    _git(copy, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    return copy, _git(copy, "rev-parse", "HEAD")


def run_plan(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gantry.plan", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in (TEST_SECRET_VALUE, *json.loads(TEST_SECRET_VALUE).values(), *extra):
        assert secret not in text


def test_the_workflow_script_plans_an_unchanged_checkout_with_no_changes(checkout, tmp_path: Path) -> None:
    """scripts/ci/offline_plan.sh, as the pull-request workflow runs it: plan, summary, verdict output."""
    root, _ = checkout
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PLAN_AGAINST": "main",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
    }
    result = subprocess.run(
        [str(root / "scripts/ci/offline_plan.sh"), "dev", "plan-dev.md"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = (root / "plan-dev.md").read_text()
    assert summary.read_text() == out and outputs.read_text() == "policy=pass\n"
    assert "## gantry offline plan: `dev`" in out
    assert "### Changes against `main`" in out and "No resource changes." in out
    # Behind CloudFront nothing is plain HTTP from the internet: the rule that once needed a downgrade passes.
    assert "| `no-plain-http-from-internet` | mandatory | ✅ pass |" in out
    for rule in RULES:
        assert f"| `{rule.name}` |" in out
    assert "<code>gantry › gantry-roles</code> <code>gantry:iam:TaskRoles</code>" in out
    assert_no_secret(out + result.stdout + result.stderr)


def test_a_deliberate_change_is_reported_resource_by_resource_and_its_secret_is_not(checkout) -> None:
    root, base = checkout
    stack_file = root / "Pulumi.dev.yaml"
    original = stack_file.read_text()
    config = yaml.safe_load(original)
    config["config"]["gantry:logs"]["retentionDays"] = 30
    config["config"]["gantry:network"]["flowLogs"] = False
    # Set as the README says (`pulumi config set --secret --path 'secretValues.API_KEYS'`): a ciphertext,
    # which the plan runs as a stand-in derived from it, so the new secret shows as a change.
    config["config"]["gantry:secretValues"] = {"API_KEYS": {"secure": NEW_CIPHERTEXT}}
    stack_file.write_text(yaml.safe_dump(config))
    try:
        # In this process (tests/inprocess.py; the ref's side is still its own process), with the commit
        # as CI names it: only the stack file differs from the base, so nothing else may change.
        result = run_plan_here(root, "dev", "--against", base, "--json", env={**os.environ, "GITHUB_SHA": base})
    finally:
        stack_file.write_text(original)
    document = json.loads(result.stdout)
    change = document["diff"]
    assert change["commit"] == base and change["note"] == ""
    assert change["added"] == []
    assert sorted(name for name, _ in change["removed"]) == [
        "gantry-network-flow-log",
        "gantry-network-flow-logs",
        "gantry-network-flow-logs-policy",
        "gantry-network-flow-logs-role",
    ]
    changed = {c["name"]: c["inputs"] for c in change["changed"]}
    assert changed["gantry-logs"] == ["retentionInDays"]
    assert changed["gantry-secrets-api-keys-value"] == ["secretString [secret]"]
    assert_no_secret(result.stdout + result.stderr, NEW_CIPHERTEXT, STAND_IN_PREFIX)


def test_a_ref_without_the_stack_file_is_reported_not_an_error(checkout) -> None:
    root, base = checkout
    assert plan.ref_snapshot(root, base, "staging") is None


def test_an_unknown_ref_or_stack_is_a_usage_error(checkout) -> None:
    root, _ = checkout
    # The bad ref in this process (its whole synthesis runs first); the bad stack as the process it is.
    bad_ref = run_plan_here(root, "dev", "--against", "no-such-branch", env={**os.environ, "GITHUB_SHA": "0" * 40})
    assert bad_ref.returncode == plan.EXIT_ERROR
    assert "git ref no-such-branch does not exist" in bad_ref.stderr
    bad_stack = run_plan(root, "staging", "--no-diff")
    assert bad_stack.returncode == plan.EXIT_ERROR
    assert "no stack file Pulumi.staging.yaml" in bad_stack.stderr and "committed stacks: dev, prod" in bad_stack.stderr


# ------------------------------------------------------------------------------------------------------
# Renderings of both committed stacks (in-process, no diff)


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack_plan(request: pytest.FixtureRequest) -> plan.Plan:
    config = json.loads((ROOT / "policy" / "committed-stacks.json").read_text())
    return plan.make_plan(synthesize(request.param), plan.policy_levels(config), None)


def test_both_stacks_pass_every_mandatory_rule_with_the_committed_policy_config(stack_plan: plan.Plan) -> None:
    assert stack_plan.mandatory_findings == 0
    assert [v.rule for v in stack_plan.verdicts] == [r.name for r in RULES]
    assert [v.rule for v in stack_plan.verdicts if v.findings] == []


def test_every_resource_is_in_exactly_one_group_under_its_component_chain(stack_plan: plan.Plan) -> None:
    listed = [name for g in stack_plan.groups for name, _ in g.resources]
    components = [g for g in stack_plan.groups if g.path]
    assert len(listed) + len(components) == stack_plan.resources
    assert len(set(listed)) == len(listed)
    paths = {g.path for g in components}
    # A nested component's chain starts with its parent's: the grouping follows `parent`, not names.
    assert all(p[:-1] in paths or len(p) == 1 for p in paths)
    assert any(len(p) > 1 for p in paths)


def test_renderings_carry_no_secret_value(stack_plan: plan.Plan) -> None:
    assert stack_plan.secrets >= set(json.loads(TEST_SECRET_VALUE).values())
    for text in (plan.render_markdown(stack_plan), plan.render_json(stack_plan)):
        assert_no_secret(text)
    document = json.loads(plan.render_json(stack_plan))
    assert document["stack"] == stack_plan.stack and document["diff"] is None


def test_the_scrubber_catches_a_secret_that_reached_a_rendering() -> None:
    leaked = plan.Plan(
        stack="dev",
        resources=1,
        groups=(plan.Group(path=("x",), type="gantry:x:X", resources=((f"name-{NEW_SECRET}", "aws:t:T"),)),),
        verdicts=(),
        secrets=frozenset({NEW_SECRET}),
    )
    for text in (plan.render_markdown(leaked), plan.render_json(leaked)):
        assert NEW_SECRET not in text and f"name-{plan.SECRET_MARK}" in text


def test_main_exit_status_follows_the_mandatory_verdicts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(ROOT / "policy" / "committed-stacks.json")
    assert plan.main(["prod", "--no-diff", "--policy-config", config]) == plan.EXIT_OK
    assert "## gantry offline plan: `prod`" in capsys.readouterr().out

    def without_retention(stack: str, root: Path) -> Any:
        synthesis = synthesize(stack, root)
        synthesis.graph.named("gantry-logs").inputs.pop("retentionInDays")
        return synthesis

    # A log group kept forever is a mandatory finding: the plan exits 1.
    monkeypatch.setattr(plan, "synthesize", without_retention)
    assert plan.main(["dev", "--no-diff"]) == plan.EXIT_MANDATORY
    assert "| `log-group-retention` | mandatory | ❌ 1 finding |" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------
# Pure parts


def _snap(urn: str, inputs: dict[str, str], secret: list[str] | None = None) -> dict[str, Any]:
    return {"urn": urn, "type": "aws:t:T", "name": urn, "parent": "", "inputs": inputs, "secretInputs": secret or []}


def test_diff_by_urn_and_input_fingerprints() -> None:
    before = [_snap("a", {"x": "1"}), _snap("b", {"x": "1", "s": "1"}, ["s"]), _snap("gone", {})]
    after = [_snap("a", {"x": "1"}), _snap("b", {"x": "2", "s": "2", "y": "1"}, ["s"]), _snap("new", {})]
    added, removed, changed = plan.diff(before, after)
    assert added == [("new", "aws:t:T")] and removed == [("gone", "aws:t:T")]
    assert changed == [plan.Changed(name="b", type="aws:t:T", inputs=("s [secret]", "x", "y"))]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"no-such-rule": "advisory"}, "policy config names no rule 'no-such-rule'"),
        ({"log-group-retention": "off"}, "allowed: mandatory, advisory, disabled"),
    ],
)
def test_policy_config_mistakes_are_named(config: dict[str, str], message: str) -> None:
    with pytest.raises(plan.PlanError, match=message):
        plan.policy_levels(config)


def test_policy_config_changes_only_the_levels_it_names() -> None:
    levels = plan.policy_levels({"no-plain-http-from-internet": "disabled"})
    assert levels["no-plain-http-from-internet"] == "disabled"
    assert levels["log-group-retention"] == "mandatory"


def test_the_plan_quotes_the_stacks_fixed_monthly_cost() -> None:
    from gantry.cost import estimate

    synthesis = synthesize("dev")
    made = plan.make_plan(synthesis, plan.policy_levels({}), None, "eu-west-1")
    total = estimate(synthesis.graph.resources, "eu-west-1").total
    assert f"| **fixed total** | | | | **{total:.2f}** |" in plan.render_markdown(made)
    assert json.loads(plan.render_json(made))["monthlyCost"]["total"] == round(total, 2)
    # A region without a price table is said, not guessed.
    unpriced = plan.make_plan(synthesis, plan.policy_levels({}), None, "ap-south-2")
    assert "Not priced:" in plan.render_markdown(unpriced)


@pytest.mark.parametrize(
    ("stack_file", "message"),
    [
        ("config:\n  aws:region: [eu-west-1\n", "Pulumi.broken.yaml: not valid YAML"),
        ("config:\n  aws:region: eu-west-1\n  gantry:network: {cidrBlock: 10.0.0.0/33}\n", "gantry:network.cidrBlock"),
    ],
    ids=["yaml-error", "validator-error"],
)
def test_the_workflow_script_shows_a_refused_config_and_leaves_a_plan_file(
    checkout, tmp_path: Path, stack_file: str, message: str
) -> None:
    """No traceback, exit 2, the message in the plan file, the summary and one escaped error annotation."""
    root, _ = checkout
    (root / "Pulumi.broken.yaml").write_text(stack_file)
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PLAN_AGAINST": "main",
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
    }
    try:
        result = subprocess.run(
            [str(root / "scripts/ci/offline_plan.sh"), "broken", "plan-broken.md"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        local = subprocess.run(
            [str(root / "scripts/ci/offline_plan.sh"), "broken", "plan-local.md"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHON": sys.executable, "PLAN_AGAINST": "main"},
        )
    finally:
        (root / "Pulumi.broken.yaml").unlink()
    assert result.returncode == 2 and local.returncode == 2, result.stderr + local.stderr
    out = (root / "plan-broken.md").read_text()
    assert message in out and "Traceback" not in out + result.stdout + result.stderr
    assert summary.read_text() == out and outputs.read_text() == "policy=error\n"
    [annotation] = result.stdout.splitlines()
    assert annotation.startswith("::error title=offline plan of broken::gantry.plan: ") and message in annotation
    # A workflow command is one line: the message's own lines are escaped, never raw.
    block = out.split("~~~text\n")[1].split("\n~~~")[0]
    assert annotation.endswith("::" + block.replace("%", "%25").replace("\n", "%0A"))
    assert message in local.stderr and "Traceback" not in local.stderr and "::error" not in local.stdout

"""`python -m gantry.init`, the own-service scaffold, and the checks it leans on.

Bad flags exit 2 naming the config key and the flag, write nothing and print no traceback; a good set
writes a stack file that holds only what departs from the defaults, round-trips through the program's
own loader and plans clean. The scaffold runs in a temporary project directory (a copy of the files the
program needs), so no test writes into the checkout. Also here: the pure checks issue 21 added
(`inherited_health_check`, `default_tags_problems`, `unwatched_production`, `budget_shortfall`) and
build contexts outside the project.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.settings import ConfigError, load_settings
from components.settings.operations import OperationsSettings, default_tags_problems, unwatched_production
from components.settings.workload import ContainerSettings, ImageSettings, inherited_health_check
from gantry import init
from gantry.cost import budget_shortfall, estimate
from tests.harness import ROOT, run_program, stack_config, with_test_secrets
from tests.inprocess import run_init
from tests.test_own_service_guide import fresh_clone

SERVICE = ROOT / "tests" / "guide_service"
GOOD = ["--stack", "team", "--context", "../my-api", "--port", "8080", "--health-path", "/healthz"]
GOOD += ["--health-command", "python healthcheck.py", "--cpu", "512", "--memory", "1024", "--secret", "UPSTREAM_TOKEN"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with the service beside it (../my-api); init writes its stack file here."""
    root = tmp_path / "gantry"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(SERVICE, tmp_path / "my-api")
    monkeypatch.setattr(init, "scaffold", functools.partial(init.scaffold, project_dir=root))
    return root


def run(argv: list[str], project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = init.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


BAD = [
    ("port-below-1024", ["--port", "80"], "gantry:container.port", "--port"),
    ("cpu-not-fargate", ["--cpu", "300"], "gantry:container.cpu", "--cpu"),
    ("memory-off-the-matrix", ["--memory", "8192"], "gantry:container.memory", "--memory"),
    ("context-missing", ["--context", "../no-such-service"], "gantry:image.context", "--context"),
    ("dockerfile-missing", ["--dockerfile", "../my-api/Dockerfile.prod"], "gantry:image.dockerfile", "--dockerfile"),
    ("health-command-empty", ["--health-command", " "], "gantry:container.healthCheckCommand", "--health-command"),
    ("health-path-relative", ["--health-path", "healthz"], "gantry:container.healthCheckPath", "--health-path"),
    ("architecture-lower-case", ["--architecture", "arm64"], "gantry:container.architecture", "--architecture"),
    ("secret-name-lower-case", ["--secret", "upstream-token"], "gantry:secrets[1].name", "--secret"),
    ("region-unknown", ["--region", "eu-west-9"], "aws:region", "--region"),
    (
        "alarm-email-placeholder",
        ["--alarm-email", "oncall@example.com"],
        "gantry:operations.page.emails",
        "--alarm-email",
    ),
]


def replace(argv: list[str], change: list[str]) -> list[str]:
    out = list(argv)
    flag, value = change
    if flag in ("--secret", "--alarm-email") or flag not in out:
        return [*out, flag, value]
    out[out.index(flag) + 1] = value
    return out


@pytest.mark.parametrize("change, key, flag", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_flag_exits_2_naming_key_and_flag_and_writes_nothing(change, key, flag, project, capsys):
    code, out, err = run(replace(GOOD, change), project, capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert not (project / "Pulumi.team.yaml").exists()
    named = re.compile(rf"^{re.escape(key)}(\[\d+\])?: .*\(flag {flag}\)$")
    assert any(named.match(line) for line in err.splitlines()), err


def test_no_health_command_for_an_own_image_is_refused_with_the_flag(project, capsys):
    argv = [a for i, a in enumerate(GOOD) if a != "--health-command" and GOOD[i - 1] != "--health-command"]
    code, _, err = run(argv, project, capsys)
    assert code == 2 and "gantry:container.healthCheckCommand: is required" in err and "(flag --health-command)" in err


def test_an_unparsable_flag_is_argparse_s_usage_error(project, capsys):
    with pytest.raises(SystemExit) as exit_:
        init.main(replace(GOOD, ["--port", "eighty"]))
    assert exit_.value.code == 2
    assert "argument --port: invalid int value" in capsys.readouterr().err


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of the checkout with the service beside it: the program resolves paths from its own
    directory, so the scaffold runs there, in its own interpreter."""
    checkout = tmp_path / "gantry"
    fresh_clone(checkout)
    shutil.copytree(SERVICE, tmp_path / "my-api")
    return checkout


def scaffold_in(checkout: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gantry.init", *GOOD, *extra], cwd=checkout, capture_output=True, text=True, timeout=600
    )


def test_the_written_file_round_trips_plans_clean_and_lists_the_next_commands(clone: Path):
    done = scaffold_in(clone)
    out = done.stdout
    assert done.returncode == 0, (out, done.stderr)
    config = yaml.safe_load((clone / "Pulumi.team.yaml").read_text())["config"]
    # Only what departs from the defaults, and what an own image must say.
    assert config["gantry:container"] == {
        "port": 8080,
        "healthCheckPath": "/healthz",
        "cpu": 512,
        "memory": 1024,
        "healthCheckCommand": ["CMD", "python", "healthcheck.py"],
    }
    assert config["gantry:image"] == {"context": "../my-api"}
    assert config["gantry:queue"] == {"enabled": False}
    assert config["aws:defaultTags"]["tags"]["environment"] == "team"
    raw = {k: json.dumps(v) for k, v in config.items() if k.startswith("gantry:")}
    raw["gantry:secretValues"] = json.dumps({"UPSTREAM_TOKEN": "k-test-only-4f9c2e-upstream"})
    settings = load_settings(
        raw,
        region=config["aws:region"],
        secret_keys=["gantry:secretValues"],
        project_dir=clone,
        stack="team",
        default_tags=config["aws:defaultTags"],
    )
    assert settings.container.port == 8080 and settings.image.dockerfile == "../my-api/Dockerfile"
    assert "every mandatory rule passes" in out
    # The default $100 budget is below this stack's fixed cost: the scaffold wrote one above it.
    assert config["gantry:operations"]["monthlyBudgetUsd"] > 100
    assert "warning: gantry:operations.monthlyBudgetUsd" not in out
    assert "pulumi config set --secret --path 'secretValues.UPSTREAM_TOKEN' '<value>' -s team" in out
    assert out.rstrip().endswith("pulumi up -s team")
    assert "bootstrap/README.md" in out and "--without-permissions-boundary" in out
    # The file is kept unless --force. These two runs are in this process (tests/inprocess.py; a process
    # would import the SDKs again), and the forced one must print exactly what the process printed.
    again = run_init(clone, *GOOD, env=os.environ)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    forced = run_init(clone, *GOOD, "--force", env=os.environ)
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, out, done.stderr)
    assert yaml.safe_load((clone / "Pulumi.team.yaml").read_text())["config"] == config


def test_an_existing_stack_file_is_kept(project, capsys):
    (project / "Pulumi.team.yaml").write_text("config: {}\n")
    code, _, err = run(GOOD, project, capsys)
    assert code == 2 and "exists" in err and (project / "Pulumi.team.yaml").read_text() == "config: {}\n"


def test_the_opt_out_writes_the_boundary_setting_and_drops_the_bootstrap_step():
    choices = init.Choices(stack="team", context="../my-api", without_permissions_boundary=True)
    config = init.stack_document(choices)
    assert config["gantry:iam"] == {"withoutPermissionsBoundary": True}
    assert not any("bootstrap" in c for c in init.next_commands(config, "team"))


@pytest.mark.parametrize(
    "line, form",
    [
        ("python healthcheck.py", ["CMD", "python", "healthcheck.py"]),
        ("/bin/check --port 8080", ["CMD", "/bin/check", "--port", "8080"]),
        ('CMD python -c "import sys"', ["CMD", "python", "-c", "import sys"]),
        ("CMD-SHELL wget -q -O- localhost:8080/healthz", ["CMD-SHELL", "wget -q -O- localhost:8080/healthz"]),
    ],
)
def test_a_health_command_line_is_written_in_exec_form(line, form):
    assert init.health_check(line) == form


def test_the_budget_written_is_above_the_fixed_cost():
    assert init.budget_for(104.47) == 140 and init.budget_for(8.0) == 10


# --------------------------------------------------------------------------------------------------
# The pure checks.
# --------------------------------------------------------------------------------------------------


def test_only_a_stack_building_the_sample_inherits_its_health_command():
    sample, own = ImageSettings(context="app"), ImageSettings(context="../my-api", dockerfile="../my-api/Dockerfile")
    promoting = ImageSettings(promote_from="dev")
    inherited, explicit = ContainerSettings(), ContainerSettings(health_check_command=("CMD", "python", "h.py"))
    assert inherited_health_check(sample, inherited) is None
    assert inherited_health_check(ImageSettings(context="./app/"), inherited) is None
    key, message = inherited_health_check(own, inherited) or ("", "")
    assert key == "healthCheckCommand" and "'../my-api' builds your own image" in message
    assert '["CMD", "python", "healthcheck.py"]' in message  # an exec-form example
    assert inherited_health_check(promoting, inherited) is not None
    assert inherited_health_check(own, explicit) is None and inherited_health_check(promoting, explicit) is None


def test_default_tags_must_carry_the_budget_tag():
    assert default_tags_problems({"tags": {"environment": "dev"}}, "environment") == []
    assert [k for k, _ in default_tags_problems(None, "environment")] == ["aws:defaultTags.tags.environment"]
    assert [k for k, _ in default_tags_problems({"tags": {"env": "dev"}}, "environment")] == [
        "aws:defaultTags.tags.environment"
    ]
    assert [k for k, _ in default_tags_problems({"environment": "dev"}, "environment")] == ["aws:defaultTags.tags"]
    assert [k for k, _ in default_tags_problems({"tags": {"environment": "dev", "n": 1}}, "environment")] == [
        "aws:defaultTags.tags.n"
    ]
    assert [k for k, _ in default_tags_problems({"tags": {"environment": "dev"}}, "team")] == [
        "aws:defaultTags.tags.team"
    ]


def test_the_program_refuses_a_stack_without_default_tags_before_any_resource():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    del config["aws:defaultTags"]
    from tests.harness import Graph

    graph = Graph()
    with pytest.raises(Exception, match=r"aws:defaultTags\.tags\.environment: is not set") as info:
        run_program("dev", config, secret_keys, graph)
    assert "Traceback" not in str(info.value) and graph.resources == []


def test_a_production_stack_nobody_is_told_about_is_warned_naming_the_key():
    quiet = OperationsSettings()
    assert unwatched_production(quiet, production=False) is None
    assert (unwatched_production(quiet, production=True) or "").startswith("gantry:operations.page.emails: ")
    watched = OperationsSettings.model_validate_json('{"page": {"emails": ["oncall@acme-ai.io"]}}')
    assert unwatched_production(watched, production=True) is None
    no_paging = OperationsSettings(paging=False)
    assert (unwatched_production(no_paging, production=True) or "").startswith("gantry:operations.ticket.emails: ")


def test_the_program_warns_the_committed_prod_stack_and_not_dev():
    prod = run_program("prod")
    assert [w for w in prod.warnings if w.startswith("gantry:operations.page.emails: ")], prod.warnings
    assert run_program("dev").warnings == []


def test_a_budget_below_the_fixed_cost_names_both_numbers_and_the_key():
    graph = run_program("dev")
    fixed = estimate(graph.resources, "eu-west-1")
    assert budget_shortfall(graph.resources, fixed, "dev") is None  # dev's 150 covers its fixed cost
    low = [
        SimpleNamespace(typ=r.typ, name=r.name, inputs={**r.inputs, "limitAmount": "50.00"}, outputs=r.outputs)
        if r.typ == "aws:budgets/budget:Budget"
        else r
        for r in graph.resources
    ]
    message = budget_shortfall(low, fixed, "dev") or ""
    assert message.startswith("gantry:operations.monthlyBudgetUsd: 50 is below")
    assert f"{fixed.total:.2f} USD" in message


def test_a_context_outside_the_project_is_accepted_and_a_missing_one_named(tmp_path: Path):
    project, service = tmp_path / "gantry", tmp_path / "my-api"
    project.mkdir()
    shutil.copytree(SERVICE, service)
    context = {"project_dir": project}
    for path in ("../my-api", str(service)):
        image = ImageSettings.model_validate({"context": path}, context=context)
        assert image.dockerfile == f"{path}/Dockerfile"  # its own Dockerfile, never the sample's
    with pytest.raises(ValueError, match="is not a directory"):
        ImageSettings.model_validate({"context": "../other-api"}, context=context)
    (service / "Dockerfile").unlink()
    with pytest.raises(ValueError, match="the build needs a Dockerfile"):
        ImageSettings.model_validate({"context": "../my-api"}, context=context)


def test_a_symlink_that_reads_as_inside_the_project_but_leads_out_is_refused(tmp_path: Path):
    project = tmp_path / "gantry"
    project.mkdir()
    shutil.copytree(SERVICE, tmp_path / "my-api")
    (project / "svc").symlink_to(tmp_path / "my-api")
    with pytest.raises(ValueError, match="leads out of the project through a symlink"):
        ImageSettings.model_validate({"context": "svc"}, context={"project_dir": project})


def test_load_settings_left_without_default_tags_does_not_check_them():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if k.startswith("gantry:")}
    load_settings(raw, region="eu-west-1", secret_keys=secret_keys)
    with pytest.raises(ConfigError):
        load_settings(raw, region="eu-west-1", secret_keys=secret_keys, default_tags=None)

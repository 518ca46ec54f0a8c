"""tests/inprocess.py: the in-process plan says what `python -m gantry.plan` says, or refuses to stand in.

The config matrix compares whole runs (tests/test_plan_config_matrix.py, its process cases); these cover
what that matrix never reaches: argparse's exit, an exception the plan lets escape, and the two cases in
which this process cannot stand in for the command (another program in the checkout, no GITHUB_SHA).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components import stack_config
from gantry import init, plan
from gantry.offline import Synthesis
from tests.harness import ROOT
from tests.inprocess import PROGRAM, run_init, run_plan

ENV = {**os.environ, "GITHUB_SHA": "0" * 40}


def test_a_usage_error_is_what_the_process_prints_and_exits_with() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "gantry.plan", "dev", "--no-such-flag"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    inside = run_plan(ROOT, "dev", "--no-such-flag", env=ENV)
    assert process.returncode == 2 and "unrecognized arguments: --no-such-flag" in process.stderr
    assert (inside.returncode, inside.stdout, inside.stderr) == (process.returncode, process.stdout, process.stderr)


@pytest.fixture
def program_copy(tmp_path: Path) -> Path:
    """A checkout holding this program's files (what `inprocess.PROGRAM` names) and the project file."""
    for name in PROGRAM:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return tmp_path


def test_an_escaping_exception_is_a_traceback_and_exit_status_1(
    program_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Path, Path, str | None]] = []

    def broken(stack: str, root: Path) -> Synthesis:
        seen.append((root, Path.cwd(), os.environ.get("GITHUB_SHA")))
        raise RuntimeError("synthesis broke")

    monkeypatch.setattr(plan, "synthesize", broken)
    cwd, environment = Path.cwd(), dict(os.environ)
    inside = run_plan(program_copy, "dev", "--no-diff", env=ENV)
    assert inside.returncode == 1
    assert inside.stderr.startswith("Traceback (most recent call last):")
    assert inside.stderr.endswith("RuntimeError: synthesis broke\n")
    # The plan ran as started in the copy, with its environment; this process's are back afterwards.
    assert seen == [(program_copy, program_copy, ENV["GITHUB_SHA"])]
    assert vars(plan)["ROOT"] == ROOT and Path.cwd() == cwd and dict(os.environ) == environment


def test_it_refuses_a_checkout_with_another_program_or_without_github_sha(program_copy: Path) -> None:
    with pytest.raises(AssertionError, match="set GITHUB_SHA"):
        run_plan(program_copy, "dev", "--no-diff", env={k: v for k, v in os.environ.items() if k != "GITHUB_SHA"})
    with (program_copy / "components" / "__init__.py").open("a") as changed:
        changed.write("# another program\n")
    with pytest.raises(AssertionError, match="another program"):
        run_plan(program_copy, "dev", "--no-diff", env=ENV)


def test_the_in_process_scaffold_puts_back_what_it_set_and_refuses_another_program(program_copy: Path) -> None:
    saved, cwd = (init.scaffold, stack_config.PROJECT_DIR), Path.cwd()
    inside = run_init(program_copy, "--stack", "team", env=ENV)
    assert inside.returncode == 2 and "the following arguments are required: --context" in inside.stderr
    assert (init.scaffold, stack_config.PROJECT_DIR) == saved and Path.cwd() == cwd
    with (program_copy / "gantry" / "init.py").open("a") as changed:
        changed.write("# another program\n")
    with pytest.raises(AssertionError, match="another program"):
        run_init(program_copy, "--stack", "team", env=ENV)

"""One import root: the repository is one installed package, and nothing patches the import path.

`pip install --no-deps --no-build-isolation -e .` (pyproject.toml) makes `components`, `gantry`,
`bootstrap`, `policy`, `worker` (app/worker) and `bench` (app/bench) importable from this checkout in
every interpreter of the virtualenv: the Pulumi program, the bootstrap project (run from bootstrap/),
the policy pack (policy/venv has the same install), the scripts and the tests. A `sys.path` fix would
hide a missing install in one place and import a different checkout in another, so none may return.
The two Pulumi projects share one small contract (components/contract.py); the program never imports the
bootstrap's policy documents.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from bootstrap import documents
from components import contract
from gantry.offline import snapshot_command
from tests.harness import ROOT

SKIPPED_DIRS = {".git", ".venv", "venv", "build", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# Every way of editing the import path from Python code (or from a script handed to `python -c`).
PATH_EDIT = re.compile(
    "|".join(
        (
            r"\bsys\.path\s*\.\s*(?:insert|append|extend|remove|pop|clear)\s*\(",
            r"\bsys\.path\s*(?:\[[^\]]*\]\s*)?\+?=(?!=)",
            r"\bsyspath_prepend\s*\(",
            r"\baddsitedir\s*\(",
        )
    )
)
PROGRAM = ["components", "gantry", "__main__.py"]
PACKAGES = {
    "components": ROOT / "components",
    "gantry": ROOT / "gantry",
    "bootstrap": ROOT / "bootstrap",
    "policy": ROOT / "policy",
    "worker": ROOT / "app" / "worker",
    "bench": ROOT / "app" / "bench",
}


def python_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.py")
        if not SKIPPED_DIRS & set(path.relative_to(root).parts[:-1]) and path != Path(__file__).resolve()
    )


def path_edits(source: str) -> list[str]:
    """The lines of `source` that edit the import path."""
    return [line.strip() for line in source.splitlines() if PATH_EDIT.search(line)]


def bootstrap_imports(source: str) -> list[str]:
    """Every import of the bootstrap project (`bootstrap` or a module of it) in `source`, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "bootstrap" or a.name.startswith("bootstrap.")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "bootstrap" or node.module.startswith("bootstrap."))
        ):
            found.append(node.module)
    return found


def test_no_code_edits_the_import_path() -> None:
    files = python_files()
    assert len(files) > 150, "the walk must see the repository's Python files"
    edits = {str(p.relative_to(ROOT)): e for p in files if (e := path_edits(p.read_text()))}
    assert edits == {}, "the repository is installed (pip install -e .); import from the package instead"


@pytest.mark.parametrize(
    "line",
    [
        "sys.path.insert(0, str(ROOT))",
        "    sys.path.append(APP_DIR)",
        "sys.path[:0] = [str(root)]",
        "sys.path = [root, *sys.path]",
        "sys.path += [root]",
        'monkeypatch.syspath_prepend("app")',
        "site.addsitedir(site_dir)",
        'f"import sys; sys.path.insert(0, {site!r})"',
    ],
)
def test_the_path_check_sees_every_form(line: str) -> None:
    assert path_edits(line) == [line.strip()]


def test_the_path_check_leaves_reading_the_path_alone() -> None:
    assert path_edits("if str(ROOT) in sys.path:\n    print(sys.path[0])\nassert sys.path == before") == []


def test_the_program_imports_nothing_of_the_bootstrap() -> None:
    sources = [p for name in PROGRAM for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))]
    assert len(sources) > 20
    found = {str(p.relative_to(ROOT)): i for p in sources if (i := bootstrap_imports(p.read_text()))}
    assert found == {}, "the program shares only components/contract.py with the bootstrap"


def test_the_bootstrap_import_check_sees_every_form() -> None:
    assert bootstrap_imports("from bootstrap.documents import WORKLOAD_ROLE_PATH") == ["bootstrap.documents"]
    assert bootstrap_imports("import bootstrap.documents as d") == ["bootstrap.documents"]
    assert bootstrap_imports("def f():\n    from bootstrap import documents\n") == ["bootstrap"]
    assert bootstrap_imports("from components.contract import WORKLOAD_ROLE_PATH") == []


def test_the_bootstrap_takes_the_contract_from_the_shared_module() -> None:
    """bootstrap/documents.py declares none of the shared names itself: it re-exports the contract's."""
    tree = ast.parse((ROOT / "bootstrap" / "documents.py").read_text())
    assigned = {
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    shared = {name for name in vars(contract) if name.isupper()}
    assert shared >= {"WORKLOAD_ROLE_PATH", "BOUNDARY_POLICY_NAME", "DELIVERY_ROLE_PATH", "PROGRAM_PREFIX"}
    assert assigned & shared == set()
    assert all(getattr(documents, name) is getattr(contract, name) for name in shared)
    bucket = "arn:aws:s3:::gantry-state-123456789013-eu-west-1"
    assert documents.state_bucket_policy(bucket_arn=bucket)["Statement"] == [contract.tls_only_bucket_statement(bucket)]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_from_this_checkout(package: str) -> None:
    """The install is of this repository, with app/worker as `worker` (pyproject's package-dir)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed: pip install -e ."
    assert Path(spec.origin).resolve() == (PACKAGES[package] / "__init__.py").resolve()


def test_the_offline_engine_refuses_a_checkout_it_would_not_import(tmp_path: Path) -> None:
    """The plan's snapshot of a git ref imports the ref's `components` only because PYTHONPATH names the
    ref's export (gantry.plan.ref_snapshot): without it the engine would synthesise this checkout and
    report no change, so it refuses instead (tests/test_plan.py covers the snapshot with it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(snapshot_command("dev", tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"not from {tmp_path.resolve()}" in result.stderr and "PYTHONPATH=" in result.stderr

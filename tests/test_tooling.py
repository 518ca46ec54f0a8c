"""The repository's own hygiene, enforced by `pytest`: lint, format, types and the dependency locks.

ruff (lint and format) and mypy run as subprocesses with the configuration in pyproject.toml, so the
README's one test command is also the style and type gate. The lock tests read the hash-locked
requirements files offline: every entry carries a sha256, each human-edited `*.in` input is satisfied
by its lock (an edited input that was not re-locked fails here), a package has one version across all
locks (the worker image runs what the tests ran), and no CUDA build of torch or its nvidia-* wheels
can be installed anywhere. Security stance: a dependency enters only as a file whose digest is
committed; the PyTorch CPU index is merely where the digest-pinned torch wheel is fetched from.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# lock -> its human-edited input.
LOCKS = {
    "requirements-dev.txt": "requirements-dev.in",
    "requirements.txt": "requirements.in",
    "app/requirements.txt": "app/requirements.in",
    "app/requirements-build.txt": "app/requirements-build.in",
    "app/requirements-bench.txt": "app/requirements-bench.in",
}
REGENERATE = "python scripts/lock.py"
CUDA_ONLY = re.compile(r"nvidia-.+|cuda-.+|triton|pytorch-triton")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_lint() -> None:
    result = run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, "run `ruff format .`\n" + result.stdout + result.stderr


def test_mypy() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def lock_entries(text: str) -> list[tuple[Requirement, list[str]]]:
    """(requirement, sha256 digests) of each entry of a hash-locked requirements file."""
    entries: list[tuple[Requirement, list[str]]] = []
    for line in re.sub(r" \\\n", " ", text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec = line.partition(" --hash=")[0]
        entries.append((Requirement(spec.strip()), re.findall(r"sha256:([0-9a-f]{64})", line)))
    return entries


def pins(lock: str) -> dict[str, set[str]]:
    """{package: pinned versions} of a lock (torch has one per platform)."""
    found: dict[str, set[str]] = {}
    for requirement, _ in lock_entries((ROOT / lock).read_text()):
        (version,) = (spec.version for spec in requirement.specifier)
        found.setdefault(canonicalize_name(requirement.name), set()).add(version)
    return found


def inputs(path: Path) -> list[Requirement]:
    """The requirements of a `*.in` file, following its `-r` includes."""
    found: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += inputs(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def load_lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_entry_is_an_exact_pin_with_hashes(lock: str) -> None:
    text = (ROOT / lock).read_text()
    assert REGENERATE in text.splitlines()[1], f"{lock}'s header must name the regeneration command"
    entries = lock_entries(text)
    assert entries
    for requirement, digests in entries:
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{lock}: {requirement} is not an exact pin"
        assert digests, f"{lock}: {requirement} has no --hash"


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_each_input_is_satisfied_by_its_lock(lock: str, source: str) -> None:
    locked = pins(lock)
    for requirement in inputs(ROOT / source):
        versions = locked.get(canonicalize_name(requirement.name), set())
        assert any(requirement.specifier.contains(version, prereleases=True) for version in versions), (
            f"{source} asks for {requirement} but {lock} pins {sorted(versions) or 'nothing'}: run `{REGENERATE}`"
        )


@pytest.mark.parametrize("lock", [lock for lock in LOCKS if lock != "requirements-dev.txt"])
def test_a_package_has_the_dev_environments_version_in_every_lock(lock: str) -> None:
    tested = pins("requirements-dev.txt")
    for name, versions in pins(lock).items():
        if name in tested:
            assert versions <= tested[name], f"{lock} pins {name} {versions}, the tests ran {tested[name]}"


@pytest.mark.parametrize("lock", LOCKS)
def test_no_lock_can_install_a_cuda_build(lock: str) -> None:
    cuda = sorted(name for name in pins(lock) if CUDA_ONLY.fullmatch(name))
    assert not cuda, f"{lock} pins CUDA-only distributions: {cuda}"
    for requirement, digests in lock_entries((ROOT / lock).read_text()):
        if canonicalize_name(requirement.name) != "torch":
            continue
        (version,) = (spec.version for spec in requirement.specifier)
        linux = any(
            requirement.marker is None or requirement.marker.evaluate({"sys_platform": "linux", "platform_machine": m})
            for m in ("x86_64", "aarch64")
        )
        if linux:
            assert version.endswith("+cpu"), f"{lock}: torch on Linux must be the +cpu build, not {version}"
            expected = load_lock_script().torch_cpu_digests(version)
            assert len(expected) == 2 and set(expected) <= set(digests), f"{lock}: torch lacks a Linux wheel digest"


def test_the_running_environment_holds_no_cuda_build() -> None:
    names = {canonicalize_name(dist.metadata["Name"]) for dist in metadata.distributions()}
    assert not sorted(name for name in names if CUDA_ONLY.fullmatch(name))
    if sys.platform == "linux":
        assert metadata.version("torch").endswith("+cpu")


LOCK_WITH_ONE_TORCH_HASH = """\
sympy==1.14.0 \\
    --hash=sha256:{other}
    # via torch
torch==2.13.0+cpu ; sys_platform != 'darwin' \\
    --hash=sha256:{x86}
    # via
    #   -r app/requirements-build.in
tqdm==4.70.1 \\
    --hash=sha256:{other}
"""


def test_lock_script_adds_the_recorded_cpu_wheel_digests_uv_could_not_see() -> None:
    script = load_lock_script()
    x86, arm = (
        script.TORCH_CPU_WHEELS[f"torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_{machine}.whl"]
        for machine in ("x86_64", "aarch64")
    )
    lock = LOCK_WITH_ONE_TORCH_HASH.format(other="0" * 64, x86=x86)
    fixed = script.add_torch_cpu_hashes(lock)
    entries = dict((str(requirement), digests) for requirement, digests in lock_entries(fixed))
    assert sorted(entries['torch==2.13.0+cpu; sys_platform != "darwin"']) == sorted([x86, arm])
    assert entries["sympy==1.14.0"] == entries["tqdm==4.70.1"] == ["0" * 64]
    assert "#   -r app/requirements-build.in" in fixed
    assert script.add_torch_cpu_hashes(fixed) == fixed


def test_lock_script_refuses_a_torch_without_recorded_digests() -> None:
    script = load_lock_script()
    lock = LOCK_WITH_ONE_TORCH_HASH.format(other="0" * 64, x86="1" * 64).replace("2.13.0+cpu", "9.9.9+cpu")
    with pytest.raises(SystemExit, match=r"torch 9\.9\.9\+cpu.*TORCH_CPU_WHEELS"):
        script.add_torch_cpu_hashes(lock)


# The directories mypy checks (pyproject.toml [tool.mypy] files), whose pulumi_aws use the type check needs.
TYPED = ["components", "gantry", "__main__.py", "tests", "app/worker", "scripts", "bootstrap", "policy"]


def pulumi_aws_modules_gantry_needs(package: Path) -> set[str]:
    """The mypy module patterns pyproject.toml must follow in pulumi_aws: the package, its top-level
    modules, every service family gantry's code imports or reaches as `aws.<family>`, and the families
    those import (`from .. import iam`), so every pulumi_aws type gantry touches is its real type."""
    import ast

    families = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    used: set[str] = set()
    for entry in TYPED:
        files = [ROOT / entry] if entry.endswith(".py") else sorted((ROOT / entry).rglob("*.py"))
        for path in files:
            if "venv" in path.relative_to(ROOT).parts:
                continue
            tree = ast.parse(path.read_text())
            aliases = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for name in node.names:
                        if name.name == "pulumi_aws":
                            aliases.add(name.asname or name.name)
                        elif name.name.startswith("pulumi_aws."):
                            used.add(name.name.split(".")[1])
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pulumi_aws":
                    parts = (node.module or "").split(".")
                    used.update(parts[1:2] or [n.name for n in node.names if n.name in families])
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                    continue
                if node.value.id in aliases and node.attr in families:
                    used.add(node.attr)
    todo = list(used)
    while todo:
        for path in (package / todo.pop()).rglob("*.py"):
            for family in re.findall(r"^\s*from \.\. import (\w+)", path.read_text(), re.MULTILINE):
                if family in families and family not in used:
                    used.add(family)
                    todo.append(family)
    top = {f"pulumi_aws.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    return {"pulumi_aws", *top, *(f"pulumi_aws.{family}.*" for family in used)}


def test_mypy_follows_every_pulumi_aws_module_gantry_uses() -> None:
    import tomllib

    spec = importlib.util.find_spec("pulumi_aws")
    assert spec is not None and spec.origin is not None
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    followed = {
        module
        for override in overrides
        if override.get("follow_imports") == "normal"
        for module in override["module"]
        if module.split(".")[0] == "pulumi_aws"
    }
    assert any(o.get("follow_imports") == "skip" and o["module"] == ["pulumi_aws.*"] for o in overrides)
    needed = pulumi_aws_modules_gantry_needs(Path(spec.origin).parent)
    assert needed == followed, (
        f"pyproject.toml's pulumi_aws follow list: add {sorted(needed - followed)}, remove {sorted(followed - needed)}"
    )

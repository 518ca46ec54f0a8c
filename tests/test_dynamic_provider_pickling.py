"""The three dynamic providers load the way the dynamic-provider host loads them, and their import paths are pinned.

`pulumi.dynamic.Resource` stores `serialize_provider(provider)` (pulumi/dynamic/dynamic.py: dill.dumps with
recurse=True, base64) in the resource's `__provider` input, so it is in every stack's state. On `update`,
`refresh` and `destroy` the host (`python -u -m pulumi.dynamic`, started by the `pulumi-resource-pulumi-python`
script) runs `dill.loads` on it inside `pulumi.runtime._serialization._deserialize`
(pulumi/dynamic/__main__.py, get_provider). A class defined in an importable module is pickled by reference,
module and class name only (the payload below holds nothing else), so the host must import that module:
`-m` puts the host's working directory first on sys.path ("As with the -c option, the current directory will
be added to the start of sys.path", Python command-line docs), and the Pulumi CLI starts provider plugins in
the program's directory (pulumi/pulumi#5455 describes that pwd for the Node.js host's script), which for this
project is its root (Pulumi.yaml has no `main`); the virtualenv's editable install of the repository
(`pip install -e .`) makes `components` importable from any directory too. The tests load each payload in a
fresh process started elsewhere, with the root on PYTHONPATH and with only the install, and show that a
payload naming a moved module fails to load: what a moved or renamed class does to existing stacks.
"""

from __future__ import annotations

import base64
import json
import os
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.blue_green.provider import BlueGreenDeployProvider
from components.image_tag import RunningImageTagProvider
from components.pre_traffic_provider import PreTrafficTaskProvider
from tests.harness import ROOT

PINNED_IMPORT_PATHS = {
    "blue-green deploy": ("components.blue_green.provider", "BlueGreenDeployProvider"),
    "pre-traffic task": ("components.pre_traffic_provider", "PreTrafficTaskProvider"),
    "running image tag": ("components.image_tag", "RunningImageTagProvider"),
}
"""Part of every deployed stack's state: never change an entry. A provider that must move keeps a
re-export under this path (an import in the old module) for as long as any stack may hold the old state."""

PROVIDERS = {
    "blue-green deploy": BlueGreenDeployProvider,
    "pre-traffic task": PreTrafficTaskProvider,
    "running image tag": RunningImageTagProvider,
}

STATE_CONSEQUENCE = (
    "every existing stack's state holds this import path in the resource's `__provider`; after a rename or "
    "move the dynamic-provider host cannot unpickle it, so `pulumi up` (update), `refresh` and `destroy` of "
    "those stacks fail. Keep the class importable under the pinned path (re-export it from the old module)"
)

# What get_provider in pulumi/dynamic/__main__.py does with `props["__provider"]`, in a fresh interpreter.
HOST_LOAD = """
import base64, json, sys
import dill
from pulumi.runtime._serialization import _deserialize
provider = _deserialize(lambda: dill.loads(base64.b64decode(sys.stdin.read())))
print(json.dumps([type(provider).__module__, type(provider).__qualname__, callable(provider.create)]))
"""


def class_reference(payload: str) -> tuple[str, str]:
    """The (module, name) the payload's STACK_GLOBAL imports for the provider's class (the first global)."""
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(base64.b64decode(payload)):
        if opcode.name == "STACK_GLOBAL":
            module, name = strings[-2:]
            return module, name
        if isinstance(arg, str):
            strings.append(arg)
    raise AssertionError("the payload imports no class: it is not a by-reference pickle")


def load_in_host(payload: str, *, cwd: Path, pythonpath: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-c", HOST_LOAD], input=payload, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def payloads() -> dict[str, str]:
    return {role: serialize_provider(cls()) for role, cls in PROVIDERS.items()}


@pytest.mark.parametrize("role", sorted(PINNED_IMPORT_PATHS))
def test_the_serialized_provider_references_its_pinned_import_path(role, payloads):
    reference = class_reference(payloads[role])
    assert reference == PINNED_IMPORT_PATHS[role], f"{role} provider is now pickled as {reference}: {STATE_CONSEQUENCE}"
    # By reference, not by value: the payload carries no code that would let the host do without the module.
    assert b"_create_type" not in base64.b64decode(payloads[role])


@pytest.mark.parametrize("role", sorted(PINNED_IMPORT_PATHS))
def test_the_host_loads_each_provider_from_outside_the_project_with_the_root_on_its_path(role, payloads, tmp_path):
    assert tmp_path.resolve() != ROOT.resolve() and not (tmp_path / "components").exists()
    loaded = load_in_host(payloads[role], cwd=tmp_path, pythonpath=ROOT)
    assert loaded.returncode == 0, f"{role}: {loaded.stderr[-2000:]}\n{STATE_CONSEQUENCE}"
    module, name, has_create = json.loads(loaded.stdout)
    assert (module, name) == PINNED_IMPORT_PATHS[role], STATE_CONSEQUENCE
    assert has_create


@pytest.mark.parametrize("role", sorted(PINNED_IMPORT_PATHS))
def test_the_installed_repository_lets_the_host_load_it_from_anywhere(role, payloads, tmp_path):
    """No PYTHONPATH and no project directory: the virtualenv's install of the repository is enough."""
    loaded = load_in_host(payloads[role], cwd=tmp_path, pythonpath=None)
    assert loaded.returncode == 0, f"{role}: {loaded.stderr[-2000:]}\n(is the repository installed? pip install -e .)"
    assert tuple(json.loads(loaded.stdout)[:2]) == PINNED_IMPORT_PATHS[role]
    # The same process started where the CLI starts it, the project root, loads it too.
    at_root = load_in_host(payloads[role], cwd=ROOT, pythonpath=None)
    assert at_root.returncode == 0, at_root.stderr[-2000:]


@pytest.mark.parametrize("role", sorted(PINNED_IMPORT_PATHS))
def test_a_payload_naming_a_moved_module_cannot_be_loaded(role, payloads, tmp_path):
    """What a move does to a stack's state: the stored payload names the old module, which is gone."""
    module = PINNED_IMPORT_PATHS[role][0].encode()
    # Same length, so the pickle's length-prefixed string stays well formed.
    moved = module[:-1] + (b"_" if module[-1:] != b"_" else b"x")
    payload = base64.b64encode(base64.b64decode(payloads[role]).replace(module, moved, 1)).decode()
    assert class_reference(payload)[0] == moved.decode()
    loaded = load_in_host(payload, cwd=ROOT, pythonpath=ROOT)
    assert loaded.returncode != 0
    assert f"No module named '{moved.decode()}'" in loaded.stderr


def test_every_dynamic_provider_in_the_program_is_pinned() -> None:
    """A new provider enters the state of every stack that uses it on its first `up`: pin it here then."""
    import ast

    found = set()
    for path in (ROOT / "components").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("ResourceProvider") for b in node.bases):
                found.add((module, node.name))
    assert found == set(PINNED_IMPORT_PATHS.values())

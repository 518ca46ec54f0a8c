"""The import direction inside `components/`: settings at the ground, shared modules above them, then the
families, each importing only what stands below it.

The layering (lowest first; a module may import its own room and any room of a lower layer, never a peer
of its own layer nor anything above):

    0  settings/                      validated config and pure maths (timing, traffic); imports no component
    1  shared top-level modules       env (AwsEnv, gantry_role), policies, private_bucket, quotas, provider_runtime,
                                      stack_config, image_tag, pre_traffic, pre_traffic_provider
    2  network/, observability/       peers: neither imports the other
    3  workload/                      the service needs the VPC's handles
    4  edge/                          the load balancer produces what the service and its scaling declare
    5  batch/, blue_green/            peers: each builds on the workload (and batch on observability)

What this guards: one tie against that direction (a settings module importing a component, as
settings/deployment.py once imported blue_green/alarms.py) turns the whole folder into a circle, and the
families stop being readable one at a time. Every import is read from the source with `ast`, function-level
imports included, so a lazy import cannot hide a tie.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
SHARED = "shared"
# The contract both Pulumi projects share (role paths, boundary name, transport policy): plain names and
# pure documents that import no component, so everything may stand on it, settings included.
CONTRACT = "contract"
LAYERS = {
    CONTRACT: -1,
    "settings": 0,
    SHARED: 1,
    "network": 2,
    "observability": 2,
    "workload": 3,
    "edge": 4,
    "batch": 5,
    "blue_green": 5,
}


@dataclass(frozen=True)
class Tie:
    importer: str
    """The importing module's path, from components/."""
    imported: str
    """The imported module, dotted."""


def room(module: str) -> str:
    """The room of a dotted `components.` module: its family folder, or `shared` for a top-level module."""
    parts = module.split(".")
    if module == f"components.{CONTRACT}":
        return CONTRACT
    if len(parts) > 2 and (COMPONENTS / parts[1]).is_dir():
        return parts[1]
    if len(parts) == 2 and (COMPONENTS / parts[1]).is_dir():
        return parts[1]  # the package itself (`from components.settings import ...`)
    return SHARED


def imports_of(path: Path) -> list[str]:
    """Every `components` module the file imports, at module level or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("components.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "components":
                found += [f"components.{a.name}" for a in node.names]
            elif node.module.startswith("components."):
                found.append(node.module)
    return found


def room_of_file(path: Path) -> str:
    relative = path.relative_to(COMPONENTS)
    if relative.parts == (f"{CONTRACT}.py",):
        return CONTRACT
    return relative.parts[0] if len(relative.parts) > 1 else SHARED


def ties() -> list[Tie]:
    return [
        Tie(str(path.relative_to(COMPONENTS)), module)
        for path in sorted(COMPONENTS.rglob("*.py"))
        if path.name != "__init__.py" or room_of_file(path) != SHARED
        for module in imports_of(path)
    ]


def against_the_layering(all_ties: list[Tie]) -> list[str]:
    """Each tie that runs sideways or up, as `importer -> imported (room -> room)`."""
    wrong = []
    for tie in all_ties:
        source, target = room_of_file(COMPONENTS / tie.importer), room(tie.imported)
        if source != target and LAYERS[target] >= LAYERS[source]:
            wrong.append(f"{tie.importer} -> {tie.imported} ({source} -> {target})")
    return wrong


def test_every_folder_of_components_has_a_layer() -> None:
    folders = {p.name for p in COMPONENTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS) - {SHARED, CONTRACT}


def test_no_settings_module_imports_a_component() -> None:
    settings = [t for t in ties() if t.importer.startswith("settings/")]
    assert settings, "the settings modules import each other"
    # The contract is not a component: names and pure documents, importing nothing of components/.
    assert [f"{t.importer} -> {t.imported}" for t in settings if room(t.imported) not in ("settings", CONTRACT)] == []


def test_the_contract_imports_nothing_of_components() -> None:
    assert [t.imported for t in ties() if t.importer == f"{CONTRACT}.py"] == []


def test_families_import_only_what_stands_below_them() -> None:
    assert against_the_layering(ties()) == []


def test_a_tie_sideways_or_up_is_reported() -> None:
    """The checker itself: a peer, an upward and a settings-to-component tie are each found; a downward one is not."""
    made_up = [
        Tie("network/vpc.py", "components.observability.alarms"),
        Tie("workload/service.py", "components.edge.load_balancer"),
        Tie("settings/deployment.py", "components.blue_green.appspec"),
        Tie("env.py", "components.workload.roles"),
        Tie("edge/distribution.py", "components.workload.service"),
    ]
    assert against_the_layering(made_up) == [
        "network/vpc.py -> components.observability.alarms (network -> observability)",
        "workload/service.py -> components.edge.load_balancer (workload -> edge)",
        "settings/deployment.py -> components.blue_green.appspec (settings -> blue_green)",
        "env.py -> components.workload.roles (shared -> workload)",
    ]

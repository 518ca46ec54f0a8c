"""The worker's import graph has no cycle (issue 20: api ↔ batch_api ↔ batch_format ↔ batch_store was one).

The graph is read from the sources with `ast`, every import counted wherever it stands — module
level, inside a function (the API's lazy batch imports) or under `if TYPE_CHECKING:` — because a
cycle through a lazy or type-only import is still two modules that cannot be understood, tested or
moved apart, and a lazy import can turn into a real one in any later edit.
"""

from __future__ import annotations

import ast
from pathlib import Path

WORKER_DIR = Path(__file__).resolve().parent.parent / "worker"


def worker_imports(source: str) -> set[str]:
    """The `worker.*` modules one module's source imports (`from worker import logs` is `worker.logs`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("worker."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module == "worker":
                found.update(f"worker.{alias.name}" for alias in node.names)
            elif node.module.startswith("worker."):
                found.add(node.module)
    return found


def import_graph(directory: Path) -> dict[str, set[str]]:
    modules = {f"worker.{path.stem}": path for path in sorted(directory.glob("*.py")) if path.stem != "__init__"}
    return {name: worker_imports(path.read_text()) & set(modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a closed path of module names, or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_worker_import_graph_has_no_cycle() -> None:
    graph = import_graph(WORKER_DIR)
    # The graph is real: the modules of the former circle are in it and still import their errors.
    assert {"worker.api", "worker.batch_api", "worker.batch_format", "worker.batch_store"} <= set(graph)
    assert "worker.errors" in graph["worker.batch_api"]
    cycle = find_cycle(graph)
    assert cycle is None, "worker import cycle: " + " -> ".join(cycle or [])


def test_errors_imports_nothing_of_the_worker() -> None:
    assert import_graph(WORKER_DIR)["worker.errors"] == set()


def test_the_reader_sees_lazy_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from worker import logs\n"
        "if TYPE_CHECKING:\n    from worker.batch_api import BatchApi\n"
        "def start():\n    import worker.batch_store\n"
    )
    assert worker_imports(source) == {"worker.logs", "worker.batch_api", "worker.batch_store"}


def test_find_cycle_names_the_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

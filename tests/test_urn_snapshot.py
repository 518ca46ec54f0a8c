"""Zero replacement: every resource identity of both committed stacks survives, as itself or through an alias.

Pulumi keys state on the URN: stack, project, the type chain of the resource's parents, its type token and
its logical name (Pulumi docs, "Resource names" / URNs). A URN the program no longer produces is a delete
of the old resource and a create of a new one, unless a resource that is produced names the old identity
in `aliases` ("Aliases", Pulumi resource options docs); the engine also gives every child the aliases of
its parents, so renaming a component's type token with `Alias(type_=...)` carries its children too.

tests/snapshots/urns-<stack>.json holds the URNs (and parent URNs) both committed stacks had before the
components moved into family folders (issue 20), synthesised offline (`gantry.offline.synthesize`).
Regenerate it only from a commit whose URNs are the deployed ones, never to make this test pass after a
rename (that needs an alias), from the repository root:

    PYTHONPATH=. .venv/bin/python tests/test_urn_snapshot.py [dev prod]

The mocks engine prefixes a URN with its parent's last type only and puts `pulumi:pulumi:Stack` in the
chain of top-level resources; the engine's URNs (resource/urn.go: the parent's whole qualified type, the
root stack left out) are rebuilt here from each resource's type, name and parent chain, so the snapshot
holds the identities a deployed stack's state holds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from gantry.offline import Graph, Res, synthesize

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
STACKS = ("dev", "prod")
PROJECT = "gantry"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def snapshot_path(stack: str) -> Path:
    return SNAPSHOTS / f"urns-{stack}.json"


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def engine_urn(stack: str, typ: str, name: str, parent: str | None) -> str:
    """The URN the engine gives a resource: its parent's qualified type, then `$`, then its own type."""
    if parent is not None and qualified_type(parent) != ROOT_STACK_TYPE:
        typ = f"{qualified_type(parent)}${typ}"
    return f"urn:pulumi:{stack}::{PROJECT}::{typ}::{name}"


class Identities:
    """Engine URNs of a synthesised graph, and every URN each resource answers to through aliases."""

    def __init__(self, stack: str, graph: Graph):
        self.stack = stack
        self._by_mock_urn = {r.urn: r for r in graph.resources}
        self.resources = graph.resources

    def _parent(self, res: Res) -> Res | None:
        parent = res.opts.parent
        return self._by_mock_urn.get(parent) if parent else None

    def urn(self, res: Res) -> str:
        parent = self._parent(res)
        return engine_urn(self.stack, res.typ, res.name, self.urn(parent) if parent else None)

    def _as_engine_urn(self, urn: str) -> str:
        # A parent passed as a live resource arrives as the mocks' URN; one built with create_urn is already
        # the engine's.
        live = self._by_mock_urn.get(urn)
        return self.urn(live) if live is not None else urn

    def answers_to(self, res: Res) -> set[str]:
        """The resource's URN and every URN its aliases and its parents' aliases name."""
        parent = self._parent(res)
        parents: list[str | None] = [None]
        if parent is not None:
            parents = [*sorted(self.answers_to(parent))]
        names = {engine_urn(self.stack, res.typ, res.name, p) for p in parents}
        for alias in res.opts.aliases:
            if alias.urn:
                names.add(alias.urn)
                continue
            spec = alias.spec
            typ, name = spec.type or res.typ, spec.name or res.name
            if spec.parentUrn:
                names.add(engine_urn(self.stack, typ, name, self._as_engine_urn(spec.parentUrn)))
            elif spec.noParent:
                names.add(engine_urn(self.stack, typ, name, None))
            else:
                names.update(engine_urn(self.stack, typ, name, p) for p in parents)
        return names

    def snapshot(self) -> list[dict[str, str | None]]:
        entries = []
        for res in self.resources:
            parent = self._parent(res)
            entries.append({"urn": self.urn(res), "parent": self.urn(parent) if parent else None})
        return sorted(entries, key=lambda e: str(e["urn"]))


def uncovered(old: Iterable[str], now: Identities) -> list[str]:
    """The old URNs no current resource answers to: each one a delete (and, if re-created, a replace)."""
    covered = set().union(*(now.answers_to(r) for r in now.resources))
    return sorted(set(old) - covered)


def synthesised(stack: str) -> Identities:
    return Identities(stack, synthesize(stack, ROOT).graph)


@pytest.mark.parametrize("stack", STACKS)
def test_every_previous_urn_is_still_produced_or_aliased(stack: str) -> None:
    old = [entry["urn"] for entry in json.loads(snapshot_path(stack).read_text())]
    assert len(old) > 100, "the snapshot lists the whole stack"
    assert uncovered(old, synthesised(stack)) == []


def test_an_alias_covers_a_renamed_parent_and_its_children() -> None:
    """The resolver itself: a type rename with an alias covers the old URNs of the component and its child."""
    assert engine_urn("dev", "aws:lb/listener:Listener", "a-l", "urn:pulumi:dev::gantry::gantry:lb:Old::a") == (
        "urn:pulumi:dev::gantry::gantry:lb:Old$aws:lb/listener:Listener::a-l"
    )
    assert engine_urn("dev", "gantry:lb:New", "a", "urn:pulumi:dev::gantry::pulumi:pulumi:Stack::gantry-dev") == (
        "urn:pulumi:dev::gantry::gantry:lb:New::a"
    )


def main(stacks: list[str]) -> int:
    SNAPSHOTS.mkdir(exist_ok=True)
    for stack in stacks or STACKS:
        snapshot_path(stack).write_text(json.dumps(synthesised(stack).snapshot(), indent=1) + "\n")
        print(f"wrote {snapshot_path(stack).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

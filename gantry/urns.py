"""Resource identities as a deployed stack's state holds them: engine URNs and what aliases carry over.

Pulumi keys state on the URN: stack, project, the type chain of the resource's parents, its type token and
its logical name (Pulumi docs, "Resource names" / URNs). A URN the program no longer produces is a delete
of the old resource and a create of a new one, unless a resource that is produced names the old identity
in `aliases` ("Aliases", Pulumi resource options docs); the engine also gives every child the aliases of
its parents, so renaming a component's type token with `Alias(type_=...)` carries its children too.

The mocks engine prefixes a URN with its parent's last type only and puts `pulumi:pulumi:Stack` in the
chain of top-level resources; the engine's URNs (resource/urn.go: the parent's whole qualified type, the
root stack left out) are rebuilt here from each resource's type, name and parent chain. The offline plan
(`gantry.offline.snapshot`, `gantry.plan.diff`) and the URN snapshot test both read identities from here.
Security stance: pure functions of names and types; no input value is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # gantry.offline builds its snapshot from this module
    from gantry.offline import Graph, Res

PROJECT = "gantry"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


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
        self._candidates: dict[str, list[str]] = {}

    def _parent(self, res: Res) -> Res | None:
        parent = res.opts.parent
        return self._by_mock_urn.get(parent) if parent else None

    def urn(self, res: Res) -> str:
        parent = self._parent(res)
        return engine_urn(self.stack, res.typ, res.name, self.urn(parent) if parent else None)

    def parent_urn(self, res: Res) -> str | None:
        parent = self._parent(res)
        return self.urn(parent) if parent else None

    def _as_engine_urn(self, urn: str) -> str:
        # A parent passed as a live resource arrives as the mocks' URN; one built with create_urn is already
        # the engine's.
        live = self._by_mock_urn.get(urn)
        return self.urn(live) if live is not None else urn

    def answers_to(self, res: Res) -> frozenset[str]:
        """The resource's URN and every URN its aliases and its parents' aliases name."""
        return frozenset(self.candidates(res))

    def aliases(self, res: Res) -> list[str]:
        """The earlier URNs the resource carries over, in the order the engine tries them."""
        return self.candidates(res)[1:]

    def candidates(self, res: Res) -> list[str]:
        """Its own URN, then its aliases in the engine's order (pkg/resource/deploy/step_generator.go,
        `generateAliases`): its own aliases under its parent, then for each alias of its parent its name and
        each of its aliases under that parent. The engine takes the first one the old state holds."""
        if res.urn not in self._candidates:
            parent = self._parent(res)
            here = self.urn(parent) if parent else None
            found = [self.urn(res), *(self._collapse(res, alias, here) for alias in res.opts.aliases)]
            for earlier in self.aliases(parent) if parent else []:
                found.append(engine_urn(self.stack, res.typ, res.name, earlier))
                found += [self._collapse(res, alias, earlier) for alias in res.opts.aliases]
            self._candidates[res.urn] = list(dict.fromkeys(found))
        return self._candidates[res.urn]

    def _collapse(self, res: Res, alias: Any, parent: str | None) -> str:
        """The URN one alias (the SDK's `Alias` message: a URN, or a spec of what changed) names under `parent`."""
        if alias.urn:
            return str(alias.urn)
        spec = alias.spec
        typ, name = spec.type or res.typ, spec.name or res.name
        if spec.parentUrn:
            return engine_urn(self.stack, typ, name, self._as_engine_urn(spec.parentUrn))
        return engine_urn(self.stack, typ, name, None if spec.noParent else parent)

    def snapshot(self) -> list[dict[str, str | None]]:
        entries = [{"urn": self.urn(res), "parent": self.parent_urn(res)} for res in self.resources]
        return sorted(entries, key=lambda e: str(e["urn"]))


def uncovered(old: Iterable[str], now: Identities) -> list[str]:
    """The old URNs no current resource answers to: each one a delete (and, if re-created, a replace)."""
    covered = set().union(*(now.answers_to(r) for r in now.resources))
    return sorted(set(old) - covered)

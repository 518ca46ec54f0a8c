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

The URNs are the engine's, rebuilt from the mocks' graph by `gantry.urns`, which the offline plan's diff
also reads identities from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gantry.offline import synthesize
from gantry.urns import Identities, engine_urn, uncovered

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
STACKS = ("dev", "prod")


def snapshot_path(stack: str) -> Path:
    return SNAPSHOTS / f"urns-{stack}.json"


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

"""The redesign replaced nothing: the offline plan of both committed stacks against the pre-redesign commit.

Issue 20 moved the components into family folders and renamed `PublicLoadBalancer` to
`ServiceLoadBalancer` with an alias, and requires that the offline plan of both committed stacks against
the previous commit shows zero replaced or deleted resources. A resource the engine would delete shows in
the plan as removed; one it would replace because its identity changed shows as removed and added. The
plan has no other notion of replacement: which changed inputs force one is the provider's schema (its
plugin binary, not the Python SDK), so the plan lists changed input keys and leaves that judgement to a
real preview. Zero removed is therefore what this test holds, with the rename carried by its alias.

The pre-redesign commit is PRE_REDESIGN, main before the round of merges that made the redesign (issue
20). Its snapshot is synthesised by this checkout's engine (`gantry.plan.ref_snapshot`, a `git archive`
in a fresh interpreter, ~20 s a stack) and cached per commit, stack, engine source and package versions
under pytest's cache directory, behind a file lock so parallel workers (pytest-xdist) neither race nor
repeat it. A shallow clone lacks the commit and skips with the reason; a full clone (CI's `git clone`)
must have it, so there a missing commit fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from gantry import plan
from gantry.offline import ROOT, run_component, snapshot, synthesize

PRE_REDESIGN = "c19e72b91fe283b6cda85f169c2388be8bcdb489"
STACKS = ("dev", "prod")
RENAMED_FROM, RENAMED_TO = "gantry:lb:PublicLoadBalancer", "gantry:lb:ServiceLoadBalancer"
ENGINE = sorted((ROOT / "gantry").glob("*.py"))
PACKAGES = ("pulumi", "pulumi_aws", "pulumi_awsx", "pulumi_docker_build")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


def pre_redesign_commit() -> str:
    """PRE_REDESIGN when this clone has it; a skip in a shallow clone, a failure in a full one."""
    if _git("cat-file", "-e", f"{PRE_REDESIGN}^{{commit}}").returncode == 0:
        return PRE_REDESIGN
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip(f"shallow clone: the pre-redesign commit {PRE_REDESIGN[:12]} is not here (git fetch --unshallow)")
    pytest.fail(f"the pre-redesign commit {PRE_REDESIGN[:12]} is missing from a full clone: history was rewritten")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cache_key(commit: str, stack: str) -> str:
    """What the ref's snapshot depends on: its tree (the commit), the engine that synthesises it (gantry/),
    the SDKs and the interpreter."""
    digest = hashlib.sha256(f"{commit}\0{stack}\0{sys.version}".encode())
    for package in PACKAGES:
        digest.update(f"\0{package}={_version(package)}".encode())
    for path in ENGINE:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{stack}-{commit[:12]}-{digest.hexdigest()[:16]}"


def cached_ref_snapshot(cache: Path, commit: str, stack: str) -> list[dict[str, Any]]:
    """`plan.ref_snapshot`, computed once per key: the first worker takes the lock and writes the file
    atomically, the others wait on the lock and read it."""
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(commit, stack)
    target = cache / f"{key}.json"
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            before = plan.ref_snapshot(ROOT, commit, stack)
            assert before is not None, f"{commit[:12]} has Pulumi.{stack}.yaml"
            partial = cache / f"{key}.{os.getpid()}.tmp"
            partial.write_text(json.dumps(before))
            os.replace(partial, target)
    loaded: list[dict[str, Any]] = json.loads(target.read_text())
    return loaded


@pytest.fixture
def ref_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("gantry-ref-snapshots") if cache is not None else tmp_path_factory.mktemp("ref-snapshots")


@pytest.mark.parametrize("stack", STACKS)
def test_the_plan_against_the_pre_redesign_commit_removes_and_replaces_nothing(stack: str, ref_cache: Path) -> None:
    before = cached_ref_snapshot(ref_cache, pre_redesign_commit(), stack)
    after = snapshot(synthesize(stack, ROOT).graph, stack)
    assert len(before) > 100 and len(after) > 100, "both snapshots hold the whole stack"
    added, removed, changed = plan.diff(before, after)
    assert removed == [], f"deleted or replaced against {PRE_REDESIGN[:12]}: {removed}"
    # The rename is paired through its alias (the component and, inheriting it, each child), not re-created.
    pairs = plan.matches(before, after)
    renamed = {new: old for new, old in pairs.items() if new != old}
    assert any(RENAMED_TO in new and RENAMED_FROM in old for new, old in renamed.items()), renamed
    assert all(RENAMED_TO in new and old == new.replace(RENAMED_TO, RENAMED_FROM) for new, old in renamed.items())
    assert not [name for name, typ in added if typ == RENAMED_TO]


# ------------------------------------------------------------------------------------------------------
# The alias-aware diff on a component of its own (no stack, no git)


class _Box(pulumi.ComponentResource):
    def __init__(self, typ: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(typ, "box", None, opts)
        aws.sns.Topic("box-topic", opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def _snapshot_of(typ: str, opts: pulumi.ResourceOptions | None = None) -> list[dict[str, Any]]:
    return snapshot(run_component(lambda: _Box(typ, opts)), "test")


def test_a_type_rename_with_an_alias_is_the_same_component_and_children() -> None:
    before = _snapshot_of("gantry:test:Old")
    after = _snapshot_of("gantry:test:New", pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="gantry:test:Old")]))
    topic = next(r for r in after if r["name"] == "box-topic")
    # The engine's URN (the parent's qualified type chain) and the child's inherited alias.
    assert topic["urn"] == "urn:pulumi:test::gantry::gantry:test:New$aws:sns/topic:Topic::box-topic"
    assert topic["aliases"] == ["urn:pulumi:test::gantry::gantry:test:Old$aws:sns/topic:Topic::box-topic"]
    assert plan.diff(before, after) == ([], [], [])


def test_a_type_rename_without_an_alias_is_a_delete_and_a_create() -> None:
    before = _snapshot_of("gantry:test:Old")
    after = _snapshot_of("gantry:test:New")
    added, removed, _ = plan.diff(before, after)
    assert removed == [("box", "gantry:test:Old"), ("box-topic", "aws:sns/topic:Topic")]
    assert added == [("box", "gantry:test:New"), ("box-topic", "aws:sns/topic:Topic")]


class _Pair(pulumi.ComponentResource):
    """Two children that may each take the other's name (as the load balancer's target groups do), green first."""

    def __init__(self, typ: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(typ, "pair", None, opts)
        for role, other in (("green", "blue"), ("blue", "green")):
            swap = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"pair-{other}")])
            aws.sns.Topic(f"pair-{role}", opts=swap)
        self.register_outputs({})


def test_a_child_keeps_its_own_name_under_a_renamed_parent_before_a_sibling_it_aliases() -> None:
    """The engine tries a child's own aliases under its current parent, then its name under each of the
    parent's aliases: green finds its own old state, not blue's (a sorted order would give it blue's)."""
    before = snapshot(run_component(lambda: _Pair("gantry:test:Old")), "test")
    renamed = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="gantry:test:Old")])
    after = snapshot(run_component(lambda: _Pair("gantry:test:New", renamed)), "test")
    pairs = plan.matches(before, after)
    assert len(pairs) == 3
    assert all(new.rsplit("::", 1)[1] == old.rsplit("::", 1)[1] for new, old in pairs.items()), pairs


def _entry(urn: str, aliases: list[str] | None = None, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    entry = {"urn": urn, "type": "aws:t:T", "name": urn, "parent": "", "inputs": inputs or {}, "secretInputs": []}
    return entry if aliases is None else {**entry, "aliases": aliases}


def test_an_aliased_resource_with_new_inputs_is_changed_and_an_old_identity_is_taken_once() -> None:
    before = [_entry("old", inputs={"x": "1"}), _entry("kept")]
    # `kept` keeps its own state even though `second` names it; `second` then takes nothing and is new.
    after = [_entry("new", ["old"], {"x": "2"}), _entry("kept"), _entry("second", ["kept", "old"])]
    added, removed, changed = plan.diff(before, after)
    assert removed == [] and added == [("second", "aws:t:T")]
    assert changed == [plan.Changed(name="new", type="aws:t:T", inputs=("x",))]

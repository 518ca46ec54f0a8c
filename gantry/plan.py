"""Offline plan: what a stack would deploy, judged by the policy pack, and what changed against a git ref.

`python -m gantry.plan dev [--against REF] [--json] [--policy-config FILE]` runs the stack's program
under the mocks engine (`gantry.offline`), then prints, as Markdown for a pull-request comment (or as
JSON): the resources grouped by the component that owns them (parent chain), the verdict of every
policy-pack rule (the very functions CrossGuard runs, `policy/rules.py`, at the levels the pack's
config gives them), and the resources added, removed and changed against REF (default `origin/main`,
else `main`), which is synthesised from `git archive` in a fresh interpreter. It is what the pull-request
workflow posts for a fork's pull request, which gets no cloud credentials, and what a reviewer without
AWS access runs locally. Security stance: it needs no credentials and reaches no network; it prints
names, types and the *keys* of changed inputs, never an input value, marks secret inputs as such, and
scrubs every secret config string from its output as a last guard. Exit status: 0 planned and every
mandatory rule passes, 1 a mandatory rule has findings, 2 no plan: a usage or git error, a stack file the
Pulumi CLI would not read, or a config the program refuses (as `pulumi preview` would), its message on
stderr and no traceback. The stack file is read as the CLI reads it (`gantry.offline.stack_config`): a key
without a namespace is the project's, and a `secure:` value runs as a recognisable stand-in
(`offline-stand-in-...`), never a real secret.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gantry.cost import CostError, Estimate, budget_shortfall, estimate
from gantry.offline import (
    ROOT,
    ConfigRefused,
    Graph,
    StackFileError,
    Synthesis,
    snapshot,
    snapshot_command,
    stack_config,
    synthesize,
)
from policy.rules import DEFAULT_PRODUCTION_STACKS, RULES, Resource, evaluate, is_production

Level = Literal["mandatory", "advisory", "disabled"]
LEVELS: tuple[Level, ...] = ("mandatory", "advisory", "disabled")
DEFAULT_REFS = ("origin/main", "main")
EXIT_OK, EXIT_MANDATORY, EXIT_ERROR = 0, 1, 2
# `python -m gantry.offline` exits with this when the ref has no such stack file (a stack the change adds).
EXIT_NO_STACK = 3
URN = re.compile(r"urn:pulumi:[^\s:]+::[^\s:]+::[^\s]*?::([^\s:]+)")
SECRET_MARK = "[secret]"


class PlanError(Exception):
    """A usage or git problem: no plan could be made (exit 2)."""


# ---------------------------------------------------------------------------------------------------------
# Resources by component


@dataclass(frozen=True)
class Group:
    """The resources one component registered directly (nested components form their own groups)."""

    path: tuple[str, ...]
    """Component names from the stack down to this one; () for resources registered at the stack."""
    type: str
    resources: tuple[tuple[str, str], ...]
    """(name, type) of each direct child that is not itself a component."""


def _is_component(typ: str) -> bool:
    # awsx components run in their own provider: under mocks they are leaves (their children are invisible).
    return typ.startswith("gantry:")


def groups(graph: Graph) -> list[Group]:
    """Resources grouped by their nearest component ancestor, sorted by component chain and name."""
    by_urn = {r.urn: r for r in graph.resources}

    def path(urn: str) -> tuple[str, ...]:
        chain: list[str] = []
        while urn in by_urn:
            chain.append(by_urn[urn].name)
            urn = by_urn[urn].opts.parent
        return tuple(reversed(chain))

    members: dict[str, list[tuple[str, str]]] = {"": []}
    for r in graph.resources:
        if _is_component(r.typ):
            members.setdefault(r.urn, [])
        owner = r.opts.parent if r.opts.parent in by_urn else ""
        if not _is_component(r.typ):
            members.setdefault(owner, []).append((r.name, r.typ))
    out = [Group(path=(), type="pulumi:pulumi:Stack", resources=tuple(sorted(members[""])))] if members[""] else []
    out += [
        Group(path=path(urn), type=by_urn[urn].typ, resources=tuple(sorted(resources)))
        for urn, resources in members.items()
        if urn
    ]
    # Registration order varies between runs (outputs resolve concurrently); a comment should not.
    return sorted(out, key=lambda g: (g.path, g.type))


# ---------------------------------------------------------------------------------------------------------
# Policy verdicts


@dataclass(frozen=True)
class Verdict:
    rule: str
    description: str
    level: Level
    findings: tuple[str, ...]


def policy_levels(config: Mapping[str, Any] | None) -> dict[str, Level]:
    """Each rule's level: the pack's default, changed as `--policy-pack-config` would change it."""
    levels: dict[str, Level] = {r.name: "mandatory" if r.mandatory else "advisory" for r in RULES}
    for rule, level in (config or {}).items():
        if rule not in levels:
            raise PlanError(f"policy config names no rule {rule!r}; rules: {', '.join(levels)}")
        if level not in LEVELS:
            raise PlanError(f"policy config gives {rule!r} level {level!r}; allowed: {', '.join(LEVELS)}")
        levels[rule] = level
    return levels


def as_policy_resources(graph: Graph) -> list[Resource]:
    """The graph as CrossGuard shows a stack: camelCase inputs plus the outputs that identify a resource."""
    return [
        Resource(
            type=r.typ,
            urn=r.urn,
            props={**r.inputs, **{k: r.outputs[k] for k in ("id", "arn") if k in r.outputs}},
            property_dependencies=r.opts.property_dependencies,
        )
        for r in graph.resources
    ]


def verdicts(graph: Graph, levels: Mapping[str, Level]) -> list[Verdict]:
    """Every rule of the pack on the stack, production rules applying to the pack's production stacks."""
    resources = as_policy_resources(graph)
    found = evaluate(resources, is_production(resources, DEFAULT_PRODUCTION_STACKS))
    return [
        Verdict(
            rule=r.name,
            description=r.description,
            level=levels[r.name],
            findings=() if levels[r.name] == "disabled" else tuple(URN.sub(r"\1", m) for m in found[r.name]),
        )
        for r in RULES
    ]


# ---------------------------------------------------------------------------------------------------------
# Changes against a ref


@dataclass(frozen=True)
class Changed:
    name: str
    type: str
    inputs: tuple[str, ...]
    """Input keys added, removed or with another value; a secret one is marked, never shown."""


@dataclass(frozen=True)
class Diff:
    against: str
    commit: str = ""
    added: tuple[tuple[str, str], ...] = ()
    removed: tuple[tuple[str, str], ...] = ()
    changed: tuple[Changed, ...] = ()
    note: str = ""
    """Why the comparison is partial or missing (the ref lacks the stack, or could not be synthesised)."""


def matches(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """new URN -> the old URN it takes over, as the engine pairs them: a resource keeps the state of its own
    URN, else of the first of its `aliases` (own or inherited from a parent) the old state holds; an old
    resource goes to one new resource only. Aliased means the same resource: changed at most, never a
    delete and a create (Pulumi docs, resource option `aliases`)."""
    old = {r["urn"] for r in before}
    taken: dict[str, str] = {r["urn"]: r["urn"] for r in after if r["urn"] in old}
    claimed = set(taken.values())
    for r in after:
        if r["urn"] in taken:
            continue
        # An entry without `aliases` (a snapshot written by hand) matches by its URN alone.
        found = next((a for a in r.get("aliases", ()) if a in old and a not in claimed), None)
        if found is not None:
            taken[r["urn"]] = found
            claimed.add(found)
    return taken


def diff(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> tuple[list, list, list]:
    """(added, removed, changed) between two snapshots, by URN (which holds type, name and parent chain)
    and the earlier URNs a resource carries over through `aliases` (`matches`)."""
    old = {r["urn"]: r for r in before}
    pairs = matches(before, after)
    kept = set(pairs.values())
    added = [(r["name"], r["type"]) for r in after if r["urn"] not in pairs]
    removed = [(r["name"], r["type"]) for urn, r in old.items() if urn not in kept]
    changed = []
    for r in after:
        if r["urn"] not in pairs:
            continue
        was = old[pairs[r["urn"]]]
        a, b = was["inputs"], r["inputs"]
        secret = set(was["secretInputs"]) | set(r["secretInputs"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if keys:
            marked = tuple(f"{k} {SECRET_MARK}" if k in secret else k for k in keys)
            changed.append(Changed(name=r["name"], type=r["type"], inputs=marked))
    return sorted(added), sorted(removed), sorted(changed, key=lambda c: (c.name, c.type))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=120)


def resolve_ref(root: Path, ref: str | None) -> tuple[str, str]:
    """(ref, commit) for `ref`, or for the first of origin/main, main that exists."""
    for candidate in (ref,) if ref else DEFAULT_REFS:
        result = _git(root, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if result.returncode == 0:
            return candidate, result.stdout.decode().strip()
    tried = ref or " or ".join(DEFAULT_REFS)
    raise PlanError(f"git ref {tried} does not exist in {root} (fetch it, or pass --against REF)")


def _inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, skipping (not failing on) a member it refuses: the repository commits a
    symlink to an absolute path on purpose (a config case the settings must reject)."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def ref_snapshot(root: Path, commit: str, stack: str) -> list[dict[str, Any]] | None:
    """The snapshot of `stack` at `commit` (None when that commit has no such stack file), synthesised
    from `git archive` in a fresh interpreter: the program's modules are cached per process."""
    archive = _git(root, "archive", "--format=tar", commit)
    if archive.returncode != 0:
        raise PlanError(f"git archive {commit} failed: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="gantry-plan-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter=_inside)
        # This checkout's engine on the ref's components (gantry.offline.snapshot_command, PYTHONPATH
        # first). The export is no git checkout, so the commit the program records is given as CI gives it.
        result = subprocess.run(
            snapshot_command(stack, Path(tmp)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "GITHUB_SHA": commit, "PYTHONPATH": tmp},
        )
    if result.returncode == EXIT_NO_STACK:
        return None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise PlanError(f"the program at {commit[:12]} failed under mocks: {lines[-1] if lines else 'no output'}")
    loaded: list[dict[str, Any]] = json.loads(result.stdout)
    return loaded


def compare(root: Path, stack: str, graph: Graph, ref: str | None) -> Diff:
    against, commit = resolve_ref(root, ref)
    try:
        before = ref_snapshot(root, commit, stack)
    except PlanError as error:
        return Diff(against=against, commit=commit, note=str(error))
    if before is None:
        note = f"{against} has no Pulumi.{stack}.yaml: every resource is new"
        return Diff(against=against, commit=commit, added=tuple((r.name, r.typ) for r in graph.resources), note=note)
    added, removed, changed = diff(before, snapshot(graph, stack))
    return Diff(against=against, commit=commit, added=tuple(added), removed=tuple(removed), changed=tuple(changed))


# ---------------------------------------------------------------------------------------------------------
# The plan and its renderings


@dataclass(frozen=True)
class Plan:
    stack: str
    resources: int
    groups: tuple[Group, ...]
    verdicts: tuple[Verdict, ...]
    diff: Diff | None = None
    cost: Estimate | str | None = None
    """The fixed monthly cost (gantry.cost), or why it could not be priced; None when not asked for."""
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """Secret config strings of the run: scrubbed from every rendering, never rendered."""
    warnings: tuple[str, ...] = ()
    """What `pulumi up` would warn about (the program's `pulumi.log.warn`), and a budget below the fixed
    cost (`gantry.cost.budget_shortfall`); each names its key. Warnings never change the exit status."""

    @property
    def mandatory_findings(self) -> int:
        return sum(len(v.findings) for v in self.verdicts if v.level == "mandatory")


def make_plan(
    synthesis: Synthesis, levels: Mapping[str, Level], change: Diff | None, region: str | None = None
) -> Plan:
    """The plan of one synthesis; with the stack's `region`, also its fixed monthly cost."""
    cost: Estimate | str | None = None
    warnings = list(synthesis.graph.warnings)
    if region is not None:
        try:
            cost = estimate(synthesis.graph.resources, region)
        except CostError as error:
            cost = str(error)
        else:
            shortfall = budget_shortfall(synthesis.graph.resources, cost, synthesis.stack)
            warnings += [shortfall] if shortfall else []
    return Plan(
        stack=synthesis.stack,
        resources=len(synthesis.graph.resources),
        groups=tuple(groups(synthesis.graph)),
        verdicts=tuple(verdicts(synthesis.graph, levels)),
        diff=change,
        cost=cost,
        secrets=synthesis.secrets,
        warnings=tuple(warnings),
    )


def scrub(text: str, secrets: frozenset[str]) -> str:
    """`text` with every secret string replaced, longest first (a key inside a JSON secret goes too)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, SECRET_MARK)
    return text


def _result(verdict: Verdict) -> str:
    if verdict.level == "disabled":
        return "disabled"
    if not verdict.findings:
        return "✅ pass"
    count = f"{len(verdict.findings)} finding{'s' if len(verdict.findings) > 1 else ''}"
    return f"❌ {count}" if verdict.level == "mandatory" else f"⚠️ {count}"


def _diff_markdown(change: Diff) -> list[str]:
    short = change.commit[:12]
    lines = [f"### Changes against `{change.against}` ({short})", ""]
    if change.note:
        lines += [f"> {change.note}", ""]
    rows = (
        [("+", n, t, "") for n, t in change.added]
        + [("−", n, t, "") for n, t in change.removed]
        + [("~", c.name, c.type, ", ".join(f"`{k}`" for k in c.inputs)) for c in change.changed]
    )
    if not rows:
        return lines + (["No resource changes."] if not change.note else [])
    lines += ["| | Resource | Type | Changed inputs |", "|---|---|---|---|"]
    lines += [f"| {mark} | `{name}` | `{typ}` | {keys} |" for mark, name, typ, keys in rows]
    return lines


def render_markdown(plan: Plan) -> str:
    components = sum(1 for g in plan.groups if g.path)
    mandatory = plan.mandatory_findings
    policy = "every mandatory rule passes" if mandatory == 0 else f"{mandatory} mandatory finding(s)"
    summary = f"{plan.resources} resources in {components} components · policy pack: {policy}"
    if plan.diff is not None and not plan.diff.note:
        d = plan.diff
        summary += f" · against `{d.against}`: +{len(d.added)} −{len(d.removed)} ~{len(d.changed)}"
    lines = [
        f"## gantry offline plan: `{plan.stack}`",
        "",
        "Synthesised by `python -m gantry.plan` under Pulumi mocks: no cloud credentials, so values AWS "
        "computes are stand-ins and only the program's own inputs are compared.",
        "",
        summary,
        "",
    ]
    if plan.warnings:
        lines += ["### Warnings (`pulumi up` prints them too)", "", *[f"- ⚠️ {w}" for w in plan.warnings], ""]
    if plan.diff is not None:
        lines += [*_diff_markdown(plan.diff), ""]
    lines += [
        "### Policy pack (`policy/rules.py`, as `--policy-pack policy` enforces it)",
        "",
        "| Rule | Level | Result |",
        "|---|---|---|",
    ]
    lines += [f"| `{v.rule}` | {v.level} | {_result(v)} |" for v in plan.verdicts]
    findings = [(v.rule, f) for v in plan.verdicts for f in v.findings]
    if findings:
        lines += ["", *[f"- `{rule}`: {finding}" for rule, finding in findings]]
    lines += _cost_markdown(plan.cost)
    lines += ["", "### Resources by component", ""]
    for g in plan.groups:
        title = " › ".join(g.path) if g.path else "(stack)"
        count = f"{len(g.resources)} resource{'s' if len(g.resources) != 1 else ''}"
        lines.append(f"<details><summary><code>{title}</code> <code>{g.type}</code> · {count}</summary>")
        lines.append("")
        lines += [f"- `{name}` `{typ}`" for name, typ in g.resources]
        lines += ["", "</details>"]
    return scrub("\n".join(lines) + "\n", plan.secrets)


def _cost_markdown(cost: Estimate | str | None) -> list[str]:
    if cost is None:
        return []
    lines = ["", "### Fixed monthly cost (`python -m gantry.cost`)", ""]
    if isinstance(cost, str):
        return [*lines, f"Not priced: {cost}"]
    lines += ["| Item | Quantity | Unit | Price | $/month |", "|---|---:|---|---:|---:|"]
    lines += [
        f"| {line.item} | {line.quantity:g} | {line.unit} | {line.unit_price:g} | {line.monthly:.2f} |"
        for line in cost.lines
    ]
    lines += [
        f"| **fixed total** | | | | **{cost.total:.2f}** |",
        "",
        f"{cost.region} list prices as of {cost.prices.as_of}; requests, data and scale-out tasks come on top.",
    ]
    return lines


def render_json(plan: Plan) -> str:
    document = {
        "stack": plan.stack,
        "resources": plan.resources,
        "mandatoryFindings": plan.mandatory_findings,
        "warnings": list(plan.warnings),
        "components": [
            {"path": list(g.path), "type": g.type, "resources": [{"name": n, "type": t} for n, t in g.resources]}
            for g in plan.groups
        ],
        "policy": [asdict(v) for v in plan.verdicts],
        "diff": asdict(plan.diff) if plan.diff is not None else None,
        "monthlyCost": (
            {"total": round(plan.cost.total, 2), "region": plan.cost.region, "pricesAsOf": plan.cost.prices.as_of}
            if isinstance(plan.cost, Estimate)
            else plan.cost
        ),
    }
    return scrub(json.dumps(document, indent=2, ensure_ascii=False) + "\n", plan.secrets)


# ---------------------------------------------------------------------------------------------------------
# Command line


def _load_policy_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PlanError(f"policy config {path}: {error}") from error
    if not isinstance(loaded, dict):
        raise PlanError(f"policy config {path}: expected a JSON object rule -> level")
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gantry.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a committed stack: the name in Pulumi.<stack>.yaml (dev, prod)")
    compare_to = parser.add_mutually_exclusive_group()
    compare_to.add_argument("--against", metavar="REF", help="git ref to compare with (default: origin/main, main)")
    compare_to.add_argument("--no-diff", action="store_true", help="skip the comparison with a git ref")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--policy-config", type=Path, help="the pack's config file ({rule: mandatory|advisory|disabled})"
    )
    parser.add_argument("--output", type=Path, help="write the plan to this file as well as to stdout")
    args = parser.parse_args(argv)
    try:
        levels = policy_levels(_load_policy_config(args.policy_config))
        synthesis = synthesize(args.stack, ROOT)
        change = None if args.no_diff else compare(ROOT, args.stack, synthesis.graph, args.against)
    except (PlanError, StackFileError, ConfigRefused) as error:
        # A config `pulumi preview` would refuse is no policy finding: exit 2 with its message alone.
        print(f"gantry.plan: {error}", file=sys.stderr)
        return EXIT_ERROR
    plan = make_plan(synthesis, levels, change, stack_config(args.stack, ROOT).get("aws:region"))
    text = render_json(plan) if args.json else render_markdown(plan)
    for warning in plan.warnings:
        print(scrub(f"gantry.plan: warning: {warning}", plan.secrets), file=sys.stderr)
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(text)
    return EXIT_MANDATORY if plan.mandatory_findings else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

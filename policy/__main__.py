"""gantry's production checklist as a CrossGuard policy pack: `pulumi preview --policy-pack policy`.

A thin adapter: every check is a pure function in `policy/rules.py` (the test suite runs the same
functions on the committed stacks), and this file only registers each one with pulumi-policy at its
default enforcement level. Levels are changed per rule without editing code, with
`--policy-pack-config <file>` ({"<rule>": "advisory" | "mandatory" | "disabled"}); the production-only
rules also take `productionStacks` (default ["prod"]). Security stance: every rule defaults to mandatory.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The CLI runs this file from policy/ in the pack's own virtualenv: the rules import the repository's
# `components` package (the secret-shape checks the settings use), so the repository root goes first.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pulumi_policy import (  # noqa: E402 - after the path fix above
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.rules import (  # noqa: E402
    DEFAULT_PRODUCTION_STACKS,
    RULES,
    Resource,
    ResourceCheck,
    Rule,
    StackCheck,
    is_production,
)

PRODUCTION_SCHEMA = PolicyConfigSchema(
    properties={
        "productionStacks": {
            "type": "array",
            "items": {"type": "string"},
            "default": list(DEFAULT_PRODUCTION_STACKS),
            "description": "Stacks the production-only rules apply to.",
        }
    }
)


def level(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.mandatory else EnforcementLevel.ADVISORY


def as_resource(resource: PolicyResource) -> Resource:
    return Resource(
        type=resource.resource_type,
        urn=resource.urn,
        props=resource.props,
        property_dependencies={
            prop: frozenset(dep.urn for dep in deps) for prop, deps in resource.property_dependencies.items()
        },
    )


def resource_policy(rule: Rule, check: ResourceCheck) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name, description=rule.description, enforcement_level=level(rule), validate=validate
    )


def stack_policy(rule: Rule, check: StackCheck) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [as_resource(r) for r in args.resources]
        config: Mapping[str, Any] = args.get_config()
        stacks: Sequence[str] = config.get("productionStacks") or DEFAULT_PRODUCTION_STACKS
        for message in check(resources, is_production(resources, stacks)):
            report_violation(message, None)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        enforcement_level=level(rule),
        validate=validate,
        config_schema=PRODUCTION_SCHEMA,
    )


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    built: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in RULES:
        if rule.resource_check is not None:
            built.append(resource_policy(rule, rule.resource_check))
        if rule.stack_check is not None:
            built.append(stack_policy(rule, rule.stack_check))
    return built


if __name__ == "__main__":
    # Serves the analyzer until the engine is done with it.
    PolicyPack(name="gantry-production-checklist", policies=list(policies()))

"""gantry's production checklist as a CrossGuard policy pack: `pulumi preview --policy-pack policy`.

A thin adapter: every check is a pure function in `policy/rules.py` (the test suite runs the same
functions on the committed stacks), and this file only registers each one with pulumi-policy at its
default enforcement level. Levels are changed per rule without editing code, with
`--policy-pack-config <file>` ({"<rule>": "advisory" | "mandatory" | "disabled"}); the production-only
rules also take `productionStacks` (default ["prod"]). Security stance: every rule defaults to mandatory.

pulumi_policy hands a rule its own Sequence/Mapping proxies (pulumi_policy/proxy.py: `_ListProxy`,
`_DictProxy`), not `list`/`dict`: `plain` converts them once, here, so the rules see what the test suite
gives them. The proxies raise UnknownValueError on a value not known during preview; converting reads
every value, so such a resource's check is reported the way pulumi_policy reports any rule that reads an
unknown (advisory "can't run ... during preview"), and `up`, where every value is known, runs it in full.
A rule that raises is reported as a violation naming the rule and the error (a failed check is not a
pass), while every other rule still runs: pulumi_policy catches only UnknownValueError, so an exception
escaping one stack rule would fail the whole AnalyzeStack call and drop every stack rule with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The CLI runs this file from policy/ in the pack's own virtualenv (policy/venv): `policy` and the
# `components` the rules import (the secret-shape checks the settings use) come from the repository's
# editable install there (scripts/policy_venv.py), not from a path fix.
from pulumi_policy import (
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

from policy.rules import (
    DEFAULT_PRODUCTION_STACKS,
    RULES,
    Resource,
    ResourceCheck,
    Rule,
    StackCheck,
    failed,
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


def plain(value: Any) -> Any:
    """pulumi_policy's proxies (any Mapping, any non-string Sequence) as plain dicts and lists, recursively."""
    if isinstance(value, Mapping):
        return {str(key): plain(value[key]) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(item) for item in value]
    return value


def as_resource(resource: PolicyResource) -> Resource:
    return Resource(
        type=resource.resource_type,
        urn=resource.urn,
        props=plain(resource.props),
        property_dependencies={
            prop: frozenset(dep.urn for dep in deps) for prop, deps in resource.property_dependencies.items()
        },
    )


def resource_policy(rule: Rule, check: ResourceCheck) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        props = plain(args.props)
        try:
            messages = check(args.resource_type, props)
        except Exception as error:  # noqa: BLE001 - any failure of the check is reported, never a pass
            messages = [failed(rule, error)]
        for message in messages:
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name, description=rule.description, enforcement_level=level(rule), validate=validate
    )


def stack_policy(rule: Rule, check: StackCheck) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [as_resource(r) for r in args.resources]
        # None until the engine configures the pack (the CLI always does, with the schema defaults).
        config: Mapping[str, Any] = plain(args.get_config()) or {}
        stacks: Sequence[str] = config.get("productionStacks") or DEFAULT_PRODUCTION_STACKS
        try:
            messages = check(resources, is_production(resources, stacks))
        except Exception as error:  # noqa: BLE001 - any failure of the check is reported, never a pass
            messages = [failed(rule, error)]
        for message in messages:
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

"""Settings of `migration`: moving a hostname's traffic from an existing endpoint (Elastic Beanstalk,
another load balancer, any hostname) to gantry by weighted DNS, one `pulumi up` per step.

`migration.cutover` names the legacy endpoint and the share of the hostname's traffic gantry receives;
gantry then manages the hostname as two Route 53 weighted CNAME records (set identifiers `legacy` and
`gantry`) instead of its own alias record. The rules that need other sections or the stack's previous
state (a domain is required, the zone apex is refused, the legacy target is neither the hostname nor
gantry's own edge, the legacy record is retired only after an `up` already held it at weight 0, and a
cutover is never removed in one step) live in `cutover_problems`, a pure function the loader calls. The
module also holds the rule for the worker's fault switch (`FAULT_INJECT`, refused on production stacks).
Security stance: the legacy target is a DNS name only (no scheme, port or path, nothing that could
smuggle a URL into a record), and a cutover never takes the last step on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from components.settings.base import Section, Token
from components.settings.edge import DomainSettings, within_zone

# RFC 1123 labels, lower case, at least two labels: what a Beanstalk environment CNAME
# (env.eu-west-1.elasticbeanstalk.com), an ALB DNS name or a team's own hostname looks like.
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
# Route 53 weights are 0-255 and relative; gantry's is a percentage and legacy gets the rest, so a
# weight is always the share of traffic it reads as.
FULL_SHARE = 100
CUTOVER_OUTPUT = "migrationCutover"
"""The stack output recording the last `up`'s cutover ({legacyTarget, gantryWeight}), read back by the
next `up` through readStackOutputs (components.stack_config)."""


def _dns_name(value: str) -> str:
    if "://" in value or "/" in value or ":" in value:
        raise ValueError(
            "must be a DNS name only, without scheme, port or path (e.g. my-env.eu-west-1.elasticbeanstalk.com)"
        )
    if not _DNS_NAME.match(value.rstrip(".")):
        raise ValueError("must be a lower-case DNS name such as my-env.eu-west-1.elasticbeanstalk.com")
    return value.rstrip(".")


def _health_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value) or len(value) > 255:
        raise ValueError("must be an absolute URL path such as /health (no spaces, at most 255 characters)")
    return value


class CutoverSettings(Section):
    legacy_target: Annotated[Token, AfterValidator(_dns_name)]
    """The endpoint serving the hostname today (a Beanstalk environment CNAME, an ALB DNS name, any hostname);
    the `legacy` weighted record points at it. Required."""
    gantry_weight: int = Field(ge=0, le=FULL_SHARE)
    """Required: the percentage of the hostname's traffic sent to gantry (0-100); legacy receives the rest.
    Move it 10 -> 50 -> 100, one `pulumi up` each."""
    ttl_seconds: int = Field(60, ge=10, le=300)
    """Resolvers re-ask within a minute, so a step (or a step back) takes effect quickly; the
    cost is more DNS queries while the cutover lasts."""
    gantry_health_check: bool = True
    """A Route 53 HTTPS health check on gantry's edge (the container's health path); while it
    fails, Route 53 answers with the legacy record only, so a broken gantry sheds its share automatically."""
    legacy_health_path: Annotated[Token, AfterValidator(_health_path)] | None = None
    """No health check on the legacy target. Set its health path (e.g. /health) to have Route 53
    stop sending traffic to a failing legacy endpoint; that moves legacy's whole share onto gantry at once."""
    retire_legacy: bool = False
    """True deletes the legacy record (the end of the cutover): allowed only at gantryWeight 100
    after an `up` that already left legacy at weight 0. The `gantry` record stays as the hostname's record:
    replacing the CNAMEs by an alias would need a moment with no record at all (a CNAME cannot coexist with
    the alias), which resolvers would cache as a negative answer."""


class MigrationSettings(Section):
    cutover: CutoverSettings | None = None
    """Gantry's alias record owns the hostname. Set it (with a domain) to share the hostname
    with a legacy endpoint by weighted DNS."""

    @property
    def owns_hostname(self) -> bool:
        """True when gantry's plain alias record holds the hostname (no cutover in progress)."""
        return self.cutover is None


@dataclass(frozen=True, kw_only=True)
class PreviousCutover:
    """What the stack's last `up` recorded in its `migrationCutover` output."""

    legacy_target: str
    gantry_weight: int
    gantry_target: str | None = None
    """gantry's edge DNS name the `gantry` record pointed at."""
    legacy_retired: bool = False
    """True once the legacy record was deleted."""

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> PreviousCutover | None:
        """The recorded cutover, or None (the stack never cut over, finished one, or never deployed)."""
        recorded = outputs.get(CUTOVER_OUTPUT)
        if not isinstance(recorded, Mapping):
            return None
        target, weight, edge = recorded.get("legacyTarget"), recorded.get("gantryWeight"), recorded.get("gantryTarget")
        if not isinstance(target, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return None
        return cls(
            legacy_target=target,
            gantry_weight=int(weight),
            gantry_target=edge if isinstance(edge, str) else None,
            legacy_retired=recorded.get("legacyRetired") is True,
        )


def cutover_problems(
    cutover: CutoverSettings | None,
    domain: DomainSettings | None,
    *,
    zone_name: str | None,
    previous: PreviousCutover | None,
) -> Iterator[tuple[str, str]]:
    """(key, problem) for a cutover that cannot work, or that would move traffic in one unsafe step.

    `zone_name` is the hosted zone's name when it was looked up (None: the apex check is skipped);
    `previous` is what the last `up` recorded (None on a stack's first `up`, or once a cutover ended).
    """
    if cutover is None:
        if previous is not None:
            yield (
                "migration.cutover",
                f"was removed, but the hostname is served by weighted CNAME records (legacy {previous.legacy_target} "
                f"at {FULL_SHARE - previous.gantry_weight} %, gantry at {previous.gantry_weight} %). Removing them "
                "would delete the way back in one step and leave the hostname with no record while gantry's alias "
                f"replaced them. Keep migration.cutover: move gantryWeight to {FULL_SHARE}, hold 48 hours, then set "
                "retireLegacy: true",
            )
        return
    if cutover.retire_legacy:
        held = previous is not None and previous.gantry_weight == FULL_SHARE
        if cutover.gantry_weight != FULL_SHARE or not held:
            was = (
                "no earlier `up` of this stack"
                if previous is None
                else f"the last `up` at gantryWeight {previous.gantry_weight}"
            )
            yield (
                "migration.cutover.retireLegacy",
                f"deletes the legacy record, which is allowed only at gantryWeight {FULL_SHARE} after an `up` that "
                f"already left legacy at weight 0 (found {was}, gantryWeight {cutover.gantry_weight} now): no "
                f"one-step cutover. Set gantryWeight: {FULL_SHARE}, run `pulumi up`, hold 48 hours, then retire",
            )
    if domain is None:
        yield (
            "migration.cutover",
            "needs gantry:domain (hostedZoneId, hostname): the weighted records share that hostname",
        )
        return
    if zone_name is not None and domain.hostname == zone_name.rstrip(".").lower():
        yield (
            "domain.hostname",
            f"{domain.hostname!r} is the zone apex, where a cutover cannot work: both weighted records are "
            "CNAMEs (a legacy hostname cannot be an alias target), and a CNAME cannot sit at the apex beside "
            "its SOA and NS records; cut over a subdomain such as api."
            f"{domain.hostname}",
        )
    target = cutover.legacy_target
    if target == domain.hostname or (zone_name is not None and target == zone_name.rstrip(".").lower()):
        yield (
            "migration.cutover.legacyTarget",
            f"{target!r} is the hostname being cut over (or its zone apex), so the legacy record would point at "
            "itself; name the endpoint that serves the hostname today, e.g. the Beanstalk environment's CNAME",
        )
    elif within_zone(target, domain.hostname):
        yield (
            "migration.cutover.legacyTarget",
            f"{target!r} lies under the hostname being cut over ({domain.hostname}); name the legacy endpoint itself",
        )
    elif previous is not None and previous.gantry_target is not None and target == previous.gantry_target.lower():
        yield (
            "migration.cutover.legacyTarget",
            f"{target!r} is gantry's own edge (the `gantry` record's target), so both records would reach gantry "
            "and the legacy endpoint would get nothing; name the endpoint that serves the hostname today",
        )


# The sample worker's fault switch (app/worker/config.py FAULT_INJECT), used only by the rollback drill.
FAULT_SWITCH = "FAULT_INJECT"
FAULT_MODES = ("5xx", "bad-embeddings")
_PRODUCTION_NAMES = ("prod", "production")


def production_stack(stack: str | None, *, deletion_protection: bool) -> bool:
    """True for a stack that serves real users, by either of two signs a copy-paste cannot remove both of:
    its name (prod, production, or prod-/production- prefixed or -prod suffixed, as `Pulumi.prod.yaml`), or
    a load balancer that keeps deletion protection on (the default; only disposable stacks turn it off)."""
    name = (stack or "").lower()
    named = name in _PRODUCTION_NAMES or name.startswith(("prod-", "production-")) or name.endswith("-prod")
    return named or deletion_protection


def fault_switch_problems(
    environment: Mapping[str, str], *, stack: str | None, deletion_protection: bool
) -> Iterator[tuple[str, str]]:
    """Refuse the worker's fault switch on a production stack, and any value but the drill's modes."""
    if FAULT_SWITCH not in environment:
        return
    value = environment[FAULT_SWITCH]
    if production_stack(stack, deletion_protection=deletion_protection):
        yield (
            f"container.environment.{FAULT_SWITCH}",
            "is refused on a production stack (named prod/production, or with loadBalancer.deletionProtection on): "
            "it breaks the worker on purpose for the rollback drill (python -m gantry.drill), which runs on a "
            "disposable stack only",
        )
    elif value not in FAULT_MODES:
        yield (
            f"container.environment.{FAULT_SWITCH}",
            f"{value!r} is not a fault mode; allowed: {', '.join(FAULT_MODES)} (or remove it)",
        )

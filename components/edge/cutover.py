"""WeightedCutover: the hostname shared between a legacy endpoint and gantry's edge by Route 53 weighted records.

With `migration.cutover` set, the hostname is two weighted CNAME records, set identifiers `legacy` (the
Beanstalk environment CNAME or other endpoint) and `gantry` (the edge's DNS name), weighted
100 - gantryWeight and gantryWeight, so Route 53 answers each query with one of them in that proportion
("weight for a specified record / sum of the weights for all records", Route 53 Developer Guide,
Weighted routing). Both are CNAMEs because weighted records of one name must share one type ("Select
the same value for all of the records in the group of weighted records", Values specific for weighted
records) and a legacy hostname outside AWS's alias targets can only be a CNAME; that is why gantry's own
alias record is not created meanwhile (a CNAME cannot coexist with other data at a name, RFC 1034 3.6.2
/ RFC 1912 2.4, which also rules out the zone apex). A Route 53 HTTPS health check on gantry's edge
takes gantry's record out of the answers while it fails; at weight 0 legacy still answers when gantry is
unhealthy ("If all of the records that have a weight greater than 0 are unhealthy, then Route 53
considers the zero-weighted records", How Route 53 chooses records when health checking is configured),
which is what makes the 48-hour hold at 100 % a way back. A health check on the legacy target is opt-in:
when it fails, legacy's whole share lands on gantry at once. `retireLegacy` deletes the legacy record.
`state` is exported as the `migrationCutover` output, which the next `up` reads back to refuse unsafe
steps (components.settings.migration). The README has the user create the `legacy` record by hand before
the first cutover `up` (the hostname's plain record turned weighted, so resolution never changes);
gantry takes that record over with `allow_overwrite`, and only that one (`takes_over`). Security stance:
records only in the configured zone and name; health checkers connect over HTTPS only (Route 53 does not
validate the certificate, so a check proves reachability and the health answer, not identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import DomainSettings
from components.settings.migration import FULL_SHARE, CutoverSettings

LEGACY, GANTRY = "legacy", "gantry"
# Route 53's fastest standard interval and its default threshold: a failing gantry leaves the answers
# after about 90 s, and one lost probe does not move traffic.
HEALTH_CHECK_INTERVAL_SECONDS = 30
HEALTH_CHECK_FAILURE_THRESHOLD = 3


def takes_over(role: str) -> bool:
    """Whether gantry's record for `role` overwrites a record that already exists: only `legacy`.

    The pinned provider creates a record with Route 53's CREATE, which fails when a record of that name,
    type and set identifier exists, unless `allow_overwrite` is set: then it sends UPSERT
    (pulumi_aws/route53/record.py, allow_overwrite: "Allow creation of this record to overwrite an existing
    record"; terraform-provider-aws internal/service/route53/record.go: "Use UPSERT only if the overwrite
    flag is true or if the current action is an update"). UPSERT "updates it with the values in the request"
    when Name, Type and SetIdentifier match (Route 53 API Reference, Change). The README's by-hand step
    creates exactly the `legacy` record (same name, CNAME, set identifier, weight); a `gantry` record that
    already exists was made by someone else, and refusing it is right.
    """
    return role == LEGACY


def weights(gantry_weight: int, *, legacy_retired: bool = False) -> dict[str, int]:
    """Route 53 weights per set identifier: gantry's share and the rest for legacy (absent once retired)."""
    if not 0 <= gantry_weight <= FULL_SHARE:
        raise ValueError(f"gantry_weight={gantry_weight} is invalid; allowed: 0 to {FULL_SHARE}")
    if legacy_retired:
        return {GANTRY: gantry_weight}
    return {LEGACY: FULL_SHARE - gantry_weight, GANTRY: gantry_weight}


def refuse_own_edge(legacy_target: str, gantry_target: str) -> str:
    """gantry's edge DNS name, after checking the legacy record does not point at it too."""
    if legacy_target.rstrip(".").lower() == gantry_target.rstrip(".").lower():
        raise ValueError(
            f"gantry: migration.cutover.legacyTarget {legacy_target!r} is gantry's own edge; both records would "
            "reach gantry. Name the endpoint that serves the hostname today"
        )
    return gantry_target


@dataclass(frozen=True, kw_only=True)
class WeightedCutoverArgs:
    domain: DomainSettings | None
    """The zone and hostname the records share; required when `settings` is set."""
    settings: CutoverSettings | None
    """The cutover (legacy target, gantry's weight, TTL, health checks); None creates nothing."""
    gantry_target: pulumi.Input[str]
    """The DNS name of gantry's edge (today the ALB's `dns_name`; with the Edge, its alias target's name)."""
    health_check_path: str
    """The container's health path, which gantry's health check requests through the edge."""


class WeightedCutover(pulumi.ComponentResource):
    records: dict[str, aws.route53.Record]
    health_checks: dict[str, aws.route53.HealthCheck]
    state: pulumi.Output[dict | None]
    """The `migrationCutover` stack output: legacyTarget, gantryWeight, gantryTarget, legacyRetired (None without
    a cutover)."""

    def __init__(self, name: str, args: WeightedCutoverArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:dns:WeightedCutover", name, None, opts)
        self.records, self.health_checks = {}, {}
        cutover, domain = args.settings, args.domain
        if cutover is None:
            self.state = pulumi.Output.from_input(None)
            self.register_outputs({})
            return
        if domain is None:
            raise ValueError("a weighted cutover needs a domain (hosted zone and hostname)")
        gantry_target = pulumi.Output.from_input(args.gantry_target).apply(
            lambda edge: refuse_own_edge(cutover.legacy_target, edge)
        )
        targets: dict[str, pulumi.Input[str]] = {LEGACY: cutover.legacy_target, GANTRY: gantry_target}
        paths = {GANTRY: args.health_check_path if cutover.gantry_health_check else None}
        paths[LEGACY] = cutover.legacy_health_path
        for role, weight in weights(cutover.gantry_weight, legacy_retired=cutover.retire_legacy).items():
            self._weighted_record(name, role, weight, targets[role], paths[role], cutover, domain)
        self.state = gantry_target.apply(
            lambda edge: {
                "legacyTarget": cutover.legacy_target,
                "gantryWeight": cutover.gantry_weight,
                "gantryTarget": edge,
                "legacyRetired": cutover.retire_legacy,
            }
        )
        self.register_outputs({"state": self.state})

    def _weighted_record(
        self,
        name: str,
        role: str,
        weight: int,
        target: pulumi.Input[str],
        path: str | None,
        cutover: CutoverSettings,
        domain: DomainSettings,
    ) -> None:
        """One weighted CNAME of the hostname, with a Route 53 health check on `path` when there is one."""
        child = pulumi.ResourceOptions(parent=self)
        health_check_id = None
        if path is not None:
            check = aws.route53.HealthCheck(
                f"{name}-{role}-health",
                type="HTTPS",
                fqdn=target,
                port=443,
                resource_path=path,
                enable_sni=True,
                request_interval=HEALTH_CHECK_INTERVAL_SECONDS,
                failure_threshold=HEALTH_CHECK_FAILURE_THRESHOLD,
                tags={"Name": f"{domain.hostname} {role}"},
                opts=child,
            )
            self.health_checks[role] = check
            health_check_id = check.id
        self.records[role] = aws.route53.Record(
            f"{name}-{role}",
            zone_id=domain.hosted_zone_id,
            name=domain.hostname,
            type="CNAME",
            ttl=cutover.ttl_seconds,
            records=[target],
            set_identifier=role,
            weighted_routing_policies=[{"weight": weight}],
            health_check_id=health_check_id,
            # Set from the first `up` on and never changed, so no later `up` shows a diff for it; None
            # (not False) leaves the `gantry` record's inputs exactly as they were.
            allow_overwrite=takes_over(role) or None,
            opts=child,
        )

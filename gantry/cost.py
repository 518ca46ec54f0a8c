"""The fixed monthly cost of a stack, estimated from its synthesized resource graph: `python -m gantry.cost dev`.

`estimate(resources, region)` is pure: it reads the resources the program registers (as the Pulumi
mocks record them: type and inputs) and prices what runs whether or not anyone sends a request: NAT
gateways and their public IPv4 addresses, interface endpoints x the subnets (AZs) they sit in, the load
balancer's hours and public addresses, CloudFront/WAF when present (CloudFront has no fixed fee; a web
ACL and its rules do), the minimum task count x vCPU and GB-hours with the Spot share the capacity
provider strategy gives the minimum, secrets, alarms (per metric they read), dashboards, KMS keys, and
log ingestion at a stated volume. Traffic-driven costs (requests, LCUs, NAT data, scale-out tasks)
are excluded and said so. Prices are a dated table per region (`PRICES`), from AWS's public pricing
pages; check them before you budget. The command synthesises the committed stack under the Pulumi
mocks (tests/harness.py), so it needs no AWS account. Security stance: nothing here calls AWS or reads
credentials; the stack's test secret values are stand-ins that never leave the process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

HOURS_PER_MONTH = 730
# The log volume the estimate assumes a stack ingests a month (service logs, EMF metrics documents,
# VPC flow logs): a quiet service. State your own with --log-gb.
DEFAULT_LOG_GB = 5.0


@dataclass(frozen=True, kw_only=True)
class PriceTable:
    """On-demand list prices of one region, in USD, as of `as_of`."""

    as_of: str
    nat_gateway_hour: float
    """https://aws.amazon.com/vpc/pricing/ (NAT gateway per hour)."""
    public_ipv4_hour: float
    """https://aws.amazon.com/vpc/pricing/ (public IPv4 address per hour, in use or not)."""
    interface_endpoint_az_hour: float
    """https://aws.amazon.com/privatelink/pricing/ (interface endpoint per AZ per hour)."""
    alb_hour: float
    """https://aws.amazon.com/elasticloadbalancing/pricing/ (Application Load Balancer per hour, LCUs extra)."""
    fargate_vcpu_hour: Mapping[str, float]
    """https://aws.amazon.com/fargate/pricing/ per vCPU-hour, by CPU architecture (Linux)."""
    fargate_gb_hour: Mapping[str, float]
    """https://aws.amazon.com/fargate/pricing/ per GB-hour, by CPU architecture (Linux)."""
    spot_discount: float
    """Fargate Spot's discount off on-demand. Spot prices move; AWS quotes "up to 70 %"."""
    secret_month: float
    """https://aws.amazon.com/secrets-manager/pricing/ per secret per month."""
    alarm_metric_month: float
    """https://aws.amazon.com/cloudwatch/pricing/ per standard-resolution alarm metric per month (a metric-math
    alarm is billed per metric it reads)."""
    dashboard_month: float
    """https://aws.amazon.com/cloudwatch/pricing/ per dashboard per month (beyond the account's three free)."""
    log_ingest_gb: float
    """https://aws.amazon.com/cloudwatch/pricing/ per GB of standard log ingestion."""
    kms_key_month: float
    """https://aws.amazon.com/kms/pricing/ per customer-managed key per month."""
    waf_web_acl_month: float
    """https://aws.amazon.com/waf/pricing/ per web ACL per month."""
    waf_rule_month: float
    """https://aws.amazon.com/waf/pricing/ per rule per month."""


PRICES: Mapping[str, PriceTable] = {
    "eu-west-1": PriceTable(
        as_of="2026-12-01",
        nat_gateway_hour=0.048,
        public_ipv4_hour=0.005,
        interface_endpoint_az_hour=0.011,
        alb_hour=0.0252,
        fargate_vcpu_hour={"ARM64": 0.03238, "X86_64": 0.04048},
        fargate_gb_hour={"ARM64": 0.00356, "X86_64": 0.004445},
        spot_discount=0.70,
        secret_month=0.40,
        alarm_metric_month=0.10,
        dashboard_month=3.00,
        log_ingest_gb=0.57,
        kms_key_month=1.00,
        waf_web_acl_month=5.00,
        waf_rule_month=1.00,
    ),
}
NAT_COUNT = {"None": lambda azs: 0, "Single": lambda azs: 1, "OnePerAz": lambda azs: azs}


class CostError(ValueError):
    """The graph or region cannot be priced; the message says what is missing."""


class Resource(Protocol):
    @property
    def typ(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> Mapping[str, Any]: ...

    @property
    def outputs(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float
    unit: str
    unit_price: float

    @property
    def monthly(self) -> float:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Estimate:
    region: str
    prices: PriceTable
    lines: tuple[Line, ...]

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    def table(self) -> str:
        rows = [f"{'item':<58} {'quantity':>10} {'unit':<12} {'price':>9} {'$/month':>9}"]
        rows += [
            f"{line.item:<58} {line.quantity:>10g} {line.unit:<12} {line.unit_price:>9g} {line.monthly:>9.2f}"
            for line in self.lines
        ]
        rows.append(f"{'fixed total':<58} {'':>10} {'':<12} {'':>9} {self.total:>9.2f}")
        rows.append(
            f"{self.region} list prices as of {self.prices.as_of}, {HOURS_PER_MONTH} h a month; not included: "
            "requests, LCUs, NAT and endpoint data, scale-out tasks, ECR storage, Container Insights metrics."
        )
        return "\n".join(rows)


def on_demand_share(strategy: Sequence[Mapping[str, Any]], tasks: int) -> float:
    """How many of `tasks` run on FARGATE (not FARGATE_SPOT): ECS places each provider's `base` first, then
    the rest by `weight` (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-capacity-providers.html)."""
    if not strategy:
        return float(tasks)
    remaining, on_demand = float(tasks), 0.0
    for entry in strategy:
        base = min(float(entry.get("base") or 0), remaining)
        remaining -= base
        if entry["capacityProvider"] == "FARGATE":
            on_demand += base
    weights = {e["capacityProvider"]: float(e.get("weight") or 0) for e in strategy}
    total = sum(weights.values())
    if total:
        on_demand += remaining * weights.get("FARGATE", 0.0) / total
    return on_demand


def _of(resources: Sequence[Resource], typ: str) -> list[Resource]:
    return [r for r in resources if r.typ == typ]


def estimate(resources: Iterable[Resource], region: str, *, log_gb_per_month: float = DEFAULT_LOG_GB) -> Estimate:
    """The fixed monthly cost of the resources in `region` (see the module docstring for what counts)."""
    if region not in PRICES:
        raise CostError(f"no price table for region {region!r}; tables exist for: {', '.join(sorted(PRICES))}")
    if log_gb_per_month < 0:
        raise CostError(f"log_gb_per_month={log_gb_per_month!r} is invalid; allowed: 0 or more")
    p, graph, hours = PRICES[region], list(resources), HOURS_PER_MONTH
    lines: list[Line] = []

    nat, azs = 0, 0
    for vpc in _of(graph, "awsx:ec2:Vpc"):
        strategy = (vpc.inputs.get("natGateways") or {}).get("strategy", "Single")
        azs = int(vpc.inputs.get("numberOfAvailabilityZones") or 2)
        nat += NAT_COUNT[strategy](azs)

    def in_azs(subnets: Any) -> int:
        # One subnet per AZ: a resource spans at most the VPC's AZs, however its subnet list reads.
        count = len(subnets or [])
        return min(count, azs) if azs else count

    if nat:
        lines.append(Line("NAT gateways", nat * hours, "hours", p.nat_gateway_hour))
        lines.append(Line("NAT gateways' public IPv4 addresses", nat * hours, "hours", p.public_ipv4_hour))

    endpoint_azs = sum(
        in_azs(e.inputs.get("subnetIds"))
        for e in _of(graph, "aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs.get("vpcEndpointType") == "Interface"
    )
    if endpoint_azs:
        lines.append(Line("interface endpoints x AZs", endpoint_azs * hours, "AZ-hours", p.interface_endpoint_az_hour))

    balancers = _of(graph, "aws:lb/loadBalancer:LoadBalancer")
    if balancers:
        lines.append(Line("application load balancers", len(balancers) * hours, "hours", p.alb_hour))
        public = sum(in_azs(b.inputs.get("subnets")) for b in balancers if not b.inputs.get("internal"))
        if public:
            lines.append(Line("load balancers' public IPv4 addresses", public * hours, "hours", p.public_ipv4_hour))

    acls = _of(graph, "aws:wafv2/webAcl:WebAcl")
    if acls:
        lines.append(Line("WAF web ACLs", len(acls), "ACL-months", p.waf_web_acl_month))
        rules = sum(len(a.inputs.get("rules") or []) for a in acls)
        if rules:
            lines.append(Line("WAF rules", rules, "rule-months", p.waf_rule_month))
    distributions = _of(graph, "aws:cloudfront/distribution:Distribution")
    if distributions:
        lines.append(
            Line("CloudFront distributions (no fixed fee: requests and data only)", len(distributions), "", 0.0)
        )

    lines.extend(_task_lines(graph, p))

    for typ, item, unit, price in (
        ("aws:secretsmanager/secret:Secret", "secrets", "secret-months", p.secret_month),
        ("aws:cloudwatch/dashboard:Dashboard", "dashboards", "dashboards", p.dashboard_month),
        ("aws:kms/key:Key", "KMS keys", "key-months", p.kms_key_month),
    ):
        count = len(_of(graph, typ))
        if count:
            lines.append(Line(item, count, unit, price))
    alarm_metrics = sum(
        sum(1 for q in a.inputs.get("metricQueries") or [] if q.get("metric")) or 1
        for a in _of(graph, "aws:cloudwatch/metricAlarm:MetricAlarm")
    )
    if alarm_metrics:
        lines.append(Line("alarm metrics", alarm_metrics, "metrics", p.alarm_metric_month))
    if log_gb_per_month:
        lines.append(Line("log ingestion (stated volume)", log_gb_per_month, "GB", p.log_ingest_gb))
    return Estimate(region=region, prices=p, lines=tuple(lines))


BUDGET = "aws:budgets/budget:Budget"
BUDGET_KEY = "gantry:operations.monthlyBudgetUsd"


def budget_shortfall(resources: Iterable[Resource], fixed: Estimate, stack: str) -> str | None:
    """A warning naming both numbers when the stack's monthly budget is below its fixed monthly cost.

    A warning, not a refusal: the budget only alerts (it stops nothing), and list prices move. But a
    budget under the fixed cost alerts every month from the first days on, which teaches a team to ignore
    the one alarm that watches spend."""
    for budget in _of(list(resources), BUDGET):
        limit = float(budget.inputs["limitAmount"])
        if limit < fixed.total:
            return (
                f"{BUDGET_KEY}: {limit:g} is below this stack's fixed monthly cost of {fixed.total:.2f} USD "
                f"(python -m gantry.cost {stack}: what runs with no traffic, {fixed.region} list prices as of "
                f"{fixed.prices.as_of}), so the budget would alert every month; set it to at least "
                f"{int(fixed.total) + 1} plus room for traffic"
            )
    return None


def _task_lines(graph: Sequence[Resource], p: PriceTable) -> list[Line]:
    """The minimum tasks of every service (the API, and the batch consumer when the queue is on)."""
    definitions = {d.outputs.get("arn"): d for d in _of(graph, "aws:ecs/taskDefinition:TaskDefinition")}
    targets = _of(graph, "aws:appautoscaling/target:Target")
    lines: list[Line] = []
    for service in _of(graph, "aws:ecs/service:Service"):
        definition = definitions.get(service.inputs.get("taskDefinition"))
        if definition is None:
            raise CostError(f"service {service.name} runs a task definition the graph does not hold")
        name = service.inputs.get("name") or service.outputs.get("name") or service.name
        own = [t for t in targets if str(t.inputs.get("resourceId", "")).endswith(f"/{name}")]
        tasks = int(own[0].inputs["minCapacity"]) if own else int(service.inputs.get("desiredCount") or 0)
        lines += _service_lines(service, definition, tasks, p)
    return lines


def _service_lines(service: Resource, definition: Resource, tasks: int, p: PriceTable) -> list[Line]:
    architecture = (definition.inputs.get("runtimePlatform") or {}).get("cpuArchitecture", "X86_64")
    vcpu = int(definition.inputs["cpu"]) / 1024
    gb = int(definition.inputs["memory"]) / 1024
    on_demand = on_demand_share(service.inputs.get("capacityProviderStrategies") or [], tasks)
    spot = tasks - on_demand
    hours = HOURS_PER_MONTH
    size = f"{vcpu:g} vCPU / {gb:g} GB {architecture}"
    lines = [
        Line(
            f"minimum tasks on FARGATE ({size}): vCPU",
            on_demand * vcpu * hours,
            "vCPU-hours",
            p.fargate_vcpu_hour[architecture],
        ),
        Line(
            f"minimum tasks on FARGATE ({size}): memory",
            on_demand * gb * hours,
            "GB-hours",
            p.fargate_gb_hour[architecture],
        ),
    ]
    if spot:
        discount = 1 - p.spot_discount
        lines += [
            Line(
                f"minimum tasks on FARGATE_SPOT ({size}): vCPU",
                spot * vcpu * hours,
                "vCPU-hours",
                p.fargate_vcpu_hour[architecture] * discount,
            ),
            Line(
                f"minimum tasks on FARGATE_SPOT ({size}): memory",
                spot * gb * hours,
                "GB-hours",
                p.fargate_gb_hour[architecture] * discount,
            ),
        ]
    return [line for line in lines if line.quantity]


def synthesize(stack: str) -> tuple[list[Any], str]:
    """The committed stack's resources under the Pulumi mocks (gantry.offline, as the tests and the
    offline plan run it), and its region."""
    from gantry import offline

    region = offline.stack_config(stack)["aws:region"]
    return offline.synthesize(stack).graph.resources, region


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gantry.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", choices=("dev", "prod"), help="a committed stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--log-gb", type=float, default=DEFAULT_LOG_GB, help="log GB ingested a month")
    args = parser.parse_args(argv)
    resources, region = synthesize(args.stack)
    try:
        result = estimate(resources, region, log_gb_per_month=args.log_gb)
    except CostError as error:
        print(f"gantry.cost: {error}", file=sys.stderr)
        return 2
    print(f"gantry stack {args.stack}: fixed monthly cost estimate")
    print(result.table())
    warning = budget_shortfall(resources, result, args.stack)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

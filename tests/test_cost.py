"""The cost estimate: the dev stack against a hand calculation, the Spot split, CloudFront/WAF, bad input."""

from __future__ import annotations

import pytest

from gantry.cost import PRICES, CostError, estimate, main, on_demand_share
from tests.harness import Res, run_program


def test_the_dev_estimate_matches_the_hand_calculation():
    graph = run_program("dev")
    result = estimate(graph.resources, "eu-west-1", log_gb_per_month=5)
    # By hand, eu-west-1 list prices, 730 hours:
    nat = 730 * 0.048  # one NAT gateway (natStrategy single)           35.04
    nat_ip = 730 * 0.005  # its public IPv4 address                        3.65
    alb = 730 * 0.0252  # the ALB's hours                                  18.396
    # Internal behind CloudFront: no public IPv4 addresses on the ALB.
    waf = 5.00 + 5 * 1.00  # one web ACL, 5 rules (3 managed groups, rate, size) 10.00
    cloudfront = 0.0  # no fixed fee; requests and data only
    vcpu = 1 * 1.0 * 730 * 0.03238  # 1 task (FARGATE base 1), 1 vCPU, ARM  23.6374
    memory = 1 * 2.0 * 730 * 0.00356  # the same task's 2 GB                 5.1976
    secret = 1 * 0.40  # API_KEYS
    dashboard = 1 * 3.00
    kms = 2 * 1.00  # the topics' key, and the us-east-1 key of the CloudFront alarm's topics
    # Alarm metrics: rollback target 5xx (2), p99 (1), unhealthy (1), worker 5xx (2); operations edge 5xx (1:
    # CloudFront's 5xxErrorRate is already a rate),
    # tasks below desired (2), CPU (1), memory (1), worker throttles (2), tokens (1); the batch queue's oldest
    # batch (1), dead letters (1) and start-from-zero (visible, in flight, tasks: 3) = 19 at $0.10.
    # The batch consumer idles at 0 tasks (queue.minCapacity 0): no task line of its own.
    alarms = 19 * 0.10
    logs = 5 * 0.57
    by_hand = nat + nat_ip + alb + waf + cloudfront + vcpu + memory + secret + dashboard + kms + alarms + logs
    assert by_hand == pytest.approx(106.07, abs=0.005)
    assert result.total == pytest.approx(by_hand, abs=1e-9)
    assert not any("interface endpoints" in line.item or "SPOT" in line.item for line in result.lines)


def test_prod_prices_twelve_endpoint_azs_three_nats_and_three_on_demand_tasks():
    result = estimate(run_program("prod").resources, "eu-west-1")
    lines = {line.item: line for line in result.lines}
    assert lines["interface endpoints x AZs"].quantity == 4 * 3 * 730
    assert lines["NAT gateways"].quantity == 3 * 730
    assert lines["minimum tasks on FARGATE (2 vCPU / 4 GB ARM64): vCPU"].quantity == 3 * 2 * 730


def test_the_spot_share_follows_base_then_weight():
    dev = [{"capacityProvider": "FARGATE", "base": 1, "weight": 1}, {"capacityProvider": "FARGATE_SPOT", "weight": 3}]
    assert on_demand_share(dev, 1) == 1
    assert on_demand_share(dev, 5) == 1 + 4 * 1 / 4
    assert on_demand_share([{"capacityProvider": "FARGATE_SPOT", "base": 2, "weight": 1}], 3) == 0
    assert on_demand_share([], 3) == 3


def test_spot_tasks_cloudfront_and_waf_are_priced_when_present():
    p = PRICES["eu-west-1"]
    graph = [
        Res("aws:ecs/service:Service", "s", {"desiredCount": 4.0, "capacityProviderStrategies": [
            {"capacityProvider": "FARGATE", "base": 1.0, "weight": 1.0},
            {"capacityProvider": "FARGATE_SPOT", "weight": 1.0},
        ]}, {}),
        Res("aws:ecs/taskDefinition:TaskDefinition", "t", {"cpu": "1024", "memory": "2048"}, {}),
        Res("aws:cloudfront/distribution:Distribution", "cdn", {}, {}),
        Res("aws:wafv2/webAcl:WebAcl", "acl", {"rules": [{}, {}]}, {}),
    ]  # fmt: skip
    lines = {line.item: line for line in estimate(graph, "eu-west-1", log_gb_per_month=0).lines}
    spot = lines["minimum tasks on FARGATE_SPOT (1 vCPU / 2 GB X86_64): vCPU"]
    assert spot.quantity == 1.5 * 730 and spot.unit_price == pytest.approx(p.fargate_vcpu_hour["X86_64"] * 0.3)
    assert lines["minimum tasks on FARGATE (1 vCPU / 2 GB X86_64): vCPU"].quantity == 2.5 * 730
    assert lines["WAF web ACLs"].monthly == 5.0 and lines["WAF rules"].monthly == 2.0
    assert lines["CloudFront distributions (no fixed fee: requests and data only)"].monthly == 0


def test_unknown_region_and_negative_log_volume_are_refused():
    with pytest.raises(CostError, match="no price table for region 'us-west-2'; tables exist for: eu-west-1"):
        estimate([], "us-west-2")
    with pytest.raises(CostError, match="allowed: 0 or more"):
        estimate([], "eu-west-1", log_gb_per_month=-1)


def test_the_command_prints_the_table_and_total(capsys):
    assert main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "gantry stack dev: fixed monthly cost estimate" in out
    assert "fixed total" in out and "106.07" in out and "as of 2026-12-01" in out

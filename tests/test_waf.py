"""The web ACL's pure parts: the Content-Length regex against integer comparison, and the rule list."""

from __future__ import annotations

import random
import re

import pytest

from components.edge.waf import (
    COUNTED_COMMON_RULES,
    WafRuleSpec,
    WebFirewall,
    WebFirewallArgs,
    content_length_above,
    web_acl_rules,
)
from components.env import AwsEnv
from components.settings.edge import WafSettings
from tests.harness import ACCOUNT, REGION, run_component

ENV = AwsEnv(account_id=ACCOUNT, region=REGION, partition="aws", stack="test")

# RegexMatchStatement.RegexString: 1-512 characters (botocore's wafv2 model, RegexPatternString).
WAF_REGEX_MAX = 512


@pytest.mark.parametrize(
    "limit", [0, 1, 9, 10, 99, 100, 1024, 8192, 2 * 1024 * 1024, 20 * 1024 * 1024, 10**9, 512 * 1024 * 1024]
)
def test_the_regex_matches_exactly_the_numbers_above_the_limit(limit):
    pattern = re.compile(content_length_above(limit))
    rng = random.Random(limit)
    near = range(max(0, limit - 300), limit + 300)
    far = [rng.randrange(0, 10 * (limit + 10)) for _ in range(3000)]
    for n in [*near, *far, 10 * limit + 7, limit * 100]:
        assert bool(pattern.fullmatch(str(n))) == (n > limit), n
    # Leading zeros do not hide a large number, nor make a small one large; non-numbers never match.
    assert pattern.fullmatch("000" + str(limit + 1)) and not pattern.fullmatch("000" + str(limit))
    assert not pattern.fullmatch(f"{limit + 1}x") and not pattern.fullmatch("")
    assert len(content_length_above(limit)) <= WAF_REGEX_MAX


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        content_length_above(-1)


def _spec(**settings) -> WafRuleSpec:
    return WafRuleSpec(settings=WafSettings(**settings), max_body_bytes=4096, metric_prefix="gantry-test")


def test_block_mode_blocks_with_429_and_413_and_keeps_managed_actions():
    rules = {r["name"]: r for r in web_acl_rules(_spec())}
    assert list(rules) == ["ip-reputation", "rate-per-ip", "body-too-large", "known-bad-inputs", "common"]
    assert rules["rate-per-ip"]["action"] == {"block": {"custom_response": {"response_code": 429}}}
    assert rules["body-too-large"]["action"] == {"block": {"custom_response": {"response_code": 413}}}
    for name in ("ip-reputation", "known-bad-inputs", "common"):
        assert rules[name]["override_action"] == {"none": {}}
    overrides = rules["common"]["statement"]["managed_rule_group_statement"]["rule_action_overrides"]
    assert [o["name"] for o in overrides] == list(COUNTED_COMMON_RULES) == ["SizeRestrictions_BODY"]
    assert {r["visibility_config"]["metric_name"] for r in rules.values()} == {f"gantry-test-{n}" for n in rules}


def test_count_mode_counts_everything():
    for rule in web_acl_rules(_spec(action="count")):
        assert (rule.get("action") or rule["override_action"]) == {"count": {}}, rule["name"]


def test_no_body_limit_means_no_size_rule():
    spec = WafRuleSpec(settings=WafSettings(), max_body_bytes=None, metric_prefix="gantry-test")
    assert "body-too-large" not in {r["name"] for r in web_acl_rules(spec)}


def test_a_cloudfront_web_acl_needs_the_us_east_1_provider():
    def build():
        WebFirewall("waf", WebFirewallArgs(env=ENV, settings=WafSettings(), scope="CLOUDFRONT", max_body_bytes=None))

    with pytest.raises(ValueError, match="us-east-1"):
        run_component(build)

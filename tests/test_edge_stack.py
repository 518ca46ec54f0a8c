"""Whole-stack tests of the edge: the real __main__.py for both committed stacks (CloudFront, no domain) and
for the variants a team chooses (a domain on CloudFront; `edge.mode: alb` with a domain; the WAF counting
or off). Each asserts what a real mistake would break: a listener that forwards plain HTTP from the
internet, a load balancer with a public address behind CloudFront, an Authorization header that never
reaches the worker, a cached API answer, a web ACL not attached to the edge or not following config, WAF
logs that keep API keys or forever."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.edge.distribution import api_security_headers
from components.edge.waf import content_length_above
from components.settings.pinned import with_defaults
from tests.harness import (
    ACCOUNT,
    CLOUDFRONT_ZONE_ID,
    HOSTED_ZONES,
    OWN_SERVICE,
    PRIVATE_SUBNETS,
    PUBLIC_SUBNETS,
    REGION,
    Graph,
    run_program,
    stack_config,
    with_test_secrets,
)

STACKS = ["dev", "prod", OWN_SERVICE]
[ZONE_ID] = HOSTED_ZONES
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
LISTENER = "aws:lb/listener:Listener"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
WORKER_MAX_REQUEST_BYTES = 2 * 1024 * 1024
# With the Batch API on (queue.enabled), uploads of batch input files are the largest bodies.
WORKER_MAX_BATCH_FILE_BYTES = 20 * 1024 * 1024


def edge_config(stack: str) -> dict[str, Any]:
    """The stack file's own `edge` (its departures from the defaults), to build variants from."""
    return dict(stack_config(stack).get("gantry:edge", {}))


def edge_values(stack: str) -> dict[str, Any]:
    """`edge` as the stack deploys it: its stack file's values over the defaults."""
    return with_defaults("edge", stack_config(stack).get("gantry:edge"))


def variant(stack: str, **changes: Any) -> Graph:
    config, secret_keys = with_test_secrets(stack_config(stack))
    for key, value in changes.items():
        config[f"gantry:{key}"] = value
    return run_program(stack, config, secret_keys)


def with_waf(stack: str, **waf: Any) -> dict[str, Any]:
    edge = edge_config(stack)
    return {**edge, "waf": {**edge.get("waf", {}), **waf}}


@pytest.fixture(params=STACKS)
def stack(request):
    return request.param


@pytest.fixture
def graph(stack) -> Graph:
    return run_program(stack)


def internet_reachable_plain_http(g: Graph) -> list[str]:
    """Plain-HTTP listeners that forward (not redirect) on a public load balancer whose security group
    admits the listener's port from an address range."""
    found = []
    for lb in g.of_type("aws:lb/loadBalancer:LoadBalancer"):
        if lb.inputs["internal"]:
            continue
        groups = set(lb.inputs["securityGroups"])
        open_ports = {
            r.inputs["fromPort"]
            for r in g.of_type(SG_INGRESS)
            if r.inputs["securityGroupId"] in groups and r.inputs.get("cidrIpv4")
        }
        for listener in g.of_type(LISTENER):
            forwards = {a["type"] for a in listener.inputs["defaultActions"]} - {"redirect"}
            if listener.inputs["protocol"] == "HTTP" and listener.inputs["port"] in open_ports and forwards:
                found.append(listener.name)
    return found


# ---- the committed stacks: CloudFront, no domain -------------------------------------------------


def test_no_listener_forwards_plain_http_from_the_internet(graph):
    assert internet_reachable_plain_http(graph) == []
    lb = graph.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["internal"] is True and lb["subnets"] == PRIVATE_SUBNETS


def test_cloudfront_reaches_the_internal_load_balancer_through_a_vpc_origin(graph, stack):
    lb = graph.one("aws:lb/loadBalancer:LoadBalancer")
    origin = graph.one("aws:cloudfront/vpcOrigin:VpcOrigin").inputs["vpcOriginEndpointConfig"]
    assert origin["arn"] == lb.outputs["arn"]
    assert (origin["httpPort"], origin["originProtocolPolicy"]) == (80, "http-only")
    (distribution_origin,) = graph.one(DISTRIBUTION).inputs["origins"]
    assert distribution_origin["domainName"] == lb.outputs["dnsName"]
    vpc = distribution_origin["vpcOriginConfig"]
    assert vpc["vpcOriginId"] == graph.one("aws:cloudfront/vpcOrigin:VpcOrigin").outputs["id"]
    assert vpc["originReadTimeout"] == edge_values(stack)["originReadTimeoutSeconds"]
    assert "customOriginConfig" not in distribution_origin
    # The origin listener is the production one: it forwards to the service's target group.
    http = graph.named("gantry-lb-http").inputs
    assert (http["port"], http["protocol"], http["defaultActions"][0]["type"]) == (80, "HTTP", "forward")


def test_the_distribution_redirects_http_forwards_authorization_and_caches_nothing(graph):
    d = graph.one(DISTRIBUTION).inputs
    behavior = d["defaultCacheBehavior"]
    assert behavior["viewerProtocolPolicy"] == "redirect-to-https"
    assert sorted(behavior["allowedMethods"]) == ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    # CachingDisabled: nothing is cached; with caching disabled, AllViewerExceptHostHeader forwards every
    # viewer header including Authorization (an origin request policy cannot name it itself).
    assert behavior["cachePolicyId"] == CACHING_DISABLED
    assert behavior["originRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert not ({"forwardedValues", "minTtl", "defaultTtl", "maxTtl"} & set(behavior))
    assert not d.get("orderedCacheBehaviors")
    # No domain: the default *.cloudfront.net certificate, whose TLS policy CloudFront fixes itself.
    assert d["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}
    assert not d.get("aliases")
    assert d["enabled"] is True


def test_the_web_acl_is_attached_to_the_distribution_through_us_east_1(graph, stack):
    acl = graph.one(WEB_ACL)
    assert acl.inputs["scope"] == "CLOUDFRONT"
    assert graph.one(DISTRIBUTION).inputs["webAclId"] == acl.outputs["arn"]
    provider = graph.named("gantry-edge-us-east-1")
    assert provider.inputs["region"] == "us-east-1"
    for part in (acl, graph.named("gantry-edge-waf-logs"), graph.named("gantry-edge-waf-logging")):
        assert part.opts.provider.startswith(provider.urn), part.name
    # An explicit provider does not read aws:defaultTags: it is given the stack's tags.
    stack_tags = stack_config(stack)["aws:defaultTags"]["tags"]
    assert json.loads(provider.inputs["defaultTags"]) == {"tags": stack_tags}
    assert not graph.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")


def _rules(g: Graph) -> dict[str, dict]:
    return {r["name"]: r for r in g.one(WEB_ACL).inputs["rules"]}


def test_the_web_acl_rules_and_limits_follow_config(graph, stack):
    waf = edge_values(stack)["waf"]
    rules = _rules(graph)
    managed = {
        name: r["statement"]["managedRuleGroupStatement"]["name"]
        for name, r in rules.items()
        if "managedRuleGroupStatement" in r["statement"]
    }
    assert set(managed.values()) == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    rate = rules["rate-per-ip"]["statement"]["rateBasedStatement"]
    assert (rate["limit"], rate["evaluationWindowSec"], rate["aggregateKeyType"]) == (
        waf["rateLimitPerIp"],
        waf["rateWindowSeconds"],
        "IP",
    )
    assert rules["rate-per-ip"]["action"] == {"block": {"customResponse": {"responseCode": 429}}}
    # The common rule set's 8 KB body rule counts (embedding batches are bigger); the size rule enforces
    # the worker's own limit from Content-Length instead.
    common = rules["common"]["statement"]["managedRuleGroupStatement"]
    assert common["ruleActionOverrides"] == [{"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
    assert all(rules[name]["overrideAction"] == {"none": {}} for name in managed)
    if stack == OWN_SERVICE:
        assert "body-too-large" not in rules  # a team's own image sets its own limit, or none
    else:
        size = rules["body-too-large"]["statement"]["regexMatchStatement"]
        assert size["fieldToMatch"] == {"singleHeader": {"name": "content-length"}}
        batches = stack_config(stack).get("gantry:queue", {}).get("enabled", False)
        limit = WORKER_MAX_BATCH_FILE_BYTES if batches else WORKER_MAX_REQUEST_BYTES
        assert size["regexString"] == content_length_above(limit)
        assert rules["body-too-large"]["action"] == {"block": {"customResponse": {"responseCode": 413}}}
    assert sorted(r["priority"] for r in rules.values()) == list(range(len(rules)))
    assert graph.one(WEB_ACL).inputs["defaultAction"] == {"allow": {}}


def test_waf_logs_are_retained_redact_the_api_key_and_admit_only_log_delivery(graph, stack):
    group = graph.named("gantry-edge-waf-logs")
    assert group.inputs["name"] == f"aws-waf-logs-gantry-{stack}"
    assert group.inputs["retentionInDays"] == edge_values(stack)["waf"]["logRetentionDays"]
    logging = graph.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    assert logging.inputs["resourceArn"] == graph.one(WEB_ACL).outputs["arn"]
    assert logging.inputs["logDestinationConfigs"] == [group.outputs["arn"]]
    assert logging.inputs["redactedFields"] == [{"singleHeader": {"name": "authorization"}}]
    policy = graph.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    (statement,) = json.loads(policy.inputs["policyDocument"])["Statement"]
    assert statement["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert statement["Resource"] == f"{group.outputs['arn']}:*"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert statement["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:*"}
    assert logging.depends_on(policy)


def test_the_test_listener_is_reachable_only_from_inside_the_vpc(graph):
    tests = [r for r in graph.of_type(LISTENER) if r.name == "gantry-lb-test"]
    for listener in tests:
        port = listener.inputs["port"]
        into = [r.inputs for r in graph.of_type(SG_INGRESS) if r.inputs["fromPort"] <= port <= r.inputs["toPort"]]
        assert [r["referencedSecurityGroupId"] for r in into] == [graph.named("gantry-sg-hook").outputs["id"]]


# ---- variants ------------------------------------------------------------------------------------


def test_a_domain_on_cloudfront_brings_a_us_east_1_certificate_aliases_and_records():
    g = variant("prod", domain={"hostedZoneId": ZONE_ID, "hostname": "embed.acme.io"})
    d = g.one(DISTRIBUTION)
    assert d.inputs["aliases"] == ["embed.acme.io"]
    validation = g.one("aws:acm/certificateValidation:CertificateValidation")
    assert d.inputs["viewerCertificate"] == {
        "acmCertificateArn": validation.outputs["certificateArn"],
        "sslSupportMethod": "sni-only",
        "minimumProtocolVersion": "TLSv1.2_2021",
    }
    provider = g.named("gantry-edge-us-east-1")
    assert g.one("aws:acm/certificate:Certificate").opts.provider.startswith(provider.urn)
    records = {r.inputs["type"]: r.inputs for r in g.of_type("aws:route53/record:Record") if r.inputs.get("aliases")}
    assert set(records) == {"A", "AAAA"}
    for record in records.values():
        assert record["zoneId"] == ZONE_ID and record["name"] == "embed.acme.io"
        assert record["aliases"] == [
            {"name": d.outputs["domainName"], "zoneId": CLOUDFRONT_ZONE_ID, "evaluateTargetHealth": False}
        ]
    assert g.exports["serviceUrl"] == "https://embed.acme.io"
    # The load balancer stays internal: no listener, certificate or record of its own for the domain.
    assert g.one("aws:lb/loadBalancer:LoadBalancer").inputs["internal"] is True
    assert not [r for r in g.of_type(LISTENER) if r.inputs["protocol"] == "HTTPS"]
    assert internet_reachable_plain_http(g) == []


def test_alb_mode_puts_a_regional_web_acl_on_the_public_load_balancer():
    edge = {**edge_config("prod"), "mode": "alb"}
    edge.pop("originReadTimeoutSeconds", None)  # a CloudFront setting: refused in alb mode
    g = variant("prod", domain={"hostedZoneId": ZONE_ID, "hostname": "embed.acme.io"}, edge=edge)
    lb = g.one("aws:lb/loadBalancer:LoadBalancer")
    assert lb.inputs["internal"] is False and lb.inputs["subnets"] == PUBLIC_SUBNETS
    acl = g.one(WEB_ACL)
    assert acl.inputs["scope"] == "REGIONAL" and not acl.opts.provider
    association = g.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association == {"resourceArn": lb.outputs["arn"], "webAclArn": acl.outputs["arn"]}
    assert not g.of_type(DISTRIBUTION) and not g.of_type("aws:cloudfront/vpcOrigin:VpcOrigin")
    assert g.named("gantry-lb-https").inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    assert internet_reachable_plain_http(g) == []
    (statement,) = json.loads(g.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").inputs["policyDocument"])[
        "Statement"
    ]
    assert statement["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:*"}
    # prod's blue/green test listener is still only the hook's, on the public load balancer too.
    test_port = g.named("gantry-lb-test").inputs["port"]
    into_test = [r.inputs for r in g.of_type(SG_INGRESS) if r.inputs["fromPort"] == test_port]
    assert [r.get("referencedSecurityGroupId") for r in into_test] == [g.named("gantry-sg-hook").outputs["id"]]
    assert g.exports["serviceUrl"] == "https://embed.acme.io"
    assert g.exports["edgeName"] == lb.outputs["dnsName"]


def test_count_mode_blocks_nothing():
    g = variant("prod", edge=with_waf("prod", action="count"))
    for name, rule in _rules(g).items():
        action = rule.get("action") or rule.get("overrideAction")
        assert action == {"count": {}}, name


def test_a_configured_body_limit_and_rate_reach_the_rules():
    # prod: no Batch API, so the worker's own limit is MAX_REQUEST_BYTES (2 MiB) and 4 MiB is above it.
    g = variant("prod", edge=with_waf("prod", maxBodyBytes=4 * 1024 * 1024, rateLimitPerIp=250, rateWindowSeconds=60))
    rules = _rules(g)
    regex = rules["body-too-large"]["statement"]["regexMatchStatement"]["regexString"]
    assert re.match(regex, str(4 * 1024 * 1024 + 1)) and not re.match(regex, str(4 * 1024 * 1024))
    rate = rules["rate-per-ip"]["statement"]["rateBasedStatement"]
    assert (rate["limit"], rate["evaluationWindowSec"]) == (250, 60)


def test_the_waf_can_be_switched_off_in_dev():
    g = variant("dev", edge=with_waf("dev", enabled=False))
    assert not g.of_type(WEB_ACL) and not g.of_type("aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    assert not g.one(DISTRIBUTION).inputs.get("webAclId")


# ---- response headers and access logs (issue 18) ---------------------------------------------------

HEADERS_POLICY = "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy"
LOG_SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
LOG_DESTINATION = "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination"
LOG_DELIVERY = "aws:cloudwatch/logDelivery:LogDelivery"
# RFC 6797 leaves max-age to the site; the HSTS preload list (hstspreload.org) and scanners ask for at
# least one year, which is also AWS's managed SecurityHeadersPolicy's value.
ONE_YEAR = 31_536_000


def cache_behaviors(distribution) -> list[dict[str, Any]]:
    return [distribution.inputs["defaultCacheBehavior"], *(distribution.inputs.get("orderedCacheBehaviors") or [])]


def test_every_cache_behavior_sends_hsts_and_nosniff_over_whatever_the_origin_says(graph):
    policy = graph.one(HEADERS_POLICY)
    for behavior in cache_behaviors(graph.one(DISTRIBUTION)):
        assert behavior["responseHeadersPolicyId"] == policy.outputs["id"]
    headers = policy.inputs["securityHeadersConfig"]
    hsts = headers["strictTransportSecurity"]
    assert hsts["accessControlMaxAgeSec"] >= ONE_YEAR and hsts["includeSubdomains"] is True
    assert headers["contentTypeOptions"] == {"override": True}
    # Each header overrides the origin's: a worker answering without them, or weaker, still gets them.
    assert all(h["override"] is True for h in headers.values())
    assert headers["frameOptions"]["frameOption"] == "DENY"
    assert "default-src 'none'" in headers["contentSecurityPolicy"]["contentSecurityPolicy"]


@pytest.mark.parametrize("stack", ["prod"])
def test_production_logs_every_viewer_request_to_a_private_bucket_that_expires_them(graph, stack):
    distribution = graph.one(DISTRIBUTION)
    provider = graph.named("gantry-edge-us-east-1")
    source = graph.one(LOG_SOURCE)
    assert source.inputs["logType"] == "ACCESS_LOGS"
    assert source.inputs["resourceArn"] == distribution.outputs["arn"]
    bucket = graph.named("gantry-edge-access-logs")
    destination = graph.one(LOG_DESTINATION)
    assert destination.inputs["deliveryDestinationConfiguration"]["destinationResourceArn"] == bucket.outputs["arn"]
    delivery = graph.one(LOG_DELIVERY)
    assert delivery.inputs["deliverySourceName"] == source.outputs["name"]
    assert delivery.inputs["deliveryDestinationArn"] == destination.outputs["arn"]
    policy_resource = graph.named("gantry-edge-access-logs-policy")
    assert delivery.depends_on(policy_resource)
    # CloudFront's v2 logging is configured in us-east-1; the bucket lives there with its delivery.
    for part in (source, destination, delivery, bucket, policy_resource):
        assert part.opts.provider.startswith(provider.urn), part.name
    # Private, encrypted, TLS-only, no ACLs, expiring.
    block = graph.named("gantry-edge-access-logs-public-access").inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    ownership = graph.named("gantry-edge-access-logs-ownership").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    sse = graph.named("gantry-edge-access-logs-encryption").inputs["rules"]
    assert sse[0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    (rule,) = graph.named("gantry-edge-access-logs-lifecycle").inputs["rules"]
    assert rule["expiration"]["days"] == 90 and rule["status"] == "Enabled"
    assert bucket.inputs.get("forceDestroy") is not True  # prod's logs survive a destroy
    document = policy_resource.json("policy")
    write, deny = document["Statement"]
    assert write["Principal"] == {"Service": "delivery.logs.amazonaws.com"} and write["Action"] == "s3:PutObject"
    assert write["Resource"] == f"{bucket.outputs['arn']}/AWSLogs/{ACCOUNT}/*"
    assert write["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    assert write["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:delivery-source:*"
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_dev_logs_nothing_unless_it_opts_in():
    assert not run_program("dev").of_type(LOG_SOURCE)
    opted = variant("dev", edge={**edge_config("dev"), "accessLogs": True, "accessLogRetentionDays": 7})
    assert opted.one(LOG_SOURCE).inputs["resourceArn"] == opted.one(DISTRIBUTION).outputs["arn"]
    (rule,) = opted.named("gantry-edge-access-logs-lifecycle").inputs["rules"]
    assert rule["expiration"]["days"] == 7
    # A disposable stack's `pulumi destroy` removes the bucket with its logs.
    assert opted.named("gantry-edge-access-logs").inputs["forceDestroy"] is True


def test_production_may_switch_its_edge_logs_off_explicitly():
    assert not variant("prod", edge={**edge_config("prod"), "accessLogs": False}).of_type(LOG_SOURCE)


def test_the_security_headers_are_at_least_aws_s_managed_security_headers_policy():
    """Compared with Managed-SecurityHeadersPolicy (67f7725c-6f97-4210-82d7-5512b31e9d03): HSTS max-age at
    least its 31536000 and with includeSubDomains, nosniff, framing and referrers no looser than
    SAMEORIGIN and strict-origin-when-cross-origin, and every header forced over the origin's."""
    headers: dict[str, Any] = dict(api_security_headers())
    hsts = headers["strict_transport_security"]
    assert hsts["access_control_max_age_sec"] >= ONE_YEAR and hsts["include_subdomains"] is True
    assert headers["content_type_options"] == {"override": True}
    assert headers["frame_options"]["frame_option"] in ("DENY", "SAMEORIGIN")
    assert headers["referrer_policy"]["referrer_policy"] in (
        "no-referrer",
        "same-origin",
        "strict-origin-when-cross-origin",
    )
    assert all(h["override"] is True for h in headers.values())

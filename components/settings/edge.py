"""Settings of the edge: `edge` (CloudFront or a public ALB, and the WAF), `loadBalancer` (with its
health check) and `domain`.

Security stance: no configuration serves plain HTTP to the internet. Without a domain the edge is
CloudFront, which gives HTTPS on its own name, in front of an internal load balancer; `edge.mode: alb`
(a public load balancer) needs a domain for its certificate and is refused without one. TLS 1.3
policies only (a post-quantum one by default), desync mitigation on, deletion protection, access logs
and the WAF (blocking) on by default; ingress ranges must be explicit CIDRs. Settings that would have
no effect in the chosen mode are refused rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, field_validator

from components.settings.base import Cidr, Section, Token, Where, because, between, one_of
from components.settings.network import RetentionDays

# TLS 1.3-capable ALB policies ("Security policies for your Application Load Balancer",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html).
# The default is the one AWS recommends there: "AWS recommends implementing the new post-quantum TLS
# (PQ-TLS) based security policy ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09" - hybrid ML-KEM key
# exchange for clients that offer it, TLS 1.3 or 1.2 with restricted ciphers for those that do not.
# The -1-3- policies drop TLS 1.2; the FIPS ones use FIPS 140-3 validated modules; the 2021-06 ones
# (no post-quantum key exchange) stay allowed for stacks already on them.
TlsPolicy = Literal[
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
]
TLS13_POLICIES: tuple[str, ...] = get_args(TlsPolicy)
# AWS WAF rate-based rules evaluate over one of these windows (RateBasedStatement.EvaluationWindowSec).
RATE_WINDOWS = (60, 120, 300, 600)
# CloudFront's origin response timeout: the API accepts 1-120 s (VpcOriginConfig.OriginReadTimeout in
# botocore's CloudFront model), but an account's default quota "Response timeout per origin" is 60 s;
# more needs a Service Quotas increase first ("To configure a value greater than 60 seconds, request a
# quota increase", https://repost.aws/knowledge-center/cloudfront-custom-origin-response).
ORIGIN_READ_TIMEOUT_QUOTA = 60
# Settings that exist for one edge mode only: set in the other they would do nothing.
ALB_MODE_ONLY = {"loadBalancer": ("ingressCidrs", "tlsPolicy")}
CLOUDFRONT_MODE_ONLY = {
    "edge": (
        "originReadTimeoutSeconds",
        "originKeepaliveTimeoutSeconds",
        "originReadTimeoutQuotaRaised",
        "priceClass",
        "minimumProtocolVersion",
        "accessLogs",
        "accessLogRetentionDays",
    )
}
# Settings gantry no longer reads, and what replaced them (refused with that message, never ignored).
RETIRED = {
    ("loadBalancer", "allowPlainHttp"): (
        "was removed: no stack serves plain HTTP any more. Without gantry:domain the edge is CloudFront "
        "(gantry:edge.mode: cloudfront, the default), which serves HTTPS on its own *.cloudfront.net name "
        "in front of an internal load balancer; with a domain, gantry:edge.mode chooses CloudFront or a "
        "public ALB, both HTTPS. Delete the line"
    ),
}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[0-9A-Z]{1,31}$")
# Names that never resolve publicly (RFC 6761, RFC 6762, ICANN's .internal), so ACM cannot validate them.
_PRIVATE_TLDS = ("internal", "local", "localhost", "test", "example", "invalid", "lan", "home", "corp", "intranet")
# ACM: "the length of the domain name (technically, the Common Name) ... cannot exceed 64 octets
# (characters), including periods" (RequestCertificate, DomainName; RFC 5280).
ACM_MAX_DOMAIN_LENGTH = 64


class HealthCheckSettings(Section):
    interval_seconds: int = Field(15, ge=5, le=300)
    """How often the load balancer asks each target; with healthyThreshold it sets how soon a new task
    takes traffic, with unhealthyThreshold how soon a broken one stops."""
    timeout_seconds: int = Field(5, ge=2, le=120)
    """Must be below the interval."""
    healthy_threshold: int = Field(2, ge=2, le=10)
    """Consecutive passes before a target takes traffic: two intervals, so one lucky answer is not enough."""
    unhealthy_threshold: int = Field(3, ge=2, le=10)
    """One slow answer does not flap a task."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.timeout_seconds >= self.interval_seconds:
            yield "timeoutSeconds", f"{self.timeout_seconds} must be below intervalSeconds ({self.interval_seconds})"


class LoadBalancerSettings(Section):
    ingress_cidrs: tuple[Cidr, ...] = ("0.0.0.0/0",)
    """The whole internet: a public endpoint's clients are anywhere; narrow it for internal-only APIs. edge.mode alb
    only (behind CloudFront the load balancer admits CloudFront's VPC origin alone)."""
    idle_timeout_seconds: int = Field(60, ge=1, le=4000)
    """Long enough for a large embeddings batch; raise it for slow LLM calls."""
    deletion_protection: bool = True
    """`pulumi destroy` cannot remove the load balancer by accident."""
    access_logs: bool = True
    """Access logs to an encrypted, private, TLS-only S3 bucket."""
    access_log_retention_days: int = Field(90, ge=1, le=3653)
    """S3 lifecycle expiry of access logs."""
    desync_mitigation_mode: Literal["monitor", "defensive", "strictest"] = "strictest"
    """strictest: API clients send RFC-compliant requests, so ambiguous ones (request smuggling) are
    refused rather than merely monitored (monitor) or let through when merely unusual (defensive)."""
    tls_policy: TlsPolicy = because("ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", "TLS 1.3 policies only")
    """The policy AWS recommends (see TLS13_POLICIES): post-quantum hybrid key exchange with a TLS 1.2
    fallback for older SDKs; TLS 1.3 policies only. edge.mode alb only."""
    deregistration_delay_seconds: int = Field(30, ge=0, le=3600)
    """In-flight requests finish before a task is stopped."""
    health_check: HealthCheckSettings = HealthCheckSettings()
    """The target-group health check; each field has its own default."""

    @field_validator("ingress_cidrs")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must list at least one CIDR (0.0.0.0/0 for the internet)")
        if len(set(value)) != len(value):
            raise ValueError("lists a range twice")
        return value

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        for field, problem in self.health_check.checks(where):
            yield f"healthCheck.{field}", problem


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError("must be a lower-case fully qualified name such as api.acme.io")
    if len(value) > ACM_MAX_DOMAIN_LENGTH:
        raise ValueError(f"has {len(value)} characters; ACM certificates allow at most {ACM_MAX_DOMAIN_LENGTH}")
    if value.rsplit(".", 1)[-1] in _PRIVATE_TLDS:
        raise ValueError(
            f"ends in .{value.rsplit('.', 1)[-1]}, which never resolves publicly, so ACM cannot "
            "validate a certificate for it"
        )
    return value


def _zone_id(value: str) -> str:
    if not _ZONE_ID.match(value):
        raise ValueError("must be a Route 53 hosted zone id (Z followed by upper-case letters and digits)")
    return value


class DomainSettings(Section):
    hosted_zone_id: Annotated[Token, AfterValidator(_zone_id)]
    """The Route 53 public hosted zone that holds `hostname` (checked to exist before anything is created)."""
    hostname: Annotated[Token, AfterValidator(_hostname)]
    """The service's DNS name, inside the zone: gets an ACM certificate and an alias record."""


def within_zone(hostname: str, zone_name: str) -> bool:
    zone = zone_name.rstrip(".").lower()
    return hostname == zone or hostname.endswith(f".{zone}")


class WafSettings(Section):
    enabled: bool = True
    """On: a web ACL filters requests before they reach the tasks. About $10/month plus $0.60
    per million requests (README, "What the edge costs"); prod must keep it."""
    action: Literal["block", "count"] = "block"
    """`count` runs every rule without blocking anything (matches show in the WAF metrics
    and logs): for a first rollout, to find false positives before they cost a client a request."""
    rate_limit_per_ip: int = between(3000, 10, 2_000_000_000, "AWS WAF's rate-based rule limits")
    """Requests per client IP per rateWindowSeconds, sized to the sample worker's dev per-tenant rate
    (600/minute) over the 5-minute window: above it an address gets 429 until its rate falls. Set it above what
    your busiest client sends from one address (a tenant behind NAT shares one)."""
    rate_window_seconds: Annotated[int, one_of(RATE_WINDOWS, "AWS WAF's rate-based evaluation windows")] = 300
    """The window the per-IP rate is counted over: long enough that a short burst is not a ban."""
    max_body_bytes: int | None = between(None, 1024, 512 * 1024 * 1024, "a request body size in bytes")  # type: ignore[arg-type]
    """Unset: the largest body the sample worker accepts (its MAX_REQUEST_BYTES, or MAX_BATCH_FILE_BYTES
    when the Batch API is on; 2 MiB by the worker's defaults). Requests declaring a larger Content-Length
    get 413 at the edge. A team's own image gets no size rule unless this is set."""
    log_retention_days: RetentionDays = 30
    """Retention of the WAF's log group (aws-waf-logs-gantry-<stack>): a month of blocked requests to
    tell a false positive from an attack."""


class EdgeSettings(Section):
    mode: Literal["cloudfront", "alb"] = "cloudfront"
    """cloudfront: HTTPS on CloudFront's own name with no certificate or domain of ours, and an
    internal load balancer with no public address (CloudFront reaches it through a VPC origin). alb: a
    public load balancer with an ACM certificate (needs gantry:domain), for responses slower than
    CloudFront's origin timeout allows."""
    origin_read_timeout_seconds: int = between(60, 1, 120, "CloudFront's origin response timeout range")
    """How long CloudFront waits for the first byte of a response (and between bytes): the most an
    account's quota allows without an increase; up to 120 with originReadTimeoutQuotaRaised."""
    origin_read_timeout_quota_raised: bool = False
    """Turn it on once Service Quotas has raised "Response timeout per origin" above 60 s
    for the account; then originReadTimeoutSeconds may exceed 60."""
    origin_keepalive_timeout_seconds: int = between(
        5, 1, 60, "CloudFront's origin keep-alive range without a quota increase"
    )
    """CloudFront's own value: how long an idle connection to the load balancer is kept; must
    stay below loadBalancer.idleTimeoutSeconds, or the load balancer closes connections CloudFront reuses."""
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    """PriceClass_100: edge locations in North America and Europe (the cheapest); every request
    still goes to the origin region, so more locations mostly buy a shorter TLS handshake."""
    minimum_protocol_version: Literal["TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025"] = "TLSv1.2_2021"
    """TLSv1.2_2021: TLS 1.2+ with forward-secret ciphers, which every current client offers. Only with
    gantry:domain: on its default *.cloudfront.net certificate CloudFront fixes the policy at TLSv1
    whatever is set (botocore's ViewerCertificate.MinimumProtocolVersion)."""
    access_logs: bool | None = None
    """Unset: on for a production stack (named prod/production, or with loadBalancer.deletionProtection
    on), off elsewhere. CloudFront standard logging (v2) of every viewer request to a private, encrypted,
    TLS-only S3 bucket (about $0.25 per GB delivered plus S3 storage)."""
    access_log_retention_days: int = Field(90, ge=1, le=3653)
    """S3 lifecycle expiry of the edge's access logs."""
    waf: WafSettings = WafSettings()
    """The web ACL in front of the edge; each field has its own default."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.origin_read_timeout_seconds > ORIGIN_READ_TIMEOUT_QUOTA and not self.origin_read_timeout_quota_raised:
            yield (
                "originReadTimeoutSeconds",
                f"{self.origin_read_timeout_seconds} is above the {ORIGIN_READ_TIMEOUT_QUOTA} s an account's default "
                'CloudFront quota allows: request the increase of "Response timeout per origin" in Service Quotas '
                "(us-east-1), then set originReadTimeoutQuotaRaised: true; or use edge.mode alb for slow responses",
            )


def explicit_fields(raw: Mapping[str, Any] | None, names: Sequence[str]) -> list[str]:
    """The settings of `names` a stack file sets itself (defaults do not count)."""
    return [n for n in names if isinstance(raw, Mapping) and n in raw]


def edge_mode_problems(
    edge: EdgeSettings, domain: DomainSettings | None, raw: Mapping[str, Mapping[str, Any]]
) -> Iterator[tuple[str, str]]:
    """(config key, problem) for an edge mode that would serve plain HTTP, or settings the mode ignores."""
    if edge.mode == "alb" and domain is None:
        yield (
            "edge.mode",
            "alb needs gantry:domain (hostedZoneId, hostname): a public load balancer has no certificate without "
            "one and would serve plain HTTP. Set gantry:domain, or use edge.mode cloudfront, which serves HTTPS "
            "on CloudFront's own name",
        )
    unused = ALB_MODE_ONLY if edge.mode == "cloudfront" else CLOUDFRONT_MODE_ONLY
    for key, names in unused.items():
        for name in explicit_fields(raw.get(key), names):
            yield f"{key}.{name}", f"has no effect with edge.mode {edge.mode}; remove it"
    if edge.mode == "cloudfront" and domain is None and "minimumProtocolVersion" in (raw.get("edge") or {}):
        yield (
            "edge.minimumProtocolVersion",
            "has no effect without gantry:domain: on its default *.cloudfront.net certificate CloudFront "
            "fixes the viewer policy; remove it, or set a domain (its certificate takes the policy)",
        )

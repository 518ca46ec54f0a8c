"""Settings of the edge: `loadBalancer` (with its health check) and `domain`.

Security stance: TLS 1.3 policies only, desync mitigation on, deletion protection and access logs
on by default; ingress ranges must be explicit CIDRs; a stack without a domain serves plain HTTP only
when it opts in by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from components.settings.base import Cidr, Section, Token, Where, because

DESYNC_MODES = ("monitor", "defensive", "strictest")
# TLS 1.3-capable ALB policies (AWS's list). The default, TLS13-1-2-2021-06, is AWS's recommendation:
# TLS 1.3 with a TLS 1.2 fallback for older SDKs; the -1-3- policy drops TLS 1.2 entirely.
TLS13_POLICIES = (
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[0-9A-Z]{1,31}$")
# Names that never resolve publicly (RFC 6761, RFC 6762, ICANN's .internal), so ACM cannot validate them.
_PRIVATE_TLDS = ("internal", "local", "localhost", "test", "example", "invalid", "lan", "home", "corp", "intranet")
# ACM: "the length of the domain name (technically, the Common Name) ... cannot exceed 64 octets
# (characters), including periods" (RequestCertificate, DomainName; RFC 5280).
ACM_MAX_DOMAIN_LENGTH = 64


class HealthCheckSettings(Section):
    interval_seconds: int = Field(15, ge=5, le=300)
    """Default 15."""
    timeout_seconds: int = Field(5, ge=2, le=120)
    """Default 5; must be below the interval."""
    healthy_threshold: int = Field(2, ge=2, le=10)
    """Default 2: a new task takes traffic after ~30 s."""
    unhealthy_threshold: int = Field(3, ge=2, le=10)
    """Default 3: one slow answer does not flap a task."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.timeout_seconds >= self.interval_seconds:
            yield "timeoutSeconds", f"{self.timeout_seconds} must be below intervalSeconds ({self.interval_seconds})"


class LoadBalancerSettings(Section):
    ingress_cidrs: tuple[Cidr, ...] = ("0.0.0.0/0",)
    """Default ["0.0.0.0/0"]: it is a public endpoint; narrow it for internal-only APIs."""
    idle_timeout_seconds: int = Field(60, ge=1, le=4000)
    """Default 60: long enough for a large embeddings batch; raise it for slow LLM calls."""
    deletion_protection: bool = True
    """Default true: `pulumi destroy` cannot remove the load balancer by accident."""
    access_logs: bool = True
    """Default true: access logs to an encrypted, private, TLS-only S3 bucket."""
    access_log_retention_days: int = Field(90, ge=1, le=3653)
    """Default 90: S3 lifecycle expiry of access logs."""
    desync_mitigation_mode: Literal["monitor", "defensive", "strictest"] = "strictest"
    """Default strictest: API clients send RFC-compliant requests, so ambiguous ones (request
    smuggling) are refused rather than merely monitored."""
    tls_policy: Literal[TLS13_POLICIES] = because(TLS13_POLICIES[0], "TLS 1.3 policies only")  # type: ignore[valid-type]
    """Default ELBSecurityPolicy-TLS13-1-2-2021-06; TLS 1.3 policies only."""
    deregistration_delay_seconds: int = Field(30, ge=0, le=3600)
    """Default 30: in-flight requests finish before a task is stopped."""
    health_check: HealthCheckSettings = HealthCheckSettings()
    """The target-group health check."""
    allow_plain_http: bool = False
    """Default false: without a domain there is no certificate, so the public endpoint would carry
    API keys in clear text; a stack must opt in to that by name."""

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

"""Settings of the `network` and `vpcEndpoints` sections: the VPC and the private paths to AWS.

Security stance: the VPC range must be private (RFC 1918) and large enough for every AZ's subnets;
egress through NAT or endpoints is an explicit, per-stack choice whose cost is stated.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import field_validator

from components.settings.base import Cidr, Section, Where, between, one_of

LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
"""The values CloudWatch Logs accepts for retentionInDays. 0 ("never expire") is deliberately absent:
unbounded retention is a silent cost leak."""

RetentionDays = Annotated[int, one_of(LOG_RETENTION_DAYS, "a value CloudWatch Logs accepts")]

# RFC 1918 ranges: `ipaddress.is_private` would also admit loopback, link-local (the metadata
# endpoints) and reserved ranges.
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def az_subnet_prefix(cidr_prefix: int, availability_zones: int) -> int:
    """Prefix length of each AZ's slice of the VPC range (awsx splits the range evenly by a power of 2)."""
    return cidr_prefix + math.ceil(math.log2(availability_zones))


class NetworkSettings(Section):
    availability_zones: int = between(2, 2, 6, "an ALB needs subnets in at least two AZs")
    """The fewest that work: an ALB needs subnets in two AZs, and two survive the loss of one. At most the number
    of AZs the region has (checked against the region before anything is created)."""
    cidr_block: Cidr = "10.0.0.0/16"
    """A private RFC 1918 range; each AZ gets a /24 public and a /20 private subnet."""
    nat_strategy: Literal["none", "single", "per-az"] = "single"
    """single: one NAT gateway (~$33/month) is a single point of failure for egress, fine for
    dev; per-az keeps each AZ's egress inside the AZ (prod); none relies on VPC endpoints alone, which
    rules out deployment.strategy codedeploy (its hook calls the CodeDeploy and EC2 APIs)."""
    flow_logs: bool = True
    """On: VPC flow logs to CloudWatch, for incident forensics."""
    flow_log_retention_days: RetentionDays = 90
    """Retention of the flow logs: a quarter, long enough to trace an incident found late."""

    @field_validator("cidr_block")
    @classmethod
    def _private_range(cls, value: str) -> str:
        net = ipaddress.IPv4Network(value)
        if not any(net.subnet_of(r) for r in _RFC1918):
            raise ValueError("must lie in a private RFC 1918 range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
        if net.prefixlen < 16:
            raise ValueError("is too large: AWS allows VPC ranges from /16 to /28")
        return value

    @property
    def has_nat(self) -> bool:
        """Whether tasks can reach the internet (and AWS's public endpoints) through NAT."""
        return self.nat_strategy != "none"

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        """Rules across fields, as (field, problem)."""
        prefix = ipaddress.IPv4Network(self.cidr_block).prefixlen
        if az_subnet_prefix(prefix, self.availability_zones) > 19:
            yield (
                "cidrBlock",
                (
                    f"{self.cidr_block!r} is too small for {self.availability_zones} AZs: each AZ needs a /19 slice "
                    "(a /20 private and a /24 public subnet); use a /16 to /18"
                ),
            )


class EndpointSettings(Section):
    interface: tuple[Literal["ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm"], ...] = ()
    """Empty: each interface endpoint costs about $7.3/month per AZ, so five across two AZs cost
    more than one NAT gateway: dev leans on NAT, prod keeps image pulls, logs and secret reads on the
    AWS network. natStrategy none requires every endpoint the tasks need."""
    s3_gateway: bool = True
    """On: it is free, and ECR serves image layers from S3, so pulls stay off the NAT."""

    @field_validator("interface")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists an endpoint twice")
        return tuple(sorted(value))

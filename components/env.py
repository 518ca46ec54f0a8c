"""AwsEnv: the one context value every component takes — which account, region and partition it is in,
and the path and permissions boundary every IAM role created there must carry.

Built once in `__main__.py` from the caller's identity and the validated settings, so no component looks
either up on its own, builds an ARN for the wrong partition or creates a role outside the guardrails.
Security stance: policies and trust conditions scope to exactly this account and region, and every role
goes through `gantry_role` (below) with this value's path and boundary: it sits here, beside the value it
reads, because the network, workload and blue/green families all create roles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.contract import WORKLOAD_ROLE_PATH
from components.settings import AwsFacts, Settings, partition_for_region
from components.settings.iam import IamSettings


@dataclass(frozen=True, kw_only=True)
class AwsEnv:
    account_id: str
    """The 12-digit account the credentials deploy into."""
    region: str
    """The stack's region (validated `aws:region`)."""
    partition: str
    """aws or aws-us-gov, derived from the region."""
    stack: str
    """The Pulumi stack name; names per-stack things such as the task definition family."""
    role_path: str = WORKLOAD_ROLE_PATH
    """The path of every IAM role (gantry:iam.rolePath); default /gantry/, the bootstrap's."""
    permissions_boundary_arn: str | None = None
    """The boundary every IAM role carries. The program always sets it from gantry:iam (the bootstrap's
    boundary by default); None only where a component is built on its own (tests) or the stack opted out."""

    @classmethod
    def current(cls, settings: Settings) -> AwsEnv:
        """The caller's account (an invoke, so it runs during preview too) with the settings' region and IAM."""
        account_id = aws.get_caller_identity().account_id
        return cls(
            account_id=account_id,
            region=settings.region,
            partition=settings.partition,
            stack=pulumi.get_stack(),
            role_path=settings.iam.role_path,
            permissions_boundary_arn=settings.iam.boundary_arn(partition=settings.partition, account_id=account_id),
        )

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        """An ARN of this account (and region, unless the service is global)."""
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"


def lookup_aws_facts(values: Mapping[str, Any], region: str | None) -> AwsFacts:
    """What validation needs from AWS, looked up with invokes before any resource is registered:
    the region's available AZs, and the name of the hosted zone `gantry:domain` names."""
    if not region:
        return AwsFacts()
    zones: dict[str, str | None] = {}
    domain = values.get("gantry:domain")
    zone_id = _zone_id(domain)
    if zone_id:
        try:
            zones[zone_id] = aws.route53.get_zone(zone_id=zone_id).name
        except Exception:  # noqa: BLE001 - any failure means "this zone cannot be used"; validation says so
            zones[zone_id] = None
    names = aws.get_availability_zones(state="available").names
    return AwsFacts(
        zone_names=zones,
        availability_zones=tuple(names),
        zones_looked_up=True,
        boundary_policies=_boundary_lookup(values.get("gantry:iam"), partition_for_region(region)),
    )


def _boundary_lookup(raw: Any, partition: str) -> dict[str, bool]:
    """Whether the permissions boundary gantry:iam names exists (an invoke: IAM GetPolicy), so a missing
    bootstrap is a clear preview error, not a CreateRole failure halfway through the first `up`."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else (raw or {})
        iam = IamSettings.model_validate_json(json.dumps(value), by_alias=True, by_name=False)
    except ValueError:
        return {}  # validation reports the malformed section itself
    arn = iam.boundary_arn(partition=partition, account_id=aws.get_caller_identity().account_id)
    if arn is None:
        return {}
    try:
        aws.iam.get_policy(arn=arn)
    except Exception:  # noqa: BLE001 - NoSuchEntity or AccessDenied: either way the boundary cannot be used
        return {arn: False}
    return {arn: True}


def _zone_id(domain: Any) -> str | None:
    if isinstance(domain, str):
        try:
            domain = json.loads(domain)
        except ValueError:
            return None
    zone = domain.get("hostedZoneId") if isinstance(domain, dict) else None
    # Only look up what could be a zone id; validation reports anything else by itself.
    return zone if isinstance(zone, str) and re.fullmatch(r"Z[0-9A-Z]{1,31}", zone) else None


def gantry_role(
    name: str,
    *,
    env: AwsEnv,
    assume_role_policy: pulumi.Input[str],
    description: str,
    opts: pulumi.ResourceOptions,
) -> aws.iam.Role:
    """An IAM role under the stack's path with its permissions boundary; policies are attached by the caller
    (inline `aws.iam.RolePolicy` on exact ARNs, never a managed policy)."""
    return aws.iam.Role(
        name,
        path=env.role_path,
        permissions_boundary=env.permissions_boundary_arn,
        assume_role_policy=assume_role_policy,
        description=description,
        opts=opts,
    )

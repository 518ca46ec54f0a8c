"""The AWS quotas no mock enforces, checked over a whole stack's resources before `pulumi up` meets them.

A pure function over resources as (type, URN, camelCase props, property dependencies) — the shape both
the tests' mock graphs and the CrossGuard pack (policy/rules.py) hand over — returning one Finding per
breach, naming the resource, the quota, the measured value and the limit. It covers what refused
gantry's own deploys: IAM policy sizes (a role's inline policies together, a managed policy, a trust
policy; characters counted without whitespace), managed policies per role, explicit names against
their services' limits, and rules per security group direction. Every limit and its documented source
is one row of QUOTAS. Security stance: a check that cannot measure a value (unknown at preview, a
computed output, a document that is not JSON) skips it rather than guessing; it is never a pass for
anything it did measure.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pulumi.runtime.rpc import UNKNOWN

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
ROLE_POLICY_ATTACHMENTS_EXCLUSIVE = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"

IAM_QUOTAS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
VPC_QUOTAS = "https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html"
# terraform-provider-aws (which pulumi-aws wraps) builds a name from a namePrefix with
# id.PrefixedUniqueId: the prefix plus a 26-character unique suffix, so the prefix gets the rest.
PREFIX_SUFFIX = 26


@dataclass(frozen=True, kw_only=True)
class Quota:
    what: str
    limit: int
    source: str


# Every quota this module checks, with the page that documents it.
QUOTAS: dict[str, Quota] = {
    "iam-role-inline-policies": Quota(
        what="characters of a role's inline policies together, whitespace not counted",
        limit=10_240,
        source=f"{IAM_QUOTAS} (Role policy size)",
    ),
    "iam-managed-policy-size": Quota(
        what="characters of a managed policy, whitespace not counted",
        limit=6_144,
        source=f"{IAM_QUOTAS} (Managed policy size)",
    ),
    "iam-trust-policy-size": Quota(
        what="characters of a role trust policy, whitespace not counted",
        limit=2_048,
        source=f"{IAM_QUOTAS} (Role trust policy length, default)",
    ),
    "iam-managed-policies-per-role": Quota(
        what="managed policies attached to a role",
        limit=10,
        source=f"{IAM_QUOTAS} (Managed policies attached to an IAM role, default)",
    ),
    "iam-role-name": Quota(what="characters of an IAM role name", limit=64, source=f"{IAM_QUOTAS} (Role name)"),
    "iam-role-name-prefix": Quota(
        what="characters of an IAM role namePrefix (the provider appends 26)",
        limit=64 - PREFIX_SUFFIX,
        source=f"{IAM_QUOTAS} (Role name) and terraform-provider-aws id.PrefixedUniqueId",
    ),
    "iam-policy-name": Quota(
        what="characters of a managed policy name", limit=128, source=f"{IAM_QUOTAS} (Policy name)"
    ),
    "alb-name": Quota(
        what="characters of a load balancer name",
        limit=32,
        source="https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
    ),
    "target-group-name": Quota(
        what="characters of a target group name",
        limit=32,
        source="https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html",
    ),
    "lambda-function-name": Quota(
        what="characters of a Lambda function name",
        limit=64,
        source="https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html (FunctionName)",
    ),
    "sqs-queue-name": Quota(
        what="characters of an SQS queue name, .fifo included",
        limit=80,
        source="https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    ),
    "cloudwatch-alarm-name": Quota(
        what="characters of a CloudWatch alarm name",
        limit=255,
        source="https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
    ),
    "s3-bucket-name": Quota(
        what="S3 bucket naming rules (3-63 characters; lowercase letters, digits, dots, hyphens; starts and "
        "ends with a letter or digit; no '..'; not an IP address; no 'xn--' prefix or '-s3alias' suffix)",
        limit=63,
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
    ),
    "s3-bucket-prefix": Quota(
        what="characters of an S3 bucketPrefix (the provider appends 26)",
        limit=63 - PREFIX_SUFFIX,
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
    ),
    # Counted per address family, as AWS enforces it: a CIDR counts for its family, a security group or
    # prefix-list reference for both (a prefix list counts as its maximum entries, unknown here, so as 1).
    "security-group-rules": Quota(
        what="inbound or outbound rules of a security group (one direction, one address family)",
        limit=60,
        source=f"{VPC_QUOTAS} (Inbound or outbound rules per security group)",
    ),
}

# Explicit name properties, per resource type: (property, quota).
NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    ROLE: (("name", "iam-role-name"), ("namePrefix", "iam-role-name-prefix")),
    MANAGED_POLICY: (("name", "iam-policy-name"),),
    "aws:lb/loadBalancer:LoadBalancer": (("name", "alb-name"),),
    "aws:alb/loadBalancer:LoadBalancer": (("name", "alb-name"),),
    "aws:lb/targetGroup:TargetGroup": (("name", "target-group-name"),),
    "aws:alb/targetGroup:TargetGroup": (("name", "target-group-name"),),
    "aws:lambda/function:Function": (("name", "lambda-function-name"),),
    "aws:sqs/queue:Queue": (("name", "sqs-queue-name"),),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (("name", "cloudwatch-alarm-name"),),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": (("alarmName", "cloudwatch-alarm-name"),),
    "aws:s3/bucket:Bucket": (("bucket", "s3-bucket-name"), ("bucketPrefix", "s3-bucket-prefix")),
    "aws:s3/bucketV2:BucketV2": (("bucket", "s3-bucket-name"), ("bucketPrefix", "s3-bucket-prefix")),
}


class Subject(Protocol):
    """What the check reads of a resource (policy.rules.Resource has this shape)."""

    @property
    def type(self) -> str: ...
    @property
    def urn(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    @property
    def property_dependencies(self) -> Mapping[str, Iterable[str]]: ...


@dataclass(frozen=True, kw_only=True)
class Item:
    """A resource for `check` built by hand (tests, scripts)."""

    type: str
    urn: str
    props: Mapping[str, Any]
    property_dependencies: Mapping[str, Iterable[str]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Finding:
    resource: str
    """The URN of the resource over its quota."""
    quota: str
    """The QUOTAS key."""
    measured: int | str
    """The measured count or length (for a malformed bucket name: the name)."""
    limit: int
    detail: str = ""
    """Which part is over (a security group's direction and family) or which naming rule is broken."""

    def __str__(self) -> str:
        q = QUOTAS[self.quota]
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.resource}: {q.what}{detail}: {self.measured} (limit {self.limit}; {q.source})"


# ---------------------------------------------------------------------------------------------------------
# Measuring


def _unknown(value: Any) -> bool:
    """True when `value` (or anything inside it) is not known yet (a preview's computed output)."""
    if value is None or value == UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(_unknown(v) for v in value.values())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return any(_unknown(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    """Mappings and sequences of any kind (CrossGuard's proxies) as dict and list, for json.dumps."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def policy_size(document: Any) -> int | None:
    """Characters of a policy document as IAM counts them (whitespace not counted, IAM and AWS STS
    quotas); None when it is unknown or not a JSON document. A JSON string is measured as given: IAM
    counts what it receives, escapes included."""
    if _unknown(document):
        return None
    if isinstance(document, str):
        try:
            json.loads(document)
        except ValueError:
            return None
        text = document
    elif isinstance(document, Mapping):
        text = json.dumps(_plain(document))
    else:
        return None
    return len(re.sub(r"\s", "", text))


def _sequence(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def _linked(resource: Subject, prop: str, target: Subject) -> bool:
    """True when `resource.props[prop]` refers to `target`: by property dependency, else by name/id/arn."""
    deps = resource.property_dependencies.get(prop)
    if deps:
        return target.urn in set(deps)
    values = {str(v) for v in _sequence(resource.props.get(prop)) if not _unknown(v)}
    identity = {str(target.props[k]) for k in ("id", "name", "arn") if not _unknown(target.props.get(k))}
    return bool(values & identity)


# ---------------------------------------------------------------------------------------------------------
# The checks


def _finding(resource: Subject, quota: str, measured: int | str, detail: str = "") -> Finding:
    return Finding(resource=resource.urn, quota=quota, measured=measured, limit=QUOTAS[quota].limit, detail=detail)


def _over(resource: Subject, quota: str, measured: int | None) -> list[Finding]:
    if measured is None or measured <= QUOTAS[quota].limit:
        return []
    return [_finding(resource, quota, measured)]


def _role_findings(role: Subject, resources: Sequence[Subject]) -> list[Finding]:
    findings = _over(role, "iam-trust-policy-size", policy_size(role.props.get("assumeRolePolicy")))
    # Keyed by policy name where it is known: after `up`, AWS reports a role's inlinePolicies and
    # managedPolicyArns including those its RolePolicy and attachment resources put there (CrossGuard's
    # AnalyzeStack sees those outputs), and one policy must count once.
    inline: dict[str, int | None] = {}
    for index, p in enumerate(_sequence(role.props.get("inlinePolicies"))):
        if isinstance(p, Mapping) and p.get("policy") is not None:
            name = p.get("name")
            inline[str(name) if not _unknown(name) else f"{role.urn}#{index}"] = policy_size(p.get("policy"))
    managed: set[str] = {str(a) for a in _sequence(role.props.get("managedPolicyArns")) if not _unknown(a)}
    for r in resources:
        if r.type == ROLE_POLICY and _linked(r, "role", role):
            name = r.props.get("name")
            inline[str(name) if not _unknown(name) else r.urn] = policy_size(r.props.get("policy"))
        elif (r.type == ROLE_POLICY_ATTACHMENT and _linked(r, "role", role)) or (
            r.type == POLICY_ATTACHMENT and _linked(r, "roles", role)
        ):
            arn = r.props.get("policyArn")
            # One attachment is one policy, whether or not its ARN is known yet.
            managed.add(str(arn) if not _unknown(arn) else r.urn)
        elif r.type == ROLE_POLICY_ATTACHMENTS_EXCLUSIVE and _linked(r, "roleName", role):
            managed.update(str(a) for a in _sequence(r.props.get("policyArns")) if not _unknown(a))
    known = [size for size in inline.values() if size is not None]
    findings += _over(role, "iam-role-inline-policies", sum(known) if known else None)
    findings += _over(role, "iam-managed-policies-per-role", len(managed))
    return findings


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_name_problem(name: str) -> str | None:
    """Which S3 bucket naming rule `name` breaks, or None (general purpose buckets' rules)."""
    if not 3 <= len(name) <= 63:
        return f"{len(name)} characters"
    if not _BUCKET.match(name):
        return "characters outside a-z 0-9 . -, or not starting and ending with a letter or digit"
    if ".." in name:
        return "two adjacent periods"
    try:
        ipaddress.IPv4Address(name)
        return "formatted as an IP address"
    except ValueError:
        pass
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return "a reserved prefix"
    if name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "a reserved suffix"
    return None


def _name_findings(resource: Subject) -> list[Finding]:
    findings = []
    for prop, quota in NAMES.get(resource.type, ()):
        value = resource.props.get(prop)
        if _unknown(value) or not isinstance(value, str):
            continue
        if quota == "s3-bucket-name":
            problem = bucket_name_problem(value)
            if problem:
                findings.append(_finding(resource, quota, value, problem))
            continue
        findings += _over(resource, quota, len(value))
    return findings


def _count(rule: Mapping[str, Any], v4: str, v6: str, refs: Sequence[str]) -> tuple[int, int]:
    """(IPv4 rules, IPv6 rules) one rule entry adds: a CIDR counts for its family, a reference for both."""
    references = sum(len(_sequence(rule.get(k))) for k in refs) + (1 if rule.get("self") is True else 0)
    return len(_sequence(rule.get(v4))) + references, len(_sequence(rule.get(v6))) + references


_INLINE_REFS = ("securityGroups", "prefixListIds")
_RULE_REFS = ("sourceSecurityGroupId", "prefixListIds")
_VPC_RULE_REFS = ("referencedSecurityGroupId", "prefixListId")


def _security_group_findings(group: Subject, resources: Sequence[Subject]) -> list[Finding]:
    totals = {("ingress", 4): 0, ("ingress", 6): 0, ("egress", 4): 0, ("egress", 6): 0}

    def add(direction: str, counts: tuple[int, int]) -> None:
        totals[(direction, 4)] += counts[0]
        totals[(direction, 6)] += counts[1]

    for direction in ("ingress", "egress"):
        for rule in _sequence(group.props.get(direction)):
            if isinstance(rule, Mapping):
                add(direction, _count(rule, "cidrBlocks", "ipv6CidrBlocks", _INLINE_REFS))
    for r in resources:
        if r.type == SG_RULE and _linked(r, "securityGroupId", group) and r.props.get("type") in ("ingress", "egress"):
            add(str(r.props["type"]), _count(r.props, "cidrBlocks", "ipv6CidrBlocks", _RULE_REFS))
        elif r.type in (SG_INGRESS_RULE, SG_EGRESS_RULE) and _linked(r, "securityGroupId", group):
            add(
                "ingress" if r.type == SG_INGRESS_RULE else "egress",
                _count(r.props, "cidrIpv4", "cidrIpv6", _VPC_RULE_REFS),
            )
    return [
        _finding(group, "security-group-rules", count, f"{direction} IPv{family}")
        for (direction, family), count in sorted(totals.items())
        if count > QUOTAS["security-group-rules"].limit
    ]


def check(resources: Iterable[Subject]) -> list[Finding]:
    """Every quota of QUOTAS over a whole stack: one Finding per breach, empty when everything fits."""
    resources = list(resources)
    findings: list[Finding] = []
    for r in resources:
        if r.type == ROLE:
            findings += _role_findings(r, resources)
        elif r.type == MANAGED_POLICY:
            findings += _over(r, "iam-managed-policy-size", policy_size(r.props.get("policy")))
        elif r.type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
            findings += _security_group_findings(r, resources)
        findings += _name_findings(r)
    return findings

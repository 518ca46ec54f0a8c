"""The production checklist as pure functions over AWS resource types and their (camelCase) properties.

One rule set, two users: `policy/__main__.py` registers these functions with CrossGuard for `pulumi
preview/up --policy-pack policy`, and `tests/policy` runs the very same functions on the resource graphs
of the committed stacks. A rule looks only at AWS resource types and AWS properties (never at gantry's
logical names), so it judges a team's own stack built from gantry's components exactly as it judges
gantry's. Resource rules take `(resource_type, props)`; stack rules take every `Resource` of the stack
(and whether the stack is a production one) because their question spans resources: which security
group a load balancer uses, which listener sits on an internet-facing load balancer, which policies a
role carries. Each returns violation messages, empty when the resource or stack complies. Security
stance: the allow-lists below are the only exceptions, each one an AWS constraint documented where it is
declared; anything a rule cannot read (a missing or malformed policy document) is a violation, not a pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components import quotas
from components.settings.base import secret_looking_name, secret_looking_value
from components.settings.edge import TLS13_POLICIES

ECS_SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
LISTENER = "aws:lb/listener:Listener"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
MANAGED_POLICY = "aws:iam/policy:Policy"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
CLOUDFRONT_DISTRIBUTION = "aws:cloudfront/distribution:Distribution"

# The only actions an Allow may grant on Resource "*": AWS accepts no other resource for them (Service
# Authorization Reference: these actions list no resource type). ecr:GetAuthorizationToken is account-wide
# by design; the ELB Describe calls are what CodeDeploy reads during a blue/green deployment; Lambda
# requires ec2:DescribeNetworkInterfaces on "*" for a function in a VPC ("This action only works if it's
# allowed on all resources", https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html), and
# DescribeSubnets supports no resource-level permissions either.
STAR_RESOURCE_ACTIONS = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeTargetGroups",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        # X-Ray's write and sampling actions list no resource type; this is AWSXrayWriteOnlyAccess, which
        # the task role holds only with tracing on (components/workload/tracing.py).
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }
)

# The AWS services gantry's roles are for, the only principals a role's trust policy may name: ECS tasks
# (execution and task roles), VPC Flow Logs, CodeDeploy (blue/green) and Lambda (the validation hook);
# the services the bootstrap's deploy roles may pass roles to (bootstrap/documents.py WORKLOAD_SERVICES).
# IAM itself cannot hold a deploy to this: no condition key reads the trust document CreateRole or
# UpdateAssumeRolePolicy sets (bootstrap/documents.py TrustOnlyOnGantryRoles), so this rule does.
TRUSTED_SERVICES = frozenset(
    {"codedeploy.amazonaws.com", "ecs-tasks.amazonaws.com", "lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"}
)
# The only action a service's trust statement grants (sts:TagSession etc. are for federated sessions).
TRUST_ACTIONS = frozenset({"sts:AssumeRole"})


@dataclass(frozen=True, kw_only=True)
class Resource:
    """One resource of a stack as a stack rule sees it."""

    type: str
    """The Pulumi type token, e.g. aws:ecs/service:Service."""
    urn: str
    """Identity: what property dependencies point at."""
    props: Mapping[str, Any]
    """Inputs (camelCase, as CrossGuard gives them), with outputs known at the time of the check."""
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Property name -> URNs of the resources its value came from (how a rule links an attachment to its
    role or an ingress rule to its security group before any id is known)."""


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _json(value: Any) -> Any:
    """A property that holds JSON (as AWS documents do): decoded, or the value itself if already decoded."""
    return json.loads(value) if isinstance(value, str) else value


def _is_sequence(value: Any) -> bool:
    """A list-like property: any non-string Sequence, because CrossGuard hands rules pulumi_policy's own
    sequence proxy, not `list` (a string is a Sequence too, but one value)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if _is_sequence(value) else [value]


def _mapping(value: Any) -> Mapping[str, Any]:
    """A nested block as a Mapping (pulumi_policy's mapping proxy included); anything else reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _port(value: Any) -> str:
    """A port as people write it (the engine hands numbers over as floats)."""
    return str(int(value)) if isinstance(value, int | float) else str(value)


def _linked(resource: Resource, prop: str, target: Resource) -> bool:
    """True when `resource.props[prop]` refers to `target`: by property dependency, else by id/name/arn."""
    deps = resource.property_dependencies.get(prop)
    if deps:
        return target.urn in deps
    values = {str(v) for v in _as_list(resource.props.get(prop))}
    identity = {str(target.props[k]) for k in ("id", "name", "arn") if target.props.get(k)}
    return bool(values & identity)


def _statements(document: Any) -> list[Mapping[str, Any]]:
    statements = _json(document).get("Statement", [])
    return [s for s in _as_list(statements) if isinstance(s, Mapping)]


def star_resource_findings(document: Any, where: str) -> list[str]:
    """Allow statements of an IAM policy document that grant `*` where AWS offers a scope: a `*` (or
    `service:*`) action, a NotAction/NotResource, or Resource "*" for an action outside
    STAR_RESOURCE_ACTIONS. An unreadable document is itself a finding."""
    try:
        statements = _statements(document)
    except (ValueError, AttributeError, TypeError):
        return [f"{where}: the policy document is not valid JSON with a Statement list"]
    findings = []
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        label = f"{where} statement {statement.get('Sid') or index}"
        if "NotAction" in statement or "NotResource" in statement:
            findings.append(f"{label}: NotAction/NotResource grants everything not listed")
            continue
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        wild = [a for a in actions if a == "*" or a.endswith(":*")]
        if wild:
            findings.append(f"{label}: wildcard action {wild}")
        if "*" in _as_list(statement.get("Resource")):
            extra = sorted(set(actions) - STAR_RESOURCE_ACTIONS)
            if extra:
                findings.append(
                    f'{label}: Resource "*" for {extra}; only {sorted(STAR_RESOURCE_ACTIONS)} may use "*" '
                    "(AWS accepts no narrower resource for them)"
                )
    return findings


def _policy_documents(resource: Resource) -> list[tuple[str, Any]]:
    """(label, document) of every IAM policy document a resource carries."""
    if resource.type in (ROLE_POLICY, MANAGED_POLICY):
        return [(resource.urn, resource.props.get("policy"))]
    if resource.type == ROLE:
        return [
            (f"{resource.urn} inline policy {p.get('name', index)}", p.get("policy"))
            for index, p in enumerate(_as_list(resource.props.get("inlinePolicies")))
            if isinstance(p, Mapping) and p.get("policy")
        ]
    return []


# ---------------------------------------------------------------------------------------------------------
# Resource rules: (resource_type, props) -> messages


def tasks_without_public_ip(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """ECS services run their tasks without public IPs (ECS's default is no public IP)."""
    if resource_type != ECS_SERVICE:
        return []
    network = _mapping(props.get("networkConfiguration"))
    if network.get("assignPublicIp") is True:
        return ["the ECS service gives its tasks public IPs: run them in private subnets with assignPublicIp false"]
    return []


def log_group_retention(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every CloudWatch log group expires its events (unbounded retention is a silent cost leak)."""
    if resource_type != LOG_GROUP:
        return []
    days = props.get("retentionInDays")
    if not days or days <= 0:
        return ["the log group keeps its events forever: set retentionInDays"]
    return []


def ecr_immutable_scanned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """ECR repositories refuse overwriting a tag and scan every pushed image."""
    if resource_type != ECR_REPOSITORY:
        return []
    findings = []
    if props.get("imageTagMutability") != "IMMUTABLE":
        findings.append(f"imageTagMutability is {props.get('imageTagMutability') or 'MUTABLE'}: set IMMUTABLE")
    if not _mapping(props.get("imageScanningConfiguration")).get("scanOnPush"):
        findings.append("imageScanningConfiguration.scanOnPush is off: scan every pushed image")
    return findings


def no_star_resources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No IAM policy grants `*` where AWS allows a scope (see STAR_RESOURCE_ACTIONS for the exceptions)."""
    documents = _policy_documents(Resource(type=resource_type, urn=resource_type, props=props))
    return [finding for label, document in documents for finding in star_resource_findings(document, label)]


def trusted_service_principals(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A role's trust policy lets only gantry's services (TRUSTED_SERVICES) assume it: every Allow names
    `Principal: {"Service": ...}` from that list and only sts:AssumeRole, so no deploy can make a role
    assumable by an account, a user, a federated identity, `*`, or another service. NotPrincipal and
    NotAction are findings (they grant every principal or action not listed); so is an unreadable document."""
    if resource_type != ROLE:
        return []
    try:
        statements = _statements(props.get("assumeRolePolicy"))
    except (ValueError, AttributeError, TypeError):
        return ["the trust policy (assumeRolePolicy) is not valid JSON with a Statement list"]
    findings = []
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        label = f"trust statement {statement.get('Sid') or index}"
        if "NotPrincipal" in statement or "NotAction" in statement:
            findings.append(f"{label}: NotPrincipal/NotAction trusts everything not listed")
            continue
        principal = statement.get("Principal")
        if not isinstance(principal, Mapping):
            findings.append(f"{label}: Principal {principal!r} is not a service; allowed: {sorted(TRUSTED_SERVICES)}")
            continue
        for kind, values in principal.items():
            names = [str(v) for v in _as_list(values)]
            others = names if kind != "Service" else [n for n in names if n not in TRUSTED_SERVICES]
            if others:
                findings.append(
                    f"{label}: trusts {kind} {others}; allowed: only the services {sorted(TRUSTED_SERVICES)}"
                )
        actions = sorted({str(a) for a in _as_list(statement.get("Action"))} - TRUST_ACTIONS)
        if actions:
            findings.append(f"{label}: grants {actions}; allowed: {sorted(TRUST_ACTIONS)}")
    return findings


def tls13_https_listeners(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """HTTPS (and TLS) listeners negotiate TLS 1.3 (one of AWS's TLS13 ELB security policies)."""
    if resource_type != LISTENER or props.get("protocol") not in ("HTTPS", "TLS"):
        return []
    policy = props.get("sslPolicy")
    if policy not in TLS13_POLICIES:
        return [f"sslPolicy {policy or '(the ELB default)'} does not offer TLS 1.3; use one of {list(TLS13_POLICIES)}"]
    return []


def deployment_safety(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A service deploys through CodeDeploy, or rolls with the circuit breaker, rollback and alarms on."""
    if resource_type != ECS_SERVICE:
        return []
    controller = _mapping(props.get("deploymentController")).get("type") or "ECS"
    if controller == "CODE_DEPLOY":
        return []
    if controller != "ECS":
        return [f"deployment controller {controller}: only ECS (rolling) or CODE_DEPLOY is checked and allowed"]
    findings = []
    breaker = _mapping(props.get("deploymentCircuitBreaker"))
    if not (breaker.get("enable") and breaker.get("rollback")):
        findings.append("rolling deploys without the circuit breaker and rollback: a failed release stays out")
    alarms = _mapping(props.get("alarms"))
    if not (alarms.get("enable") and alarms.get("rollback") and alarms.get("alarmNames")):
        findings.append(
            "rolling deploys without deployment alarms (alarms.enable, rollback, alarmNames): a release that "
            "starts but serves errors is never rolled back"
        )
    return findings


def no_secrets_in_environment(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No container definition puts a secret-looking name or value into `environment` (use `secrets`)."""
    if resource_type != TASK_DEFINITION:
        return []
    try:
        containers = _as_list(_json(props.get("containerDefinitions")))
    except ValueError:
        return ["containerDefinitions is not valid JSON, so it cannot be checked for secrets"]
    findings = []
    for container in (c for c in containers if isinstance(c, Mapping)):
        for entry in (e for e in _as_list(container.get("environment")) if isinstance(e, Mapping)):
            name, value = str(entry.get("name", "")), str(entry.get("value", ""))
            kind = secret_looking_value(value)
            if secret_looking_name(name) or kind:
                why = f"its value looks like {kind}" if kind else "its name says it holds a secret"
                findings.append(
                    f"container {container.get('name')}: environment variable {name} ({why}) must come "
                    "through `secrets` (Secrets Manager or SSM), never `environment`"
                )
    return findings


# ---------------------------------------------------------------------------------------------------------
# Stack rules: (resources, production) -> messages


def _cidr_ingress(resources: Sequence[Resource]) -> list[tuple[Resource, Resource | None, str]]:
    """(rule or group, the group it opens or None when unknown, description) of every CIDR-sourced ingress."""
    groups = [r for r in resources if r.type == SECURITY_GROUP]
    found: list[tuple[Resource, Resource | None, str]] = []
    for r in resources:
        if r.type == SG_INGRESS_RULE and (r.props.get("cidrIpv4") or r.props.get("cidrIpv6")):
            cidr = r.props.get("cidrIpv4") or r.props.get("cidrIpv6")
            group = next((g for g in groups if _linked(r, "securityGroupId", g)), None)
            found.append((r, group, f"ingress from {cidr} on port {_port(r.props.get('fromPort'))}"))
        elif r.type == SG_RULE and r.props.get("type") == "ingress":
            cidrs = _as_list(r.props.get("cidrBlocks")) + _as_list(r.props.get("ipv6CidrBlocks"))
            if cidrs:
                group = next((g for g in groups if _linked(r, "securityGroupId", g)), None)
                found.append((r, group, f"ingress from {cidrs} on port {_port(r.props.get('fromPort'))}"))
        elif r.type == SECURITY_GROUP:
            for rule in (i for i in _as_list(r.props.get("ingress")) if isinstance(i, Mapping)):
                cidrs = _as_list(rule.get("cidrBlocks")) + _as_list(rule.get("ipv6CidrBlocks"))
                if cidrs:
                    found.append((r, r, f"inline ingress from {cidrs} on port {_port(rule.get('fromPort'))}"))
    return found


def cidr_ingress_only_at_edge(resources: Sequence[Resource], production: bool) -> list[str]:
    """Security groups admit address ranges only where the internet meets the stack: a load balancer's
    group. Everything behind it admits other security groups only."""
    balancers = [r for r in resources if r.type == LOAD_BALANCER]
    findings = []
    for rule, group, description in _cidr_ingress(resources):
        if group is None:
            findings.append(f"{rule.urn}: {description} on a security group this stack does not define")
        elif not any(_linked(lb, "securityGroups", group) for lb in balancers):
            findings.append(f"{rule.urn}: {description} on {group.urn}, which no load balancer uses")
    return findings


def _internet_facing(balancer: Resource) -> bool:
    return balancer.props.get("internal") is not True


def _covers(rule: Mapping[str, Any], port: Any) -> bool:
    if str(rule.get("ipProtocol") or rule.get("protocol")) == "-1":
        return True
    try:
        return float(rule.get("fromPort", -1)) <= float(port) <= float(rule.get("toPort", rule.get("fromPort", -1)))
    except (TypeError, ValueError):
        return True  # unknown ports: assume the worst


def _reachable_from_cidrs(balancer: Resource, port: Any, resources: Sequence[Resource]) -> bool:
    """Whether the balancer's security groups admit `port` from an address range (the internet side).
    Groups that cannot be resolved count as open: the rule must not pass on what it cannot see."""
    groups = [g for g in resources if g.type == SECURITY_GROUP and _linked(balancer, "securityGroups", g)]
    if not groups:
        return True
    for r in resources:
        from_cidr = (r.type == SG_INGRESS_RULE and bool(r.props.get("cidrIpv4") or r.props.get("cidrIpv6"))) or (
            r.type == SG_RULE and r.props.get("type") == "ingress" and bool(r.props.get("cidrBlocks"))
        )
        if from_cidr and any(_linked(r, "securityGroupId", g) for g in groups) and _covers(r.props, port):
            return True
    return any(
        (rule.get("cidrBlocks") or rule.get("ipv6CidrBlocks")) and _covers(rule, port)
        for g in groups
        for rule in _as_list(g.props.get("ingress"))
        if isinstance(rule, Mapping)
    )


def no_plain_http_from_internet(resources: Sequence[Resource], production: bool) -> list[str]:
    """An internet-facing load balancer's plain-HTTP listeners that the internet can reach (a CIDR
    ingress on the balancer's security groups covers the port) only redirect (to HTTPS); none forwards.
    A listener only other security groups reach (a CodeDeploy test listener) is not on the internet."""
    balancers = [r for r in resources if r.type == LOAD_BALANCER]
    findings = []
    for listener in (r for r in resources if r.type == LISTENER and r.props.get("protocol", "HTTP") == "HTTP"):
        balancer = next((b for b in balancers if _linked(listener, "loadBalancerArn", b)), None)
        if balancer is not None and not _internet_facing(balancer):
            continue
        if balancer is not None and not _reachable_from_cidrs(balancer, listener.props.get("port"), resources):
            continue
        actions = _as_list(listener.props.get("defaultActions"))
        kinds = sorted({str(_mapping(a).get("type")) for a in actions} - {"redirect"})
        if kinds:
            findings.append(
                f"{listener.urn}: plain-HTTP listener on port {_port(listener.props.get('port'))} of an "
                f"internet-facing load balancer does {kinds}; serve HTTPS and make HTTP redirect only"
            )
    return findings


def _trusts_ecs_tasks(role: Resource) -> bool:
    try:
        statements = _statements(role.props.get("assumeRolePolicy"))
    except (ValueError, AttributeError, TypeError):
        return False
    services = {str(s) for st in statements for s in _as_list(_mapping(st.get("Principal")).get("Service"))}
    return "ecs-tasks.amazonaws.com" in services


def task_roles_exact(resources: Sequence[Resource], production: bool) -> list[str]:
    """Roles ECS tasks assume (execution and task roles) carry no managed policies, and their inline
    policies name exact resources (no `*` beyond STAR_RESOURCE_ACTIONS)."""
    findings = []
    for role in (r for r in resources if r.type == ROLE and _trusts_ecs_tasks(r)):
        managed = _as_list(role.props.get("managedPolicyArns"))
        if managed:
            findings.append(f"{role.urn}: managed policies {[str(arn) for arn in managed]} on an ECS task role")
        for r in resources:
            attached = (r.type == ROLE_POLICY_ATTACHMENT and _linked(r, "role", role)) or (
                r.type == POLICY_ATTACHMENT and _linked(r, "roles", role)
            )
            if attached:
                findings.append(f"{role.urn}: managed policy {r.props.get('policyArn')} attached by {r.urn}")
            elif r.type == ROLE_POLICY and _linked(r, "role", role):
                findings.extend(star_resource_findings(r.props.get("policy"), f"{role.urn} policy {r.urn}"))
        for label, document in _policy_documents(role):
            findings.extend(star_resource_findings(document, label))
    return findings


def _protected_by_waf(balancer: Resource, resources: Sequence[Resource]) -> bool:
    if any(r.type == WEB_ACL_ASSOCIATION and _linked(r, "resourceArn", balancer) for r in resources):
        return True
    # Fronted by CloudFront with a web ACL: the distribution's origin is this load balancer.
    for r in resources:
        if r.type == CLOUDFRONT_DISTRIBUTION and r.props.get("webAclId") and _linked(r, "origins", balancer):
            return True
    return False


def waf_on_production(resources: Sequence[Resource], production: bool) -> list[str]:
    """In production, every internet-facing load balancer sits behind a WAF web ACL (directly or through
    CloudFront), and so does every CloudFront distribution (it faces the internet by definition). Not
    applicable outside production, where no web ACL is required."""
    if not production:
        return []
    findings = [
        f"{lb.urn}: internet-facing load balancer without a WAF web ACL (aws.wafv2.WebAclAssociation, or a "
        "CloudFront distribution with webAclId in front of it)"
        for lb in resources
        if lb.type == LOAD_BALANCER and _internet_facing(lb) and not _protected_by_waf(lb, resources)
    ]
    findings.extend(
        f"{d.urn}: CloudFront distribution without a WAF web ACL (webAclId)"
        for d in resources
        if d.type == CLOUDFRONT_DISTRIBUTION and not d.props.get("webAclId")
    )
    return findings


def deletion_protection_in_production(resources: Sequence[Resource], production: bool) -> list[str]:
    """In production, load balancers are deletion-protected and image repositories keep their images on
    destroy (no forceDelete): a mistaken `destroy` must not take the endpoint or the rollback images."""
    if not production:
        return []
    findings = []
    for r in resources:
        if r.type == LOAD_BALANCER and r.props.get("enableDeletionProtection") is not True:
            findings.append(f"{r.urn}: enableDeletionProtection is off")
        if r.type == ECR_REPOSITORY and r.props.get("forceDelete") is True:
            findings.append(f"{r.urn}: forceDelete deletes every image with the repository")
    return findings


def aws_quotas(resources: Sequence[Resource], production: bool) -> list[str]:
    """Every role, policy, name and security group fits the quotas AWS enforces at `up` and no preview
    sees (components/quotas.py: IAM policy sizes and attachments, name lengths, S3 naming, rules per
    security group). The same check the tests run on the synthesized graphs; props may be any Mapping
    and lists any non-string Sequence, values unknown at preview are skipped."""
    return [str(finding) for finding in quotas.check(resources)]


# ---------------------------------------------------------------------------------------------------------
# The checklist

ResourceCheck = Callable[[str, Mapping[str, Any]], list[str]]
StackCheck = Callable[[Sequence[Resource], bool], list[str]]


@dataclass(frozen=True, kw_only=True)
class Rule:
    name: str
    """The CrossGuard policy name, and the key in `--policy-pack-config` that changes its level."""
    description: str
    mandatory: bool
    """Default enforcement: mandatory blocks `preview`/`up`; advisory reports only."""
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None

    def __post_init__(self) -> None:
        if (self.resource_check is None) == (self.stack_check is None):
            raise ValueError(f"rule {self.name}: give exactly one of resource_check and stack_check")


RULES: tuple[Rule, ...] = (
    Rule(
        name="tasks-without-public-ip",
        description="ECS tasks get no public IP.",
        mandatory=True,
        resource_check=tasks_without_public_ip,
    ),
    Rule(
        name="cidr-ingress-only-at-edge",
        description="Security groups admit CIDR ranges only on a load balancer's group.",
        mandatory=True,
        stack_check=cidr_ingress_only_at_edge,
    ),
    Rule(
        name="log-group-retention",
        description="Every CloudWatch log group has a retention period.",
        mandatory=True,
        resource_check=log_group_retention,
    ),
    Rule(
        name="ecr-immutable-scanned",
        description="ECR repositories have immutable tags and scan on push.",
        mandatory=True,
        resource_check=ecr_immutable_scanned,
    ),
    Rule(
        name="task-roles-exact",
        description="ECS execution and task roles carry no managed policies and name exact resources.",
        mandatory=True,
        stack_check=task_roles_exact,
    ),
    Rule(
        name="no-star-resources",
        description="IAM policies grant no `*` resource or action except the ones AWS forces.",
        mandatory=True,
        resource_check=no_star_resources,
    ),
    Rule(
        name="trusted-service-principals",
        description="IAM roles trust only gantry's services (ECS tasks, CodeDeploy, Lambda, VPC Flow Logs).",
        mandatory=True,
        resource_check=trusted_service_principals,
    ),
    Rule(
        name="tls13-https-listeners",
        description="HTTPS listeners use a TLS 1.3 security policy.",
        mandatory=True,
        resource_check=tls13_https_listeners,
    ),
    Rule(
        name="no-plain-http-from-internet",
        description="Internet-facing plain-HTTP listeners only redirect to HTTPS.",
        mandatory=True,
        stack_check=no_plain_http_from_internet,
    ),
    Rule(
        name="deployment-safety",
        description="Services deploy through CodeDeploy, or roll with circuit breaker, rollback and alarms.",
        mandatory=True,
        resource_check=deployment_safety,
    ),
    Rule(
        name="no-secrets-in-environment",
        description="Container definitions carry no secret-looking names or values in `environment`.",
        mandatory=True,
        resource_check=no_secrets_in_environment,
    ),
    Rule(
        name="waf-on-production",
        description="Production load balancers and CloudFront distributions facing the internet have a WAF web ACL.",
        mandatory=True,
        stack_check=waf_on_production,
    ),
    Rule(
        name="aws-quotas",
        description="IAM policy sizes and attachments, names and security-group rules fit AWS's quotas.",
        mandatory=True,
        stack_check=aws_quotas,
    ),
    Rule(
        name="deletion-protection-in-production",
        description="Production load balancers are deletion-protected; repositories keep images on destroy.",
        mandatory=True,
        stack_check=deletion_protection_in_production,
    ),
)


# Stacks the production-only rules apply to unless the pack's config names others (`productionStacks`).
DEFAULT_PRODUCTION_STACKS = ("prod",)


def stack_name(urn: str) -> str:
    """The stack of a URN (urn:pulumi:STACK::PROJECT::TYPE::NAME)."""
    parts = urn.split(":", 3)
    if len(parts) < 4 or parts[:2] != ["urn", "pulumi"]:
        raise ValueError(f"{urn!r} is not a Pulumi URN (urn:pulumi:STACK::PROJECT::TYPE::NAME)")
    return parts[2].split("::", 1)[0]


def is_production(resources: Sequence[Resource], production_stacks: Sequence[str]) -> bool:
    """Whether the stack the resources belong to is one of `production_stacks` (read from their URNs)."""
    return any(stack_name(r.urn) in production_stacks for r in resources)


def failed(rule: Rule, error: Exception) -> str:
    """The violation a rule that raised reports instead of its verdict (the pack and `evaluate` alike)."""
    return f"rule {rule.name} could not check this ({type(error).__name__}: {error}); a failed check is not a pass"


def evaluate(resources: Iterable[Resource], production: bool, rules: Sequence[Rule] = RULES) -> dict[str, list[str]]:
    """Every rule on a whole stack: rule name -> messages (resource rules prefixed by the resource's URN).
    A rule that raises reports `failed(...)` where it raised, and every other rule still runs."""
    resources = list(resources)
    verdicts: dict[str, list[str]] = {}
    for rule in rules:
        messages: list[str] = []
        if rule.resource_check is not None:
            for r in resources:
                try:
                    messages.extend(f"{r.urn}: {m}" for m in rule.resource_check(r.type, r.props))
                except Exception as error:  # noqa: BLE001 - reported as a violation, never a pass
                    messages.append(f"{r.urn}: {failed(rule, error)}")
        if rule.stack_check is not None:
            try:
                messages.extend(rule.stack_check(resources, production))
            except Exception as error:  # noqa: BLE001 - reported as a violation, never a pass
                messages.append(failed(rule, error))
        verdicts[rule.name] = messages
    return verdicts

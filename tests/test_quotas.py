"""The quota check (components/quotas.py): each quota firing just over its documented limit and not at it,
then the whole synthesized graphs of both committed stacks with no finding (the bootstrap program's graph:
tests/bootstrap/test_bootstrap.py).

The oracles are AWS's documented limits, cited per quota in components.quotas.QUOTAS: "IAM and AWS STS
quotas" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html: role inline policies
10,240, managed policy 6,144, trust policy 2,048 characters without whitespace; 10 managed policies per
role; role name 64, policy name 128), Amazon VPC quotas (60 inbound or outbound rules per security group),
the ELB, Lambda, SQS and CloudWatch API references and S3's bucket naming rules.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pulumi.runtime.rpc import UNKNOWN

from bootstrap import documents
from bootstrap.settings import MAX_ENVIRONMENTS, MAX_HOSTED_ZONES
from components import quotas
from components.quotas import Item, check
from gantry.plan import as_policy_resources
from tests.harness import ACCOUNT, REGION, run_program

URN = "urn:pulumi:dev::gantry::"


def _item(typ: str, name: str, props: dict[str, Any], **deps: list[str]) -> Item:
    return Item(type=typ, urn=f"{URN}{typ}::{name}", props=props, property_dependencies=deps)


def _document(characters: int) -> dict[str, Any]:
    """A policy document of exactly `characters` characters without whitespace."""
    base: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": ""}],
    }
    pad = characters - len(json.dumps(base, separators=(",", ":")))
    assert pad >= 0
    base["Statement"][0]["Resource"] = "a" * pad
    assert quotas.policy_size(base) == characters
    return base


def _quotas(findings: list[quotas.Finding]) -> list[str]:
    return sorted(f.quota for f in findings)


ROLE = _item(quotas.ROLE, "r", {"assumeRolePolicy": json.dumps(_document(300))})


# --- sizes -----------------------------------------------------------------------------------------------


def test_policy_size_counts_without_whitespace_and_reads_strings_and_dicts() -> None:
    document = {"Version": "2012-10-17", "Statement": []}
    assert quotas.policy_size(json.dumps(document, indent=4)) == len('{"Version":"2012-10-17","Statement":[]}')
    assert quotas.policy_size(document) == quotas.policy_size(json.dumps(document))
    # Unknown at preview or not JSON: not measured (skipped), never a pass or a crash.
    assert quotas.policy_size(None) is None
    assert quotas.policy_size(UNKNOWN) is None
    assert quotas.policy_size({"Statement": [{"Resource": UNKNOWN}]}) is None
    assert quotas.policy_size("not json") is None


@pytest.mark.parametrize(("sizes", "fires"), [((6_000, 4_240), False), ((6_000, 4_241), True)])
def test_inline_policies_of_a_role_are_summed_over_both_forms(sizes: tuple[int, int], fires: bool) -> None:
    role = _item(quotas.ROLE, "r", {**ROLE.props, "inlinePolicies": [{"name": "a", "policy": _document(sizes[0])}]})
    separate = _item(
        quotas.ROLE_POLICY, "p", {"role": "r-1234", "policy": json.dumps(_document(sizes[1]))}, role=[role.urn]
    )
    other_role = _item(quotas.ROLE, "other", {"assumeRolePolicy": "{}"})
    findings = check([role, separate, other_role])
    assert _quotas(findings) == (["iam-role-inline-policies"] if fires else [])
    if fires:
        assert (findings[0].resource, findings[0].measured, findings[0].limit) == (role.urn, sum(sizes), 10_240)
        assert "10240" in str(findings[0]) and "reference_iam-quotas" in str(findings[0])
    # A role policy of another role does not count.
    assert check([other_role, separate]) == []


def test_an_inline_policy_reported_on_the_role_and_as_its_resource_counts_once() -> None:
    """After `up` AWS reports the role's inline policies (RolePolicy's included) as its inlinePolicies."""
    document = json.dumps(_document(6_000))
    role = _item(quotas.ROLE, "r", {**ROLE.props, "inlinePolicies": [{"name": "main", "policy": document}]})
    same = _item(quotas.ROLE_POLICY, "p", {"name": "main", "policy": document}, role=[role.urn])
    assert check([role, same]) == []
    other = _item(quotas.ROLE_POLICY, "q", {"name": "second", "policy": document}, role=[role.urn])
    assert _quotas(check([role, same, other])) == ["iam-role-inline-policies"]


def test_inline_policies_link_by_name_when_no_dependency_is_known() -> None:
    role = _item(quotas.ROLE, "r", {**ROLE.props, "name": "gantry-task"})
    big = _item(quotas.ROLE_POLICY, "p", {"role": "gantry-task", "policy": _document(10_241)})
    assert _quotas(check([role, big])) == ["iam-role-inline-policies"]
    assert check([role, _item(quotas.ROLE_POLICY, "q", {"role": "other", "policy": _document(10_241)})]) == []


@pytest.mark.parametrize(("size", "fires"), [(6_144, False), (6_145, True)])
def test_managed_policy_size(size: int, fires: bool) -> None:
    policy = _item(quotas.MANAGED_POLICY, "m", {"policy": json.dumps(_document(size))})
    assert _quotas(check([policy])) == (["iam-managed-policy-size"] if fires else [])


@pytest.mark.parametrize(("size", "fires"), [(2_048, False), (2_049, True)])
def test_trust_policy_size(size: int, fires: bool) -> None:
    role = _item(quotas.ROLE, "r", {"assumeRolePolicy": _document(size)})
    assert _quotas(check([role])) == (["iam-trust-policy-size"] if fires else [])


@pytest.mark.parametrize(("count", "fires"), [(10, False), (11, True)])
def test_managed_policies_per_role_count_every_form(count: int, fires: bool) -> None:
    arns = [f"arn:aws:iam::{ACCOUNT}:policy/p{i}" for i in range(count)]
    role = _item(quotas.ROLE, "r", {**ROLE.props, "name": "r", "managedPolicyArns": arns[:4]})
    attachments = [
        _item(quotas.ROLE_POLICY_ATTACHMENT, f"a{i}", {"role": "r", "policyArn": arn})
        for i, arn in enumerate(arns[4:8])
    ] + [
        _item(quotas.POLICY_ATTACHMENT, f"b{i}", {"roles": ["x", "r"], "policyArn": arn})
        for i, arn in enumerate(arns[8:])
    ]
    # The same policy named twice is one attachment.
    duplicate = _item(quotas.ROLE_POLICY_ATTACHMENT, "dup", {"role": "r", "policyArn": arns[0]})
    findings = check([role, *attachments, duplicate])
    assert _quotas(findings) == (["iam-managed-policies-per-role"] if fires else [])
    if fires:
        assert findings[0].measured == 11


# --- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "prop", "limit", "quota"),
    [
        (quotas.ROLE, "name", 64, "iam-role-name"),
        (quotas.ROLE, "namePrefix", 38, "iam-role-name-prefix"),
        (quotas.MANAGED_POLICY, "name", 128, "iam-policy-name"),
        ("aws:lb/loadBalancer:LoadBalancer", "name", 32, "alb-name"),
        ("aws:lb/targetGroup:TargetGroup", "name", 32, "target-group-name"),
        ("aws:lambda/function:Function", "name", 64, "lambda-function-name"),
        ("aws:sqs/queue:Queue", "name", 80, "sqs-queue-name"),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "name", 255, "cloudwatch-alarm-name"),
        ("aws:s3/bucket:Bucket", "bucketPrefix", 37, "s3-bucket-prefix"),
    ],
)
def test_explicit_names_against_their_limits(typ: str, prop: str, limit: int, quota: str) -> None:
    assert check([_item(typ, "n", {prop: "a" * limit})]) == []
    [finding] = check([_item(typ, "n", {prop: "a" * (limit + 1)})])
    assert (finding.quota, finding.measured, finding.limit) == (quota, limit + 1, limit)
    # An auto-name (absent) or an unknown value is not measured.
    assert check([_item(typ, "n", {}), _item(typ, "m", {prop: UNKNOWN})]) == []


def test_sqs_fifo_suffix_counts() -> None:
    assert check([_item("aws:sqs/queue:Queue", "q", {"name": "q" * 75 + ".fifo"})]) == []
    assert _quotas(check([_item("aws:sqs/queue:Queue", "q", {"name": "q" * 76 + ".fifo"})])) == ["sqs-queue-name"]


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "Gantry-files",
        "gantry_files",
        "-gantry",
        "gantry-",
        "gantry..files",
        "192.168.5.4",
        "xn--gantry",
        "gantry-s3alias",
        "gantry files",
    ],
)
def test_bucket_names_breaking_s3_rules(name: str) -> None:
    [finding] = check([_item("aws:s3/bucket:Bucket", "b", {"bucket": name})])
    assert finding.quota == "s3-bucket-name" and finding.measured == name and finding.detail


@pytest.mark.parametrize("name", ["abc", "a" * 63, "gantry-files-210987654321-eu-west-1", "gantry.logs.1", "1-2-3"])
def test_bucket_names_within_s3_rules(name: str) -> None:
    assert check([_item("aws:s3/bucket:Bucket", "b", {"bucket": name})]) == []


# --- security groups --------------------------------------------------------------------------------------


def _group(**props: Any) -> Item:
    return _item(quotas.SECURITY_GROUP, "sg", {"id": "sg-0123", **props})


@pytest.mark.parametrize(("extra", "fires"), [(0, False), (1, True)])
def test_ingress_rules_per_group_sum_inline_and_separate_rules(extra: int, fires: bool) -> None:
    group = _group(ingress=[{"cidrBlocks": [f"10.0.{i}.0/24" for i in range(20)], "securityGroups": ["sg-1"]}])
    legacy = [
        _item(quotas.SG_RULE, f"r{i}", {"type": "ingress", "securityGroupId": "sg-0123", "cidrBlocks": ["10.1.0.0/16"]})
        for i in range(19)
    ]
    vpc = [
        _item(
            quotas.SG_INGRESS_RULE,
            f"v{i}",
            {"securityGroupId": "x", "cidrIpv4": "10.2.0.0/16"},
            securityGroupId=[group.urn],
        )
        for i in range(20 + extra)
    ]
    # Egress and other groups' rules do not count towards this group's ingress.
    egress = _item(quotas.SG_EGRESS_RULE, "e", {"securityGroupId": "sg-0123", "cidrIpv4": "0.0.0.0/0"})
    elsewhere = _item(quotas.SG_INGRESS_RULE, "o", {"securityGroupId": "sg-9999", "cidrIpv4": "10.3.0.0/16"})
    findings = check([group, *legacy, *vpc, egress, elsewhere])
    assert _quotas(findings) == (["security-group-rules"] if fires else [])
    if fires:
        assert (findings[0].measured, findings[0].detail) == (61, "ingress IPv4")


def test_egress_rules_and_address_families_are_counted_apart() -> None:
    v4 = [f"10.0.{i}.0/24" for i in range(40)]
    v6 = [f"2001:db8:{i:x}::/48" for i in range(40)]
    # 40 IPv4 + 40 IPv6 egress: each family within 60; a group reference counts for both.
    group = _group(egress=[{"cidrBlocks": v4, "ipv6CidrBlocks": v6}], ingress=[{"cidrBlocks": v4}])
    assert check([group]) == []
    refs = [
        _item(quotas.SG_EGRESS_RULE, f"g{i}", {"securityGroupId": "sg-0123", "referencedSecurityGroupId": "sg-2"})
        for i in range(21)
    ]
    details = sorted(f.detail for f in check([group, *refs]))
    assert details == ["egress IPv4", "egress IPv6"]


# --- the whole programs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_stacks_fit_every_quota(stack: str) -> None:
    resources = as_policy_resources(run_program(stack))
    assert {r.type for r in resources} >= {quotas.ROLE, quotas.ROLE_POLICY, quotas.SECURITY_GROUP}
    assert [str(f) for f in check(resources)] == []


SCOPE = documents.Scope(account_id=ACCOUNT, region=REGION)
STATE = {
    "state_bucket_arn": f"arn:aws:s3:::gantry-state-{ACCOUNT}-{REGION}",
    "state_key_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
SECRETS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ac"
# The bootstrap's keys the deploy roles are denied: the state key, the shared secrets key, dev's and prod's.
BOOTSTRAP_KEYS = [STATE["state_key_arn"], *(SECRETS_KEY[:-2] + f"{i:02d}" for i in range(3))]


def test_the_old_single_deploy_policy_is_refused_and_the_split_fits() -> None:
    """The deploy permissions as one inline policy (the layout before the split) are about 18,400
    characters: over a role's 10,240 inline and over a managed policy's 6,144. Split by area, each part
    fits with room for more hosted zones, and together they are exactly the same statements."""
    zones = [f"Z0GANTRYTEST{i:02d}" for i in range(5)]
    parts = documents.deploy_role_policies(SCOPE, **STATE, bootstrap_key_arns=BOOTSTRAP_KEYS, hosted_zone_ids=zones)
    union = documents.deploy_role_policy(
        SCOPE, **STATE, secrets_key_arn=SECRETS_KEY, bootstrap_key_arns=BOOTSTRAP_KEYS, hosted_zone_ids=zones
    )
    # The shared managed parts, then the role's own per-environment inline policy.
    own = documents.deploy_environment_policy(
        SCOPE, environment="dev", secrets_key_arn=SECRETS_KEY, state_bucket_arn=STATE["state_bucket_arn"]
    )
    assert [s for p in [*parts.values(), own] for s in p["Statement"]] == union["Statement"]
    assert list(parts) == list(documents.DEPLOY_POLICY_AREAS) and len(parts) <= 10
    sizes = {area: quotas.policy_size(p) for area, p in parts.items()}
    assert all(s is not None and s <= 5_500 for s in sizes.values()), sizes
    old = quotas.policy_size(union)
    assert old is not None and old > 18_000
    role = _item(quotas.ROLE, "deploy", {"assumeRolePolicy": "{}"})
    inline = _item(quotas.ROLE_POLICY, "deploy-policy", {"policy": json.dumps(union)}, role=[role.urn])
    managed = _item(quotas.MANAGED_POLICY, "deploy-managed", {"policy": json.dumps(union)})
    assert _quotas(check([role, inline, managed])) == ["iam-managed-policy-size", "iam-role-inline-policies"]


def test_the_boundary_preview_and_trust_policies_fit() -> None:
    assert (quotas.policy_size(documents.workload_boundary_policy(SCOPE)) or 0) <= 6_144 - 1_000
    preview = documents.preview_role_policy(SCOPE, **STATE, secrets_key_arn=SECRETS_KEY)
    assert (quotas.policy_size(preview) or 0) <= 10_240 // 2
    trust = documents.github_trust_policy(
        provider_arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
        # GitHub allows owner names of 39 and repository names of 100 characters.
        repository=f"{'o' * 39}/{'r' * 100}",
        subject=documents.environment_subject("e" * 255),
    )
    assert (quotas.policy_size(trust) or 0) <= 2_048
    assert re.fullmatch(r"[a-z0-9-]+", documents.deploy_policy_name(SCOPE, "read-and-state"))


def test_every_deploy_policy_fits_for_the_longest_config_the_bootstrap_accepts() -> None:
    """The longest resourcePrefix (30), a long partition and region, a 63-character state bucket and the
    most hosted zones bootstrap/settings.py accepts, each with the longest zone id (32): every part still
    fits a managed policy's 6,144 characters, the boundary too, and the preview's inline 10,240."""
    scope = documents.Scope(account_id=ACCOUNT, region="ap-southeast-2", partition="aws-us-gov", prefix="p" * 30)
    state = {
        "state_bucket_arn": "arn:aws-us-gov:s3:::" + "s" * 63,
        "state_key_arn": STATE["state_key_arn"].replace(":aws:", ":aws-us-gov:"),
    }
    secrets_key = SECRETS_KEY.replace(":aws:", ":aws-us-gov:")
    # The state key, the shared secrets key and one secrets key per environment, as many as settings allow.
    keys = [state["state_key_arn"], *(secrets_key[:-2] + f"{i:02d}" for i in range(MAX_ENVIRONMENTS + 1))]
    zones = ["Z" + "A" * 31] * MAX_HOSTED_ZONES
    parts = documents.deploy_role_policies(scope, **state, bootstrap_key_arns=keys, hosted_zone_ids=zones)
    sizes = {area: quotas.policy_size(p) or 0 for area, p in parts.items()}
    assert max(sizes.values()) <= 6_144, sizes
    assert (quotas.policy_size(documents.workload_boundary_policy(scope)) or 0) <= 6_144
    preview = documents.preview_role_policy(scope, **state, secrets_key_arn=secrets_key)
    assert (quotas.policy_size(preview) or 0) <= 10_240
    # The longest environment name and bucket: a deploy role's inline environment policy, far under 10,240.
    own = documents.deploy_environment_policy(
        scope, environment="e" * 64, secrets_key_arn=secrets_key, state_bucket_arn=state["state_bucket_arn"]
    )
    assert (quotas.policy_size(own) or 0) <= 2_500

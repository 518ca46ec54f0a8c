"""The policy pack through pulumi_policy's real servicer, in policy/venv, as `--policy-pack policy` runs it.

tests/policy/test_rules.py calls the pure rules with plain dicts; CrossGuard does not: its servicer
decodes google.protobuf.Struct properties into its own Sequence/Mapping proxies and runs every stack
rule inside one `AnalyzeStack` call, on the resources' outputs (the engine's step generator sends
`v.Outputs` there, its inputs to `Analyze`). So the committed stacks and mutated copies are serialized
to JSON and sent by tests/policy/servicer_driver.py, under policy/venv/bin/python, over gRPC to the
pack started as the CLI starts it. Outputs are provider-shaped: the AWS provider always returns the
list outputs its schema declares non-optional (pulumi_aws/iam/role.py `inline_policies` and
`managed_policy_arns`, pulumi_aws/ec2/security_group.py `ingress` and `egress`: `pulumi.Output[Sequence
[...]]`, not Optional), empty when unset, which the mocks' echo of the inputs leaves out.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from filelock import FileLock

from policy import rules
from tests.harness import run_program

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("servicer_driver.py")

# Non-optional list outputs the AWS provider returns even when the program sets none (see above).
PROVIDER_LIST_OUTPUTS: dict[str, tuple[str, ...]] = {
    rules.ROLE: ("inlinePolicies", "managedPolicyArns"),
    rules.SECURITY_GROUP: ("ingress", "egress"),
}
STAR_S3 = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


# How the engine puts an asset or archive on the wire (pulumi's sdk/go/common/resource/properties.go
# signatures, which pulumi_policy/deserialize.py decodes back).
SIG_KEY, ASSET_SIG, ARCHIVE_SIG = (
    "4dabf18193072939515e22adb298388d",
    "c44067f5952c0a294b673a41bacd8c17",
    "0def7320c3a5731c473e5ecbe6d01bc7",
)


def wire(value: Any) -> Any:
    """json.dumps' default: assets and archives as the engine serializes them."""
    if isinstance(value, pulumi.AssetArchive):
        return {SIG_KEY: ARCHIVE_SIG, "assets": {k: wire(v) for k, v in value.assets.items()}}
    if isinstance(value, pulumi.FileArchive):
        return {SIG_KEY: ARCHIVE_SIG, "path": value.path}
    if isinstance(value, pulumi.FileAsset):
        return {SIG_KEY: ASSET_SIG, "path": value.path}
    if isinstance(value, pulumi.StringAsset):
        return {SIG_KEY: ASSET_SIG, "text": value.text}
    raise TypeError(f"{type(value).__name__} has no wire form here")


def _policy_venv() -> Any:
    spec = importlib.util.spec_from_file_location("policy_venv", ROOT / "scripts" / "policy_venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack_python() -> Path:
    """policy/venv's interpreter: built once (about 20 s from the local wheels), reused while current.
    One builder at a time (xdist workers, two pytest runs): a waiter finds the venv current and reuses it.
    The lock sits in build/ (ignored by git), so no checkout copy or `git status` sees it."""
    (ROOT / "build").mkdir(exist_ok=True)
    with FileLock(ROOT / "build" / "policy-venv.lock"):
        return Path(_policy_venv().ensure())


def serialized(stack: str) -> list[dict[str, Any]]:
    """The stack's registered resources as the engine hands them to the analyzer (JSON-ready)."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        graph = run_program(stack)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    out = []
    for r in graph.resources:
        outputs = {**dict.fromkeys(PROVIDER_LIST_OUTPUTS.get(r.typ, ()), []), **r.outputs}
        out.append(
            json.loads(
                json.dumps(
                    {
                        "type": r.typ,
                        "urn": r.urn,
                        "name": r.name,
                        "inputs": r.inputs,
                        "outputs": outputs,
                        "propertyDependencies": {k: sorted(v) for k, v in r.opts.property_dependencies.items()},
                    },
                    default=wire,
                )
            )
        )
    return out


@pytest.fixture(scope="module")
def stacks() -> dict[str, list[dict[str, Any]]]:
    return {name: serialized(name) for name in ("dev", "prod")}


def analyze(python: Path, cases: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, str]]]]:
    done = subprocess.run(
        [str(python), str(DRIVER)], input=json.dumps(cases), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, list[dict[str, str]]]] = json.loads(done.stdout)
    for name, verdict in result.items():
        errors = [d["error"] for d in verdict["analyze"] + verdict["stack"] if "error" in d]
        assert not errors, f"{name}: the servicer failed instead of reporting: {errors}"
    return result


def fired(verdict: dict[str, list[dict[str, str]]]) -> set[tuple[str, str]]:
    """(policy, urn or message) of every diagnostic; stack rules name the resource in the message."""
    return {(d["policy"], d["urn"] or d["message"]) for d in verdict["analyze"] + verdict["stack"]}


def policies(verdict: dict[str, list[dict[str, str]]]) -> set[str]:
    return {d["policy"] for d in verdict["analyze"] + verdict["stack"]}


def change(resources: list[dict[str, Any]], predicate: Any, **props: Any) -> tuple[list[dict[str, Any]], str]:
    """A copy with the first resource (URN order) matching `predicate` given `props` in inputs and outputs."""
    resources = copy.deepcopy(resources)
    target = min((r for r in resources if predicate(r)), key=lambda r: r["urn"])
    target["inputs"].update(copy.deepcopy(props))
    target["outputs"].update(copy.deepcopy(props))
    return resources, target["urn"]


def execution_role(r: dict[str, Any]) -> bool:
    return r["type"] == rules.ROLE and "starts gantry tasks" in r["inputs"].get("description", "")


def task_security_group(r: dict[str, Any]) -> bool:
    return r["type"] == rules.SECURITY_GROUP and "tasks" in r["inputs"].get("description", "")


# ------------------------------------------------------------------------------------------------------
# One driver for the whole module: each test's cases are built by its builder below, every case of every
# test goes to one pack server (a driver and its server each pay ~1 s of CPU importing the SDK and the
# pack), and each test asserts on its own cases' verdicts. Cases are independent requests to the servicer
# (the pack keeps no state between `Analyze`/`AnalyzeStack` calls), so one call answers as seven did.
Cases = dict[str, list[dict[str, Any]]]
Verdicts = dict[str, dict[str, list[dict[str, str]]]]
Answers = dict[str, tuple[Verdicts, Any]]
_BUILDERS: dict[str, Any] = {}


def cases_of(test: str) -> Any:
    """Register `build(stacks) -> (cases, context)` as the cases of `test`."""

    def register(build: Any) -> Any:
        _BUILDERS[test] = build
        return build

    return register


@pytest.fixture(scope="module")
def verdicts(pack_python: Path, stacks: dict[str, Any]) -> Answers:
    """{test: (its cases' verdicts by case name, what its builder returned beside them)}, one driver run."""
    built = {test: build(stacks) for test, build in _BUILDERS.items()}
    every = {f"{test}/{case}": resources for test, (cases, _) in built.items() for case, resources in cases.items()}
    result = analyze(pack_python, every)
    assert sorted(result) == sorted(every)
    return {
        test: ({case: result[f"{test}/{case}"] for case in cases}, context) for test, (cases, context) in built.items()
    }


def test_one_driver_run_answers_as_a_run_of_its_own(
    pack_python: Path, stacks: dict[str, Any], verdicts: Answers
) -> None:
    """The module's single driver run is no different from one call per test: a case analyzed alone gives
    the verdict it gave among all the others."""
    cases, _ = _BUILDERS["managed"](stacks)
    alone = analyze(pack_python, cases)
    assert alone == verdicts["managed"][0]
    assert alone["attached"]["stack"]


@cases_of("committed")
def _committed(stacks: dict[str, Any]) -> tuple[Cases, None]:
    return dict(stacks), None


def test_committed_stacks_pass_through_the_real_servicer(stacks: dict[str, Any], verdicts: Answers) -> None:
    """Today's verdicts (tests/policy/test_rules.py KNOWN_GAPS: none), with provider-shaped outputs: every
    role's `managedPolicyArns: []` and every security group's `ingress: []` arrive as empty proxies."""
    assert any(r["type"] == rules.SECURITY_GROUP for r in stacks["prod"])
    result, _ = verdicts["committed"]
    assert result == {name: {"analyze": [], "stack": []} for name in stacks}


@cases_of("s3-star")
def _s3_star(stacks: dict[str, Any]) -> tuple[Cases, dict[str, str]]:
    wide = [{"name": "wide", "policy": STAR_S3}]
    cases = {}
    urns = {}
    for name, resources in stacks.items():
        cases[name], urns[name] = change(resources, execution_role, inlinePolicies=wide)
    return cases, urns


def test_an_inline_s3_star_policy_fires_both_iam_rules(verdicts: Answers) -> None:
    result, urns = verdicts["s3-star"]
    for name, verdict in result.items():
        # Two findings each: the wildcard action, and Resource "*" for an action that has a scope.
        resource_findings = [d for d in verdict["analyze"] if d["policy"] == "no-star-resources"]
        assert len(resource_findings) == 2 and {d["urn"] for d in resource_findings} == {urns[name]}
        assert all("s3:*" in d["message"] for d in resource_findings)
        stack_findings = [d for d in verdict["stack"] if d["policy"] == "task-roles-exact"]
        assert len(stack_findings) == 2
        assert all(urns[name] in d["message"] and "s3:*" in d["message"] for d in stack_findings)
        assert policies(verdict) == {"no-star-resources", "task-roles-exact"}
        assert all(d["level"] == "mandatory" for d in verdict["analyze"] + verdict["stack"])


@cases_of("ingress")
def _ingress(stacks: dict[str, Any]) -> tuple[Cases, tuple[str, str]]:
    open_rule = {"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "cidrBlocks": ["0.0.0.0/0"]}
    prod, group = change(stacks["prod"], task_security_group, ingress=[open_rule])
    # A second stack rule's violation in the same call: the ingress list must not stop it.
    prod, balancer = change(prod, lambda r: r["type"] == rules.LOAD_BALANCER, enableDeletionProtection=False)
    internal_only, _ = change(stacks["prod"], task_security_group, ingress=[{**open_rule, "cidrBlocks": []}])
    return {"open": prod, "sg-only": internal_only}, (group, balancer)


def test_inline_ingress_rules_are_read_and_every_stack_rule_still_runs(verdicts: Answers) -> None:
    result, (group, balancer) = verdicts["ingress"]
    stack = result["open"]["stack"]
    assert {d["policy"] for d in stack} == {"cidr-ingress-only-at-edge", "deletion-protection-in-production"}
    [ingress] = [d for d in stack if d["policy"] == "cidr-ingress-only-at-edge"]
    assert group in ingress["message"] and "0.0.0.0/0" in ingress["message"]
    assert any(balancer in d["message"] for d in stack if d["policy"] == "deletion-protection-in-production")
    assert result["sg-only"] == {"analyze": [], "stack": []}


MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


@cases_of("managed")
def _managed(stacks: dict[str, Any]) -> tuple[Cases, str]:
    attached, role = change(stacks["dev"], execution_role, managedPolicyArns=[MANAGED])
    empty, _ = change(stacks["dev"], execution_role, managedPolicyArns=[])
    return {"attached": attached, "empty": empty}, role


def test_managed_policy_arns_fire_only_when_there_are_some(verdicts: Answers) -> None:
    managed = MANAGED
    result, role = verdicts["managed"]
    [finding] = result["attached"]["stack"]
    assert finding["policy"] == "task-roles-exact" and role in finding["message"] and managed in finding["message"]
    assert result["empty"] == {"analyze": [], "stack": []}


@cases_of("raises")
def _raises(stacks: dict[str, Any]) -> tuple[Cases, tuple[str, str]]:
    # A retention the rule cannot compare (a string): log-group-retention raises TypeError inside the pack.
    broken, log_group = change(stacks["dev"], lambda r: r["type"] == rules.LOG_GROUP, retentionInDays="forever")
    broken, repository = change(broken, lambda r: r["type"] == rules.ECR_REPOSITORY, imageTagMutability="MUTABLE")
    return {"broken": broken}, (log_group, repository)


def test_a_rule_that_raises_is_a_violation_and_the_others_still_report(verdicts: Answers) -> None:
    result, (log_group, repository) = verdicts["raises"]
    verdict = result["broken"]
    [raised] = [d for d in verdict["analyze"] if d["urn"] == log_group]
    assert raised["policy"] == "log-group-retention" and raised["level"] == "mandatory"
    assert "rule log-group-retention could not check this (TypeError" in raised["message"]
    assert ("ecr-immutable-scanned", repository) in fired(verdict)
    assert policies(verdict) == {"log-group-retention", "ecr-immutable-scanned"}


@cases_of("quotas")
def _quotas(stacks: dict[str, Any]) -> tuple[Cases, tuple[str, str]]:
    statements = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::gantry-bucket-{i:04d}/*"}
        for i in range(200)
    ]
    large = [{"name": "large", "policy": json.dumps({"Version": "2012-10-17", "Statement": statements})}]
    oversized, role = change(stacks["dev"], execution_role, inlinePolicies=large)
    long_name, balancer = change(stacks["dev"], lambda r: r["type"] == rules.LOAD_BALANCER, name="g" * 33)
    return {"oversized": oversized, "long-name": long_name}, (role, balancer)


def test_the_quota_rule_reads_proxied_policies_and_names(verdicts: Answers) -> None:
    """IAM counts a role's inline policies together against 10,240 characters without whitespace, and an
    ALB's name against 32 ("IAM and AWS STS quotas"; "Quotas for your Application Load Balancers"):
    both must reach `aws-quotas` through the proxies the real server hands it."""
    result, (role, balancer) = verdicts["quotas"]
    [quota] = [d for d in result["oversized"]["stack"] if d["policy"] == "aws-quotas"]
    assert role in quota["message"] and "10240" in quota["message"].replace(",", "")
    [name] = [d for d in result["long-name"]["stack"] if d["policy"] == "aws-quotas"]
    assert balancer in name["message"] and "32" in name["message"]


def trust(principal: Any, action: Any = "sts:AssumeRole") -> str:
    statement = {"Effect": "Allow", "Principal": principal, "Action": action}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@cases_of("trust")
def _trust(stacks: dict[str, Any]) -> tuple[Cases, dict[str, str]]:
    cases, urns = {}, {}
    for name, principal in {
        "account": {"AWS": "arn:aws:iam::999999999999:root"},
        "anyone": "*",
        "federated": {"Federated": "arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"},
        "service": {"Service": ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"]},
    }.items():
        cases[name], urns[name] = change(stacks["prod"], execution_role, assumeRolePolicy=trust(principal))
    cases["web-identity"], urns["web-identity"] = change(
        stacks["prod"],
        execution_role,
        assumeRolePolicy=trust(
            {"Service": "ecs-tasks.amazonaws.com"}, ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]
        ),
    )
    return cases, urns


def test_a_role_trusting_anything_but_gantrys_services_is_refused(verdicts: Answers) -> None:
    """The trust a deploy may write (IAM cannot read its content, bootstrap/documents.py
    TrustOnlyOnGantryRoles): another account, `*`, a federated identity or another service is a mandatory
    violation on `preview`/`up`; the committed roles (ECS tasks, CodeDeploy, Lambda, Flow Logs) pass."""
    result, urns = verdicts["trust"]
    assert sorted(result) == sorted(urns)
    for name, verdict in result.items():
        [finding] = [d for d in verdict["analyze"] if d["policy"] == "trusted-service-principals"]
        assert finding["urn"] == urns[name] and finding["level"] == "mandatory", name
    assert "ec2.amazonaws.com" in result["service"]["analyze"][0]["message"]
    assert "999999999999" in result["account"]["analyze"][0]["message"]

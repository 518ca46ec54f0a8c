"""Pulumi mocks harness: run gantry programs and components without the CLI or AWS.

`run_program(stack)` runs the real `__main__.py` with the config the CLI would pass for a committed
stack file (Pulumi.yaml defaults, then Pulumi.<stack>.yaml, objects JSON-encoded, secret keys
marked), and returns every registered resource. The mocks answer like AWS would in shape: ARNs in the
real per-service formats, DNS names, ARN suffixes, digests, so tests can assert the wiring between
resources (an ARN in a policy is the ARN of the resource it means), not just inputs echoed back.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml

ROOT = Path(__file__).resolve().parents[1]

ACCOUNT = "210987654321"
REGION = "eu-west-1"
PRIVATE_SUBNETS = ["subnet-private-a", "subnet-private-b", "subnet-private-c"]
PUBLIC_SUBNETS = ["subnet-public-a", "subnet-public-b", "subnet-public-c"]
PRIVATE_ROUTE_TABLES = ["rtb-private-a", "rtb-private-b", "rtb-private-c"]
VPC_ID = "vpc-0gantry"
DIGEST = "sha256:" + "ab" * 32
# Stand-in for what an operator sets with `pulumi config set --secret --path 'secretValues.<NAME>'`.
TEST_SECRET_VALUE = '{"tenant-a": "k-test-only-4f9c2e"}'


@dataclass
class Res:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    def json(self, key: str) -> Any:
        return json.loads(self.inputs[key])


@dataclass
class Graph:
    resources: list[Res] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    call_args: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Res]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Res:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Res:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def by_id(self, resource_id: str) -> Res:
        found = [r for r in self.resources if r.outputs.get("id") == resource_id]
        assert len(found) == 1, f"no single resource has id {resource_id}"
        return found[0]


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs AWS computes, in AWS's formats."""
    region = inputs.get("region") or REGION
    arn = f"arn:aws:{typ.split(':')[1].split('/')[0]}:{region}:{ACCOUNT}:{name}"
    out: dict[str, Any] = {"arn": arn, "name": inputs.get("name") or name}
    if typ == "aws:ecr/repository:Repository":
        out["arn"] = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{name}"
        out["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{name}"
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out["arn"] = f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{name}"
    elif typ == "aws:secretsmanager/secret:Secret":
        out["arn"] = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-Ab12Cd"
    elif typ == "aws:iam/role:Role":
        out["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        out["arn"] = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:loadbalancer/app/{name}/50dc6c495c0c9188"
        out["arnSuffix"] = f"app/{name}/50dc6c495c0c9188"
        out["dnsName"] = f"{name}-1234567890.{region}.elb.amazonaws.com"
        out["zoneId"] = "Z32O12XQLNTSW2"
    elif typ == "aws:lb/targetGroup:TargetGroup":
        out["arn"] = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:targetgroup/{name}/73e2d6bc24d8a067"
        out["arnSuffix"] = f"targetgroup/{name}/73e2d6bc24d8a067"
    elif typ == "aws:lb/listener:Listener":
        out["arn"] = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:listener/app/{name}/1"
    elif typ == "aws:ecs/cluster:Cluster":
        out["arn"] = f"arn:aws:ecs:{region}:{ACCOUNT}:cluster/{name}"
    elif typ == "aws:ecs/taskDefinition:TaskDefinition":
        out["arn"] = f"arn:aws:ecs:{region}:{ACCOUNT}:task-definition/{inputs.get('family')}:1"
    elif typ == "aws:s3/bucket:Bucket":
        out["arn"] = f"arn:aws:s3:::{name}-bucket"
        out["bucket"] = f"{name}-bucket"
    elif typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
        out["prefixListId"] = "pl-6da54004"
    elif typ == "aws:acm/certificate:Certificate":
        out["domainValidationOptions"] = [
            {
                "domainName": inputs["domainName"],
                "resourceRecordName": f"_x1.{inputs['domainName']}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": "_x2.acm-validations.aws.",
            }
        ]
    elif typ == "aws:route53/record:Record":
        out["fqdn"] = inputs["name"]
    elif typ == "aws:acm/certificateValidation:CertificateValidation":
        out["certificateArn"] = inputs["certificateArn"]
    return out


AWSX_OUTPUTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "awsx:ec2:Vpc": lambda name: {
        "vpcId": VPC_ID,
        "privateSubnetIds": PRIVATE_SUBNETS,
        "publicSubnetIds": PUBLIC_SUBNETS,
    },
    "awsx:ecr:Image": lambda name: {
        "imageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/gantry-image-repo@{DIGEST}"
    },
}


class GantryMocks(pulumi.runtime.Mocks):
    def __init__(self, graph: Graph):
        self.graph = graph

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        resource_id = f"{args.name}-id"
        if args.typ in AWSX_OUTPUTS:
            # awsx components run in their own provider, which mocks do not reach: only outputs exist.
            outputs = AWSX_OUTPUTS[args.typ](args.name)
        else:
            outputs = {**inputs, **_computed(args.typ, args.name, inputs)}
        outputs["id"] = resource_id
        self.graph.resources.append(Res(args.typ, args.name, inputs, outputs))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.graph.calls.append(args.token)
        self.graph.call_args.append((args.token, dict(args.args)))
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDAEXAMPLE"}
        if args.token == "aws:ec2/getRouteTables:getRouteTables":
            return {"id": VPC_ID, "ids": PRIVATE_ROUTE_TABLES}
        raise NotImplementedError(f"no mock answer for {args.token}")


def stack_config(stack: str) -> dict[str, Any]:
    """What the CLI passes for a committed stack: project defaults overlaid by the stack file."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    config = {f"{project['name']}:{k}": v["default"] for k, v in project["config"].items()}
    stack_file = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config.update(stack_file["config"])
    return config


def set_config(config: dict[str, Any], secret_keys: list[str]) -> None:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(encoded, secret_keys)


def with_test_secrets(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Give every stack-created secret a test value, marked secret as `config set --secret` would."""
    config = dict(config)
    created = [s["name"] for s in config.get("gantry:secrets", []) if s.get("create")]
    if created and not config.get("gantry:secretValues"):
        config["gantry:secretValues"] = {name: TEST_SECRET_VALUE for name in created}
    return config, ["gantry:secretValues"]


def run_with_mocks(program: Callable[[], Any], stack: str = "test", graph: Graph | None = None) -> Graph:
    graph = graph if graph is not None else Graph()
    pulumi.runtime.set_mocks(GantryMocks(graph), project="gantry", stack=stack, preview=False)
    pulumi.runtime.test(program)()
    return graph


def run_program(
    stack: str, config: dict[str, Any] | None = None, secret_keys: list[str] | None = None, graph: Graph | None = None
) -> Graph:
    """Run the real __main__.py under mocks for a committed stack file (or an explicit config)."""
    if config is None:
        config, secret_keys = with_test_secrets(stack_config(stack))
    set_config(config, secret_keys or [])
    graph = graph if graph is not None else Graph()

    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        # The root stack outlives a test; collect this run's exports while their outputs resolve.
        outputs = dict(pulumi.runtime.get_root_resource().outputs)
        return pulumi.Output.all(**outputs).apply(graph.exports.update)

    return run_with_mocks(program, stack, graph)


def run_component(build: Callable[[], Any]) -> Graph:
    """Build one component (the callable constructs it) under mocks and return its resources."""
    pulumi.runtime.set_all_config({}, [])
    return run_with_mocks(build)

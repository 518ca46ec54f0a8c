"""Pulumi mocks harness: run gantry programs and components without the CLI or AWS.

`run_program(stack)` runs the real `__main__.py` with the config the CLI would pass for a committed
stack file (Pulumi.yaml defaults, then Pulumi.<stack>.yaml, objects JSON-encoded, secret keys
marked), and returns every registered resource. The mocks answer like AWS would in shape: ARNs in the
real per-service formats, DNS names, ARN suffixes, digests, so tests can assert the wiring between
resources (an ARN in a policy is the ARN of the resource it means), not just inputs echoed back.
Every registration also passes through `CapturingMonitor`, which records what mocks never see:
dependencies, property dependencies and resource options (ignore_changes, retain_on_delete, protect,
aliases), so ordering and options are assertable on the whole program.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parents[1]

ACCOUNT = "210987654321"
REGION = "eu-west-1"
# In AWS's id formats (the AppSpec builder refuses anything else).
PRIVATE_SUBNETS = ["subnet-0a0a0a01", "subnet-0b0b0b01", "subnet-0c0c0c01"]
PUBLIC_SUBNETS = ["subnet-0a0a0a02", "subnet-0b0b0b02", "subnet-0c0c0c02"]
PRIVATE_ROUTE_TABLES = ["rtb-private-a", "rtb-private-b", "rtb-private-c"]
VPC_ID = "vpc-0gantry"
AVAILABILITY_ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
# The hosted zones the mocked account has (id -> name); domain variants use these.
HOSTED_ZONES = {"Z0GANTRYTEST01": "acme.io"}
VERSION_ID = "3f1b5c9e-7d2a-4e8f-9b6c-1a2d3e4f5a6b"
DIGEST = "sha256:" + "ab" * 32
# Stand-in for what an operator sets with `pulumi config set --secret --path 'secretValues.<NAME>'`.
# It holds the tenant the blue/green eval hook uses (deployment.evalTenant's default) with its own key.
TEST_SECRET_VALUE = '{"tenant-a": "k-test-only-4f9c2e", "gantry-eval": "k-test-only-eval-7d1a"}'


@dataclass
class Options:
    """What a resource was registered with beyond its inputs: only the monitor sees these."""

    urn: str
    parent: str
    dependencies: frozenset[str]
    property_dependencies: dict[str, frozenset[str]]
    ignore_changes: tuple[str, ...]
    retain_on_delete: bool
    protect: bool
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]
    aliases: tuple[Any, ...]


@dataclass
class Res:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    options: Options | None = None

    def json(self, key: str) -> Any:
        return json.loads(self.inputs[key])

    @property
    def opts(self) -> Options:
        assert self.options is not None, f"{self.name} was not registered through the capturing monitor"
        return self.options

    @property
    def urn(self) -> str:
        assert self.options is not None, f"{self.name} was not registered through the capturing monitor"
        return self.options.urn

    def depends_on(self, other: Res) -> bool:
        """True when `other` is among this resource's dependencies (explicit or through an input)."""
        assert self.options is not None
        every = set(self.options.dependencies).union(*self.options.property_dependencies.values())
        return other.urn in every


@dataclass
class Graph:
    resources: list[Res] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    call_args: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    previous_outputs: dict[str, Any] = field(default_factory=dict)
    """What the stack's last update exported (readStackOutputs answers it); default none, a new stack."""

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

    def components(self) -> list[Res]:
        return [r for r in self.resources if r.typ.startswith("gantry:")]

    def children_of(self, parent: Res) -> list[Res]:
        return [r for r in self.resources if r.options is not None and r.options.parent == parent.urn]

    def by_id(self, resource_id: str) -> Res:
        found = [r for r in self.resources if r.outputs.get("id") == resource_id]
        assert len(found) == 1, f"no single resource has id {resource_id}"
        return found[0]


def _hex(name: str, length: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def _arn(service: str, resource: str, region: str | None = REGION) -> str:
    return f"arn:aws:{service}:{region or ''}:{'' if service == 's3' else ACCOUNT}:{resource}"


# Outputs AWS computes, per resource type, in AWS's own formats: (name, inputs) -> outputs.
COMPUTED: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "aws:ecr/repository:Repository": lambda n, i: {
        "arn": _arn("ecr", f"repository/{n}"),
        "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{n}",
        "registryId": ACCOUNT,
    },
    "aws:cloudwatch/logGroup:LogGroup": lambda n, i: {"arn": _arn("logs", f"log-group:{n}")},
    "aws:secretsmanager/secret:Secret": lambda n, i: {"arn": _arn("secretsmanager", f"secret:{n}-Ab12Cd")},
    # Secrets Manager gives every new value a new version id; the mock derives it from the value.
    "aws:secretsmanager/secretVersion:SecretVersion": lambda n, i: {
        "versionId": hashlib.sha256(json.dumps(i.get("secretString")).encode()).hexdigest()[:32]
    },
    "aws:iam/role:Role": lambda n, i: {"arn": f"arn:aws:iam::{ACCOUNT}:role/{n}"},
    "aws:lb/loadBalancer:LoadBalancer": lambda n, i: {
        "arn": _arn("elasticloadbalancing", f"loadbalancer/app/{n}/50dc6c495c0c9188"),
        "arnSuffix": f"app/{n}/50dc6c495c0c9188",
        "dnsName": f"{n}-1234567890.{REGION}.elb.amazonaws.com",
        "zoneId": "Z32O12XQLNTSW2",
    },
    "aws:lb/targetGroup:TargetGroup": lambda n, i: {
        "arn": _arn("elasticloadbalancing", f"targetgroup/{n}/73e2d6bc24d8a067"),
        "arnSuffix": f"targetgroup/{n}/73e2d6bc24d8a067",
    },
    "aws:lb/listener:Listener": lambda n, i: {
        "arn": i["loadBalancerArn"].replace(":loadbalancer/", ":listener/") + "/" + _hex(n, 16)
    },
    "aws:lambda/function:Function": lambda n, i: {"arn": _arn("lambda", f"function:{n}"), "name": n},
    "aws:codedeploy/application:Application": lambda n, i: {"name": n},
    "aws:ecs/cluster:Cluster": lambda n, i: {"arn": _arn("ecs", f"cluster/{n}")},
    "aws:ecs/service:Service": lambda n, i: {"arn": _arn("ecs", f"service/{n}/{n}")},
    "aws:ecs/taskDefinition:TaskDefinition": lambda n, i: {
        "arn": _arn("ecs", f"task-definition/{i.get('family')}:1"),
        "revision": 1,
    },
    "aws:s3/bucket:Bucket": lambda n, i: {"arn": f"arn:aws:s3:::{n}-bucket", "bucket": f"{n}-bucket"},
    "aws:ec2/vpcEndpoint:VpcEndpoint": lambda n, i: {"prefixListId": "pl-6da54004"},
    "aws:sqs/queue:Queue": lambda n, i: {
        "arn": _arn("sqs", n),
        "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{n}",
        "name": n,
    },
    "aws:dynamodb/table:Table": lambda n, i: {"arn": _arn("dynamodb", f"table/{n}"), "name": n},
    "aws:cloudwatch/metricAlarm:MetricAlarm": lambda n, i: {"arn": _arn("cloudwatch", f"alarm:{i.get('name') or n}")},
    "aws:acm/certificate:Certificate": lambda n, i: {
        "domainValidationOptions": [
            {
                "domainName": i["domainName"],
                "resourceRecordName": f"_x1.{i['domainName']}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": "_x2.acm-validations.aws.",
            }
        ]
    },
    "aws:route53/record:Record": lambda n, i: {"fqdn": i["name"]},
    "aws:acm/certificateValidation:CertificateValidation": lambda n, i: {"certificateArn": i["certificateArn"]},
    "docker-build:index:Image": lambda n, i: {
        "digest": DIGEST,
        "ref": f"{i['exports'][0]['registry']['names'][0]}@{DIGEST}",
    },
}


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs AWS computes, in AWS's formats; a type without an entry gets a generic ARN."""
    service = typ.split(":")[1].split("/")[0]
    out: dict[str, Any] = {"arn": _arn(service, name), "name": inputs.get("name") or name}
    if typ in COMPUTED:
        out.update(COMPUTED[typ](name, inputs))
    return out


AWSX_OUTPUTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "awsx:ec2:Vpc": lambda name: {
        "vpcId": VPC_ID,
        "privateSubnetIds": PRIVATE_SUBNETS,
        "publicSubnetIds": PUBLIC_SUBNETS,
    },
}


class CapturingMonitor(MockMonitor):
    """The SDK's mock monitor, keeping what `new_resource` never sees: dependencies and options."""

    def __init__(self, mocks: GantryMocks):
        super().__init__(mocks)
        self.graph = mocks.graph
        self._lock = threading.Lock()

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        options = Options(
            urn=response.urn,
            parent=request.parent,
            dependencies=frozenset(request.dependencies),
            property_dependencies={k: frozenset(v.urns) for k, v in request.propertyDependencies.items()},
            ignore_changes=tuple(request.ignoreChanges),
            retain_on_delete=bool(request.retainOnDelete),
            protect=bool(request.protect),
            delete_before_replace=bool(request.deleteBeforeReplace),
            replace_on_changes=tuple(request.replaceOnChanges),
            aliases=tuple(request.aliases),
        )
        with self._lock:
            if request.type == "pulumi:pulumi:Stack":
                return response
            # new_resource (called inside super()) recorded the resource; attach what only we see.
            [res] = [
                r
                for r in self.graph.resources
                if r.typ == request.type and r.name == request.name and r.options is None
            ]
            res.options = options
        return response


class GantryMocks(pulumi.runtime.Mocks):
    def __init__(self, graph: Graph):
        self.graph = graph

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        # Security groups get AWS-shaped ids (the AppSpec builder checks them); the rest name-derived ones.
        resource_id = (
            f"sg-{_hex(args.name, 17)}" if args.typ == "aws:ec2/securityGroup:SecurityGroup" else f"{args.name}-id"
        )
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
        if args.token == "pulumi:pulumi:readStackOutputs":
            return {"name": args.args["name"], "outputs": self.graph.previous_outputs, "secretOutputNames": []}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDAEXAMPLE"}
        if args.token == "aws:ec2/getRouteTables:getRouteTables":
            return {"id": VPC_ID, "ids": PRIVATE_ROUTE_TABLES}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"id": REGION, "names": AVAILABILITY_ZONES, "zoneIds": [f"euw1-az{i}" for i in (1, 2, 3)]}
        if args.token == "aws:route53/getZone:getZone":
            zone_id = args.args.get("zoneId")
            if zone_id not in HOSTED_ZONES:
                raise Exception(f"no matching Route 53 Hosted Zone found: {zone_id}")
            return {"zoneId": zone_id, "name": HOSTED_ZONES[zone_id], "id": zone_id}
        if args.token == "aws:secretsmanager/getSecretVersions:getSecretVersions":
            return {
                "arn": args.args["secretId"],
                "id": args.args["secretId"],
                "name": "referenced",
                "versions": [
                    {
                        "versionId": "0ld-version",
                        "versionStages": ["AWSPREVIOUS"],
                        "createdTime": "",
                        "lastAccessedDate": "",
                    },
                    {
                        "versionId": VERSION_ID,
                        "versionStages": ["AWSCURRENT"],
                        "createdTime": "",
                        "lastAccessedDate": "",
                    },
                ],
            }
        if args.token == "aws:ssm/getParameter:getParameter":
            return {
                "arn": args.args["name"],
                "id": args.args["name"],
                "name": args.args["name"],
                "version": 4,
                "type": "SecureString",
                "value": "ciphertext",
                "insecureValue": "",
                "withDecryption": False,
            }
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"id": ACCOUNT, "userName": "AWS", "password": "mock-ecr-token", "proxyEndpoint": "https://ecr"}
        raise NotImplementedError(f"no mock answer for {args.token}")


# A team's own service instead of the sample worker (tests/own_service: the image contract and nothing
# else): the dev stack with that image, its port, its health command and its own secret. The
# whole-stack checks run on it too, so they are about the contract, not about the sample.
OWN_SERVICE = "own-service"
OWN_SERVICE_CHANGES: dict[str, Any] = {
    "gantry:image": {"context": "tests/own_service", "dockerfile": "tests/own_service/Dockerfile", "keepImages": 10},
    "gantry:container": {
        "port": 8080,
        "healthCheckPath": "/health",
        "healthCheckCommand": ["CMD", "python", "healthcheck.py"],
        "cpu": 512,
        "memory": 1024,
        "architecture": "X86_64",
        "stopTimeoutSeconds": 20,
        "environment": {"LOG_FORMAT": "json", "UPSTREAM_BASE_URL": "https://api.openai.com/v1"},
    },
    "gantry:secrets": [{"name": "UPSTREAM_TOKEN", "create": True}],
    # The batch consumer is the sample worker's second command; a team's own image has none.
    "gantry:queue": {"enabled": False},
}


def stack_config(stack: str) -> dict[str, Any]:
    """What the CLI passes for a committed stack: project defaults overlaid by the stack file (and, for
    OWN_SERVICE, the dev stack file with the own-service changes)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    config = {f"{project['name']}:{k}": v["default"] for k, v in project["config"].items()}
    stack_file = yaml.safe_load((ROOT / f"Pulumi.{'dev' if stack == OWN_SERVICE else stack}.yaml").read_text())
    config.update(stack_file["config"])
    if stack == OWN_SERVICE:
        config.update(OWN_SERVICE_CHANGES)
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
    mocks = GantryMocks(graph)
    pulumi.runtime.set_mocks(mocks, project="gantry", stack=stack, preview=False, monitor=CapturingMonitor(mocks))
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
        root = pulumi.runtime.get_root_resource()
        assert isinstance(root, pulumi.runtime.stack.Stack)
        outputs = dict(root.outputs)
        return pulumi.Output.all(**outputs).apply(graph.exports.update)

    return run_with_mocks(program, stack, graph)


def run_component(build: Callable[[], Any]) -> Graph:
    """Build one component (the callable constructs it) under mocks and return its resources."""
    pulumi.runtime.set_all_config({}, [])
    return run_with_mocks(build)

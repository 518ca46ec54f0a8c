"""The offline engine: run gantry's Pulumi program (or one component) under mocks, no CLI, no AWS.

`synthesize(stack)` runs the real `__main__.py` of a repository checkout with the config the CLI would
pass for a committed stack file (Pulumi.yaml defaults, then Pulumi.<stack>.yaml, objects JSON-encoded,
secret keys marked) and returns every registered resource as a `Graph`. The mocks answer like AWS would
in shape: ARNs in the real per-service formats, DNS names, ARN suffixes, digests, so the wiring between
resources (an ARN in a policy is the ARN of the resource it means) is real, not inputs echoed back.
Every registration also passes through `CapturingMonitor`, which records what mocks never see:
dependencies, property dependencies, resource options (ignore_changes, retain_on_delete, protect,
aliases) and which inputs are secret. The test suite (`tests/harness.py` re-exports this module) and
`python -m gantry.plan` share it, and share its one reader of stack files (`stack_config`, `cli_config`),
which reads keys and `secure:` values as the Pulumi CLI does. Security stance: no credentials and no
network are used; `secure:` values never reach the program (it gets stand-ins, `offline-stand-in-...`,
derived from the ciphertext but revealing nothing of the secret), stack-created secrets get test values,
and each resource records which of its inputs carried a secret so that callers never print them.
`PYTHONPATH=DIR python -P gantry/offline.py --root DIR STACK` prints a value-free snapshot (`snapshot`)
of another checkout, which is how the plan compares against a git ref in a fresh interpreter: this file
runs as the engine, and the checkout's `components` come first on the import path (`snapshot_command`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

from gantry.urns import Identities

ROOT = Path(__file__).resolve().parents[1]
# The project's name in Pulumi.yaml: the namespace of gantry's own config keys. Not imported from
# components.settings: this module must not import the program, which it runs per checkout.
NAMESPACE = "gantry"

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
# The security group CloudFront creates in the VPC with its first VPC origin (looked up by name).
CLOUDFRONT_VPC_ORIGIN_SG = "sg-0c10dfa0e0vpc0rg"
# The Route 53 zone of every CloudFront distribution (aws.cloudfront.Distribution.hosted_zone_id).
CLOUDFRONT_ZONE_ID = "Z2FDTNDATAQYW2"
VERSION_ID = "3f1b5c9e-7d2a-4e8f-9b6c-1a2d3e4f5a6b"
DIGEST = "sha256:" + "ab" * 32
# The permissions boundary the bootstrap creates in the mocked account (bootstrap/documents.py Scope).
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/gantry/gantry-workload-boundary"
# The committed prod stack promotes from dev (image.promoteFrom: dev): what dev's last `pulumi up` exported,
# and the images ECR holds in dev's repository ((repository name, digest) pairs).
ORGANIZATION = "organization"
DEV_STACK = f"{ORGANIZATION}/gantry/dev"
DEV_REPOSITORY = "gantry-image-repo"
DEV_REPOSITORY_URL = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{DEV_REPOSITORY}"
DEV_OUTPUTS = {"repositoryUrl": DEV_REPOSITORY_URL, "imageDigest": DIGEST, "deploymentController": "ECS"}
EARLIER_DIGEST = "sha256:" + "cd" * 32
ECR_IMAGES = frozenset({(DEV_REPOSITORY, DIGEST), (DEV_REPOSITORY, EARLIER_DIGEST)})
# The runs whose dev job evaluated them marked both `evaluated-<run id>-<attempt>` (scripts/ci/mark_evaluated.py):
# (repository name, tag) -> digest. Run 2 deployed dev's current image, run 1 the earlier one.
EARLIER_RUN, CURRENT_RUN = "1-1", "2-1"
ECR_TAGS = {
    (DEV_REPOSITORY, f"evaluated-{EARLIER_RUN}"): EARLIER_DIGEST,
    (DEV_REPOSITORY, f"evaluated-{CURRENT_RUN}"): DIGEST,
}
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
    provider: str = ""
    """The explicit provider reference (`<provider urn>::<id>`), empty for the default provider."""
    secret_inputs: frozenset[str] = frozenset()
    """Inputs whose value was (or contained) a secret Output: never to be printed."""


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
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=lambda: {DEV_STACK: dict(DEV_OUTPUTS)})
    """Other stacks' outputs by fully qualified name (what a StackReference reads); default dev's."""
    ecr_images: frozenset[tuple[str, str]] = ECR_IMAGES
    """(repository name, digest) pairs ECR holds; default dev's current and one earlier image."""
    ecr_tags: dict[tuple[str, str], str] = field(default_factory=lambda: dict(ECR_TAGS))
    """(repository name, tag) -> the digest that tag is on; default both images marked evaluated."""
    warnings: list[str] = field(default_factory=list)
    """What the program warned about (`pulumi.log.warn`, which `pulumi up` prints), in order."""

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
    "aws:iam/role:Role": lambda n, i: {"arn": f"arn:aws:iam::{ACCOUNT}:role{i.get('path', '/')}{n}"},
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
    "aws:sqs/queue:Queue": lambda n, i: {
        "arn": _arn("sqs", n),
        "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{n}",
        "name": n,
    },
    "aws:dynamodb/table:Table": lambda n, i: {"arn": _arn("dynamodb", f"table/{n}"), "name": n},
    "aws:cloudwatch/metricAlarm:MetricAlarm": lambda n, i: {"arn": _arn("cloudwatch", f"alarm:{i.get('name') or n}")},
    "aws:sns/topic:Topic": lambda n, i: {"arn": _arn("sns", i.get("name") or n)},
    "aws:kms/key:Key": lambda n, i: {
        "arn": _arn("kms", f"key/{_hex(n, 8)}-{_hex(n + 'key', 4)}-4{_hex(n, 3)}-8{_hex(n, 3)}-{_hex(n, 12)}"),
        "keyId": f"{_hex(n, 8)}-{_hex(n + 'key', 4)}-4{_hex(n, 3)}-8{_hex(n, 3)}-{_hex(n, 12)}",
    },
    "aws:ecs/cluster:Cluster": lambda n, i: {"arn": _arn("ecs", f"cluster/{n}")},
    "aws:ecs/service:Service": lambda n, i: {"arn": _arn("ecs", f"service/{n}/{n}")},
    "aws:ecs/taskDefinition:TaskDefinition": lambda n, i: {
        "arn": _arn("ecs", f"task-definition/{i.get('family')}:1"),
        "revision": 1,
    },
    "aws:s3/bucket:Bucket": lambda n, i: {"arn": f"arn:aws:s3:::{n}-bucket", "bucket": f"{n}-bucket"},
    "aws:ec2/vpcEndpoint:VpcEndpoint": lambda n, i: {"prefixListId": "pl-6da54004"},
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
    "aws:cloudfront/distribution:Distribution": lambda n, i: {
        "arn": f"arn:aws:cloudfront::{ACCOUNT}:distribution/E{_hex(n, 13).upper()}",
        "domainName": f"d{_hex(n, 13)}.cloudfront.net",
        "hostedZoneId": CLOUDFRONT_ZONE_ID,
    },
    "aws:cloudfront/vpcOrigin:VpcOrigin": lambda n, i: {
        "arn": f"arn:aws:cloudfront::{ACCOUNT}:vpcorigin/vo_{_hex(n, 20)}"
    },
    "aws:wafv2/webAcl:WebAcl": lambda n, i: {
        "arn": f"arn:aws:wafv2:{'us-east-1' if i['scope'] == 'CLOUDFRONT' else REGION}:{ACCOUNT}:"
        f"{'global' if i['scope'] == 'CLOUDFRONT' else 'regional'}/webacl/{i['name']}/{_hex(n, 8)}"
    },
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


# How the engine's wire format marks a secret: {SECRET_SIG_KEY: SECRET_SIG, "value": ...}. Constants of the
# protocol every Pulumi SDK shares (pulumi/runtime/rpc.py `_special_sig_key`, `_special_secret_sig`).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _holds_secret(value: Any) -> bool:
    """Whether a serialized property value (a protobuf `Value`) is, or contains, a secret."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        if SECRET_SIG_KEY in fields and fields[SECRET_SIG_KEY].string_value == SECRET_SIG:
            return True
        return any(_holds_secret(v) for v in fields.values())
    if kind == "list_value":
        return any(_holds_secret(v) for v in value.list_value.values)
    return False


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
            provider=request.provider,
            secret_inputs=frozenset(k for k, v in request.object.fields.items() if _holds_secret(v)),
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
            name = args.args["name"]
            if name == f"{ORGANIZATION}/{pulumi.get_project()}/{pulumi.get_stack()}":
                outputs = self.graph.previous_outputs
            elif name in self.graph.stack_outputs:
                outputs = self.graph.stack_outputs[name]
            else:
                return {}, [("name", f"unknown stack {name}")]
            return {"name": name, "outputs": outputs, "secretOutputNames": []}
        if args.token == "aws:ecr/getRepository:getRepository":
            name = args.args["name"]
            if name not in {repo for repo, _ in self.graph.ecr_images}:
                return {}, [("name", f"RepositoryNotFoundException: repository {name} does not exist")]
            url = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"
            return {"arn": _arn("ecr", f"repository/{name}"), "repositoryUrl": url, "registryId": ACCOUNT, "name": name}
        if args.token == "aws:ecr/getImage:getImage":
            repository, tag = args.args["repositoryName"], args.args.get("imageTag")
            image = self.graph.ecr_tags.get((repository, tag)) if tag else args.args.get("imageDigest")
            key = (repository, image)
            if key not in self.graph.ecr_images:
                missing = f"ImageNotFoundException: no image {tag or image} in repository {repository}"
                return {}, [("imageDigest", missing)]
            tags = sorted(t for (r, t), d in self.graph.ecr_tags.items() if r == repository and d == image)
            return {"id": image, "imageDigest": image, "repositoryName": repository, "imageTags": tags}
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
        if args.token == "aws:ec2/getSecurityGroup:getSecurityGroup":
            names = [f["values"] for f in args.args.get("filters", []) if f["name"] == "group-name"]
            if names != [["CloudFront-VPCOrigins-Service-SG"]]:
                raise Exception(f"no matching SecurityGroup found: {args.args}")
            return {"id": CLOUDFRONT_VPC_ORIGIN_SG, "name": names[0][0], "vpcId": VPC_ID, "arn": "", "description": ""}
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
        if args.token == "aws:iam/getPolicy:getPolicy":
            # The account has run the bootstrap: its boundary exists, nothing else does. A failure is returned
            # as the provider returns it (a check failure, which the SDK raises from the invoke).
            if args.args.get("arn") != BOUNDARY_ARN:
                return {}, [
                    ("arn", f"NoSuchEntity: Policy {args.args.get('arn')} does not exist or is not attachable.")
                ]
            return {"arn": BOUNDARY_ARN, "name": "gantry-workload-boundary", "path": "/gantry/", "id": BOUNDARY_ARN}
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"id": ACCOUNT, "userName": "AWS", "password": "mock-ecr-token", "proxyEndpoint": "https://ecr"}
        raise NotImplementedError(f"no mock answer for {args.token}")


class StackFileError(ValueError):
    """A stack or project file the Pulumi CLI would not read; the message names the file."""


class StackNotFound(StackFileError):
    """The stack asked for has no committed Pulumi.<stack>.yaml."""


def qualify(key: str, project: str, source: str) -> str:
    """A config key as the CLI stores it, `<namespace>:<name>`. The CLI's own rules: a stack file's key
    without a `:` belongs to the project (pulumi/pulumi sdk/go/common/workspace/loaders.go,
    `stackConfigNamespacedWithProject`: "use the project as default namespace"); `ns:name` is kept, the
    old `ns:config:name` means `ns:name`, and anything else is refused ("could not parse ... as a
    configuration key", sdk/go/common/resource/config/key.go `ParseKey`)."""
    parts = key.split(":")
    if len(parts) == 1:
        return f"{project}:{key}"
    if len(parts) == 2:
        return key
    if len(parts) == 3 and parts[1] == "config":
        return f"{parts[0]}:{parts[2]}"
    raise StackFileError(
        f"{source}: could not parse {key!r} as a configuration key "
        "(configuration keys should be of the form `<namespace>:<name>`)"
    )


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise StackFileError(f"{path.name}: not valid YAML: {' '.join(str(error).split())}") from None


def stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """What the CLI passes for a committed stack of the checkout at `root`: project defaults overlaid by
    Pulumi.<stack>.yaml, every key qualified as the CLI qualifies it (`qualify`). A `secure:` value stays
    `{"secure": <ciphertext>}` here; `cli_config` gives it its stand-in. As in the CLI, an empty stack file
    or one without `config:` has no config (`config` is optional:
    https://www.pulumi.com/docs/iac/concepts/projects/stack-settings-file/); a `config:` that is not a
    mapping, or two keys that name one setting, are refused naming the file."""
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        committed = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise StackNotFound(f"no stack file {stack_file.name} in {root}; committed stacks: {', '.join(committed)}")
    project = _load_yaml(root / "Pulumi.yaml")
    name = project["name"]
    config = {qualify(k, name, "Pulumi.yaml"): v["default"] for k, v in project["config"].items()}
    document = _load_yaml(stack_file)
    if document is None:
        return config
    if not isinstance(document, dict):
        raise StackFileError(f"{stack_file.name}: expected a mapping with a `config:` mapping, got {_kind(document)}")
    values = document.get("config")
    if values is None:
        return config
    if not isinstance(values, dict):
        raise StackFileError(
            f"{stack_file.name}: `config:` must be a mapping of `<namespace>:<name>` keys to values, "
            f"got {_kind(values)}"
        )
    seen: dict[str, str] = {}
    for key, value in values.items():
        full = qualify(str(key), name, stack_file.name)
        if full in seen:
            raise StackFileError(f"{stack_file.name}: {seen[full]!r} and {key!r} both set {full}; keep one")
        seen[full] = str(key)
        config[full] = value
    return config


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# A `secure:` value's ciphertext only the stack's secrets provider can open. The plan runs the program on a
# stand-in instead: well-formed for the key (so the validator judges the rest of the config, as a real
# preview does with the decrypted value), recognisable in any output by this prefix, and derived from the
# ciphertext, so a re-encrypted (changed) secret shows as a change and an unchanged one does not.
STAND_IN_PREFIX = "offline-stand-in-"


def _stand_in(ciphertext: Any, salt: str = "") -> str:
    return STAND_IN_PREFIX + hashlib.sha256(f"{salt}{ciphertext}".encode()).hexdigest()[:20]


def _secret_stand_in(name: str, ciphertext: Any, eval_tenant: str) -> str:
    """A stand-in for secretValues.<name>. API_KEYS is the sample worker's tenant -> key JSON (at least 16
    characters per key, app/worker/config.py) and needs a key for deployment.evalTenant, which the eval
    hook sends (components/settings/loader.py `_deployment_checks`); any other secret is a plain string."""
    if name != "API_KEYS":
        return _stand_in(ciphertext, name)
    return json.dumps({eval_tenant: _stand_in(ciphertext, "eval"), "offline-tenant": _stand_in(ciphertext, "tenant")})


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _holds_secure(value: Any) -> bool:
    if _is_secure(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secure(v) for v in value)
    return False


def _plain_stand_ins(value: Any, key: str) -> Any:
    if _is_secure(value):
        return _stand_in(value["secure"], key)
    if isinstance(value, dict):
        return {k: _plain_stand_ins(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_stand_ins(v, key) for v in value]
    return value


def cli_config(config: dict[str, Any], source: str = "the stack file") -> tuple[dict[str, Any], list[str]]:
    """(config, secret keys) as the CLI hands them to the program, `secure:` values replaced by stand-ins.

    A key is secret exactly when its value is, or holds, a `secure:` value (what `pulumi config set
    --secret [--path]` writes); a plain-text `secretValues` stays plain, so the validator refuses it as
    a real preview does. A stack file without `secretValues` gets a test value for each stack-created
    secret, marked secret: the committed stacks leave them to the operator's `config set --secret`.
    gantry reads secrets only from `secretValues`: an encrypted value elsewhere under the project's
    namespace has no shape the plan could stand in for, so it is refused rather than planned wrongly."""
    config = dict(config)
    secret_keys: list[str] = []
    secrets = f"{NAMESPACE}:secretValues"
    deployment = config.get(f"{NAMESPACE}:deployment")
    eval_tenant = deployment.get("evalTenant", "gantry-eval") if isinstance(deployment, dict) else "gantry-eval"
    for key, value in list(config.items()):
        if not _holds_secure(value):
            continue
        secret_keys.append(key)
        if key == secrets:
            created = config.get(f"{NAMESPACE}:secrets")
            names = (
                [s["name"] for s in created if isinstance(s, dict) and s.get("create")]
                if isinstance(created, list)
                else []
            )
            if _is_secure(value):  # the whole object set with one `config set --secret secretValues '{...}'`
                config[key] = {n: _secret_stand_in(n, value["secure"], eval_tenant) for n in names}
            elif isinstance(value, dict):
                config[key] = {
                    n: _secret_stand_in(n, v["secure"], eval_tenant) if _is_secure(v) else v for n, v in value.items()
                }
        elif key.startswith(f"{NAMESPACE}:"):
            raise StackFileError(
                f"{source}: {key} holds an encrypted (secure:) value; gantry takes secrets only under "
                f"secretValues (`pulumi config set --secret --path 'secretValues.<NAME>' <value>`), so the "
                "offline plan has no stand-in of the right shape for it"
            )
        else:
            config[key] = _plain_stand_ins(value, key)
    created = config.get(f"{NAMESPACE}:secrets", [])
    names = [s["name"] for s in created if isinstance(s, dict) and s.get("create")] if isinstance(created, list) else []
    if names and not config.get(secrets):
        config[secrets] = {name: TEST_SECRET_VALUE for name in names}
        secret_keys.append(secrets)
    return config, secret_keys


def set_config(config: dict[str, Any], secret_keys: list[str]) -> None:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(encoded, secret_keys)


def with_test_secrets(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`cli_config` for a test's own config: a `gantry:secretValues` the test wrote in is taken as set
    with `--secret` (the tests model an operator's secret, not a plain-text mistake) and an empty one gets
    the test values."""
    config, secret_keys = cli_config(config)
    if f"{NAMESPACE}:secretValues" not in secret_keys:
        secret_keys.insert(0, f"{NAMESPACE}:secretValues")
    return config, secret_keys


def secret_strings(config: dict[str, Any], secret_keys: list[str]) -> set[str]:
    """Every string under a secret config key (and the JSON it may hold): what output must never contain."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value:
            found.add(value)
            with contextlib.suppress(ValueError):
                walk(json.loads(value))

    for key in secret_keys:
        if key in config:
            walk(config[key])
    return found


class _Warnings(logging.Handler):
    """Keeps the program's warnings: under mocks, `pulumi.log.warn` reaches the mock engine's logger."""

    def __init__(self, graph: Graph):
        super().__init__(logging.WARNING)
        self.graph = graph

    def emit(self, record: logging.LogRecord) -> None:
        self.graph.warnings.append(record.getMessage())


def run_with_mocks(program: Callable[[], Any], stack: str = "test", graph: Graph | None = None) -> Graph:
    graph = graph if graph is not None else Graph()
    mocks = GantryMocks(graph)
    logger = logging.getLogger(f"gantry.offline.engine.{id(graph)}")
    logger.propagate = False
    logger.handlers = [_Warnings(graph)]
    pulumi.runtime.set_mocks(
        mocks,
        project="gantry",
        stack=stack,
        preview=False,
        logger=logger,
        monitor=CapturingMonitor(mocks),
        organization=ORGANIZATION,
    )
    pulumi.runtime.test(program)()
    return graph


def run_program(
    stack: str,
    config: dict[str, Any] | None = None,
    secret_keys: list[str] | None = None,
    graph: Graph | None = None,
    root: Path = ROOT,
) -> Graph:
    """Run the `__main__.py` of the checkout at `root` under mocks for a committed stack file (or an
    explicit config). The caller provides the event loop (the tests' fixture; `synthesize` its own)."""
    if config is None:
        config, secret_keys = with_test_secrets(stack_config(stack, root))
    set_config(config, secret_keys or [])
    graph = graph if graph is not None else Graph()

    def program():
        runpy.run_path(str(root / "__main__.py"), run_name="__main__")
        # The root stack outlives a run; collect this run's exports while their outputs resolve.
        stack_resource = pulumi.runtime.get_root_resource()
        assert isinstance(stack_resource, pulumi.runtime.stack.Stack)
        outputs = dict(stack_resource.outputs)
        return pulumi.Output.all(**outputs).apply(graph.exports.update)

    return run_with_mocks(program, stack, graph)


def run_component(build: Callable[[], Any]) -> Graph:
    """Build one component (the callable constructs it) under mocks and return its resources."""
    pulumi.runtime.set_all_config({}, [])
    return run_with_mocks(build)


@dataclass(frozen=True)
class Synthesis:
    """One offline run of a committed stack: its resources and the secret strings its config held."""

    stack: str
    graph: Graph
    secrets: frozenset[str]


class ConfigRefused(ValueError):
    """The program refused the stack's config (`pulumi preview` would stop with the same message)."""


# What makes the program's `up` a deploy workflow's (components.settings.invocation): the plan is what a
# person's `pulumi up` of the stack file would do, also when a pull request's job runs it in GitHub Actions.
WORKFLOW_VARIABLES = ("GITHUB_ACTIONS", "GANTRY_PROMOTE_DIGEST", "GANTRY_PROMOTE_RUN")


@contextlib.contextmanager
def _as_a_local_up() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in WORKFLOW_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def synthesize(stack: str, root: Path = ROOT) -> Synthesis:
    """The resource graph of committed stack `stack` of the checkout at `root`, in a fresh event loop.

    A process synthesises one checkout: `__main__.py` imports `components`, which Python caches, so
    another checkout needs another interpreter (`python -m gantry.offline`, see `snapshot`). Raises
    StackFileError for a stack file the CLI would not read, ConfigRefused when the program refuses it."""
    config, secret_keys = cli_config(stack_config(stack, root), f"Pulumi.{stack}.yaml")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with _as_a_local_up():
            graph = run_program(stack, config, secret_keys, root=root)
    except pulumi.RunError as error:
        # How the program refuses its config (components/stack_config.py): before any resource exists.
        raise ConfigRefused(f"Pulumi.{stack}.yaml: {error}") from None
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return Synthesis(stack=stack, graph=graph, secrets=frozenset(secret_strings(config, secret_keys)))


def _plain(value: Any) -> Any:
    """Assets and archives as JSON-able values: file contents by digest, so a changed file is a change."""
    if isinstance(value, pulumi.AssetArchive):
        return {"assets": {k: _plain(v) for k, v in sorted(value.assets.items())}}
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        path = Path(value.path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return {"files": {str(p.relative_to(path) if path.is_dir() else p.name): _file_digest(p) for p in files}}
    if isinstance(value, pulumi.RemoteAsset | pulumi.RemoteArchive):
        return {"uri": value.uri}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def digest(value: Any, root: Path = ROOT) -> str:
    """A short, stable fingerprint of an input value: compared across runs, never reversed or printed.
    The checkout's own path (in a build context, say) is factored out, so two checkouts compare equal."""
    text = json.dumps(_plain(value), sort_keys=True, default=repr).replace(str(root), "<checkout>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def snapshot(graph: Graph, stack: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """The graph without values: per resource its URN and parent URN as the stack's state holds them
    (`gantry.urns`), the earlier URNs it carries over through its own or its parents' `aliases`, its
    type, name, the fingerprint of each input and which inputs are secret. What a diff needs, and nothing
    a log could leak."""
    identities = Identities(stack, graph)
    return [
        {
            "urn": identities.urn(r),
            "type": r.typ,
            "name": r.name,
            "parent": identities.parent_urn(r) or "",
            "aliases": identities.aliases(r),
            "inputs": {k: digest(v, root) for k, v in sorted(r.inputs.items())},
            "secretInputs": sorted(r.opts.secret_inputs),
        }
        for r in graph.resources
    ]


def snapshot_command(stack: str, root: Path) -> list[str]:
    """The command that prints `stack`'s snapshot of the checkout at `root` with this engine: this file by
    path under -P (no script directory or working directory on the import path), so that with
    PYTHONPATH=<root> the checkout's own `components` are imported and this file is the engine."""
    return [sys.executable, "-P", str(Path(__file__).resolve()), stack, "--root", str(root)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gantry.offline", description="Print the value-free snapshot of a checkout's stack as JSON."
    )
    parser.add_argument("stack", help="a committed stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to synthesise (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    # The checkout's own `components` must be the ones imported: the caller puts it first on the path
    # (`snapshot_command`); synthesising this repository's instead would compare a checkout with itself.
    found = importlib.util.find_spec("components")
    origin = Path(found.origin).resolve() if found is not None and found.origin else None
    if origin is None or not origin.is_relative_to(root):
        print(
            f"`components` imports from {origin.parent if origin else 'nowhere'}, not from {root}: "
            f"run {' '.join(snapshot_command(args.stack, root))} with PYTHONPATH={root}",
            file=sys.stderr,
        )
        return 2
    try:
        synthesis = synthesize(args.stack, root)
    except StackNotFound as error:
        print(error, file=sys.stderr)
        return 3
    except (StackFileError, ConfigRefused) as error:
        print(error, file=sys.stderr)
        return 2
    json.dump(snapshot(synthesis.graph, args.stack, root), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stack config -> typed, frozen, validated settings (pure Python, no Pulumi).

Everything environment-specific in gantry enters through `load_settings`. It reads the raw
`gantry:*` stack config (as the Pulumi CLI hands it to the program: objects and arrays JSON-encoded),
applies the per-field defaults documented on the dataclasses below, and validates the whole thing
before a single resource is registered. Every problem is collected and reported at once, each line
naming the config key, the bad value and what is allowed. Security stance: secret values are never
echoed in an error, must arrive encrypted (`pulumi config set --secret`), and placeholder values
(REPLACE_ME, 123456789012, example.com, ...) are refused anywhere in the config, because a deploy
that "works" with a placeholder is how outages and open doors reach production.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

NAMESPACE = "gantry"

# Every key gantry reads, with its JSON type. Pulumi.yaml declares the same set (a test holds the two
# together); anything else in the `gantry:` namespace is a typo and is refused.
CONFIG_KEYS: Mapping[str, type] = MappingProxyType(
    {
        "network": dict,
        "vpcEndpoints": dict,
        "container": dict,
        "image": dict,
        "service": dict,
        "autoscaling": dict,
        "loadBalancer": dict,
        "domain": dict,
        "logs": dict,
        "secrets": list,
        "secretValues": dict,
        "taskRolePolicy": list,
    }
)

NAT_STRATEGIES = ("none", "single", "per-az")
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm")
ARCHITECTURES = {"ARM64": "linux/arm64", "X86_64": "linux/amd64"}
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
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
# The values CloudWatch Logs accepts for retentionInDays (0, "never expire", is deliberately absent:
# unbounded retention is a silent cost leak).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# Environment variables gantry sets itself from other settings, so they cannot drift apart.
RESERVED_ENV = ("PORT", "DRAIN_TIMEOUT_SECONDS")
# Seconds between SIGTERM and the end of the app's drain window: ECS sends SIGKILL at stopTimeout, so
# the app must have finished (and flushed its logs) a little before that.
DRAIN_MARGIN_SECONDS = 5

_PLACEHOLDER = re.compile(
    r"replace[_\- ]?me|change[_\- ]?me|\btodo\b|\btbd\b|\bfixme\b|\bx{3,}\b|\bplaceholder\b|\bdummy\b"
    r"|123456789012|\b0{12}\b|\bexample\.(?:com|org|net)\b|<[^<>]+>|\byour[_\- ]",
    re.IGNORECASE,
)
_SECRETISH_ENV = re.compile(
    r"(SECRET|SECRET_KEY|SIGNING_KEY|ENCRYPTION_KEY|PASSWORD|PASSWD|API_?KEYS?|PRIVATE_KEY|ACCESS_KEY(_ID)?"
    r"|_TOKEN|CREDENTIALS?)$"
)
# RFC 1918 ranges: `ipaddress.is_private` would also admit loopback, link-local (the metadata
# endpoints) and reserved ranges.
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):([a-z0-9-]+):([a-z0-9-]*):(\d{12}|aws)?:(.+)$")
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[0-9A-Z]{1,31}$")
# Commercial and GovCloud regions; the ISO partitions are out of scope (their ARNs differ).
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class ConfigError(ValueError):
    """Raised with every config problem found, one per line, before any resource exists."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__(
            "invalid gantry config (nothing was created):\n" + "\n".join(f"  - {p}" for p in problems)
        )


# --------------------------------------------------------------------------------------------------
# Typed settings. Each field's docstring states its default and why.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSettings:
    availability_zones: int
    """`network.availabilityZones`, default 2: an ALB needs two AZs, and two survive an AZ loss."""
    cidr_block: str
    """`network.cidrBlock`, default 10.0.0.0/16: each AZ gets a /24 public and a /20 private subnet."""
    nat_strategy: str
    """`network.natStrategy`: none | single | per-az, default single (one NAT is a single point of
    failure for egress; prod uses per-az)."""
    flow_logs: bool
    """`network.flowLogs`, default true: VPC flow logs to CloudWatch for incident forensics."""
    flow_log_retention_days: int
    """`network.flowLogRetentionDays`, default 90."""


@dataclass(frozen=True)
class EndpointSettings:
    interface: tuple[str, ...]
    """`vpcEndpoints.interface`, default []: which interface endpoints to create. Each costs about
    $7.3/month per AZ, so five across two AZs cost more than one NAT gateway: dev leans on NAT, prod
    keeps image pulls, logs and secret reads on the AWS network."""
    s3_gateway: bool
    """`vpcEndpoints.s3Gateway`, default true: free, and ECR image layers are served from S3."""


@dataclass(frozen=True)
class ContainerSettings:
    port: int
    """`container.port`, default 8000: the one port used for the container, the target group, the
    ALB health check and the app's PORT variable (a mismatch is the classic healthy-infra 502)."""
    health_check_path: str
    """`container.healthCheckPath`, default /health: the ALB target-group health check path."""
    health_check_command: tuple[str, ...]
    """`container.healthCheckCommand`, default ["CMD", "python", "-m", "worker.healthcheck"]: the
    in-container check ECS runs (the slim image ships no curl)."""
    cpu: int
    """`container.cpu` in CPU units, default 1024 (1 vCPU); must pair with memory per the Fargate
    matrix."""
    memory: int
    """`container.memory` in MiB, default 2048."""
    architecture: str
    """`container.architecture`: ARM64 | X86_64, default ARM64 (Graviton: about 20% cheaper per vCPU
    on Fargate); the image is built for the matching platform."""
    stop_timeout_seconds: int
    """`container.stopTimeoutSeconds`, default 30 (Fargate allows up to 120): time between SIGTERM
    and SIGKILL; the app gets DRAIN_TIMEOUT_SECONDS = this minus 5."""
    user: str
    """`container.user`, default "10001:10001": the non-root uid:gid the image is built for."""
    environment: Mapping[str, str]
    """`container.environment`, default {}: plain, non-secret variables. Secrets go in `secrets`."""

    @property
    def drain_timeout_seconds(self) -> int:
        return self.stop_timeout_seconds - DRAIN_MARGIN_SECONDS


@dataclass(frozen=True)
class ImageSettings:
    context: str
    """`image.context`, default "app": the Docker build context, relative to the project."""
    dockerfile: str
    """`image.dockerfile`, default "app/Dockerfile"."""
    keep_images: int
    """`image.keepImages`, default 30: the ECR lifecycle policy expires older images (enough to roll
    back a month of daily deploys)."""
    force_delete: bool
    """`image.forceDelete`, default false: let `pulumi destroy` delete the repository with its images
    (for throwaway stacks; a production repository keeps its rollback images)."""


@dataclass(frozen=True)
class CapacityProvider:
    provider: str
    base: int
    weight: int


@dataclass(frozen=True)
class ServiceSettings:
    desired_count: int
    """`service.desiredCount`, default 2: initial task count; autoscaling owns it after creation."""
    min_healthy_percent: int
    """`service.minHealthyPercent`, default 100: a rolling deploy never drops below capacity."""
    max_percent: int
    """`service.maxPercent`, default 200: new tasks start beside the old ones."""
    health_check_grace_period_seconds: int
    """`service.healthCheckGracePeriodSeconds`, default 60: how long ECS ignores ALB health checks
    for a starting task (model load plus first checks)."""
    capacity_providers: tuple[CapacityProvider, ...]
    """`service.capacityProviders`, default [{provider: FARGATE, base: 1, weight: 1}]."""


@dataclass(frozen=True)
class AutoscalingSettings:
    min_capacity: int
    """`autoscaling.minCapacity`, default 2."""
    max_capacity: int
    """`autoscaling.maxCapacity`, default 6."""
    cpu_target_percent: int
    """`autoscaling.cpuTargetPercent`, default 60: leaves headroom for a burst while scaling out."""
    requests_per_target: int
    """`autoscaling.requestsPerTarget`, default 6000: ALBRequestCountPerTarget target, requests per
    task per minute (~100 req/s, a third of what one vCPU of the sample worker serves)."""
    scale_in_cooldown_seconds: int
    """`autoscaling.scaleInCooldownSeconds`, default 300: scale in slowly to avoid thrashing."""
    scale_out_cooldown_seconds: int
    """`autoscaling.scaleOutCooldownSeconds`, default 60: scale out quickly."""


@dataclass(frozen=True)
class HealthCheckSettings:
    interval_seconds: int
    """`loadBalancer.healthCheck.intervalSeconds`, default 15."""
    timeout_seconds: int
    """`loadBalancer.healthCheck.timeoutSeconds`, default 5; must be below the interval."""
    healthy_threshold: int
    """`loadBalancer.healthCheck.healthyThreshold`, default 2: a new task takes traffic after ~30 s."""
    unhealthy_threshold: int
    """`loadBalancer.healthCheck.unhealthyThreshold`, default 3: one slow answer does not flap a task."""


@dataclass(frozen=True)
class LoadBalancerSettings:
    ingress_cidrs: tuple[str, ...]
    """`loadBalancer.ingressCidrs`, default ["0.0.0.0/0"]: it is a public endpoint; narrow it for
    internal-only APIs."""
    idle_timeout_seconds: int
    """`loadBalancer.idleTimeoutSeconds`, default 60."""
    deletion_protection: bool
    """`loadBalancer.deletionProtection`, default true."""
    access_logs: bool
    """`loadBalancer.accessLogs`, default true: ALB access logs to an encrypted, private S3 bucket."""
    access_log_retention_days: int
    """`loadBalancer.accessLogRetentionDays`, default 90: S3 lifecycle expiry of access logs."""
    desync_mitigation_mode: str
    """`loadBalancer.desyncMitigationMode`, default strictest: API clients send RFC-compliant
    requests, so ambiguous ones (request smuggling) are refused rather than merely monitored."""
    tls_policy: str
    """`loadBalancer.tlsPolicy`, default ELBSecurityPolicy-TLS13-1-2-2021-06."""
    deregistration_delay_seconds: int
    """`loadBalancer.deregistrationDelaySeconds`, default 30: in-flight requests finish before a task
    is stopped."""
    health_check: HealthCheckSettings
    allow_plain_http: bool
    """`loadBalancer.allowPlainHttp`, default false: without a domain there is no certificate, so the
    public endpoint would carry API keys in clear text; a stack must opt in to that by name."""


@dataclass(frozen=True)
class DomainSettings:
    hosted_zone_id: str
    """`domain.hostedZoneId`: the Route 53 public zone that holds `hostname`."""
    hostname: str
    """`domain.hostname`: the service's DNS name; gets an ACM certificate and an alias record."""


@dataclass(frozen=True)
class SecretSpec:
    """One entry of `secrets`: an environment variable the container receives through ECS `secrets`."""

    name: str
    source: str
    """"create" (a Secrets Manager secret made by the stack from `secretValues.<name>`),
    "secretsmanager" (an existing secret's full ARN) or "ssm" (an existing SSM parameter's ARN)."""
    arn: str | None
    kms_key_arn: str | None
    """The customer-managed KMS key the value is encrypted with, if any (grants kms:Decrypt on it)."""


@dataclass(frozen=True)
class PolicyStatement:
    """One entry of `taskRolePolicy`: an AWS call the application makes at run time."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


class SecretValues(Mapping[str, str]):
    """Plaintext values of stack-created secrets; never shown in a repr, log or error."""

    def __init__(self, values: Mapping[str, str]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues({sorted(self._values)!r}, values hidden)"


@dataclass(frozen=True)
class Settings:
    region: str
    partition: str
    network: NetworkSettings
    endpoints: EndpointSettings
    container: ContainerSettings
    image: ImageSettings
    service: ServiceSettings
    autoscaling: AutoscalingSettings
    load_balancer: LoadBalancerSettings
    domain: DomainSettings | None
    log_retention_days: int
    """`logs.retentionDays`, default 30: the service's CloudWatch log group retention."""
    secrets: tuple[SecretSpec, ...]
    secret_values: SecretValues
    task_policy: tuple[PolicyStatement, ...]


# --------------------------------------------------------------------------------------------------
# Pure rules (each has its own tests).
# --------------------------------------------------------------------------------------------------


def fargate_memory_options(cpu: int) -> tuple[int, ...]:
    """The memory sizes (MiB) Fargate accepts for a task CPU size (Linux), empty for an unknown CPU."""
    gib = 1024
    matrix = {
        256: (512, gib, 2 * gib),
        512: tuple(range(1 * gib, 4 * gib + 1, gib)),
        1024: tuple(range(2 * gib, 8 * gib + 1, gib)),
        2048: tuple(range(4 * gib, 16 * gib + 1, gib)),
        4096: tuple(range(8 * gib, 30 * gib + 1, gib)),
        8192: tuple(range(16 * gib, 60 * gib + 1, 4 * gib)),
        16384: tuple(range(32 * gib, 120 * gib + 1, 8 * gib)),
    }
    return matrix.get(cpu, ())


FARGATE_CPUS = (256, 512, 1024, 2048, 4096, 8192, 16384)


def partition_for_region(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def az_subnet_prefix(cidr_prefix: int, availability_zones: int) -> int:
    """Prefix length of each AZ's slice of the VPC range (awsx splits the range evenly by a power of 2)."""
    return cidr_prefix + math.ceil(math.log2(availability_zones))


def find_placeholders(value: Any, path: str) -> list[tuple[str, str]]:
    """(config path, string) pairs whose value or map key looks like a placeholder left in by mistake."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        if _PLACEHOLDER.search(value):
            found.append((path, value))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str) and _PLACEHOLDER.search(k):
                found.append((f"{path}.{k}", k))
            found.extend(find_placeholders(v, f"{path}.{k}"))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found.extend(find_placeholders(v, f"{path}[{i}]"))
    return found


def parse_arn(arn: str) -> dict[str, str] | None:
    m = _ARN.match(arn)
    if not m:
        return None
    return {
        "partition": m.group(1),
        "service": m.group(2),
        "region": m.group(3),
        "account": m.group(4) or "",
        "resource": m.group(5),
    }


# --------------------------------------------------------------------------------------------------
# Reading helpers: typed getters that record problems instead of stopping at the first.
# --------------------------------------------------------------------------------------------------


class _Problems(list):
    def add(self, key: str, message: str) -> None:
        self.append(f"{NAMESPACE}:{key}: {message}")


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


class _Obj:
    """One config object: typed field access with defaults, and a check for unknown fields."""

    def __init__(self, key: str, value: Any, problems: _Problems):
        self.key = key
        self.problems = problems
        self.seen: set[str] = set()
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            problems.add(key, f"must be an object, got {_show(value)}")
            value = {}
        self.value = value

    def _get(self, name: str, default: Any) -> Any:
        self.seen.add(name)
        return self.value.get(name, default)

    def int(self, name: str, default: int, lo: int, hi: int, why: str = "") -> int:
        raw = self._get(name, default)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or int(raw) != raw:
            self.problems.add(f"{self.key}.{name}", f"{_show(raw)} is not a whole number")
            return default
        raw = int(raw)
        if not lo <= raw <= hi:
            suffix = f" ({why})" if why else ""
            self.problems.add(
                f"{self.key}.{name}", f"{raw} is not allowed: must be between {lo} and {hi}{suffix}"
            )
            return default
        return raw

    def choice(self, name: str, default: Any, allowed: Sequence[Any], why: str = "") -> Any:
        raw = self._get(name, default)
        if raw not in allowed:
            suffix = f" ({why})" if why else ""
            self.problems.add(
                f"{self.key}.{name}",
                f"{_show(raw)} is not allowed: must be one of {', '.join(map(str, allowed))}{suffix}",
            )
            return default
        return raw

    def bool(self, name: str, default: bool) -> bool:
        raw = self._get(name, default)
        if not isinstance(raw, bool):
            self.problems.add(f"{self.key}.{name}", f"{_show(raw)} is not allowed: must be true or false")
            return default
        return raw

    def str(self, name: str, default: str | None, check: Callable[[str], str | None] | None = None):
        raw = self._get(name, default)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            self.problems.add(f"{self.key}.{name}", f"{_show(raw)} is not allowed: must be a non-empty string")
            return default
        if check is not None:
            err = check(raw)
            if err:
                self.problems.add(f"{self.key}.{name}", f"{_show(raw)} is not allowed: {err}")
                return default
        return raw

    def str_list(self, name: str, default: Sequence[str]) -> tuple[str, ...]:
        raw = self._get(name, list(default))
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            self.problems.add(f"{self.key}.{name}", f"{_show(raw)} is not allowed: must be a list of strings")
            return tuple(default)
        return tuple(raw)

    def obj(self, name: str) -> _Obj:
        return _Obj(f"{self.key}.{name}", self._get(name, {}), self.problems)

    def finish(self) -> None:
        for unknown in sorted(set(self.value) - self.seen):
            self.problems.add(f"{self.key}.{unknown}", _unknown_message(unknown, self.seen))


def _keys_with_problems(problems: Sequence[str]) -> set[str]:
    """Top-level keys already reported, so one mistake does not also produce follow-on complaints."""
    return {p.split(":", 2)[1].split(".", 1)[0].split("[", 1)[0] for p in problems if p.startswith(f"{NAMESPACE}:")}


def _unknown_message(name: str, known: set[str] | Sequence[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting{hint} Allowed: {', '.join(sorted(known))}"


# --------------------------------------------------------------------------------------------------
# The loader.
# --------------------------------------------------------------------------------------------------


def decode_raw_config(raw: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    """Strip the namespace, JSON-decode object/array values, refuse unknown keys."""
    decoded: dict[str, Any] = {}
    for full_key, value in raw.items():
        key = full_key.split(":", 1)[1] if ":" in full_key else full_key
        if key not in CONFIG_KEYS:
            problems.add(key, _unknown_message(key, list(CONFIG_KEYS)))
            continue
        # secretValues holds secrets: describe what is wrong with it, never echo it.
        shown = "(value not shown)" if key == "secretValues" else None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                problems.add(key, f"is not a structured value: {shown or repr(value)}")
                continue
        expected = CONFIG_KEYS[key]
        if not isinstance(value, expected):
            wanted = "an object" if expected is dict else "a list"
            hint = " (set each entry with --path 'secretValues.<NAME>')" if shown else ""
            problems.add(key, f"must be {wanted}, got {shown or _show(value)}{hint}")
            continue
        decoded[key] = value
    return decoded


def load_settings(raw: Mapping[str, Any], *, region: str | None, secret_keys: Sequence[str] = ()) -> Settings:
    """Validate `gantry:*` config (keys with or without the namespace) into Settings, or raise ConfigError.

    `secret_keys` lists the config keys the CLI marked secret; `secretValues` must be among them.
    """
    problems = _Problems()
    if not region:
        problems.append("aws:region: is not set; run `pulumi config set aws:region <region>`")
        region = "us-east-1"
    elif not _REGION.match(region):
        problems.append(f"aws:region: {region!r} is not an AWS region name (e.g. eu-west-1)")
    partition = partition_for_region(region)
    if partition == "aws-cn":
        problems.append(f"aws:region: {region} is not supported: VPC endpoint service names and ELB log "
                        "delivery differ in the China partition")
    cfg = decode_raw_config(raw, problems)

    for key, value in cfg.items():
        if key == "secretValues":
            if isinstance(value, Mapping):
                for name, secret in value.items():
                    if find_placeholders(secret, ""):
                        problems.add(f"secretValues.{name}", "looks like a placeholder value (value not shown)")
            continue
        for path, found in find_placeholders(value, key):
            problems.add(path, f"{found!r} looks like a placeholder (REPLACE_ME, TODO, xxx, 123456789012, "
                         "example.com, <...>); set a real value or remove the setting")

    network = _network(_Obj("network", cfg.get("network"), problems))
    endpoints = _endpoints(_Obj("vpcEndpoints", cfg.get("vpcEndpoints"), problems))
    container = _container(_Obj("container", cfg.get("container"), problems))
    image = _image(_Obj("image", cfg.get("image"), problems))
    service = _service(_Obj("service", cfg.get("service"), problems))
    autoscaling = _autoscaling(_Obj("autoscaling", cfg.get("autoscaling"), problems))
    load_balancer = _load_balancer(_Obj("loadBalancer", cfg.get("loadBalancer"), problems))
    domain = _domain(_Obj("domain", cfg.get("domain"), problems))
    logs = _Obj("logs", cfg.get("logs"), problems)
    log_retention = logs.choice("retentionDays", 30, LOG_RETENTION_DAYS, "a value CloudWatch Logs accepts")
    logs.finish()
    secrets_unreadable = "secrets" in {k.split(":", 1)[-1] for k in raw} and "secrets" not in cfg
    before = len(problems)
    secrets = _secrets(cfg.get("secrets", []), region, partition, problems)
    secrets_ok = len(problems) == before and not secrets_unreadable
    secret_values = _secret_values(cfg.get("secretValues"), secrets, secret_keys, problems, secrets_ok)
    task_policy = _task_policy(cfg.get("taskRolePolicy", []), partition, problems)

    _cross_checks(network, endpoints, container, service, autoscaling, secrets, problems)
    if domain is None and not load_balancer.allow_plain_http and "domain" not in _keys_with_problems(problems):
        problems.add("domain", "is not set, so the public endpoint would serve API keys over plain HTTP; set "
                     "domain.hostedZoneId and domain.hostname, or opt in with loadBalancer.allowPlainHttp: true")

    if problems:
        raise ConfigError(problems)
    return Settings(
        region=region,
        partition=partition,
        network=network,
        endpoints=endpoints,
        container=container,
        image=image,
        service=service,
        autoscaling=autoscaling,
        load_balancer=load_balancer,
        domain=domain,
        log_retention_days=log_retention,
        secrets=secrets,
        secret_values=secret_values,
        task_policy=task_policy,
    )


def _network(o: _Obj) -> NetworkSettings:
    azs = o.int("availabilityZones", 2, 2, 6, "an ALB needs subnets in at least two AZs")

    def check_cidr(value: str) -> str | None:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            return f"not an IPv4 network in CIDR form ({exc})"
        if not any(net.subnet_of(r) for r in _RFC1918):
            return "must lie in a private RFC 1918 range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)"
        if net.prefixlen < 16:
            return "AWS allows VPC ranges from /16 to /28"
        if az_subnet_prefix(net.prefixlen, azs) > 19:
            return (
                f"too small for {azs} AZs: each AZ needs a /19 slice (a /20 private and a /24 public "
                "subnet); use a /16 to /18"
            )
        return None

    cidr = o.str("cidrBlock", "10.0.0.0/16", check_cidr)
    nat = o.choice("natStrategy", "single", NAT_STRATEGIES)
    flow_logs = o.bool("flowLogs", True)
    flow_retention = o.choice("flowLogRetentionDays", 90, LOG_RETENTION_DAYS, "a value CloudWatch Logs accepts")
    o.finish()
    return NetworkSettings(azs, cidr, nat, flow_logs, flow_retention)


def _endpoints(o: _Obj) -> EndpointSettings:
    interface = o.str_list("interface", [])
    for name in interface:
        if name not in INTERFACE_ENDPOINTS:
            o.problems.add(
                "vpcEndpoints.interface", f"{name!r} is not allowed: must be among {', '.join(INTERFACE_ENDPOINTS)}"
            )
    if len(set(interface)) != len(interface):
        o.problems.add("vpcEndpoints.interface", "lists an endpoint twice")
    s3 = o.bool("s3Gateway", True)
    o.finish()
    return EndpointSettings(tuple(sorted(set(interface) & set(INTERFACE_ENDPOINTS))), s3)


def _container(o: _Obj) -> ContainerSettings:
    port = o.int("port", 8000, 1024, 65535, "the container runs as a non-root user, which cannot bind below 1024")

    def check_path(value: str) -> str | None:
        if not value.startswith("/") or len(value) > 1024 or any(c.isspace() for c in value):
            return "must be an absolute URL path such as /health (no spaces, at most 1024 characters)"
        return None

    path = o.str("healthCheckPath", "/health", check_path)
    command = o.str_list("healthCheckCommand", ["CMD", "python", "-m", "worker.healthcheck"])
    if command and command[0] not in ("CMD", "CMD-SHELL"):
        o.problems.add("container.healthCheckCommand", f"must start with CMD or CMD-SHELL, got {command[0]!r}")
    cpu = o.choice("cpu", 1024, FARGATE_CPUS, "Fargate task CPU units")
    memory = o.int("memory", 2048, 512, 122880)
    options = fargate_memory_options(cpu)
    if options and memory not in options:
        o.problems.add(
            "container.memory",
            f"{memory} MiB is not a valid Fargate size for cpu {cpu}: allowed "
            f"{', '.join(str(m) for m in options)}",
        )
    arch = o.choice("architecture", "ARM64", tuple(ARCHITECTURES))
    stop = o.int("stopTimeoutSeconds", 30, DRAIN_MARGIN_SECONDS + 1, 120, "Fargate's maximum is 120")

    def check_user(value: str) -> str | None:
        if not re.fullmatch(r"\d+(:\d+)?", value) or value.split(":")[0] == "0":
            return 'must be a numeric non-root uid or uid:gid, such as "10001:10001"'
        return None

    user = o.str("user", "10001:10001", check_user)
    env_raw = o._get("environment", {})
    env: dict[str, str] = {}
    if not isinstance(env_raw, Mapping):
        o.problems.add("container.environment", f"must be an object of NAME: value, got {_show(env_raw)}")
    else:
        for name, value in env_raw.items():
            key = f"container.environment.{name}"
            if not _ENV_NAME.match(name):
                o.problems.add(key, "is not a valid environment variable name")
            elif name in RESERVED_ENV:
                o.problems.add(key, f"is set by gantry from other settings ({', '.join(RESERVED_ENV)}); remove it")
            elif _SECRETISH_ENV.search(name.upper()):
                o.problems.add(key, "looks like a secret; declare it under gantry:secrets so it never sits in "
                               "plain text in the task definition")
            elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
                o.problems.add(key, f"{_show(value)} is not allowed: must be a string or number")
            else:
                env[name] = str(value)
    o.finish()
    return ContainerSettings(port, path, command, cpu, memory, arch, stop, user, MappingProxyType(env))


def _image(o: _Obj) -> ImageSettings:
    def relative(value: str) -> str | None:
        if value.startswith("/") or ".." in value.split("/"):
            return "must be a path inside the project (relative, no '..')"
        return None

    context = o.str("context", "app", relative)
    dockerfile = o.str("dockerfile", "app/Dockerfile", relative)
    keep = o.int("keepImages", 30, 1, 1000)
    force_delete = o.bool("forceDelete", False)
    o.finish()
    return ImageSettings(context, dockerfile, keep, force_delete)


def _service(o: _Obj) -> ServiceSettings:
    desired = o.int("desiredCount", 2, 1, 1000)
    min_healthy = o.int("minHealthyPercent", 100, 0, 100)
    max_percent = o.int("maxPercent", 200, 100, 200)
    grace = o.int("healthCheckGracePeriodSeconds", 60, 0, 3600)
    raw = o._get("capacityProviders", [{"provider": "FARGATE", "base": 1, "weight": 1}])
    providers: list[CapacityProvider] = []
    if not isinstance(raw, list) or not raw:
        o.problems.add("service.capacityProviders", "must be a non-empty list of {provider, base, weight}")
    else:
        for i, item in enumerate(raw):
            p = _Obj(f"service.capacityProviders[{i}]", item, o.problems)
            providers.append(
                CapacityProvider(
                    p.choice("provider", "FARGATE", CAPACITY_PROVIDERS),
                    p.int("base", 0, 0, 100000),
                    p.int("weight", 1, 0, 1000),
                )
            )
            p.finish()
        names = [p.provider for p in providers]
        if len(set(names)) != len(names):
            o.problems.add("service.capacityProviders", "lists a provider twice")
        if sum(1 for p in providers if p.base > 0) > 1:
            o.problems.add("service.capacityProviders", "only one provider may have a base above 0 (an ECS rule)")
        if not any(p.weight > 0 for p in providers):
            o.problems.add("service.capacityProviders", "at least one provider needs a weight above 0")
    if max_percent <= min_healthy:
        o.problems.add(
            "service.maxPercent",
            f"{max_percent} must exceed minHealthyPercent ({min_healthy}), or a deploy can never start a task",
        )
    o.finish()
    return ServiceSettings(desired, min_healthy, max_percent, grace, tuple(providers))


def _autoscaling(o: _Obj) -> AutoscalingSettings:
    settings = AutoscalingSettings(
        min_capacity=o.int("minCapacity", 2, 1, 1000),
        max_capacity=o.int("maxCapacity", 6, 1, 1000),
        cpu_target_percent=o.int("cpuTargetPercent", 60, 10, 90),
        requests_per_target=o.int("requestsPerTarget", 6000, 1, 1_000_000),
        scale_in_cooldown_seconds=o.int("scaleInCooldownSeconds", 300, 0, 3600),
        scale_out_cooldown_seconds=o.int("scaleOutCooldownSeconds", 60, 0, 3600),
    )
    o.finish()
    return settings


def _load_balancer(o: _Obj) -> LoadBalancerSettings:
    cidrs = o.str_list("ingressCidrs", ["0.0.0.0/0"])
    if not cidrs:
        o.problems.add("loadBalancer.ingressCidrs", "must list at least one CIDR (use 0.0.0.0/0 for the internet)")
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as exc:
            o.problems.add("loadBalancer.ingressCidrs", f"{cidr!r} is not an IPv4 CIDR ({exc})")
    idle = o.int("idleTimeoutSeconds", 60, 1, 4000)
    protection = o.bool("deletionProtection", True)
    access_logs = o.bool("accessLogs", True)
    access_retention = o.int("accessLogRetentionDays", 90, 1, 3653)
    desync = o.choice("desyncMitigationMode", "strictest", DESYNC_MODES)
    tls = o.choice("tlsPolicy", TLS13_POLICIES[0], TLS13_POLICIES, "TLS 1.3 policies only")
    dereg = o.int("deregistrationDelaySeconds", 30, 0, 3600)
    hc = o.obj("healthCheck")
    health = HealthCheckSettings(
        interval_seconds=hc.int("intervalSeconds", 15, 5, 300),
        timeout_seconds=hc.int("timeoutSeconds", 5, 2, 120),
        healthy_threshold=hc.int("healthyThreshold", 2, 2, 10),
        unhealthy_threshold=hc.int("unhealthyThreshold", 3, 2, 10),
    )
    if health.timeout_seconds >= health.interval_seconds:
        o.problems.add(
            "loadBalancer.healthCheck.timeoutSeconds",
            f"{health.timeout_seconds} must be below intervalSeconds ({health.interval_seconds})",
        )
    hc.finish()
    plain_http = o.bool("allowPlainHttp", False)
    o.finish()
    return LoadBalancerSettings(
        cidrs, idle, protection, access_logs, access_retention, desync, tls, dereg, health, plain_http
    )


def _domain(o: _Obj) -> DomainSettings | None:
    if not o.value:
        return None
    zone = o.str("hostedZoneId", None, lambda v: None if _ZONE_ID.match(v) else "must be a Route 53 zone id (Z...)")
    host = o.str(
        "hostname",
        None,
        lambda v: None if _HOSTNAME.match(v) else "must be a lower-case fully qualified name such as api.acme.io",
    )
    for field_name in ("hostedZoneId", "hostname"):
        if field_name not in o.value:
            o.problems.add(f"domain.{field_name}", "is required when domain is set")
    o.finish()
    if zone is None or host is None:
        return None
    return DomainSettings(zone, host)


def _check_arn(
    key: str, arn: Any, service: str, resource_prefix: str, region: str, partition: str, problems: _Problems
) -> str | None:
    if not isinstance(arn, str):
        problems.add(key, f"{_show(arn)} is not an ARN")
        return None
    parts = parse_arn(arn)
    if parts is None or parts["service"] != service or not parts["resource"].startswith(resource_prefix):
        problems.add(key, f"{arn!r} is not a well-formed {service} ARN (arn:{partition}:{service}:"
                     f"{region}:<account>:{resource_prefix}...)")
        return None
    if parts["partition"] != partition:
        problems.add(key, f"{arn!r} is in partition {parts['partition']}, but the stack's region {region} "
                     f"is in {partition}")
        return None
    if parts["region"] != region:
        problems.add(key, f"{arn!r} is in region {parts['region'] or '(none)'}, not the stack's region {region}: "
                     "tasks would fetch it across regions, outside the VPC endpoints")
        return None
    if not re.fullmatch(r"\d{12}", parts["account"]):
        problems.add(key, f"{arn!r} has no 12-digit account id")
        return None
    return arn


def _secrets(raw: Any, region: str, partition: str, problems: _Problems) -> tuple[SecretSpec, ...]:
    specs: list[SecretSpec] = []
    for i, item in enumerate(raw):
        o = _Obj(f"secrets[{i}]", item, problems)
        name = o.str("name", None, lambda v: None if _ENV_NAME.match(v) else "must be an environment variable name")
        create = o.bool("create", False)
        sm_arn = o._get("secretsManagerArn", None)
        ssm_arn = o._get("ssmParameterArn", None)
        kms = o._get("kmsKeyArn", None)
        o.finish()
        key = f"secrets[{i}]"
        if name is None:
            problems.add(f"{key}.name", "is required")
            continue
        sources = [s for s, v in (("create", create), ("secretsManagerArn", sm_arn), ("ssmParameterArn", ssm_arn)) if v]
        if len(sources) != 1:
            problems.add(key, f"{name}: set exactly one of create: true, secretsManagerArn or ssmParameterArn "
                         f"(got {', '.join(sources) or 'none'})")
            continue
        kms_arn = None
        if kms is not None:
            kms_arn = _check_arn(f"{key}.kmsKeyArn", kms, "kms", "key/", region, partition, problems)
        if create:
            specs.append(SecretSpec(name, "create", None, kms_arn))
        elif sm_arn:
            arn = _check_arn(f"{key}.secretsManagerArn", sm_arn, "secretsmanager", "secret:", region, partition, problems)
            # IAM matches the full ARN, which ends in a 6-character suffix; a partial ARN would grant nothing.
            if arn and not re.search(r"-[A-Za-z0-9]{6}$", arn):
                problems.add(f"{key}.secretsManagerArn", f"{arn!r} is a partial ARN: use the full ARN ending in "
                             "the 6-character suffix Secrets Manager adds")
                arn = None
            if arn:
                specs.append(SecretSpec(name, "secretsmanager", arn, kms_arn))
        else:
            arn = _check_arn(f"{key}.ssmParameterArn", ssm_arn, "ssm", "parameter/", region, partition, problems)
            if arn:
                specs.append(SecretSpec(name, "ssm", arn, kms_arn))
    names = [s.name for s in specs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add("secrets", f"{dup} is declared twice")
    for reserved in sorted(set(names) & set(RESERVED_ENV)):
        problems.add("secrets", f"{reserved} is set by gantry itself and cannot be a secret")
    return tuple(specs)


def _secret_values(
    raw: Any, secrets: Sequence[SecretSpec], secret_keys: Sequence[str], problems: _Problems, secrets_ok: bool
):
    values = raw or {}
    if values and not any(k in (f"{NAMESPACE}:secretValues", "secretValues") for k in secret_keys):
        problems.add("secretValues", "is stored in plain text; set each value with "
                     "`pulumi config set --secret --path 'secretValues.<NAME>' <value>`")
    created = {s.name for s in secrets if s.source == "create"}
    for name in sorted(created - set(values)):
        problems.add(f"secretValues.{name}", f"is missing: secret {name} is created by the stack; run "
                     f"`pulumi config set --secret --path 'secretValues.{name}' '<value>'`")
    # An orphan value is only worth reporting when the secrets list itself was understood.
    for name in sorted(set(values) - created) if secrets_ok else ():
        problems.add(f"secretValues.{name}", "has no matching secrets entry with create: true "
                     f"(declared: {', '.join(sorted(created)) or 'none'})")
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            problems.add(f"secretValues.{name}", "must be a non-empty string (value not shown)")
    return SecretValues({k: v for k, v in values.items() if k in created and isinstance(v, str)})


def _task_policy(raw: Any, partition: str, problems: _Problems) -> tuple[PolicyStatement, ...]:
    statements: list[PolicyStatement] = []
    for i, item in enumerate(raw):
        key = f"taskRolePolicy[{i}]"
        o = _Obj(key, item, problems)
        sid = o.str("sid", f"App{i}", lambda v: None if re.fullmatch(r"[A-Za-z0-9]+", v) else "must be alphanumeric")
        actions = o.str_list("actions", [])
        resources = o.str_list("resources", [])
        o.finish()
        if not actions:
            problems.add(f"{key}.actions", "must list at least one action, such as s3:GetObject")
        for action in actions:
            if not _ACTION.match(action) or action == "*" or action.endswith(":*"):
                problems.add(f"{key}.actions", f"{action!r} is not allowed: name specific actions "
                             "(service:Action); '*' and 'service:*' are refused")
        if not resources:
            problems.add(f"{key}.resources", "must list at least one resource ARN")
        for resource in resources:
            parts = parse_arn(resource)
            if resource == "*" or parts is None:
                problems.add(f"{key}.resources", f"{resource!r} is not allowed: must be an ARN; '*' is refused")
            elif parts["resource"] == "*":
                problems.add(f"{key}.resources", f"{resource!r} is not allowed: it names every {parts['service']} "
                             "resource; list the ARNs the app uses")
            elif parts["partition"] != partition:
                problems.add(f"{key}.resources", f"{resource!r} is not in the stack's partition {partition}")
        statements.append(PolicyStatement(sid, actions, resources))
    sids = [s.sid for s in statements]
    for dup in sorted({s for s in sids if sids.count(s) > 1}):
        problems.add("taskRolePolicy", f"sid {dup} is used twice")
    return tuple(statements)


def required_interface_endpoints(secrets: Sequence[SecretSpec]) -> tuple[str, ...]:
    """Interface endpoints a task needs to start when the VPC has no NAT route to AWS's public APIs."""
    needed = {"ecr.api", "ecr.dkr", "logs"}
    if any(s.source in ("create", "secretsmanager") for s in secrets):
        needed.add("secretsmanager")
    if any(s.source == "ssm" for s in secrets):
        needed.add("ssm")
    return tuple(sorted(needed))


def _cross_checks(
    network: NetworkSettings,
    endpoints: EndpointSettings,
    container: ContainerSettings,
    service: ServiceSettings,
    autoscaling: AutoscalingSettings,
    secrets: Sequence[SecretSpec],
    problems: _Problems,
) -> None:
    if network.nat_strategy == "none":
        missing = sorted(set(required_interface_endpoints(secrets)) - set(endpoints.interface))
        if missing:
            problems.add("vpcEndpoints.interface", f"natStrategy is none, so tasks can reach AWS only through "
                         f"endpoints; add {', '.join(missing)}")
        if not endpoints.s3_gateway:
            problems.add("vpcEndpoints.s3Gateway", "natStrategy is none and ECR serves image layers from S3; "
                         "set s3Gateway: true")
    if "ssm" in endpoints.interface and not any(s.source == "ssm" for s in secrets):
        problems.add("vpcEndpoints.interface", "lists ssm, but no secret references an SSM parameter "
                     "(an unused endpoint costs money in every AZ)")
    if not autoscaling.min_capacity <= service.desired_count <= autoscaling.max_capacity:
        problems.add("service.desiredCount", f"{service.desired_count} must lie between autoscaling.minCapacity "
                     f"({autoscaling.min_capacity}) and autoscaling.maxCapacity ({autoscaling.max_capacity})")
    if autoscaling.min_capacity > autoscaling.max_capacity:
        problems.add("autoscaling.minCapacity", f"{autoscaling.min_capacity} exceeds maxCapacity "
                     f"({autoscaling.max_capacity})")
    for s in secrets:
        if s.name in container.environment:
            problems.add(f"container.environment.{s.name}", "is also declared as a secret; secrets reach the "
                         "container only through ECS secrets, never environment")

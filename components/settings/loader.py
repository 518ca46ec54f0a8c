"""Stack config -> validated `Settings`, or one `ConfigError` listing every problem.

`load_settings` takes the raw `gantry:*` config as the Pulumi CLI hands it to the program (objects and
arrays JSON-encoded), validates each section against its model, runs the rules that span sections,
and checks what needs AWS (does the hosted zone hold the hostname, does the region have that many
AZs) against facts the program looked up with invokes before registering anything. Every problem is
reported at once, each line naming `gantry:<key.path>`, the bad value and what is allowed. Security
stance: secret values are never echoed, must arrive encrypted, and placeholders are refused anywhere.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from components.settings.access import PolicyStatement, SecretSpec, resource_too_broad
from components.settings.base import NAMESPACE, ConfigError, Section, Where, find_placeholders
from components.settings.deployment import CONTROLLERS, DeploymentSettings
from components.settings.edge import (
    RETIRED,
    DomainSettings,
    EdgeSettings,
    LoadBalancerSettings,
    edge_mode_problems,
    within_zone,
)
from components.settings.iam import IamSettings
from components.settings.invocation import ProviderSession
from components.settings.migration import (
    MigrationSettings,
    PreviousCutover,
    cutover_problems,
    fault_switch_problems,
    production_stack,
)
from components.settings.network import EndpointSettings, NetworkSettings
from components.settings.operations import OperationsSettings, default_tags_problems, unwatched_production
from components.settings.promotion import (
    PromotedImage,
    PromotionFacts,
    SourceRevision,
    promoted_image,
    promotion_problems,
)
from components.settings.queue import QueueSettings
from components.settings.sample_worker import (
    SAMPLE_CONTEXT,
    WorkerMetrics,
    builds_sample_worker,
    consumer_problems,
    worker_body_limit,
    worker_metrics,
    worker_problems,
)
from components.settings.tracing import TracingSettings
from components.settings.workload import (
    AutoscalingSettings,
    ContainerSettings,
    ImageSettings,
    LogsSettings,
    ServiceSettings,
    inherited_health_check,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The batch variables the stack sets from resources that do not exist yet while validating: AWS-shaped
# stand-ins, so the worker's own loader checks everything else about its environment.
BATCH_STAND_INS = {
    "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/210987654321/stand-in",
    "BATCH_BUCKET": "stand-in-bucket",
    "BATCH_TABLE": "stand-in-table",
}
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
# `load_settings(default_tags=...)` left out: the caller did not read aws:defaultTags, so it is not checked.
UNCHECKED: Any = object()


@dataclass(frozen=True, kw_only=True)
class ConfigKey:
    """One top-level `gantry:` key: the model of one entry and whether the key holds a list of them."""

    model: type[Section] | None
    summary: str
    is_list: bool = False


# Every key gantry reads. Pulumi.yaml and the README's reference are generated from this table and
# the models (python -m components.settings.reference --write); a test keeps them in step.
CONFIG_KEYS: Mapping[str, ConfigKey] = {
    "network": ConfigKey(model=NetworkSettings, summary="The VPC: AZs, range, NAT and flow logs."),
    "vpcEndpoints": ConfigKey(model=EndpointSettings, summary="Private paths from the tasks to AWS APIs."),
    "container": ConfigKey(
        model=ContainerSettings, summary="The task's one container: port, size, user, health, environment."
    ),
    "image": ConfigKey(
        model=ImageSettings, summary="The image `pulumi up` builds and pushes to ECR, or promotes from another stack."
    ),
    "service": ConfigKey(
        model=ServiceSettings, summary="The ECS service: task count, rolling limits, capacity providers."
    ),
    "autoscaling": ConfigKey(model=AutoscalingSettings, summary="Target-tracking bounds and targets."),
    "edge": ConfigKey(
        model=EdgeSettings, summary="What faces the internet: CloudFront (default) or a public ALB, and the WAF."
    ),
    "loadBalancer": ConfigKey(
        model=LoadBalancerSettings, summary="The application load balancer (internal behind CloudFront)."
    ),
    "domain": ConfigKey(model=DomainSettings, summary="hostedZoneId + hostname for HTTPS; {} for none."),
    "logs": ConfigKey(model=LogsSettings, summary="The service's log group."),
    "deployment": ConfigKey(
        model=DeploymentSettings, summary="How a release reaches users: ECS rolling or CodeDeploy blue/green."
    ),
    "secrets": ConfigKey(
        model=SecretSpec, summary="Secrets the container receives as environment variables.", is_list=True
    ),
    "secretValues": ConfigKey(
        model=None,
        summary="Values of the secrets with create: true; set each with "
        "`pulumi config set --secret --path 'secretValues.<NAME>' '<value>'`.",
    ),
    "taskRolePolicy": ConfigKey(model=PolicyStatement, summary="The application's own AWS permissions.", is_list=True),
    "operations": ConfigKey(
        model=OperationsSettings, summary="Alarm notifications (page / ticket), thresholds and the monthly budget."
    ),
    "iam": ConfigKey(model=IamSettings, summary="Path and permissions boundary of every IAM role the stack creates."),
    "tracing": ConfigKey(
        model=TracingSettings,
        summary="OpenTelemetry traces to X-Ray through an ADOT collector sidecar; off by default.",
    ),
    "queue": ConfigKey(
        model=QueueSettings, summary="Long jobs: the Batch API's queue, files, consumer service and its scaling."
    ),
    "migration": ConfigKey(
        model=MigrationSettings, summary="Moving a hostname from a legacy endpoint to gantry by weighted DNS."
    ),
}


@dataclass(frozen=True, kw_only=True)
class AwsFacts:
    """What the program looked up in AWS before validating: hosted-zone names and the region's AZs."""

    zone_names: Mapping[str, str | None] = field(default_factory=dict)
    """Hosted zone id -> its domain name, or None when the zone does not exist for these credentials."""
    availability_zones: tuple[str, ...] | None = None
    """The region's available AZ names; None when not looked up."""
    zones_looked_up: bool = False
    """True when `zone_names` is the answer to a look-up: a zone id absent from it does not exist."""
    live_deployment_controller: str | None = None
    """The deployment controller (ECS or CODE_DEPLOY) of the service this stack already runs, from the
    stack's own last outputs; None when the stack has no service yet (or it was not looked up)."""
    boundary_policies: Mapping[str, bool] = field(default_factory=dict)
    """Permissions-boundary ARN -> whether these credentials found the policy; empty when not looked up."""
    promotion: PromotionFacts | None = None
    """The source stack's outputs and the image's presence in ECR, for a stack with image.promoteFrom;
    None when not looked up (then the promotion is not checked and Settings.promoted stays None)."""
    previous_cutover: PreviousCutover | None = None
    """The weighted-DNS cutover the stack's last `up` recorded; None on a first `up` or without one."""
    previous_service_url: str | None = None
    """The `serviceUrl` the stack's last `up` exported (https://<hostname> once gantry's alias serves it)."""

    @classmethod
    def from_mapping(cls, facts: Mapping[str, Any] | AwsFacts | None, region: str) -> AwsFacts:
        if facts is None or isinstance(facts, AwsFacts):
            return facts or cls()
        azs = (facts.get("availability_zones") or {}).get(region)
        return cls(
            zone_names=dict(facts.get("zones") or {}),
            availability_zones=tuple(azs) if azs else None,
            zones_looked_up="zones" in facts,
        )


class SecretValues(Mapping[str, str]):
    """Plaintext values of stack-created secrets; never shown in a repr, log or error."""

    def __init__(self, values: Mapping[str, str]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues({sorted(self._values)!r}, values hidden)"


@dataclass(frozen=True, kw_only=True)
class Settings:
    region: str
    partition: str
    network: NetworkSettings
    endpoints: EndpointSettings
    container: ContainerSettings
    image: ImageSettings
    service: ServiceSettings
    autoscaling: AutoscalingSettings
    edge: EdgeSettings
    load_balancer: LoadBalancerSettings
    domain: DomainSettings | None
    logs: LogsSettings
    deployment: DeploymentSettings
    secrets: tuple[SecretSpec, ...]
    secret_values: SecretValues
    task_policy: tuple[PolicyStatement, ...]
    tracing: TracingSettings
    operations: OperationsSettings
    iam: IamSettings
    queue: QueueSettings = QueueSettings()
    migration: MigrationSettings = MigrationSettings()
    waf_max_body_bytes: int | None = None
    """The WAF's body-size limit: edge.waf.maxBodyBytes, else the sample worker's own largest body;
    None (no size rule) for a team's own image that sets none."""
    provider_tags: Mapping[str, str] = field(default_factory=dict)
    """The stack's aws:defaultTags, for providers the program creates itself (they do not inherit them)."""
    promoted: PromotedImage | None = None
    """The image a promoting stack (image.promoteFrom) deploys, checked to be in its repository."""
    production: bool = False
    """A stack that serves real users (`migration.production_stack`: named prod/production, or with
    loadBalancer.deletionProtection on). Default false; decides what a disposable stack may lose with
    `pulumi destroy` (its buckets' objects) and what it need not pay for (edge access logs by default)."""
    source: SourceRevision | None = None
    """The commit being deployed (set by the program from GITHUB_SHA or git); None where no program runs."""
    alarm_override: str | None = None
    """A hotfix's reason for ignoring the rollback alarms (set by the program from GANTRY_HOTFIX_IGNORE_ALARMS,
    components.settings.invocation); None: the alarms roll deployments back."""
    provider_session: ProviderSession = ProviderSession()
    """Who the dynamic providers act as (the stack's aws:profile and assumed role, set by the program);
    default none (boto3's default chain)."""
    warnings: tuple[str, ...] = ()
    """What the config allows but a user should hear about (`pulumi up` and the offline plan print each
    one, naming the key); default none."""

    @property
    def load_balancer_domain(self) -> DomainSettings | None:
        """The domain the load balancer serves itself (alb mode); behind CloudFront the edge owns it."""
        return self.domain if self.edge.mode == "alb" else None

    @property
    def internal_load_balancer(self) -> bool:
        """True behind CloudFront: the load balancer has no public address."""
        return self.edge.mode == "cloudfront"

    @property
    def listener_ingress_cidrs(self) -> tuple[str, ...]:
        """The address ranges the listeners admit: none behind CloudFront (only its VPC origin reaches them)."""
        return self.load_balancer.ingress_cidrs if self.edge.mode == "alb" else ()

    @property
    def force_destroy_buckets(self) -> bool:
        """True on a non-production stack: `pulumi destroy` empties its buckets instead of failing on them."""
        return not self.production

    @property
    def edge_access_logs(self) -> bool:
        """CloudFront standard logging: edge.accessLogs when set, else on exactly for a production stack."""
        return self.production if self.edge.access_logs is None else self.edge.access_logs

    @property
    def sample_worker(self) -> bool:
        """True when the stack builds the bundled worker (its metrics and eval gate then apply)."""
        return builds_sample_worker(self.image.context)

    @property
    def worker_metrics(self) -> WorkerMetrics | None:
        """Where the sample worker writes its EMF metrics; None for a team's own image (which writes none)."""
        return worker_metrics(self.container.variables) if builds_sample_worker(self.image.context) else None


@functools.cache
def known_regions() -> tuple[str, ...]:
    """Regions with ECS in the commercial and GovCloud partitions, from botocore's offline endpoint data."""
    session = botocore.session.get_session()
    return tuple(r for partition in ("aws", "aws-us-gov") for r in session.get_available_regions("ecs", partition))


def partition_for_region(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def required_interface_endpoints(secrets: Sequence[SecretSpec]) -> tuple[str, ...]:
    """Interface endpoints a task needs to start when the VPC has no NAT route to AWS's public APIs."""
    needed = {"ecr.api", "ecr.dkr", "logs"}
    if any(s.source in ("create", "secretsmanager") for s in secrets):
        needed.add("secretsmanager")
    if any(s.source == "ssm" for s in secrets):
        needed.add("ssm")
    return tuple(sorted(needed))


# --------------------------------------------------------------------------------------------------
# Error lines.
# --------------------------------------------------------------------------------------------------


class _Problems(list):
    def add(self, key: str, message: str) -> None:
        self.append(f"{NAMESPACE}:{key}: {message}")

    def reported_keys(self) -> set[str]:
        """Top-level keys already reported, so one mistake does not also produce follow-on complaints."""
        return {p.split(":", 2)[1].split(".", 1)[0].split("[", 1)[0] for p in self}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def _unknown_message(name: str, known: Sequence[str]) -> str:
    close = (
        difflib.get_close_matches(name, sorted(known), n=1)
        or [k for k in sorted(known) if name.lower() in k.lower() or k.lower().startswith(name.lower())][:1]
    )
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown setting{hint} Allowed: {', '.join(sorted(known))}"


def _field_at(model: type[BaseModel], loc: Sequence[str | int]) -> FieldInfo | None:
    """The field an error at `loc` is about (for its bounds and the reason they are what they are)."""
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    parent = _model_at(model, loc[: max(i for i, p in enumerate(loc) if isinstance(p, str))])
    if parent is None:
        return None
    return {f.alias or n: f for n, f in parent.model_fields.items()}.get(names[-1])


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model whose fields the error at `loc` is about (for did-you-mean on unknown fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        current = nested[0]
    return current


# Pydantic's union branches and validator wrappers show up as loc parts; the user never wrote them.
_BRANCH = re.compile(r"^(str|int|float|bool|none|list\[.*\]|tuple\[.*\]|dict\[.*\]|function-\w+\[.*\]|.*\(.*\).*)$")


def _messages(key: str, model: type[BaseModel], error: ValidationError) -> list[tuple[str, str]]:
    by_path: dict[str, list[str]] = {}
    for err in error.errors(include_url=False):
        loc = [p for p in err["loc"] if isinstance(p, int) or not _BRANCH.match(p)]
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            text = "is not allowed as a name: must be upper-case letters, digits and _, not starting with a digit"
            by_path.setdefault(_path(key, loc), []).append(text)
            continue
        kind, message = err["type"], err["msg"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
            by_path.setdefault(_path(key, loc), []).append(_unknown_message(str(loc[-1]), known))
            continue
        if kind == "missing":
            by_path.setdefault(_path(key, loc), []).append("is required")
            continue
        message = re.sub(r"^Value error, ", "", message)
        message = re.sub(r"^Input should be ", "must be ", message)
        message = message.replace("a valid integer", "a whole number").replace("a valid boolean", "true or false")
        message = message.replace("a valid string", "a string")
        if kind == "too_short" and any(
            len(other["loc"]) > len(err["loc"]) and other["loc"][: len(err["loc"])] == err["loc"]
            for other in error.errors()
        ):
            continue  # the list is short only because an item failed, which is reported itself
        if kind == "literal_error":
            message = "must be one of " + ", ".join(str(v).strip("'") for v in re.split(r", | or ", message[8:]))
        if kind in ("model_type", "dict_type"):
            message = "must be an object"
        if kind in ("tuple_type", "list_type"):
            message = "must be a list"
        field = _field_at(model, loc)
        if kind in ("greater_than_equal", "less_than_equal") and field is not None:
            bounds = {type(m).__name__: m for m in field.metadata}
            if "Ge" in bounds and "Le" in bounds:
                message = f"must be between {bounds['Ge'].ge} and {bounds['Le'].le}"
        extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
        if extra.get("why") and kind not in ("int_type", "bool_type", "string_type", "int_from_float"):
            message = f"{message} ({extra['why']})"
        by_path.setdefault(_path(key, loc), []).append(f"{_show(err.get('input'))} is not allowed: {message}")
    lines = []
    for path, texts in by_path.items():
        # An optional field's "or None" branch says nothing the other branch does not.
        useful = list(dict.fromkeys(t for t in texts if not t.endswith("must be None"))) or texts
        values = {t.split(" is not allowed: ", 1)[0] for t in useful}
        if len(useful) > 1 and len(values) == 1 and all(" is not allowed: must be " in t for t in useful):
            # One value that fits no branch of a union: say what each branch accepts, once.
            wanted = " or ".join(t.split(" is not allowed: must be ", 1)[1] for t in useful)
            useful = [f"{values.pop()} is not allowed: must be {wanted}"]
        lines.append((path, "; ".join(useful)))
    return lines


def _path(key: str, loc: Sequence[str | int]) -> str:
    return key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


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
        expected = list if CONFIG_KEYS[key].is_list else dict
        if not isinstance(value, expected):
            wanted = "an object" if expected is dict else "a list"
            hint = " (set each entry with --path 'secretValues.<NAME>')" if shown else ""
            problems.add(key, f"must be {wanted}, got {shown or _show(value)}{hint}")
            continue
        decoded[key] = value
    return decoded


def _validate(key: str, model: type[Section], value: Any, problems: _Problems, context: dict) -> Any:
    try:
        return model.model_validate_json(json.dumps(value), context=context, by_alias=True, by_name=False)
    except ValidationError as error:
        for path, message in _messages(key, model, error):
            problems.add(path, message)
        return None


def load_settings(
    raw: Mapping[str, Any],
    *,
    region: str | None,
    secret_keys: Sequence[str] = (),
    aws_facts: Mapping[str, Any] | AwsFacts | None = None,
    project_dir: Path | None = None,
    stack: str | None = None,
    default_tags: Any = UNCHECKED,
) -> Settings:
    """Validate `gantry:*` config (keys with or without the namespace) into Settings, or raise ConfigError.

    `secret_keys` lists the config keys the CLI marked secret; `secretValues` must be among them.
    `aws_facts` carries what the program looked up before validating (see `AwsFacts`); checks that
    need a fact not given are skipped. `stack` is the Pulumi stack name (one of the signs of a
    production stack, where the worker's fault switch is refused). `project_dir` is where image paths
    must lie (default: this repo). `default_tags` is the stack's `aws:defaultTags` object (None when
    unset); left out, it is not checked.
    """
    problems = _Problems()
    if not region:
        problems.append("aws:region: is not set; run `pulumi config set aws:region <region>`")
        region = "us-east-1"
    elif not _REGION.match(region):
        problems.append(f"aws:region: {region!r} is not an AWS region name (e.g. eu-west-1)")
    elif region not in known_regions() and not region.startswith("cn-"):
        close = difflib.get_close_matches(region, known_regions(), n=3)
        problems.append(f"aws:region: {region!r} is not a region ECS runs in (closest: {', '.join(close)})")
    partition = partition_for_region(region)
    if partition == "aws-cn":
        problems.append(
            f"aws:region: {region} is not supported: VPC endpoint service names and ELB log "
            "delivery differ in the China partition"
        )
    facts = AwsFacts.from_mapping(aws_facts, region)
    cfg = decode_raw_config(raw, problems)
    _retired(cfg, problems)
    _placeholders(cfg, problems)
    context = {"project_dir": project_dir or PROJECT_DIR}
    where = Where(region=region, partition=partition)

    sections: dict[str, Any] = {}
    for key, spec in CONFIG_KEYS.items():
        if spec.model is None:
            continue
        value = cfg.get(key, [] if spec.is_list else {})
        if key == "domain" and not value:
            sections[key] = None
            continue
        if spec.is_list:
            items = [_validate(f"{key}[{i}]", spec.model, item, problems, context) for i, item in enumerate(value)]
            sections[key] = None if any(item is None for item in items) else tuple(items)
        else:
            sections[key] = _validate(key, spec.model, value, problems, context)
        for item_key, item in _entries(key, sections[key]):
            checks = getattr(item, "checks", None)
            for field_name, problem in checks(where) if checks else ():
                problems.add(f"{item_key}.{field_name}".rstrip("."), problem)

    # A secrets list that could not be read says nothing about which secretValues are orphans.
    secrets = sections["secrets"] if "secrets" not in problems.reported_keys() else None
    secret_values = _secret_values(cfg, secrets, secret_keys, problems)
    _cross_checks(sections, secrets, problems)
    _worker_signal_checks(sections, problems)
    _own_image_checks(sections, problems)
    _sample_worker_checks(sections, secret_values, project_dir or PROJECT_DIR, problems)
    _fact_checks(sections, facts, region, problems)
    _boundary_checks(sections["iam"], facts, problems)
    promoted = _promotion_checks(sections["image"], facts, problems)
    _deployment_checks(sections, facts, secret_values, problems)
    _edge_checks(sections, cfg, problems)
    waf_max_body_bytes = _waf_body_limit(sections, project_dir or PROJECT_DIR, problems)
    _migration_checks(sections, facts, problems)
    container, lb = sections["container"], sections["loadBalancer"]
    if container is not None and lb is not None:
        for key, problem in fault_switch_problems(
            container.variables, stack=stack, deletion_protection=lb.deletion_protection
        ):
            problems.add(key, problem)

    operations = sections["operations"]
    if default_tags is not UNCHECKED:
        tag_key = operations.budget_tag_key if operations is not None else None
        problems.extend(f"{key}: {message}" for key, message in default_tags_problems(default_tags, tag_key))

    if problems:
        raise ConfigError(problems)
    production = production_stack(stack, deletion_protection=lb.deletion_protection)
    unwatched = unwatched_production(operations, production=production)
    return Settings(
        region=region,
        partition=partition,
        network=sections["network"],
        endpoints=sections["vpcEndpoints"],
        container=sections["container"],
        image=sections["image"],
        service=sections["service"],
        autoscaling=sections["autoscaling"],
        edge=sections["edge"],
        load_balancer=sections["loadBalancer"],
        domain=sections["domain"],
        logs=sections["logs"],
        deployment=sections["deployment"],
        secrets=secrets or (),
        secret_values=secret_values,
        task_policy=tuple(
            s if s.sid else s.model_copy(update={"sid": f"App{i}"}) for i, s in enumerate(sections["taskRolePolicy"])
        ),
        waf_max_body_bytes=waf_max_body_bytes,
        operations=sections["operations"],
        iam=sections["iam"],
        promoted=promoted,
        tracing=sections["tracing"],
        queue=sections["queue"],
        migration=sections["migration"],
        production=production,
        warnings=(unwatched,) if unwatched else (),
    )


def _entries(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, tuple):
        yield from ((f"{key}[{i}]", item) for i, item in enumerate(value))
    elif value is not None:
        yield key, value


def _retired(cfg: dict[str, Any], problems: _Problems) -> None:
    """Refuse settings gantry no longer reads, saying what replaced them; drop them so the model does not
    also call them unknown."""
    for (key, name), message in RETIRED.items():
        section = cfg.get(key)
        if isinstance(section, dict) and name in section:
            problems.add(f"{key}.{name}", message)
            cfg[key] = {k: v for k, v in section.items() if k != name}


def _edge_checks(sections: Mapping[str, Any], cfg: Mapping[str, Any], problems: _Problems) -> None:
    edge, lb, domain = sections["edge"], sections["loadBalancer"], sections["domain"]
    if edge is None or "domain" in problems.reported_keys():
        return
    for key, problem in edge_mode_problems(edge, domain, cfg):
        if not any(p.startswith(f"{NAMESPACE}:{key}") for p in problems):  # already refused for its value
            problems.add(key, problem)
    if edge.mode != "cloudfront" or lb is None:
        return
    # Behind CloudFront the load balancer's idle timeout bounds both of CloudFront's origin timeouts.
    if edge.origin_keepalive_timeout_seconds >= lb.idle_timeout_seconds:
        problems.add(
            "edge.originKeepaliveTimeoutSeconds",
            f"{edge.origin_keepalive_timeout_seconds} must be below loadBalancer.idleTimeoutSeconds "
            f"({lb.idle_timeout_seconds}): the load balancer would close idle connections CloudFront still "
            "reuses (502s)",
        )
    if edge.origin_read_timeout_seconds > lb.idle_timeout_seconds:
        problems.add(
            "edge.originReadTimeoutSeconds",
            f"{edge.origin_read_timeout_seconds} is above loadBalancer.idleTimeoutSeconds ({lb.idle_timeout_seconds}): "
            "the load balancer would cut a slow response before CloudFront gives up on it; raise the idle timeout",
        )


def _waf_body_limit(sections: Mapping[str, Any], project_dir: Path, problems: _Problems) -> int | None:
    """edge.waf.maxBodyBytes, or the sample worker's own largest body; never below what the worker accepts
    (the WAF would refuse, with a bare 403/413, requests the worker is configured to serve)."""
    edge, image, container = sections["edge"], sections["image"], sections["container"]
    if edge is None or not edge.waf.enabled:
        return None
    configured = edge.waf.max_body_bytes
    sample = image is not None and builds_sample_worker(image.context)
    if not sample or container is None or "container" in problems.reported_keys():
        return configured
    gantry_set = {"PORT": str(container.port), "DRAIN_TIMEOUT_SECONDS": str(container.drain_timeout_seconds)}
    queue = sections["queue"]
    if queue is not None and queue.enabled and "queue" not in problems.reported_keys():
        gantry_set.update(BATCH_STAND_INS)  # the Batch API on: MAX_BATCH_FILE_BYTES bounds uploads
    worker = worker_body_limit(project_dir, container.variables, gantry_set)
    if configured is not None and configured < worker:
        problems.add(
            "edge.waf.maxBodyBytes",
            f"{configured} is below the {worker} bytes the sample worker accepts (MAX_REQUEST_BYTES, or "
            "MAX_BATCH_FILE_BYTES with the Batch API): lower the worker's limit instead, or leave this unset",
        )
    return configured or worker


def _placeholders(cfg: Mapping[str, Any], problems: _Problems) -> None:
    for key, value in cfg.items():
        if key == "secretValues":
            for name, secret in value.items():
                if find_placeholders(secret, ""):
                    problems.add(f"secretValues.{name}", "looks like a placeholder value (value not shown)")
            continue
        for path, found in find_placeholders(value, key):
            problems.add(
                path,
                f"{found!r} looks like a placeholder (REPLACE_ME, TODO, xxx, an AWS documentation "
                "account id or address range, example.com, your-domain, <...>); set a real value or remove the setting",
            )


def _secret_values(
    cfg: Mapping[str, Any],
    secrets: tuple[SecretSpec, ...] | None,
    secret_keys: Sequence[str],
    problems: _Problems,
) -> SecretValues:
    values = cfg.get("secretValues") or {}
    if values and not any(k in (f"{NAMESPACE}:secretValues", "secretValues") for k in secret_keys):
        problems.add(
            "secretValues",
            "is stored in plain text; set each value with "
            "`pulumi config set --secret --path 'secretValues.<NAME>' <value>`",
        )
    if secrets is None:
        return SecretValues({})
    created = {s.name for s in secrets if s.create}
    for name in sorted(created - set(values)):
        problems.add(
            f"secretValues.{name}",
            f"is missing: secret {name} is created by the stack; run "
            f"`pulumi config set --secret --path 'secretValues.{name}' '<value>'`",
        )
    for name in sorted(set(values) - created):
        problems.add(
            f"secretValues.{name}",
            f"has no matching secrets entry with create: true (declared: {', '.join(sorted(created)) or 'none'})",
        )
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            problems.add(f"secretValues.{name}", "must be a non-empty string (value not shown)")
    return SecretValues({k: v for k, v in values.items() if k in created and isinstance(v, str)})


def _cross_checks(sections: Mapping[str, Any], secrets: tuple[SecretSpec, ...] | None, problems: _Problems) -> None:
    network, endpoints = sections["network"], sections["vpcEndpoints"]
    container, service, autoscaling = sections["container"], sections["service"], sections["autoscaling"]
    if secrets is not None:
        names = [s.name for s in secrets]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.add("secrets", f"{dup} is declared twice")
        for reserved in sorted(set(names) & {"PORT", "DRAIN_TIMEOUT_SECONDS"}):
            problems.add("secrets", f"{reserved} is set by gantry itself and cannot be a secret")
        if container is not None:
            for s in secrets:
                if s.name in container.environment:  # the raw names, as written
                    problems.add(
                        f"container.environment.{s.name}",
                        "is also declared as a secret; secrets reach "
                        "the container only through ECS secrets, never environment",
                    )
    policy = sections["taskRolePolicy"]
    if policy is not None:
        sids = [s.sid for s in policy if s.sid]
        for dup in sorted({s for s in sids if sids.count(s) > 1}):
            problems.add("taskRolePolicy", f"sid {dup} is used twice")
    deployment = sections["deployment"]
    if network is not None and deployment is not None and deployment.blue_green and not network.has_nat:
        # The hook Lambda runs in the private subnets and calls CodeDeploy (GetDeployment,
        # PutLifecycleEventHookExecutionStatus), EC2 (DescribeNetworkInterfaces, to find the test
        # listener's address) and, with preTraffic, ECS (RunTask, DescribeTasks). gantry offers no VPC
        # endpoint for them, so without NAT the verdict never reaches CodeDeploy and each deploy waits
        # for the hook's timeout before rolling back. Refused instead of shipping a stack that cannot deploy.
        problems.add(
            "deployment.strategy",
            "codedeploy needs network.natStrategy single or per-az (found none): the blue/green hook Lambda "
            "reports its verdict to the CodeDeploy API and looks up the test listener through the EC2 API, "
            "which gantry's VPC endpoints do not reach, so every deploy would hang until its timeout. "
            "Allowed: strategy codedeploy with natStrategy single or per-az, or strategy rolling with natStrategy none",
        )
    if network is not None and endpoints is not None and secrets is not None:
        if network.nat_strategy == "none":
            missing = sorted(set(required_interface_endpoints(secrets)) - set(endpoints.interface))
            if missing:
                problems.add(
                    "vpcEndpoints.interface",
                    f"natStrategy is none, so tasks can reach AWS only through endpoints; add {', '.join(missing)}",
                )
            if not endpoints.s3_gateway:
                problems.add(
                    "vpcEndpoints.s3Gateway",
                    "natStrategy is none and ECR serves image layers from S3; set s3Gateway: true",
                )
        if "ssm" in endpoints.interface and not any(s.source == "ssm" for s in secrets):
            problems.add(
                "vpcEndpoints.interface",
                "lists ssm, but no secret references an SSM parameter (an unused endpoint costs money in every AZ)",
            )
    if (
        service is not None
        and autoscaling is not None
        and not autoscaling.min_capacity <= service.desired_count <= autoscaling.max_capacity
    ):
        problems.add(
            "service.desiredCount",
            f"{service.desired_count} must lie between autoscaling.minCapacity "
            f"({autoscaling.min_capacity}) and autoscaling.maxCapacity ({autoscaling.max_capacity})",
        )


def _worker_signal_checks(sections: Mapping[str, Any], problems: _Problems) -> None:
    """Scaling on the worker's own metrics needs the worker; the collector must fit in the task."""
    image, autoscaling = sections["image"], sections["autoscaling"]
    container, tracing = sections["container"], sections["tracing"]
    if image is not None and autoscaling is not None and not builds_sample_worker(image.context):
        for key, value in (
            ("inFlightPerTask", autoscaling.in_flight_per_task),
            ("tokensPerMinutePerTask", autoscaling.tokens_per_minute_per_task),
        ):
            if value is not None:
                problems.add(
                    f"autoscaling.{key}",
                    f"reads the sample worker's EMF metrics, which image.context {image.context!r} does not "
                    "write (no data means the policy never acts); remove it or build the sample worker",
                )
    network = sections["network"]
    if network is not None and tracing is not None and tracing.enabled and network.nat_strategy == "none":
        problems.add(
            "tracing.enabled",
            "needs a NAT (network.natStrategy single or per-az): the collector image comes from ECR Public and "
            "the spans go to the X-Ray API, and gantry's VPC endpoints reach neither",
        )
    if (
        container is not None
        and tracing is not None
        and tracing.enabled
        and tracing.collector_memory_reservation_mib >= container.memory // 2
    ):
        problems.add(
            "tracing.collectorMemoryReservationMib",
            f"{tracing.collector_memory_reservation_mib} MiB would take half or more of the task's "
            f"{container.memory} MiB (container.memory) from the app",
        )


def _own_image_checks(sections: Mapping[str, Any], problems: _Problems) -> None:
    """What a team's own image must declare itself instead of inheriting the sample worker's."""
    image, container = sections["image"], sections["container"]
    if image is None or container is None:
        return
    problem = inherited_health_check(image, container)
    if problem is not None:
        problems.add(f"container.{problem[0]}", problem[1])


def _sample_worker_checks(
    sections: Mapping[str, Any], secret_values: SecretValues, project_dir: Path, problems: _Problems
) -> None:
    image, container, queue = sections["image"], sections["container"], sections["queue"]
    batches = queue is not None and queue.enabled
    own_image = image is not None and not builds_sample_worker(image.context)
    if batches and own_image and "image" not in problems.reported_keys():
        problems.add(
            "queue.enabled",
            f"needs the sample worker's image (image.context: {SAMPLE_CONTEXT}): the consumer service runs "
            "`python -m worker.consumer`, which only that image has; set queue.enabled: false",
        )
    if image is None or container is None or own_image or "container" in problems.reported_keys():
        return
    gantry_set = {"PORT": str(container.port), "DRAIN_TIMEOUT_SECONDS": str(container.drain_timeout_seconds)}
    if batches and "queue" not in problems.reported_keys():
        gantry_set.update(BATCH_STAND_INS)
    for key, problem in worker_problems(project_dir, container.variables, gantry_set, secret_values.get("API_KEYS")):
        problems.add(key, problem)
    if batches and "queue" not in problems.reported_keys():
        for key, problem in consumer_problems(
            project_dir, container.variables, {**queue.consumer_variables, **BATCH_STAND_INS}
        ):
            problems.add(key, problem)


def _fact_checks(sections: Mapping[str, Any], facts: AwsFacts, region: str, problems: _Problems) -> None:
    network, domain = sections["network"], sections["domain"]
    azs = facts.availability_zones
    if network is not None and azs is not None and network.availability_zones > len(azs):
        problems.add(
            "network.availabilityZones",
            f"{network.availability_zones} is more than {region} has ({len(azs)}: {', '.join(azs)})",
        )
    if domain is not None and (facts.zones_looked_up or domain.hosted_zone_id in facts.zone_names):
        zone = facts.zone_names.get(domain.hosted_zone_id)
        if zone is None:
            problems.add(
                "domain.hostedZoneId",
                f"{domain.hosted_zone_id!r} is not a hosted zone these credentials "
                "can see (check the id in the Route 53 console and the AWS account)",
            )
        elif not within_zone(domain.hostname, zone):
            problems.add(
                "domain.hostname",
                f"{domain.hostname!r} is not inside hosted zone "
                f"{domain.hosted_zone_id} ({zone.rstrip('.')}): use a name ending in .{zone.rstrip('.')}",
            )


def _boundary_checks(iam: IamSettings | None, facts: AwsFacts, problems: _Problems) -> None:
    """A boundary that does not exist fails CreateRole halfway through the first `up`: refuse it up front."""
    for arn, found in facts.boundary_policies.items():
        if iam is not None and not found:
            problems.add(
                "iam.permissionsBoundary",
                f"{arn} does not exist (or these credentials cannot read it), and every role gantry creates carries "
                "it: run the bootstrap once in this account (bootstrap/README.md), name an existing boundary policy, "
                "or, for an account without the bootstrap, set iam.withoutPermissionsBoundary: true",
            )


def _promotion_checks(image: ImageSettings | None, facts: AwsFacts, problems: _Problems) -> PromotedImage | None:
    """A promoting stack deploys only a digest its source repository holds; refused before anything changes."""
    if image is None or image.promote_from is None or facts.promotion is None:
        return None
    problem = promotion_problems(facts.promotion, pinned=image.digest is not None)
    if problem is not None:
        problems.add(*problem)
        return None
    return promoted_image(facts.promotion)


def _migration_checks(sections: Mapping[str, Any], facts: AwsFacts, problems: _Problems) -> None:
    migration, domain = sections["migration"], sections["domain"]
    if migration is None or "domain" in problems.reported_keys():
        return
    zone = facts.zone_names.get(domain.hosted_zone_id) if domain is not None else None
    for key, problem in cutover_problems(migration.cutover, domain, zone_name=zone, previous=facts.previous_cutover):
        problems.add(key, problem)
    if (
        migration.cutover is not None
        and domain is not None
        and facts.previous_cutover is None
        and facts.previous_service_url == f"https://{domain.hostname}"
    ):
        problems.add(
            "migration.cutover",
            f"{domain.hostname} is already served by gantry's own alias record, which a CNAME cannot join, and there "
            "is no legacy traffic left to move; a cutover is for a hostname the legacy endpoint serves today",
        )


def _deployment_checks(
    sections: Mapping[str, Any], facts: AwsFacts, secret_values: SecretValues, problems: _Problems
) -> None:
    deployment, image = sections["deployment"], sections["image"]
    if deployment is None:
        return
    live = facts.live_deployment_controller
    if live is not None and live != deployment.controller and not deployment.replace_service_on_strategy_change:
        live_strategy = {v: k for k, v in CONTROLLERS.items()}.get(live, live)
        problems.add(
            "deployment.strategy",
            f"{deployment.strategy!r} is not allowed on this stack yet: its live ECS service uses the {live} "
            f"deployment controller ({live_strategy}), which ECS cannot change in place, so this `pulumi up` "
            f"would replace the service. To migrate: keep strategy {live_strategy!r} until a quiet window, then "
            "set deployment.replaceServiceOnStrategyChange: true for one `pulumi up` (Pulumi starts the new service "
            "beside the old one behind the same target group, then deletes the old one; expect a few minutes "
            "of mixed tasks), and set it back to false afterwards",
        )
    created = secret_values.get("API_KEYS")
    if deployment.blue_green and image is not None and builds_sample_worker(image.context) and created is not None:
        try:
            tenants = json.loads(created)
        except ValueError:
            return  # the worker's own checks report a malformed API_KEYS
        if isinstance(tenants, dict) and deployment.eval_tenant not in tenants:
            problems.add(
                "secretValues.API_KEYS",
                f"has no key for tenant {deployment.eval_tenant!r} (deployment.evalTenant), which the eval hook "
                "sends to green; add one with its own key (value not shown)",
            )


__all__ = [
    "CONFIG_KEYS",
    "AwsFacts",
    "ConfigError",
    "Settings",
    "load_settings",
    "required_interface_endpoints",
    "resource_too_broad",
]

"""Settings of the workload: `container`, `image`, `service`, `autoscaling` (with its schedules) and `logs`.

Security stance: the container runs as a non-root uid on a port of 1024 or above, its plain
environment may hold no credentials (by name or by value), its health check is in exec form, and the
image is built from a local directory that exists when the program starts: inside the project (the
sample worker, `app`) or a team's own checkout outside it (`../my-api`, `/src/my-api`), never a URL
or a path only a shell would expand. What an external context holds is its owners' to lint and test;
gantry hashes what its `.dockerignore` lets through into the image's build label, as for `app`.
"""

from __future__ import annotations

import json
import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, JsonValue, ValidationInfo, field_validator, model_validator

from components.settings.base import (
    Section,
    Text,
    Token,
    Where,
    between,
    one_of,
    secret_looking_name,
    secret_looking_value,
)
from components.settings.network import RetentionDays
from components.settings.sample_worker import SAMPLE_CONTEXT, builds_sample_worker

ARCHITECTURES = {"ARM64": "linux/arm64", "X86_64": "linux/amd64"}
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
FARGATE_CPUS = (256, 512, 1024, 2048, 4096, 8192, 16384)
# Environment variables gantry sets itself from other settings (the OTEL_* pair only with tracing on),
# so they cannot drift apart.
RESERVED_ENV = ("PORT", "DRAIN_TIMEOUT_SECONDS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME")
# Seconds between SIGTERM and the end of the app's drain window: ECS sends SIGKILL at stopTimeout, so
# the app must have finished (and flushed its logs) a little before that.
DRAIN_MARGIN_SECONDS = 5
ENV_NAME = r"[A-Z_][A-Z0-9_]*"
# Set by ECS and Fargate themselves (AWS_REGION, AWS_CONTAINER_CREDENTIALS_*, ECS_CONTAINER_METADATA_URI):
# overriding one sends SDK calls to another region or breaks the task's credentials.
RESERVED_ENV_PREFIXES = ("AWS_", "ECS_")


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


def _url_path(value: str) -> str:
    if not value.startswith("/") or len(value) > 1024 or any(c.isspace() for c in value):
        raise ValueError("must be an absolute URL path such as /health (no spaces, at most 1024 characters)")
    return value


def _exec_form(value: tuple[str, ...]) -> tuple[str, ...]:
    """ECS health checks: ["CMD", executable, args...] or ["CMD-SHELL", "one shell command"]."""
    if not value:
        raise ValueError('must not be empty: use ["CMD", "<executable>", "<arg>", ...]')
    head, rest = value[0], value[1:]
    if head == "CMD":
        if not rest or not all(part.strip() for part in rest):
            raise ValueError('needs the executable after "CMD", such as ["CMD", "python", "-m", "worker.healthcheck"]')
        if " " in rest[0].strip():
            raise ValueError(f"{rest[0]!r} is a shell command line, not an executable: split it into list items")
    elif head == "CMD-SHELL":
        if len(rest) != 1 or not rest[0].strip():
            raise ValueError('"CMD-SHELL" takes exactly one non-empty shell command string')
    else:
        raise ValueError(f"must start with CMD (exec form) or CMD-SHELL, got {head!r}")
    return value


def _non_root_user(value: str) -> str:
    if not re.fullmatch(r"\d+(:\d+)?", value) or value.split(":")[0] == "0":
        raise ValueError('must be a numeric non-root uid or uid:gid, such as "10001:10001"')
    return value


class ContainerSettings(Section):
    port: int = between(8000, 1024, 65535, "the container runs as a non-root user, which cannot bind below 1024")
    """Default 8000: the one port of the container, the target group, the load balancer's health check
    and the app's PORT variable (a mismatch is the classic healthy-infra 502). 1024 or above: the
    container runs as a non-root user, which cannot bind below 1024."""
    health_check_path: Annotated[Text, AfterValidator(_url_path)] = "/health"
    """Default /health: the target-group health-check path (answers 200 when the task can serve)."""
    health_check_command: Annotated[tuple[str, ...], AfterValidator(_exec_form)] = (
        "CMD",
        "python",
        "-m",
        "worker.healthcheck",
    )
    """Default ["CMD", "python", "-m", "worker.healthcheck"]: the in-container check ECS runs, in exec
    form (the slim image ships no curl or shell tools)."""
    cpu: Annotated[int, one_of(FARGATE_CPUS, "Fargate task CPU units")] = 1024
    """Default 1024 CPU units (1 vCPU); must pair with memory as the Fargate matrix allows."""
    memory: int = Field(2048, ge=512, le=122880)
    """Default 2048 MiB."""
    architecture: Literal["ARM64", "X86_64"] = "ARM64"
    """Default ARM64 (Graviton: about 20% cheaper per vCPU on Fargate); the image is built for it."""
    stop_timeout_seconds: int = between(
        30, DRAIN_MARGIN_SECONDS + 1, 120, "Fargate's maximum is 120; the app needs a drain window of at least 1 s"
    )
    """Default 30 (Fargate allows up to 120): time between SIGTERM and SIGKILL; the app gets
    DRAIN_TIMEOUT_SECONDS = this minus 5 to finish in-flight requests."""
    user: Annotated[Token, AfterValidator(_non_root_user)] = "10001:10001"
    """Default "10001:10001": the non-root uid:gid the image is built for."""
    environment: Mapping[str, JsonValue] = Field(default_factory=dict)
    """Default {}: plain, non-secret variables (strings or numbers). Credentials go in `secrets`:
    names and values that look like one are refused here."""

    @field_validator("environment", mode="after")
    @classmethod
    def _read_only(cls, value: Mapping[str, JsonValue]) -> MappingProxyType[str, JsonValue]:
        return MappingProxyType(value)

    @property
    def variables(self) -> MappingProxyType[str, str]:
        """The environment as the container gets it (validated: every value a string or number)."""
        return MappingProxyType({name: str(value) for name, value in self.environment.items()})

    @property
    def drain_timeout_seconds(self) -> int:
        return self.stop_timeout_seconds - DRAIN_MARGIN_SECONDS

    @property
    def platform(self) -> str:
        """The Docker platform the image is built for; derived, so it cannot disagree with the task's."""
        return ARCHITECTURES[self.architecture]

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        for name, value in self.environment.items():
            key = f"environment.{name}"
            if not re.fullmatch(ENV_NAME, name):
                yield (
                    key,
                    (
                        "is not allowed as a name: upper-case letters, digits and _, not starting with a digit "
                        "(the convention every SDK and the sample worker read)"
                    ),
                )
            elif name.startswith(RESERVED_ENV_PREFIXES):
                yield (
                    key,
                    (
                        f"is set by ECS itself ({', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)}): overriding "
                        "it sends SDK calls elsewhere or breaks the task's credentials; remove it"
                    ),
                )
            elif name in RESERVED_ENV:
                yield key, f"is set by gantry from other settings ({', '.join(RESERVED_ENV)}); remove it"
            elif secret_looking_name(name):
                yield (
                    key,
                    (
                        "looks like a secret; declare it under gantry:secrets so it never sits in plain text "
                        "in the task definition"
                    ),
                )
            elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
                yield key, f"{json.dumps(value)} is not allowed: must be a string or number"
            elif kind := secret_looking_value(str(value)):
                yield key, f"holds what looks like {kind} (value not shown); move it to gantry:secrets"
        options = fargate_memory_options(self.cpu)
        if self.memory not in options:
            yield (
                "memory",
                (
                    f"{self.memory} MiB is not a valid Fargate size for cpu {self.cpu}: allowed "
                    f"{', '.join(str(m) for m in options)}"
                ),
            )


def _build_path(value: str, info: ValidationInfo) -> str:
    """A build context or Dockerfile: relative to the project directory (where the Pulumi CLI runs the
    program, so docker-build resolves relative locations from there) or absolute; it must exist."""
    if "\\" in value or re.match(r"^[A-Za-z]:", value):
        raise ValueError("must be a POSIX path (forward slashes), relative to the project directory or absolute")
    if value.startswith("~"):
        raise ValueError(
            "starts with ~, which only a shell expands: give an absolute path, or one relative to the project"
        )
    if "://" in value or value.startswith("git@"):
        raise ValueError("must be a local directory: gantry hashes the files the build sees, which a URL does not have")
    project = (info.context or {}).get("project_dir")
    if project is None:
        return value
    root = Path(project).resolve()
    resolved = (root / value).resolve()
    if Path(os.path.normpath(root / value)).is_relative_to(root) and not resolved.is_relative_to(root):
        # A path that reads as inside the project but builds from elsewhere hides that from a reviewer.
        raise ValueError(f"leads out of the project through a symlink (to {resolved}): write that path itself")
    if info.field_name == "context" and not resolved.is_dir():
        raise ValueError(f"is not a directory ({resolved}; relative paths start at the project directory {root})")
    if info.field_name == "dockerfile" and not resolved.is_file():
        raise ValueError(
            f"is not a file ({resolved}): the build needs a Dockerfile; by default <context>/Dockerfile, or set "
            "image.dockerfile to its path"
        )
    return value


# A stack to promote from: `dev`, or fully qualified `organization/project/stack` (Pulumi's stack-name rules).
_STACK_REF = re.compile(r"[A-Za-z0-9_.-]{1,100}(?:/[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100})?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What only a building stack reads: a promoting stack setting one has a mistake in it.
BUILD_ONLY = ("context", "dockerfile", "keep_images", "keep_run_images", "force_delete")


def _stack_ref(value: str) -> str:
    if not _STACK_REF.fullmatch(value):
        raise ValueError("must be a stack name such as dev, or organization/project/stack")
    return value


def _digest(value: str) -> str:
    if not DIGEST.fullmatch(value):
        raise ValueError("must be an image digest: sha256: followed by 64 lower-case hex digits (never a tag)")
    return value


class ImageSettings(Section):
    context: Annotated[Text, AfterValidator(_build_path)] = SAMPLE_CONTEXT
    """Default "app" (the sample worker): the Docker build context, a directory relative to the project
    directory or absolute. A team's own service may live in its own repository beside this one
    (`../my-api`); its health check command must then be set (container.healthCheckCommand)."""
    dockerfile: Annotated[Text, AfterValidator(_build_path)] = "app/Dockerfile"
    """Default "<context>/Dockerfile" (app/Dockerfile for the sample): the Dockerfile, relative to the
    project directory (not to the context) or absolute."""

    @model_validator(mode="before")
    @classmethod
    def _dockerfile_in_context(cls, data: Any, info: ValidationInfo) -> Any:
        # A context without a dockerfile builds with its own Dockerfile, never the sample worker's. Only
        # for a context that exists: a bad one is refused itself, without a follow-on Dockerfile complaint.
        if not isinstance(data, dict) or "dockerfile" in data or "promoteFrom" in data or "promote_from" in data:
            return data
        context, project = data.get("context"), (info.context or {}).get("project_dir")
        if isinstance(context, str) and context.strip() and (project is None or (Path(project) / context).is_dir()):
            return {**data, "dockerfile": str(PurePosixPath(context) / "Dockerfile")}
        return data

    keep_images: int = Field(30, ge=1, le=1000)
    """Default 30: the ECR lifecycle policy expires older images (a month of daily deploys to roll
    back to); pushed images are never deleted by `pulumi up` itself."""
    keep_run_images: int = Field(100, ge=1, le=1000)
    """Default 100: images a promoting stack deployed (tagged run-<stack>-<digest>) are kept apart from
    keepImages, until this many newer ones were deployed (two years of weekly promotions); dev's pushes
    never push them out."""
    force_delete: bool = False
    """Default false: let `pulumi destroy` delete the repository with its images (throwaway stacks
    only; a production repository keeps its rollback images)."""
    promote_from: Annotated[Token, AfterValidator(_stack_ref)] | None = None
    """Default none: the stack builds from `context` into its own repository. A stack name (dev, or
    organization/project/stack): build nothing and create no repository; deploy the image that stack
    built, from its repository, by digest (its `imageDigest` output unless `digest` is set). `pulumi
    preview` refuses a digest that repository does not hold."""
    digest: Annotated[Token, AfterValidator(_digest)] | None = None
    """Default none (the promoted stack's `imageDigest` output, the digest it last validated). With
    promoteFrom only: an earlier digest of that repository, to promote or roll back to a known image."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.promote_from is None:
            if self.digest is not None:
                yield (
                    "digest",
                    "needs promoteFrom (the stack whose repository holds it); a building stack builds its own",
                )
            return
        for name in sorted(BUILD_ONLY):
            if name in self.model_fields_set:
                alias = type(self).model_fields[name].alias or name
                yield (
                    alias,
                    f"is a building stack's setting, but this stack promotes from {self.promote_from!r} and builds "
                    "nothing: set it on that stack, or remove promoteFrom to build here",
                )


SAMPLE_HEALTH_CHECK = ContainerSettings.model_fields["health_check_command"].default
# The exec-form examples a refusal offers: a script the image ships, or a static binary.
HEALTH_CHECK_EXAMPLES = '["CMD", "python", "healthcheck.py"] or ["CMD", "/usr/local/bin/healthcheck"]'


def inherited_health_check(image: ImageSettings, container: ContainerSettings) -> tuple[str, str] | None:
    """(key, problem) when a stack would run the sample worker's health command in an image that may lack it.

    The default command, `python -m worker.healthcheck`, exists only in the sample worker's image. Only a
    stack that builds that image itself (image.context `app`) may inherit it. A stack that builds another
    context, and a stack that promotes (image.promoteFrom), whose image its own config cannot see, must
    say which command their image ships; otherwise ECS marks every task unhealthy and each deploy rolls back."""
    if "health_check_command" in container.model_fields_set:
        return None
    if image.promote_from is None and builds_sample_worker(image.context):
        return None
    why = (
        f"this stack promotes the image stack {image.promote_from!r} built, which its config cannot see"
        if image.promote_from is not None
        else f"image.context {image.context!r} builds your own image"
    )
    default = json.dumps(list(SAMPLE_HEALTH_CHECK))
    return (
        "healthCheckCommand",
        f"is required: {why}, and the default {default} is the sample worker's (`python -m worker.healthcheck` "
        "is not in your image), so ECS would mark every task unhealthy and each deploy would roll back. Set the "
        f"command your image ships, in exec form, such as {HEALTH_CHECK_EXAMPLES} (for the sample worker "
        f"promoted from another stack: {default})",
    )


class CapacityProvider(Section):
    provider: Literal["FARGATE", "FARGATE_SPOT"]
    """FARGATE (on-demand) or FARGATE_SPOT (up to ~70% cheaper, interruptible with two minutes' notice)."""
    base: int = Field(0, ge=0, le=100000)
    """Default 0: tasks placed on this provider before weights apply."""
    weight: int = Field(1, ge=0, le=1000)
    """Default 1: share of the tasks beyond the bases."""


class ServiceSettings(Section):
    desired_count: int = Field(2, ge=1, le=1000)
    """Default 2: initial task count; autoscaling owns it after creation."""
    min_healthy_percent: int = Field(100, ge=0, le=100)
    """Default 100: a rolling deploy never drops below capacity."""
    max_percent: int = Field(200, ge=100, le=200)
    """Default 200: new tasks start beside the old ones."""
    health_check_grace_period_seconds: int = Field(60, ge=0, le=3600)
    """Default 60: how long ECS ignores load-balancer health checks for a starting task (model load
    plus the first checks)."""
    capacity_providers: tuple[CapacityProvider, ...] = (CapacityProvider(provider="FARGATE", base=1, weight=1),)
    """Default [{provider: FARGATE, base: 1, weight: 1}]. Changing it on a live stack starts a new
    deployment (ECS requires one for a strategy change)."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        names = [p.provider for p in self.capacity_providers]
        if not names:
            yield "capacityProviders", "must list at least one of FARGATE, FARGATE_SPOT"
        if len(set(names)) != len(names):
            yield "capacityProviders", "lists a provider twice"
        if sum(1 for p in self.capacity_providers if p.base > 0) > 1:
            yield "capacityProviders", "only one provider may have a base above 0 (an ECS rule)"
        if names and not any(p.weight > 0 for p in self.capacity_providers):
            yield "capacityProviders", "at least one provider needs a weight above 0"
        if self.max_percent <= self.min_healthy_percent:
            yield (
                "maxPercent",
                (
                    f"{self.max_percent} must exceed minHealthyPercent ({self.min_healthy_percent}), or a deploy "
                    "can never start a task"
                ),
            )


# Application Auto Scaling's cron: six fields, "[Minutes] [Hours] [Day_of_Month] [Month] [Day_of_Week]
# [Year]", in EventBridge's syntax ("Schedule recurring scaling actions using Application Auto Scaling",
# https://docs.aws.amazon.com/autoscaling/application/userguide/scheduled-scaling-using-cron-expressions.html;
# field values and wildcards per "Cron expressions reference",
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html#eb-cron-expressions).
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names for 1.., extra single tokens the field allows)
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _WEEKDAYS),
    ("year", 1970, 2199, ()),
)
_AT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$")
SCHEDULE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def _cron_value(text: str, lo: int, hi: int, names: tuple[str, ...], field: str) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + 1
    if not text.isdigit():
        allowed = f"{lo}-{hi}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise ValueError(f"{field} {text!r} is not a value ({allowed})")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{field} {value} is outside {lo}-{hi}")
    return value


def _cron_field(text: str, index: int) -> None:
    field, lo, hi, names = _CRON_FIELDS[index]
    if text == "?":
        if field not in ("day-of-month", "day-of-week"):
            raise ValueError(f"? is allowed only in day-of-month or day-of-week, not in {field}")
        return
    if field == "day-of-month" and re.fullmatch(r"L|LW|\d{1,2}W", text):
        if text.endswith("W") and text != "LW":
            _cron_value(text[:-1], lo, hi, names, field)
        return
    if field == "day-of-week" and (m := re.fullmatch(r"([^#L]+)(L|#([1-5]))", text)):
        _cron_value(m.group(1), lo, hi, names, field)
        return
    for element in text.split(","):
        base, _, step = element.partition("/")
        if step and (not step.isdigit() or not 1 <= int(step) <= hi):
            raise ValueError(f"{field} increment {step!r} must be a whole number from 1 to {hi}")
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        first = _cron_value(start, lo, hi, names, field)
        if dash and first > _cron_value(end, lo, hi, names, field):
            raise ValueError(f"{field} range {base!r} runs backwards")


def cron_expression(value: str) -> str:
    """Check the six fields of an Application Auto Scaling cron expression; returns it unchanged."""
    if value.startswith("cron("):
        raise ValueError('give the six fields only, such as "0 8 ? * MON-FRI *" (gantry adds cron(...))')
    fields = value.split(" ")
    if len(fields) != 6 or not all(fields):
        raise ValueError(
            "must be six fields separated by single spaces: minutes hours day-of-month month day-of-week year, "
            'such as "0 8 ? * MON-FRI *" (Application Auto Scaling\'s cron, not the five-field Unix one)'
        )
    for index, text in enumerate(fields):
        _cron_field(text, index)
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ValueError(
            "exactly one of day-of-month and day-of-week must be ?: AWS cannot combine both (use * ? or ? *)"
        )
    return value


def at_expression(value: str) -> str:
    """A one-time schedule, yyyy-mm-ddThh:mm:ss (read in the schedule's timezone); returns it unchanged."""
    m = _AT.match(value)
    if not m:
        raise ValueError("must be a date and time yyyy-mm-ddThh:mm:ss, such as 2026-11-27T07:30:00 (no zone suffix)")
    try:
        year, month, day, hour, minute, second = (int(part) for part in m.groups())
        datetime(year, month, day, hour, minute, second)
    except ValueError as error:
        raise ValueError(f"is not a real date and time ({error})") from None
    return value


def _timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError("is not an IANA time zone name such as UTC, Europe/Dublin or America/New_York")
    return value


class ScheduleSettings(Section):
    """One scheduled change of the task-count bounds (pre-warm before a known peak, shrink after it)."""

    name: Annotated[Token, AfterValidator(lambda v: _match(SCHEDULE_NAME, v, "lower-case letters, digits, -"))]
    """Required: unique per stack; lower-case letters, digits and -, up to 40 characters (it names the
    scheduled action, gantry-<stack>-<name>)."""
    cron: Annotated[Text | None, AfterValidator(lambda v: v if v is None else cron_expression(v))] = None
    """Default none: a recurring schedule, the six fields of Application Auto Scaling's cron
    ("0 8 ? * MON-FRI *": 08:00 on weekdays). Give exactly one of cron and at."""
    at: Annotated[Token | None, AfterValidator(lambda v: v if v is None else at_expression(v))] = None
    """Default none: a one-time schedule, yyyy-mm-ddThh:mm:ss (a launch day)."""
    timezone: Annotated[Token, AfterValidator(_timezone)] = "UTC"
    """Default UTC: the IANA zone cron and at are read in, so 08:00 stays 08:00 across daylight saving."""
    min_capacity: int | None = Field(None, ge=0, le=1000)
    """Default none (unchanged): the minimum task count from this time on; 0 lets a dev stack sleep."""
    max_capacity: int | None = Field(None, ge=0, le=1000)
    """Default none (unchanged): the maximum task count from this time on."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if (self.cron is None) == (self.at is None):
            yield "cron", "give exactly one of cron (recurring) and at (one time)"
        if self.min_capacity is None and self.max_capacity is None:
            yield "minCapacity", "give minCapacity, maxCapacity or both (a schedule that changes nothing)"
        if self.min_capacity is not None and self.max_capacity is not None and self.min_capacity > self.max_capacity:
            yield "minCapacity", f"{self.min_capacity} exceeds maxCapacity ({self.max_capacity})"

    @property
    def expression(self) -> str:
        """The Schedule parameter as Application Auto Scaling takes it: cron(...) or at(...)."""
        return f"cron({self.cron})" if self.cron is not None else f"at({self.at})"


def _match(pattern: re.Pattern[str], value: str, allowed: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"must start with a letter and hold only {allowed} (at most 40 characters)")
    return value


class AutoscalingSettings(Section):
    min_capacity: int = Field(2, ge=1, le=1000)
    """Default 2."""
    max_capacity: int = Field(6, ge=1, le=1000)
    """Default 6."""
    cpu_target_percent: int = Field(60, ge=10, le=90)
    """Default 60: leaves headroom for a burst while scaling out."""
    requests_per_target: int = Field(6000, ge=1, le=1_000_000)
    """Default 6000: requests per healthy task per minute to hold (~100 req/s, a third of what one vCPU
    of the sample worker serves): ALBRequestCountPerTarget on a rolling stack; with CodeDeploy, the
    same ratio by metric math over both target groups (AWS does not support that metric with blue/green)."""
    scale_in_cooldown_seconds: int = Field(300, ge=0, le=3600)
    """Default 300: scale in slowly to avoid thrashing."""
    scale_out_cooldown_seconds: int = Field(60, ge=0, le=3600)
    """Default 60: scale out quickly."""
    in_flight_per_task: int | None = Field(None, ge=1, le=100_000)
    """Default none (off): target of concurrent inference requests per task, from the sample worker's
    InFlight metric (the Average over tasks of each task's 10 s peak; see components.scaling). Derive it
    from the worker: one inference runs at a time on up to MAX_BATCH_SIZE texts (32 by default), and a
    task holds at most MAX_QUEUED_INPUTS texts before it answers 503. In-flight equal to the batch size
    keeps every run full (the README's benchmark: 32 concurrent single-text clients reach ~92% of the
    model's ceiling); each batch more only adds one run of queueing latency. The committed stacks use
    32: full batches, and MAX_QUEUED_INPUTS / 32 = 16x (dev) or 32x (prod) burst headroom before 503
    while new tasks start. For multi-text requests, divide by the typical texts per request. Sample
    worker only (a team's own image does not emit InFlight)."""
    tokens_per_minute_per_task: int | None = Field(None, ge=1, le=10**9)
    """Default none (off): target of tokens embedded per task per minute, from the worker's Tokens
    metric. Cost follows tokens, not requests: this catches a shift to long inputs that the request
    count misses. About half a task's measured ceiling is a fair target (the README's 64-token benchmark
    serves ~290k tokens per minute per vCPU). Sample worker only."""
    schedules: tuple[ScheduleSettings, ...] = ()
    """Default none: scheduled changes of minCapacity/maxCapacity, for peaks known in advance (target
    tracking reacts in minutes; a schedule has the tasks warm before the peak). Each stays in force
    until the next schedule changes it."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.min_capacity > self.max_capacity:
            yield "minCapacity", f"{self.min_capacity} exceeds maxCapacity ({self.max_capacity})"
        names = [s.name for s in self.schedules]
        for name in sorted({n for n in names if names.count(n) > 1}):
            yield "schedules", f"name {name!r} is used twice (each names one scheduled action)"
        for index, schedule in enumerate(self.schedules):
            for field_name, problem in schedule.checks(where):
                yield f"schedules[{index}].{field_name}", problem


class LogsSettings(Section):
    retention_days: RetentionDays = 30
    """Default 30: retention of the service's CloudWatch log group (a value CloudWatch Logs accepts)."""

"""Worker settings, read once from the environment and validated before anything starts.

The worker takes its whole configuration from environment variables because that is what an ECS
task definition (and Secrets Manager injection) provides. Every variable is parsed here into a
frozen `Settings`; a bad value stops the process at start with a message that names the variable
and says what is allowed, instead of failing on the first request. Security stance: there is no
silent "open" default — without `API_KEYS` the worker refuses to start unless `AUTH_DISABLED` is
exactly `true`, and key values never appear in errors, logs or `repr`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Most rows per run when MAX_BATCH_SIZE is unset (the calibration then only lowers the cells cap).
DEFAULT_MAX_BATCH_SIZE = 32
# The model's attention window as trained by sentence-transformers; longer inputs are refused.
MODEL_MAX_TOKENS = 256

# Tenant names become log fields and CloudWatch dimension values, so keep them plain and short.
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Short keys are guessable; 16 characters is a floor, not a recommendation (generate 32+ random).
_MIN_KEY_LENGTH = 16
# FAULT_INJECT, for the rollback drill only (python -m gantry.drill): 5xx fails /health and every API
# call; bad-embeddings serves vectors that fail the eval while /health stays green. Unset means off.
FAULT_MODES = ("5xx", "bad-embeddings")


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Validated worker configuration. Defaults are documented in app/README.md ("Environment")."""

    port: int
    model_dir: Path
    # tenant -> key; excluded from repr so that printing settings can never leak a key.
    api_keys: Mapping[str, str] = field(repr=False)
    auth_disabled: bool
    rate_limit_requests_per_minute: int
    token_budget_per_minute: int
    max_queued_inputs: int
    # None: calibrated on the CPU at start (worker/batch_size.py), at most DEFAULT_MAX_BATCH_SIZE rows.
    max_batch_size: int | None
    max_batch_wait_ms: float
    max_inputs_per_request: int
    max_input_tokens: int
    max_request_bytes: int
    drain_timeout_seconds: float
    inference_threads: int
    metrics_namespace: str
    service_name: str
    # None: the batch routes answer 404 (no queue configured); see BatchSettings.
    batch: BatchSettings | None = None
    # None (off) unless FAULT_INJECT names one of FAULT_MODES; only the environment can set it.
    fault_inject: str | None = None

    @property
    def batch_file_limit(self) -> int:
        """Largest POST /v1/files body (only reachable when the batch API is enabled)."""
        return self.batch.max_file_bytes if self.batch is not None else self.max_request_bytes


@dataclass(frozen=True)
class BatchSettings:
    """Where batches live; shared by the API (accepts them) and the consumer (runs them).

    QUEUE_URL: the SQS queue of batch jobs (one message per batch). BATCH_BUCKET: the S3 bucket of
    input/output/error files, each under `BATCH_PREFIX<tenant>/`. BATCH_TABLE: the DynamoDB table
    (hash key `tenant`, range key `id`, both strings) of file and batch records.
    """

    queue_url: str
    bucket: str
    table: str
    prefix: str
    max_file_bytes: int
    max_lines: int
    max_line_bytes: int


@dataclass(frozen=True)
class ConsumerSettings:
    """Validated `python -m worker.consumer` configuration; documented in app/README.md ("Batch consumer")."""

    model_dir: Path
    batch: BatchSettings
    inference_threads: int
    max_batch_size: int
    max_batch_wait_ms: float
    max_queued_inputs: int
    max_inputs_per_request: int
    max_input_tokens: int
    token_budget_per_minute: int
    visibility_timeout_seconds: int
    heartbeat_seconds: int
    max_receives: int
    retry_delay_seconds: int
    checkpoint_lines: int
    drain_timeout_seconds: float
    wait_time_seconds: int


def available_cpus(
    affinity: int | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> int:
    """CPUs this process may really use: the affinity mask, capped by the cgroup CPU quota.

    `os.cpu_count()` reports the host's cores, which on Fargate or under `docker --cpus` is far
    more than the task's vCPUs; sizing thread pools from it oversubscribes the CPU and makes
    inference slower. The quota is read from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`).
    """
    cpus = affinity if affinity is not None else len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path) -> float | None:
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _int(env: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise ConfigError(f"{name} is required: an integer from {low} to {high}")
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; allowed: {low} to {high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; allowed: {low} to {high}")
    return value


def _optional_int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _int(env, name, None, low, high)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; allowed: {low} to {high}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name}={raw!r} is out of range; allowed: {low} to {high}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", value):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: 1-255 of A-Z a-z 0-9 . _ / # : -")
    return value


def _api_keys(env: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    raw_disabled = env.get("AUTH_DISABLED", "")
    if raw_disabled not in ("", "true", "false"):
        raise ConfigError(
            f"AUTH_DISABLED={raw_disabled!r} is invalid; allowed: exactly 'true' (serve without "
            "keys, for local development only) or 'false'/unset"
        )
    disabled = raw_disabled == "true"
    raw_keys = env.get("API_KEYS", "")
    if disabled:
        if raw_keys.strip():
            raise ConfigError("API_KEYS is set while AUTH_DISABLED=true; set only one of them")
        return {}, True
    if not raw_keys.strip():
        raise ConfigError(
            "API_KEYS is required: a JSON object mapping tenant name to API key, e.g. "
            '{"team-a": "<random key>"}; set AUTH_DISABLED=true to run without keys (local only)'
        )
    try:
        keys = json.loads(raw_keys)
    except ValueError:
        # Never echo the value: it is a secret.
        raise ConfigError("API_KEYS is not valid JSON; expected an object tenant -> key") from None
    if not isinstance(keys, dict) or not keys:
        raise ConfigError("API_KEYS must be a non-empty JSON object mapping tenant -> key")
    for tenant, key in keys.items():
        if not _TENANT_RE.match(tenant):
            raise ConfigError(
                f"API_KEYS tenant {tenant!r} is invalid; allowed: 1-64 of A-Z a-z 0-9 . _ - "
                "starting with a letter or digit"
            )
        if not isinstance(key, str) or len(key) < _MIN_KEY_LENGTH or key != key.strip():
            raise ConfigError(
                f"API_KEYS key for tenant {tenant!r} must be a string of at least "
                f"{_MIN_KEY_LENGTH} characters without surrounding spaces"
            )
    if len(set(keys.values())) != len(keys):
        raise ConfigError("API_KEYS has the same key for two tenants; each tenant needs its own")
    return keys, False


def _model_dir(env: Mapping[str, str]) -> Path:
    raw_model_dir = env.get("MODEL_DIR", "").strip()
    if not raw_model_dir:
        raise ConfigError("MODEL_DIR is required: the directory written by python -m worker.build_model")
    model_dir = Path(raw_model_dir)
    for needed in ("model.onnx", "tokenizer.json", "manifest.json"):
        if not (model_dir / needed).is_file():
            raise ConfigError(
                f"MODEL_DIR={raw_model_dir!r} has no {needed}; build it with python -m worker.build_model --out DIR"
            )
    return model_dir


_BATCH_REQUIRED = ("QUEUE_URL", "BATCH_BUCKET", "BATCH_TABLE")


def load_batch_settings(env: Mapping[str, str], required: bool) -> BatchSettings | None:
    """The batch storage settings; None when none of them is set and `required` is False (the API)."""
    if not required and not any(env.get(name, "").strip() for name in _BATCH_REQUIRED):
        return None
    return _batch_settings(env, required)


def _batch_settings(env: Mapping[str, str], required: bool) -> BatchSettings:
    present = [name for name in _BATCH_REQUIRED if env.get(name, "").strip()]
    missing = [name for name in _BATCH_REQUIRED if name not in present]
    if missing:
        raise ConfigError(
            f"{missing[0]} is required {'by the consumer' if required else 'once ' + present[0] + ' is set'}: "
            "QUEUE_URL (SQS queue URL), BATCH_BUCKET (S3 bucket) and BATCH_TABLE (DynamoDB table) go together"
        )
    queue_url = env["QUEUE_URL"].strip()
    if not re.fullmatch(r"https?://[^\s]+", queue_url):
        raise ConfigError(
            f"QUEUE_URL={queue_url!r} is not a queue URL; expected https://sqs.<region>.amazonaws.com/..."
        )
    prefix = env.get("BATCH_PREFIX", "batches/").strip()
    if prefix and not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}/", prefix):
        raise ConfigError(f"BATCH_PREFIX={prefix!r} is invalid; allowed: 1-200 of A-Z a-z 0-9 . _ / - ending in '/'")
    max_lines = _int(env, "MAX_BATCH_LINES", 50_000, 1, 1_000_000)
    return BatchSettings(
        queue_url=queue_url,
        bucket=_name(env, "BATCH_BUCKET", ""),
        table=_name(env, "BATCH_TABLE", ""),
        prefix=prefix,
        max_file_bytes=_int(env, "MAX_BATCH_FILE_BYTES", 20 * 1024 * 1024, 1024, 512 * 1024 * 1024),
        max_lines=max_lines,
        # Default 2 MiB, the synchronous endpoint's MAX_REQUEST_BYTES default: a line is one request,
        # and a body POST /v1/embeddings would refuse as too large is refused at upload here.
        max_line_bytes=_int(env, "MAX_BATCH_LINE_BYTES", 2 * 1024 * 1024, 256, 512 * 1024 * 1024),
    )


def load_consumer_settings(env: Mapping[str, str] | None = None, cpus: int | None = None) -> ConsumerSettings:
    """Parse and validate the consumer's environment; raises ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    model_dir = _model_dir(env)
    batch = _batch_settings(env, required=True)
    max_queued = _int(env, "MAX_QUEUED_INPUTS", 1024, 1, 1_000_000)
    max_inputs = _int(env, "MAX_INPUTS_PER_REQUEST", 256, 1, 2048)
    if max_inputs > max_queued:
        raise ConfigError(
            f"MAX_INPUTS_PER_REQUEST={max_inputs} is larger than MAX_QUEUED_INPUTS={max_queued}; "
            "a full line could never be queued"
        )
    # Short visibility + a heartbeat: a crashed task's batch is visible again (and resumed by another
    # consumer) at most VISIBILITY_TIMEOUT_SECONDS after its last beat; a beat every third of it lets
    # two in a row fail (an SQS blip) before the message could be taken from a live consumer.
    visibility = _int(env, "VISIBILITY_TIMEOUT_SECONDS", 30, 3, 43_200)
    heartbeat = _int(env, "HEARTBEAT_SECONDS", max(1, visibility // 3), 1, 43_200)
    if heartbeat * 3 > visibility:
        raise ConfigError(
            f"HEARTBEAT_SECONDS={heartbeat} is more than a third of VISIBILITY_TIMEOUT_SECONDS={visibility}; "
            "a beat must come at least three times per visibility timeout so that one or two failed beats "
            "do not hand a running batch to a second consumer"
        )
    drain = _float(env, "DRAIN_TIMEOUT_SECONDS", 90.0, 0.0, 3600.0)
    detected = available_cpus() if cpus is None else cpus
    return ConsumerSettings(
        model_dir=model_dir,
        batch=batch,
        inference_threads=_int(env, "INFERENCE_THREADS", detected, 1, 256),
        max_batch_size=_int(env, "MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE, 1, 256),
        max_batch_wait_ms=_float(env, "MAX_BATCH_WAIT_MS", 2.0, 0.0, 1000.0),
        max_queued_inputs=max_queued,
        max_inputs_per_request=max_inputs,
        max_input_tokens=_int(env, "MAX_INPUT_TOKENS", MODEL_MAX_TOKENS, 3, MODEL_MAX_TOKENS),
        token_budget_per_minute=_int(env, "BATCH_TOKEN_BUDGET_PER_MINUTE", 300_000, 1, 10**12),
        visibility_timeout_seconds=visibility,
        heartbeat_seconds=heartbeat,
        # At least 2: the MAX_RECEIVES-th receive ends the batch instead of running it (worker/consumer.py).
        max_receives=_int(env, "MAX_RECEIVES", 5, 2, 1000),
        retry_delay_seconds=_int(env, "RETRY_DELAY_SECONDS", 30, 0, 43_200),
        checkpoint_lines=_int(env, "CHECKPOINT_LINES", 100, 1, 100_000),
        drain_timeout_seconds=drain,
        wait_time_seconds=_int(env, "WAIT_TIME_SECONDS", 20, 0, 20),
    )


def load_settings(env: Mapping[str, str] | None = None, cpus: int | None = None) -> Settings:
    """Parse and validate the environment; raises ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    port = _int(env, "PORT", None, 1, 65535)
    model_dir = _model_dir(env)

    api_keys, auth_disabled = _api_keys(env)
    max_batch_size = _optional_int(env, "MAX_BATCH_SIZE", 1, 256)
    max_queued = _int(env, "MAX_QUEUED_INPUTS", 1024, 1, 1_000_000)
    max_inputs = _int(env, "MAX_INPUTS_PER_REQUEST", 256, 1, 2048)
    if max_inputs > max_queued:
        raise ConfigError(
            f"MAX_INPUTS_PER_REQUEST={max_inputs} is larger than MAX_QUEUED_INPUTS={max_queued}; "
            "a full request could never be queued"
        )
    detected = available_cpus() if cpus is None else cpus
    return Settings(
        port=port,
        model_dir=model_dir,
        api_keys=api_keys,
        auth_disabled=auth_disabled,
        rate_limit_requests_per_minute=_int(env, "RATE_LIMIT_REQUESTS_PER_MINUTE", 3000, 1, 10**9),
        token_budget_per_minute=_int(env, "TOKEN_BUDGET_PER_MINUTE", 300_000, 1, 10**12),
        max_queued_inputs=max_queued,
        max_batch_size=max_batch_size,
        max_batch_wait_ms=_float(env, "MAX_BATCH_WAIT_MS", 2.0, 0.0, 1000.0),
        max_inputs_per_request=max_inputs,
        max_input_tokens=_int(env, "MAX_INPUT_TOKENS", MODEL_MAX_TOKENS, 3, MODEL_MAX_TOKENS),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 2 * 1024 * 1024, 1024, 64 * 1024 * 1024),
        drain_timeout_seconds=_float(env, "DRAIN_TIMEOUT_SECONDS", 25.0, 0.0, 3600.0),
        inference_threads=_int(env, "INFERENCE_THREADS", detected, 1, 256),
        metrics_namespace=_name(env, "METRICS_NAMESPACE", "Gantry/Worker"),
        service_name=_name(env, "SERVICE_NAME", "gantry-worker"),
        batch=load_batch_settings(env, required=False),
        fault_inject=_fault(env),
    )


def _fault(env: Mapping[str, str]) -> str | None:
    raw = env.get("FAULT_INJECT", "").strip()
    if not raw:
        return None
    if raw not in FAULT_MODES:
        raise ConfigError(f"FAULT_INJECT={raw!r} is not a fault mode; allowed: {', '.join(FAULT_MODES)} (or unset)")
    return raw

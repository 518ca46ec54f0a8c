"""The sample worker's own start-up checks, run on a stack's container environment before deploying.

When a stack builds the bundled worker (`image.context: app`), its environment and API_KEYS must be
what the worker accepts at start, or the deploy ends in a crash loop. Rather than restate the
worker's rules here, this runs the worker's own config loader (`app/worker/config.py`, stdlib only)
on exactly the environment the task definition will carry, and also refuses variables the worker
never reads (a typo is otherwise silently ignored). A stack that deploys its own image skips this.
Security stance: the worker's messages name variables and tenants, never key values; AUTH_DISABLED,
which serves without keys, is for local runs only and is refused in a deployed stack.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

SAMPLE_CONTEXT = "app"
# The worker's own defaults for where its EMF metrics go (app/worker/config.py: METRICS_NAMESPACE and
# SERVICE_NAME); a test holds them against the worker's config loader.
WORKER_NAMESPACE_DEFAULT, WORKER_SERVICE_DEFAULT = "Gantry/Worker", "gantry-worker"
LOCAL_ONLY = ("AUTH_DISABLED",)
# A well-formed stand-in when the stack's own API_KEYS value is missing (that is reported elsewhere).
_STAND_IN_KEYS = '{"stand-in": "0123456789abcdef0123"}'


class _Recording(Mapping[str, str]):
    """An environment that remembers which variables the worker asked for."""

    def __init__(self, values: dict[str, str]):
        self._values = values
        self.read: set[str] = set()

    def add(self, key: str, value: str) -> None:
        self._values[key] = value

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def builds_sample_worker(context: str) -> bool:
    """True when the image context is the bundled worker's directory, however the path is written (./app/)."""
    return PurePosixPath(context) == PurePosixPath(SAMPLE_CONTEXT)


@dataclass(frozen=True, kw_only=True)
class WorkerMetrics:
    """The identity of the sample worker's service-level EMF metrics: namespace and {Service} dimension."""

    namespace: str
    service: str


def worker_metrics(variables: Mapping[str, str]) -> WorkerMetrics:
    """What the worker will read from the container environment it is given (its defaults otherwise)."""
    return WorkerMetrics(
        namespace=variables.get("METRICS_NAMESPACE", WORKER_NAMESPACE_DEFAULT),
        service=variables.get("SERVICE_NAME", WORKER_SERVICE_DEFAULT),
    )


@functools.cache
def _worker_config(project_dir: Path) -> ModuleType:
    """The worker's config module, loaded from its file (the Pulumi program does not install the app)."""
    path = project_dir / SAMPLE_CONTEXT / "worker" / "config.py"
    name = f"gantry_sample_worker_config_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through the module
    spec.loader.exec_module(module)
    return module


def worker_problems(
    project_dir: Path, variables: Mapping[str, str], gantry_set: Mapping[str, str], api_keys: str | None
) -> list[tuple[str, str]]:
    """(config key, problem) for what the sample worker would refuse or ignore at start."""
    problems = [
        (f"container.environment.{name}", "serves without API keys and is for local runs only; remove it")
        for name in LOCAL_ONLY
        if name in variables
    ]
    if problems:
        return problems
    env = _Recording({**variables, **gantry_set, "API_KEYS": api_keys or _STAND_IN_KEYS})
    refused = _refusal(project_dir, "load_settings", env)
    if refused is not None:
        variable, error = refused
        key = "secretValues.API_KEYS" if variable == "API_KEYS" else f"container.environment.{variable}"
        return [(key, f"the sample worker refuses to start: {error}")]
    read = env.read - {"MODEL_DIR", "API_KEYS"}
    for name in sorted(set(variables) - read):
        close = difflib.get_close_matches(name.upper(), sorted(read), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(
            (
                f"container.environment.{name}",
                f"is not read by the sample worker{hint} It reads: {', '.join(sorted(read - set(gantry_set)))}",
            )
        )
    return problems


def consumer_problems(
    project_dir: Path, variables: Mapping[str, str], gantry_set: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(config key, problem) for what the batch consumer (`python -m worker.consumer`) would refuse at start.

    The consumer gets the container's environment (the same limits a batch line is validated against)
    plus what gantry sets from `queue`; variables only the API reads are expected, so unread ones are
    not reported here (`worker_problems` reports what neither command reads)."""
    refused = _refusal(project_dir, "load_consumer_settings", _Recording({**variables, **gantry_set}))
    if refused is None:
        return []
    variable, error = refused
    key = f"container.environment.{variable}" if variable in variables else "queue"
    return [(key, f"the batch consumer refuses to start: {error}")]


def _refusal(project_dir: Path, loader: str, env: _Recording) -> tuple[str, str] | None:
    """(variable, message) when the worker's `loader` refuses `env`, else None."""
    config = _worker_config(project_dir)
    try:
        _load(config, loader, env)
    except config.ConfigError as error:
        named = re.match(r"[A-Z_]+", str(error))
        return (named.group(0) if named else "environment"), str(error)
    return None


def _load(config: ModuleType, loader: str, env: _Recording) -> Any:
    """What the worker's `loader` returns for `env`, or its ConfigError. MODEL_DIR is a fresh directory
    holding each file the loader asks for (it only checks that the model build's files exist)."""
    with tempfile.TemporaryDirectory() as model_dir:
        env.add("MODEL_DIR", model_dir)
        for _ in range(10):
            try:
                return getattr(config, loader)(env, cpus=1)
            except config.ConfigError as error:
                missing = re.search(r"has no (\S+?);", str(error))
                if missing and str(error).startswith("MODEL_DIR="):
                    (Path(model_dir) / missing.group(1)).write_text("{}")
                    continue
                raise
        raise config.ConfigError("MODEL_DIR: the worker asked for more model files than it ships")


def worker_body_limit(project_dir: Path, variables: Mapping[str, str], gantry_set: Mapping[str, str]) -> int:
    """The largest request body the sample worker accepts with this environment, by its own loader:
    MAX_REQUEST_BYTES, or MAX_BATCH_FILE_BYTES when that is larger and the Batch API is on. Call it only
    on an environment `worker_problems` accepted."""
    config = _worker_config(project_dir)
    settings = _load(config, "load_settings", _Recording({**variables, **gantry_set, "API_KEYS": _STAND_IN_KEYS}))
    return max(settings.max_request_bytes, settings.batch_file_limit)

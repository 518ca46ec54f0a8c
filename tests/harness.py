"""Pulumi mocks harness for the tests: the offline engine (`gantry/offline.py`) plus test-only stacks.

The engine lives in `gantry.offline` so `python -m gantry.plan` runs the program exactly as the tests
do; this module re-exports what the tests import and adds OWN_SERVICE, a team's own service instead of
the sample worker, which the whole-stack checks also run on.

`run_program` synthesizes each distinct variant once per test process and hands every caller its own
deep copy (whole-stack synthesis was most of the suite's time: ~40 tests ran the same committed stack
afresh). The cache key holds everything the program reads that can differ between two calls in one
process: the stack, the config and its secret keys, what the graph answers to reads (previous outputs,
other stacks' outputs, ECR's images and their tags), the environment (GITHUB_SHA, the hotfix variable) and what git says
of the checkout (HEAD and whether tracked files changed: the image's revision labels). The code itself is
fixed for a process, as the imported `components` already are. A run
that raises is not cached, and a caller's own half-filled graph is run as given. Security stance: the
cache holds only what the mocks return, in this process's memory; nothing is written anywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
from collections import OrderedDict
from pathlib import Path
from typing import Any

from gantry import offline
from gantry.offline import (
    ACCOUNT,
    AVAILABILITY_ZONES,
    AWSX_OUTPUTS,
    BOUNDARY_ARN,
    CLOUDFRONT_VPC_ORIGIN_SG,
    CLOUDFRONT_ZONE_ID,
    COMPUTED,
    CURRENT_RUN,
    DEV_REPOSITORY,
    DEV_REPOSITORY_URL,
    DEV_STACK,
    DIGEST,
    EARLIER_DIGEST,
    EARLIER_RUN,
    HOSTED_ZONES,
    PRIVATE_ROUTE_TABLES,
    PRIVATE_SUBNETS,
    PUBLIC_SUBNETS,
    REGION,
    ROOT,
    TEST_SECRET_VALUE,
    VERSION_ID,
    VPC_ID,
    CapturingMonitor,
    GantryMocks,
    Graph,
    Options,
    Res,
    run_component,
    run_with_mocks,
    set_config,
    with_test_secrets,
)

__all__ = [
    "ACCOUNT",
    "AVAILABILITY_ZONES",
    "AWSX_OUTPUTS",
    "CURRENT_RUN",
    "EARLIER_DIGEST",
    "EARLIER_RUN",
    "DEV_STACK",
    "DEV_REPOSITORY_URL",
    "DEV_REPOSITORY",
    "BOUNDARY_ARN",
    "CLOUDFRONT_VPC_ORIGIN_SG",
    "CLOUDFRONT_ZONE_ID",
    "COMPUTED",
    "DIGEST",
    "HOSTED_ZONES",
    "OWN_SERVICE",
    "OWN_SERVICE_CHANGES",
    "PRIVATE_ROUTE_TABLES",
    "PRIVATE_SUBNETS",
    "PUBLIC_SUBNETS",
    "REGION",
    "ROOT",
    "TEST_SECRET_VALUE",
    "VERSION_ID",
    "VPC_ID",
    "CapturingMonitor",
    "GantryMocks",
    "Graph",
    "Options",
    "Res",
    "run_component",
    "run_program",
    "run_with_mocks",
    "set_config",
    "synthesis_cache_info",
    "stack_config",
    "with_test_secrets",
]

# A team's own service instead of the sample worker (tests/own_service: the image contract and nothing
# else): the dev stack with that image, its port, its health command and its own secret. The
# whole-stack checks run on it too, so they are about the contract, not about the sample.
OWN_SERVICE = "own-service"
OWN_SERVICE_CHANGES: dict[str, Any] = {
    "gantry:image": {"context": "tests/own_service", "dockerfile": "tests/own_service/Dockerfile", "keepImages": 10},
    # The batch consumer is the sample worker's second command; a team's own image has none.
    "gantry:queue": {"enabled": False},
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
}


# Parsed stack files by (stack, checkout, the bytes of Pulumi.yaml and of the stack file): PyYAML parses in
# pure Python, and the config corpus alone read the same two files ~1400 times (most of its ~70 s). A file
# whose bytes change (a test writing its own stack file) is parsed afresh; a refused file is not kept.
_parsed_stacks: dict[tuple[str, str, bytes | None, bytes | None], dict[str, Any]] = {}


def _committed_config(stack: str, root: Path) -> dict[str, Any]:
    """`offline.stack_config(stack, root)`, parsed once per content; every caller gets its own copy."""
    contents = [p.read_bytes() if p.is_file() else None for p in (root / "Pulumi.yaml", root / f"Pulumi.{stack}.yaml")]
    key = (stack, str(root), contents[0], contents[1])
    if key not in _parsed_stacks:
        _parsed_stacks[key] = offline.stack_config(stack, root)
    return copy.deepcopy(_parsed_stacks[key])


def stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """What the CLI passes for a committed stack (for OWN_SERVICE: the dev stack with its changes)."""
    if stack == OWN_SERVICE:
        config = {**_committed_config("dev", root), **OWN_SERVICE_CHANGES}
        # An own image writes none of the sample worker's metrics, so it scales without its targets.
        config["gantry:autoscaling"] = {
            k: v
            for k, v in config["gantry:autoscaling"].items()
            if k not in ("inFlightPerTask", "tokensPerMinutePerTask")
        }
        return config
    return _committed_config(stack, root)


# A bound on what the cache holds: the suite's variants that repeat are far fewer; one-off variants
# (a config corpus case) would otherwise keep every graph alive for the whole session.
SYNTHESIS_CACHE_SIZE = 64
# Set by pytest for each test: never an input of the program.
_NOT_PROGRAM_INPUTS = frozenset({"PYTEST_CURRENT_TEST"})
_syntheses: OrderedDict[str, Graph] = OrderedDict()
# What a Graph holds before the run, for the program to read (part of the key); every other field is what
# the run recorded (resources, calls, exports, warnings, ...) and a hit hands back all of them, so a field
# the engine gains later is carried without a change here.
_READS = ("previous_outputs", "stack_outputs", "ecr_images", "ecr_tags")
_RECORDED = tuple(f.name for f in dataclasses.fields(Graph) if f.name not in _READS)
_stats = {"hits": 0, "misses": 0}


def _git_state() -> list[str]:
    """What the program's source revision reads (components/stack_config.py `_git`), as git prints it."""
    return [
        subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout
        for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
    ]


def _synthesis_key(stack: str, config: dict[str, Any], secret_keys: list[str], graph: Graph) -> str | None:
    """Everything the program reads that may differ within one process, as text; None: do not cache."""
    if any(getattr(graph, name) for name in _RECORDED):
        return None  # the caller's graph already holds a run: the program appends to it
    environment = sorted((k, v) for k, v in os.environ.items() if k not in _NOT_PROGRAM_INPUTS)
    # Config keeps its insertion order (no sort_keys): the program may render an object's keys in order.
    inputs = [
        stack,
        config,
        list(secret_keys),
        graph.previous_outputs,
        graph.stack_outputs,
        sorted(graph.ecr_images),
        sorted(graph.ecr_tags.items()),
        environment,
        _git_state(),
    ]
    try:
        return json.dumps(inputs)
    except TypeError:
        return None  # a value JSON cannot name exactly: run it, uncached


def _fill(graph: Graph, synthesized: Graph) -> Graph:
    """`graph` holding a private copy of everything `synthesized` recorded."""
    fresh = copy.deepcopy(synthesized)
    for name in _RECORDED:
        setattr(graph, name, getattr(fresh, name))
    return graph


def synthesis_cache_info() -> dict[str, int]:
    """How often `run_program` reused a synthesis in this process (hits), ran one (misses), and holds."""
    return {**_stats, "size": len(_syntheses)}


def run_program(
    stack: str, config: dict[str, Any] | None = None, secret_keys: list[str] | None = None, graph: Graph | None = None
) -> Graph:
    """Run the real __main__.py under mocks for a committed stack file, OWN_SERVICE, or an explicit config.

    Synthesized once per process per variant (see the module docstring); every call gets its own copy,
    so a test that changes its graph changes no other test's. Pulumi's runtime settings are left as the
    last real run set them: a test that needs them builds its own run (`run_with_mocks`)."""
    if config is None:
        config, secret_keys = with_test_secrets(stack_config(stack))
    secret_keys = secret_keys or []
    graph = graph if graph is not None else Graph()
    key = _synthesis_key(stack, config, secret_keys, graph)
    if key is not None and key in _syntheses:
        _stats["hits"] += 1
        _syntheses.move_to_end(key)
        return _fill(graph, _syntheses[key])
    _stats["misses"] += 1
    offline.run_program(stack, config, secret_keys, graph)
    if key is not None:
        _syntheses[key] = copy.deepcopy(graph)
        if len(_syntheses) > SYNTHESIS_CACHE_SIZE:
            _syntheses.popitem(last=False)
    return graph

"""The contract between the infrastructure and the image it deploys, checked from both sides.

The task definition each committed stack renders is fed to the worker's own config loader (the
code that runs at container start), and the Dockerfile is read for the user, port and health check
the task definition assumes. A renamed variable, a port changed on one side only, or a stack setting
the worker silently ignores fails here instead of in a crash-looping deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from components.settings import load_settings
from tests.harness import ROOT, TEST_SECRET_VALUE, run_program
from worker import config as worker_config


class RecordingEnv(Mapping):
    """An environment that remembers which variables the worker asked for."""

    def __init__(self, values: dict[str, str]):
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return self._values[key]

    def get(self, key, default=None):
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key):
        self.read.add(key)
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return stages[-1]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    # The worker's loader only checks that the build outputs exist; loading them is the app tests' job.
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    return tmp_path


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_worker_accepts_the_environment_each_stack_renders(stack, model_dir):
    graph = run_program(stack)
    (container,) = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").json("containerDefinitions")
    environment = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"] for s in container["secrets"]}
    assert secrets == {"API_KEYS"}
    env = RecordingEnv({**environment, "API_KEYS": TEST_SECRET_VALUE, "MODEL_DIR": str(model_dir)})

    settings = worker_config.load_settings(env, cpus=1)

    assert settings.port == container["portMappings"][0]["containerPort"]
    assert settings.drain_timeout_seconds < container["stopTimeout"]
    assert settings.api_keys == json.loads(TEST_SECRET_VALUE) and not settings.auth_disabled
    # Every variable the stack sets is one the worker reads: none is silently ignored.
    assert set(environment) - env.read == set()


def test_the_image_matches_what_the_task_definition_assumes():
    stage = final_stage((ROOT / "app" / "Dockerfile").read_text())
    defaults = load_settings({}, region="eu-west-1")
    instructions = dict(stage)
    assert instructions["USER"] == defaults.container.user
    # The task's writable /tmp volume inherits the image's /tmp only if the image declares it.
    assert json.loads(instructions["VOLUME"]) == ["/tmp"]
    assert instructions["EXPOSE"] == str(defaults.container.port)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for ins, args in stage if ins == "ENV")))
    assert env["PORT"] == str(defaults.container.port)
    assert json.loads(instructions["CMD"]) == ["python", "-m", "worker"]
    healthcheck = instructions["HEALTHCHECK"]
    assert healthcheck.endswith("CMD " + json.dumps(list(defaults.container.health_check_command[1:])))
    # The ECS health check runs this module inside the image.
    module = defaults.container.health_check_command[-1]
    assert (ROOT / "app" / Path(*module.split("."))).with_suffix(".py").is_file()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_keep_the_image_port(stack):
    graph = run_program(stack)
    (container,) = graph.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").json("containerDefinitions")
    expose = dict(final_stage((ROOT / "app" / "Dockerfile").read_text()))["EXPOSE"]
    assert str(container["portMappings"][0]["containerPort"]) == expose

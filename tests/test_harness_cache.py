"""The harness's synthesis cache (tests/harness.py `run_program`): reuse without one test seeing another's.

Most whole-stack tests read the same few variants, so `run_program` synthesizes each once per process.
What could go wrong is what these tests break on purpose: a caller's edit reaching the next caller, a
variant (other config, other previous outputs, another environment) answered with a cached stack, a
caller's own graph left empty on a hit, a hit missing anything a miss recorded (the warnings), a failed run
remembered, or the cache not reusing at all.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from gantry import offline
from tests import harness
from tests.harness import Graph, run_program, stack_config, synthesis_cache_info, with_test_secrets

SERVICE = "aws:ecs/service:Service"


def _comparable(value: Any) -> Any:
    """`value` as plain data, so that a deep copy compares equal: Pulumi's assets and archives (a Lambda's
    code) compare by identity, so they are compared by their type and attributes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, _comparable(vars(value)))
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return (type(value).__name__, _comparable(vars(value)))
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


@pytest.fixture
def program_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stacks the real program ran for (a cache hit runs nothing), with an empty cache."""
    runs: list[str] = []
    real = offline.run_program

    def counting(stack: str, *args: Any, **kwargs: Any) -> Graph:
        runs.append(stack)
        return real(stack, *args, **kwargs)

    monkeypatch.setattr(offline, "run_program", counting)
    monkeypatch.setattr(harness, "_syntheses", type(harness._syntheses)())
    return runs


def test_a_variant_is_synthesized_once_and_every_caller_gets_its_own_copy(program_runs: list[str]) -> None:
    first = run_program("dev")
    second = run_program("dev")
    assert program_runs == ["dev"]
    assert second is not first and second.resources is not first.resources
    assert [r.name for r in second.resources] == [r.name for r in first.resources]
    assert second.exports == first.exports and second.exports
    second_exports = set(second.exports)
    # A test that edits its graph (or a resource in it) changes no other test's view.
    service = second.one(SERVICE, "gantry-service")
    service.inputs["desiredCount"] = -1
    second.resources.clear()
    second.exports.clear()
    # The first caller's graph (the one the run filled) is the caller's too, not the cache's.
    first.one(SERVICE, "gantry-service").inputs["desiredCount"] = -2
    first.exports.clear()
    third = run_program("dev")
    assert third.one(SERVICE, "gantry-service").inputs["desiredCount"] not in (-1, -2)
    assert third.exports and third.exports.keys() == second_exports
    assert program_runs == ["dev"]
    assert synthesis_cache_info()["size"] == 1


def test_another_config_previous_outputs_or_environment_is_another_synthesis(
    program_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    committed = run_program("dev")
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:queue"] = {"enabled": False}
    without_queue = run_program("dev", config, secret_keys)
    assert committed.of_type("aws:sqs/queue:Queue") and not without_queue.of_type("aws:sqs/queue:Queue")
    # The key is the config's content: set back to the committed value, it is the committed synthesis.
    config["gantry:queue"] = stack_config("dev")["gantry:queue"]
    assert run_program("dev", config, secret_keys).of_type("aws:sqs/queue:Queue")
    assert len(program_runs) == 2
    # What the previous `up` exported is read by the program (an existing stack's controller).
    with_outputs = Graph(previous_outputs={"deploymentController": "ECS"})
    assert run_program("dev", graph=with_outputs) is with_outputs
    assert len(program_runs) == 3
    # The program reads GITHUB_SHA (the image's revision label): a new value is a new synthesis.
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    labelled = run_program("dev")
    assert len(program_runs) == 4
    image = labelled.one("docker-build:index:Image").inputs
    assert "0123456789abcdef0123456789abcdef01234567" in str(image)
    assert "0123456789abcdef0123456789abcdef01234567" not in str(committed.one("docker-build:index:Image").inputs)
    # And the committed variant is still the one it was, not the last one run.
    monkeypatch.delenv("GITHUB_SHA")
    again = run_program("dev")
    assert len(program_runs) == 4
    assert again.one("docker-build:index:Image").inputs == committed.one("docker-build:index:Image").inputs


def test_a_hit_fills_the_callers_own_graph(program_runs: list[str]) -> None:
    run_program("prod", graph=Graph(previous_outputs={"deploymentController": "CODE_DEPLOY"}))
    mine = Graph(previous_outputs={"deploymentController": "CODE_DEPLOY"})
    returned = run_program("prod", graph=mine)
    assert program_runs == ["prod"]
    assert returned is mine and mine.resources and mine.calls and mine.exports


def test_a_refused_run_is_not_remembered(program_runs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "main")
    for _ in range(2):
        graph = Graph()
        with pytest.raises(pulumi.RunError, match="GITHUB_SHA='main'"):
            run_program("dev", graph=graph)
        assert graph.resources == []
    assert program_runs == ["dev", "dev"]
    assert synthesis_cache_info()["size"] == 0


def test_a_graph_that_already_holds_a_run_is_run_as_given(program_runs: list[str]) -> None:
    graph = run_program("dev")
    count = len(graph.resources)
    run_program("dev", graph=graph)
    assert program_runs == ["dev", "dev"]
    assert len(graph.resources) == 2 * count


def test_a_hit_is_the_miss_in_every_field_the_run_recorded(program_runs: list[str]) -> None:
    # prod warns (its committed operations page, tests/test_init.py), so `warnings` is not trivially equal.
    miss = run_program("prod")
    hit = run_program("prod")
    assert program_runs == ["prod"]
    assert miss.warnings, "prod's committed stack warns: the comparison below must cover a warning"
    for field in dataclasses.fields(Graph):
        assert _comparable(getattr(hit, field.name)) == _comparable(getattr(miss, field.name)), field.name
    # Every field other than what the program reads is something a run records and a hit hands back.
    assert set(harness._READS) < {f.name for f in dataclasses.fields(Graph)}
    assert {"resources", "calls", "exports", "call_args", "warnings"} <= set(harness._RECORDED)


def test_a_graph_that_holds_only_warnings_is_run_as_given(program_runs: list[str]) -> None:
    run_program("prod")
    graph = Graph(warnings=["earlier"])
    run_program("prod", graph=graph)
    assert program_runs == ["prod", "prod"]
    assert graph.warnings[0] == "earlier" and len(graph.warnings) > 1


def test_a_stack_file_is_parsed_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[str] = []
    real = offline.stack_config

    def counting(stack: str, root: Path = offline.ROOT) -> dict[str, Any]:
        parses.append(stack)
        return real(stack, root)

    monkeypatch.setattr(offline, "stack_config", counting)
    monkeypatch.setattr(harness, "_parsed_stacks", {})
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(harness.ROOT / name, tmp_path / name)
    first = stack_config("dev", tmp_path)
    first["gantry:logs"]["retentionDays"] = -1  # a caller's edit stays the caller's
    assert stack_config("dev", tmp_path) == real("dev", tmp_path) and parses == ["dev"]
    # Another content is another parse, whatever the path: a test's own stack file is read as written.
    document = yaml.safe_load((tmp_path / "Pulumi.dev.yaml").read_text())
    document["config"]["gantry:logs"]["retentionDays"] = 7
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    assert stack_config("dev", tmp_path)["gantry:logs"]["retentionDays"] == 7 and parses == ["dev", "dev"]
    (tmp_path / "Pulumi.yaml").write_text((tmp_path / "Pulumi.yaml").read_text().replace("name: gantry", "name: other"))
    assert "other:logs" in stack_config("dev", tmp_path) and len(parses) == 3
    # A file the CLI would refuse is refused on every read, never remembered.
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  aws:region: [eu-west-1\n")
    for _ in range(2):
        with pytest.raises(offline.StackFileError, match="not valid YAML"):
            stack_config("dev", tmp_path)
    assert len(parses) == 5


def test_every_field_a_fresh_graph_fills_is_a_read_and_part_of_the_key(program_runs: list[str]) -> None:
    """A Graph field with a non-empty default (ECR's tags, other stacks' outputs) is what the program reads:
    left out of the reads, it would disable the cache; left out of the key, prod would plan against the
    wrong tags. Another run's evaluated tags are another synthesis."""
    fresh = Graph()
    assert {f.name for f in dataclasses.fields(Graph) if getattr(fresh, f.name)} <= set(harness._READS)
    run_program("prod")
    run_program("prod")
    assert program_runs == ["prod"]
    retagged = Graph(ecr_tags={k: v for k, v in Graph().ecr_tags.items() if k[1] != f"evaluated-{offline.EARLIER_RUN}"})
    assert retagged.ecr_tags != fresh.ecr_tags
    run_program("prod", graph=retagged)
    assert program_runs == ["prod", "prod"]


def test_a_fresh_graph_has_a_key_and_other_ecr_tags_are_another_key() -> None:
    """A field the engine pre-fills for the program to read must be part of the key (harness._READS): read
    as a recorded field, it made every run uncacheable (a new Graph already "held a run")."""
    config, secret_keys = with_test_secrets(stack_config("dev"))
    fresh = harness._synthesis_key("dev", config, secret_keys, Graph())
    assert fresh is not None
    untagged = Graph()
    untagged.ecr_tags = {}
    assert harness._synthesis_key("dev", config, secret_keys, untagged) not in (None, fresh)

"""The config corpus: every realistic stack-file mistake is refused by name, every valid oddity is accepted.

`tests/config_cases/mistakes.yaml` holds about two hundred mistakes a team makes editing a stack file,
each with the config key the refusal must name; `tests/config_cases/valid.yaml` holds unusual configs
that must still load. Each case starts from a committed stack file exactly as the CLI hands it to the
program (`stack_config` + `with_test_secrets` from the harness, objects JSON-encoded), applies its
overlay and calls `load_settings`. A mistake passes only if it raises `ConfigError` (any other
exception is a traceback the user would see) with a non-empty line for the expected key. Security
stance: no secret a case carries (secret values, credentials pasted into plain settings) may appear
anywhere in the error, because the error ends up in CI logs.

The interface this module holds `components.settings.load_settings` to:

    load_settings(raw, *, region, secret_keys, aws_facts=None, default_tags) -> Settings   # or ConfigError

- `raw`: `gantry:*` keys as the CLI passes them (objects and arrays JSON-encoded, plain strings as is).
- `region`: the `aws:region` config value, or None when it is not set.
- `secret_keys`: the config keys the CLI marked secret.
- `default_tags`: the `aws:defaultTags` object (None when the stack file has none).
- `aws_facts`: what the program's invokes (run before any resource is registered) returned, as
  `{"zones": {hosted_zone_id: zone_name}, "availability_zones": {region: [az_name, ...]}}`. Zone names
  carry no trailing dot; a zone id absent from `zones` does not exist in the account. It is passed only
  to cases that carry an `aws:` block; without it, checks that need AWS are not made.
- `ConfigError.problems`: one line per problem, `<namespace>:<key.path>: <message>`. A case's `expect`
  is met by a line starting with `expect + ": "`; for a list of scalars (`resources`, `ingressCidrs`,
  `healthCheckCommand`, ...) a line naming the element, `expect[<i>]: `, also counts. A case with
  `did_you_mean` additionally needs that line to say `did you mean '<key>'`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.settings import ConfigError, load_settings
from tests.harness import TEST_SECRET_VALUE, Graph, run_program, stack_config, with_test_secrets

CASES_DIR = Path(__file__).resolve().parent / "config_cases"
MISTAKES: list[dict[str, Any]] = yaml.safe_load((CASES_DIR / "mistakes.yaml").read_text())
VALID: list[dict[str, Any]] = yaml.safe_load((CASES_DIR / "valid.yaml").read_text())
BASES = ("dev", "prod")
CASE_FIELDS = {"id", "class", "why", "base", "set", "merge", "raw", "secret_values", "secret_keys", "aws", "hidden"}
MISTAKE_FIELDS = CASE_FIELDS | {"expect", "did_you_mean"}
# Strings shorter than this are too common to prove a leak when they appear in a message.
_MIN_HIDDEN_LENGTH = 8
# Every class of mistake issue 6 lists must be in the corpus.
REQUIRED_CLASSES = (
    "blank-string", "image-path", "env-secret-name", "env-secret-value", "env-name", "policy-wildcard",
    "loose-type", "arn-whitespace", "cidr", "placeholder", "domain", "availability-zones",
    "health-check-command", "api-keys", "capacity-providers", "fargate-size", "port", "counts", "retention",
    "unknown-key", "endpoints", "secrets", "secret-values", "region", "container", "edge", "tags",
)  # fmt: skip
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

# Mistakes that also run through the whole program: one per class that needs no AWS lookup, so a
# refusal is shown to stop `__main__.py` before it registers a single resource.
WHOLE_PROGRAM_SAMPLE = (
    "health-path-whitespace",
    "image-context-missing",
    "env-db-pass",
    "env-value-url-with-password",
    "policy-secretsmanager-all-secrets",
    "policy-action-family-s3-put",
    "type-cpu-float",
    "arn-secret-trailing-newline",
    "cidr-ingress-without-prefix",
    "placeholder-account-111122223333",
    "health-command-empty",
    "api-keys-short-key",
    "capacity-all-weights-zero",
    "unknown-top-level-key",
    "region-unset",
    "own-image-inherits-the-sample-health-check",
    "default-tags-missing",
)


# --------------------------------------------------------------------------------------------------
# Building a case's config.
# --------------------------------------------------------------------------------------------------


def _steps(path: str) -> list[str | int]:
    """`secrets[1].name` -> ["secrets", 1, "name"]; the first step is the key under `gantry:`."""
    steps: list[str | int] = []
    for name, index in _PATH_TOKEN.findall(path):
        steps.append(int(index) if index else name)
    assert steps and isinstance(steps[0], str), f"bad path {path!r}"
    return steps


def _config_key(step: str) -> str:
    return step if ":" in step else f"gantry:{step}"


def _container(config: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """The object or list holding the last step of `path`, creating missing objects on the way."""
    steps = _steps(path)
    node: Any = config
    key: str | int = _config_key(str(steps[0]))
    for step in steps[1:]:
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
        key = step
    return node, key


def _assign(node: Any, key: str | int, value: Any) -> None:
    if isinstance(node, list) and key == len(node):
        node.append(value)
    else:
        node[key] = value


def _deep_merge(target: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def case_config(case: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The full config the CLI would pass (aws:* and gantry:* keys) and its secret keys.

    `set` replaces the value at a path (`container.healthCheckPath`, `secrets[1]`, `aws:region`; an
    index one past the end appends; `null` deletes), `merge` deep-merges objects into the base
    (`null` deletes a field), `raw` adds config keys verbatim as the CLI would pass them (strings are
    not JSON-encoded again), `secret_values` replaces `gantry:secretValues` and `secret_keys`
    overrides which keys are marked secret.
    """
    config = copy.deepcopy(stack_config(case["base"]))
    for path, value in (case.get("set") or {}).items():
        node, key = _container(config, path)
        if value is None:
            del node[key]
        else:
            _assign(node, key, copy.deepcopy(value))
    for path, value in (case.get("merge") or {}).items():
        node, key = _container(config, path)
        if not isinstance(node.get(key), dict):
            node[key] = {}
        _deep_merge(node[key], value)
    if "secret_values" in case:
        config["gantry:secretValues"] = copy.deepcopy(case["secret_values"])
        secret_keys = ["gantry:secretValues"]
    else:
        config, secret_keys = with_test_secrets(config)
    config.update(case.get("raw") or {})
    if "secret_keys" in case:
        secret_keys = list(case["secret_keys"])
    return config, secret_keys


def program_input(config: dict[str, Any]) -> dict[str, Any]:
    """What `__main__.py` hands load_settings: the `gantry:*` keys, JSON-encoded as the CLI encodes them."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if k.startswith("gantry:")}


def cli_view(case: dict[str, Any]) -> tuple[dict[str, Any], Any, list[str], Any]:
    config, secret_keys = case_config(case)
    return program_input(config), config.get("aws:region"), secret_keys, config.get("aws:defaultTags")


def aws_facts(case: dict[str, Any]) -> dict[str, Any] | None:
    facts = case.get("aws")
    if facts is None:
        return None
    return {"zones": dict(facts.get("zones") or {}), "availability_zones": dict(facts.get("availability_zones") or {})}


def load_case(case: dict[str, Any]):
    config, secret_keys = case_config(case)
    # As the program passes it (components/stack_config.py): the aws:defaultTags object, None when unset.
    kwargs: dict[str, Any] = {
        "region": config.get("aws:region"),
        "secret_keys": secret_keys,
        "default_tags": config.get("aws:defaultTags"),
    }
    facts = aws_facts(case)
    if facts is not None:
        kwargs["aws_facts"] = facts
    return load_settings(program_input(config), **kwargs)


def _secret_leaves(value: Any) -> list[str]:
    """The strings a secret value holds: itself, and the values (not the names) inside its JSON."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        return [value, *(_secret_leaves(decoded) if not isinstance(decoded, str) else [decoded])]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_leaves(v)]
    return [json.dumps(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def hidden_strings(case: dict[str, Any]) -> set[str]:
    """Every secret the case carries, which no error message may contain."""
    found = list(case.get("hidden") or [])
    config, _ = case_config(case)
    # secretValues maps secret names (shown in errors on purpose) to values (never shown).
    found += _secret_leaves(config.get("gantry:secretValues"))
    found += [v for k, v in (case.get("raw") or {}).items() if k.startswith("gantry:secretValues")]
    if "secret_values" not in case:
        found.append(TEST_SECRET_VALUE)
    return {s for s in found if isinstance(s, str) and len(s.strip()) >= _MIN_HIDDEN_LENGTH}


def expected_line(expect: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(expect)}(\[\d+\])?: (?P<message>.*)", re.DOTALL)


def refusal(case: dict[str, Any]) -> ConfigError:
    try:
        settings = load_case(case)
    except ConfigError as error:
        return error
    except Exception as exc:  # noqa: BLE001 - any other exception is exactly the failure being tested
        pytest.fail(f"traceback instead of a clear error: {type(exc).__name__}: {exc}")
    pytest.fail(f"accepted: expected a refusal naming {case['expect']} ({case['why']}); got {settings!r}")


# --------------------------------------------------------------------------------------------------
# The corpus itself.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cases, fields", [(MISTAKES, MISTAKE_FIELDS), (VALID, CASE_FIELDS)], ids=["mistakes", "valid"])
def test_corpus_cases_are_well_formed(cases: list[dict[str, Any]], fields: set[str]):
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    for case in cases:
        assert set(case) <= fields, (case["id"], set(case) - fields)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", case["id"]), case["id"]
        assert case["base"] in BASES, case["id"]
        assert isinstance(case["why"], str) and case["why"].strip() and "\n" not in case["why"].strip(), case["id"]
        assert case.get("class"), case["id"]
        # A case that changes nothing tests the committed stack, not a mistake. Compared as the program
        # sees it, so 1024.0 differs from 1024.
        assert cli_view(case) != cli_view({"base": case["base"]}), case["id"]


def test_mistakes_cover_the_corpus_size_and_every_class_the_issue_lists():
    assert len(MISTAKES) >= 190
    assert len(VALID) >= 20
    classes = {c["class"] for c in MISTAKES}
    for needed in REQUIRED_CLASSES:
        assert needed in classes, needed
    for case in MISTAKES:
        assert re.fullmatch(r"(gantry|aws):[A-Za-z0-9_.\-\[\]]+", case["expect"]), case["id"]


def test_overlays_reach_the_config_they_name():
    # The overlay machinery must do what the cases assume, or every case would test something else.
    case = {
        "base": "dev",
        "set": {"container.healthCheckPath": " ", "secrets[1]": {"name": "X", "create": True}, "aws:region": None},
        "merge": {"image": {"context": "worker", "forceDelete": None}},
        "raw": {"gantry:container.port": "8080"},
    }
    config, secret_keys = case_config(case)
    assert config["gantry:container"]["healthCheckPath"] == " "
    assert [s["name"] for s in config["gantry:secrets"]] == ["API_KEYS", "X"]
    assert config["gantry:secretValues"] == {"API_KEYS": TEST_SECRET_VALUE, "X": TEST_SECRET_VALUE}
    assert "aws:region" not in config and config["gantry:container.port"] == "8080"
    assert config["gantry:image"] == {"keepImages": 50, "context": "worker"}
    assert secret_keys == ["gantry:secretValues"]
    assert program_input(config)["gantry:container.port"] == "8080"
    assert json.loads(program_input(config)["gantry:image"]) == {"keepImages": 50, "context": "worker"}


# --------------------------------------------------------------------------------------------------
# Mistakes are refused, by name, without a traceback and without echoing a secret.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MISTAKES, ids=[c["id"] for c in MISTAKES])
def test_mistake_is_refused_naming_its_key(case: dict[str, Any]):
    error = refusal(case)
    pattern = expected_line(case["expect"])
    lines = [m for m in map(pattern.match, error.problems) if m]
    assert lines, f"no problem names {case['expect']} ({case['why']}); got {list(error.problems)}"
    assert any(m.group("message").strip() for m in lines), f"empty message for {case['expect']}"
    if "did_you_mean" in case:
        suggestion = re.compile(rf"did you mean\W+{re.escape(case['did_you_mean'])}\b", re.IGNORECASE)
        assert any(suggestion.search(m.group("message")) for m in lines), (case["did_you_mean"], lines)
    message = "\n".join([str(error), *error.problems])
    leaked = sorted(s for s in hidden_strings(case) if s in message)
    assert not leaked, f"the error echoes a secret: {leaked}"


# --------------------------------------------------------------------------------------------------
# Valid unusual configs are accepted.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_valid_unusual_config_is_accepted(case: dict[str, Any]):
    try:
        load_case(case)
    except ConfigError as error:
        pytest.fail(f"refused a valid config ({case['why']}): {list(error.problems)}")


# --------------------------------------------------------------------------------------------------
# The whole program stops before any resource exists.
# --------------------------------------------------------------------------------------------------


def test_whole_program_sample_is_drawn_from_the_corpus():
    by_id = {c["id"]: c for c in MISTAKES}
    assert len(set(WHOLE_PROGRAM_SAMPLE)) == len(WHOLE_PROGRAM_SAMPLE) >= 15
    for case_id in WHOLE_PROGRAM_SAMPLE:
        assert case_id in by_id, case_id
        assert "aws" not in by_id[case_id], f"{case_id} needs AWS facts the mocks do not give"
    assert len({by_id[i]["class"] for i in WHOLE_PROGRAM_SAMPLE}) >= 12


@pytest.mark.parametrize("case_id", WHOLE_PROGRAM_SAMPLE)
def test_mistake_stops_the_program_before_any_resource(case_id: str):
    case = next(c for c in MISTAKES if c["id"] == case_id)
    config, secret_keys = case_config(case)
    graph = Graph()
    with pytest.raises(pulumi.RunError) as info:
        run_program(case["base"], config, secret_keys, graph)
    assert graph.resources == [], [r.name for r in graph.resources]
    text = str(info.value)
    assert re.search(rf"(^|\s){re.escape(case['expect'])}(\[\d+\])?: \S", text, re.MULTILINE), text
    assert not sorted(s for s in hidden_strings(case) if s in text)

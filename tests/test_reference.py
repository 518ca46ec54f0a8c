"""Defaults said once: the settings models hold every default, and the generated reference renders it.

A field's docstring says why; its default, allowed values and bounds are read from the field by
`components.settings.reference`. These tests hold both halves: no docstring restates its field's default
(so a changed default cannot leave prose behind, as "4000 | Default 3000" once did), and a changed
default, Literal or bound changes the generated reference. They also hold that no settings module keeps
a hand-written tuple of a Literal's values next to the Literal.
"""

from __future__ import annotations

import importlib
import re
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from components.settings import reference
from components.settings.base import Section, between, one_of
from components.settings.edge import WafSettings
from components.settings.loader import CONFIG_KEYS

SETTINGS_MODULES = (
    "access",
    "deployment",
    "edge",
    "iam",
    "migration",
    "network",
    "operations",
    "queue",
    "tracing",
    "workload",
)
# "Default 600: ..." and "on by default" are how the prose restated defaults; "CloudFront's own default"
# (another system's value, the reason for ours) is a why.
_DEFAULT_WORD = re.compile(r"\bDefault\b|(?i:\bby default\b)")
# Quoted text is a citation of a source (AWS's documentation, an example), not a statement of ours.
_QUOTED = re.compile(r'"[^"]*"')


def _is_literal(annotation: typing.Any) -> bool:
    if typing.get_origin(annotation) is Literal:
        return True
    return any(_is_literal(a) for a in typing.get_args(annotation))


def restatements(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """`path: what it restates` for every field of `model` (nested models too) whose docstring restates
    its default: says "Default" or "by default", or names a non-Literal default value outside a quotation.
    A Literal's docstring may name each of its values, the default among them: that documents the choice."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        why = " ".join((field.description or "").split())
        if match := _DEFAULT_WORD.search(why):
            yield f"{path}: says {match.group(0)!r} ({why[:80]}...)"
        if field.default is not PydanticUndefined and not _is_literal(field.annotation):
            values = field.default if isinstance(field.default, tuple) else (field.default,)
            unquoted = _QUOTED.sub("", why)
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    continue
                if re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w]|\.\d)", unquoted):
                    yield f"{path}: names its default {value!r} ({why[:80]}...)"
        nested = reference._nested(field.annotation)
        if nested is not None:
            yield from restatements(nested, path)


def test_no_field_docstring_restates_its_default():
    found = [
        line
        for key, spec in CONFIG_KEYS.items()
        if spec.model is not None
        for line in restatements(spec.model, f"gantry:{key}")
    ]
    assert not found, "say why, not the default (the reference renders it):\n" + "\n".join(found)


class _Sample(Section):
    rate: int = between(3000, 10, 10_000)
    """Default 3000: the worker's rate."""
    window: int = between(300, 60, 600)
    """Counted over 300 seconds."""
    flag: bool = True
    """On by default."""
    mode: Literal["fast", "safe"] = "safe"
    """safe: checks first; fast: skips them."""
    cited: int = between(120, 1, 120)
    """Fargate's maximum ("the max stop timeout value is 120 seconds")."""


def test_the_restatement_check_names_each_kind_of_restatement():
    found = list(restatements(_Sample, "x"))
    assert [line.split(":")[0] for line in found] == ["x.rate", "x.rate", "x.window", "x.flag"], found
    assert "names its default 3000" in found[1] and "names its default 300" in found[2]


def _row(table: str, key: str) -> str:
    (line,) = [line for line in table.splitlines() if line.startswith(f"| `{key}` |")]
    return line


def test_a_changed_default_changes_the_generated_reference(monkeypatch: pytest.MonkeyPatch):
    key = "gantry:edge.waf.rateLimitPerIp"
    before = _row(reference.markdown_table(), key)
    assert "| `3000` |" in before
    monkeypatch.setattr(WafSettings.model_fields["rate_limit_per_ip"], "default", 4000)
    after = _row(reference.markdown_table(), key)
    assert "| `4000` |" in after and "3000" not in after, after
    # ...and the committed README, rendered from the old default, is then reported stale.
    assert reference.main([]) == 1


def test_the_type_column_renders_literals_bounds_and_listed_values():
    class Shape(Section):
        count: int = between(5, 2, 9)
        """Why five."""
        window: Annotated[int, one_of((60, 300))] = 60
        """Why a minute."""
        kind: Literal["canary", "linear"] = "canary"
        """Why a canary."""
        share: float | None = None
        """Why unset."""

    rows = {path: (type_name, default) for path, type_name, default, _ in reference.rows(Shape, "x")}
    assert rows == {
        "x.count": ("integer, 2 to 9", "`5`"),
        "x.window": ("integer, one of 60, 300", "`60`"),
        "x.kind": ("canary \\| linear", '`"canary"`'),
        "x.share": ("number", "none"),
    }


def test_the_committed_reference_shows_real_defaults_where_prose_once_stood_in():
    table = reference.markdown_table()
    # trafficPercent was `none` while DEFAULT_SHIFT held the 10 the program used.
    assert "| integer, 1 to 99 | `10` |" in _row(table, "gantry:deployment.trafficPercent")
    assert "| integer, 1 to 1440 | `5` |" in _row(table, "gantry:deployment.trafficIntervalMinutes")
    # Each alarm kind's route was only in prose ("Default page"); now it is the field's default.
    assert '| page \\| ticket \\| none | `"page"` |' in _row(table, "gantry:operations.severity.budgetActual")
    assert '| `"ticket"` |' in _row(table, "gantry:operations.severity.cpuHigh")


def _literals(annotation: typing.Any) -> Iterator[tuple[typing.Any, ...]]:
    if typing.get_origin(annotation) is Literal:
        yield typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if not isinstance(arg, str | int):
            yield from _literals(arg)


def _module_literals(module: types.ModuleType) -> list[tuple[typing.Any, ...]]:
    found: list[tuple[typing.Any, ...]] = []
    for value in vars(module).values():
        found.extend(_literals(value))
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
            for field in value.model_fields.values():
                found.extend(_literals(field.annotation))
    return found


@pytest.mark.parametrize("name", SETTINGS_MODULES)
def test_no_settings_module_restates_a_literal_as_a_tuple(name: str):
    module = importlib.import_module(f"components.settings.{name}")
    literals = _module_literals(module)
    restated = [
        constant
        for constant, value in vars(module).items()
        if constant.isupper()
        and isinstance(value, tuple)
        and any(set(value) == set(args) and value is not args for args in literals)
    ]
    assert not restated, f"{name}: derive {restated} from the Literal with typing.get_args, or remove them"

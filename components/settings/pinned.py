"""Stack files list departures from the defaults, plus the safety values a production stack pins on purpose.

A value a stack file restates is a second statement of the default: when the default improves, the stack
silently keeps the old one, and a reader cannot tell a choice from a copy. So a committed stack file
sets only what differs from the settings models' defaults, except the keys in `PINNED`. Those are the
safety values a production stack (prod) states even when they equal the default, so that the stack file
alone shows the protection it depends on, and a change of default cannot quietly take it away; each says
why. `restatements` names every other key a stack file sets to its default (the tests run it on each
committed stack file). Security stance: nothing here loosens or overrides a setting; it only reads a stack
file's config and the models' defaults.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from components.settings.base import NAMESPACE
from components.settings.loader import CONFIG_KEYS

PINNED: Mapping[str, str] = {
    "network.flowLogs": "the VPC's traffic record for incident forensics; prod never runs without it",
    "container.healthCheckCommand": (
        "prod promotes dev's image, which its own config cannot see, so it names that image's health command"
    ),
    "edge.mode": "the load balancer's exposure: behind CloudFront it is internal, reached only by its VPC origin",
    "edge.waf.enabled": "the web ACL in front of prod's edge; prod must keep it",
    "edge.waf.action": "block, not count: prod's WAF acts on what it matches",
    "loadBalancer.deletionProtection": (
        "`pulumi destroy` cannot remove prod's load balancer by accident; it also marks the stack as production"
    ),
    "loadBalancer.accessLogs": "every request to prod's load balancer is recorded",
    "loadBalancer.desyncMitigationMode": "ambiguous (request-smuggling) requests are refused, not merely monitored",
    "operations.paging": "a 5xx storm, unhealthy targets or missing tasks page on-call",
    "queue.enabled": "the Batch API is a second way for any tenant key to spend compute: prod opts in explicitly",
}
"""Config key (without the `gantry:` namespace) -> why a production stack states it even at its default."""


def _default(field: Any) -> Any:
    value = field.default_factory() if field.default_factory is not None else field.default
    return to_jsonable_python(value, by_alias=True)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _restated(model: type[BaseModel], raw: Mapping[str, Any], path: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias not in raw:
            continue
        value, key = raw[alias], f"{path}.{alias}"
        nested = _model_of(field.annotation)
        has_default = field.default is not PydanticUndefined or field.default_factory is not None
        if has_default and value == _default(field):
            yield key
            continue
        if nested is not None and isinstance(value, Mapping):
            yield from _restated(nested, value, key)
        elif nested is not None and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _restated(nested, item, f"{key}[{i}]")


def restatements(config: Mapping[str, Any]) -> list[str]:
    """Every key (`section.field`, nested as `a.b.c`, list items as `a[0].b`) that a stack file's config
    (its `config:` mapping, namespaced keys) sets to the settings' own default, PINNED keys included."""
    found: list[str] = []
    for section, spec in CONFIG_KEYS.items():
        raw = config.get(f"{NAMESPACE}:{section}")
        if spec.model is None or raw is None:
            continue
        if spec.is_list and isinstance(raw, list):
            for i, item in enumerate(raw):
                if isinstance(item, Mapping):
                    found.extend(_restated(spec.model, item, f"{section}[{i}]"))
        elif isinstance(raw, Mapping):
            found.extend(_restated(spec.model, raw, section))
    return found


def unpinned_restatements(config: Mapping[str, Any]) -> list[str]:
    """The restatements a stack file should delete: those PINNED does not ask for."""
    return [key for key in restatements(config) if key not in PINNED]


def _merged(defaults: Any, values: Any) -> Any:
    if isinstance(defaults, Mapping) and isinstance(values, Mapping):
        return {k: _merged(defaults.get(k), v) for k, v in {**defaults, **values}.items()}
    return values


def with_defaults(section: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Object section `section` (camelCase keys, as in a stack file) as a stack deploys it: the stack file's
    `values` over the settings' defaults, nested objects merged key by key. The reading of a stack file
    that lists only its departures."""
    model = CONFIG_KEYS[section].model
    if model is None or CONFIG_KEYS[section].is_list:
        raise ValueError(f"gantry:{section} is not an object section with defaults")
    return _merged(model().model_dump(by_alias=True, mode="json"), dict(values or {}))

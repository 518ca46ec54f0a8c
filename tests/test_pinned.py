"""Stack files list only departures from the defaults, plus the safety values prod pins on purpose.

`components.settings.pinned` names every key a stack file sets to its default; PINNED is the one list
of safety values a production stack states anyway. These tests hold the committed stack files to that
convention (each unpinned restatement is reported by key), hold prod to stating every pinned value,
and check the checker on a config made to restate.
"""

from __future__ import annotations

import pytest

from components.settings.loader import CONFIG_KEYS
from components.settings.pinned import PINNED, restatements, unpinned_restatements
from policy.rules import DEFAULT_PRODUCTION_STACKS
from tests.harness import ROOT, stack_config

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))


def test_both_committed_stacks_are_checked():
    assert STACKS == ["dev", "prod"]


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_file_lists_only_departures_from_the_defaults(stack: str):
    restated = unpinned_restatements(stack_config(stack))
    assert not restated, (
        f"Pulumi.{stack}.yaml restates the default of: {', '.join(restated)}. Delete them (the default applies), "
        "or, for a safety value production must state, add it to PINNED in components/settings/pinned.py with why"
    )


@pytest.mark.parametrize("stack", DEFAULT_PRODUCTION_STACKS)
def test_a_production_stack_states_every_pinned_safety_value(stack: str):
    config = stack_config(stack)
    missing = []
    for key in PINNED:
        section, *path = key.split(".")
        value = config.get(f"gantry:{section}")
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            missing.append(key)
    assert not missing, f"Pulumi.{stack}.yaml must state {', '.join(missing)} (PINNED: {[PINNED[k] for k in missing]})"


def test_every_pinned_key_is_a_setting_and_says_why():
    for key, why in PINNED.items():
        section, *path = key.split(".")
        model = CONFIG_KEYS[section].model
        for name in path:
            assert model is not None, key
            fields = {f.alias or n: f for n, f in model.model_fields.items()}
            assert name in fields, f"PINNED {key}: no such setting"
            nested = fields[name].annotation
            model = nested if isinstance(nested, type) and hasattr(nested, "model_fields") else None
        assert why.strip(), key


def test_restatements_names_each_key_set_to_its_default_and_nothing_else():
    config = {
        "aws:region": "eu-west-1",
        "gantry:network": {"availabilityZones": 2, "cidrBlock": "10.20.0.0/16"},
        "gantry:edge": {"mode": "cloudfront", "waf": {"rateWindowSeconds": 300, "rateLimitPerIp": 6000}},
        "gantry:loadBalancer": {
            "healthCheck": {"intervalSeconds": 15, "timeoutSeconds": 5, "healthyThreshold": 2, "unhealthyThreshold": 3}
        },
        "gantry:service": {
            "capacityProviders": [
                {"provider": "FARGATE", "base": 1, "weight": 1},
                {"provider": "FARGATE_SPOT", "weight": 3},
            ]
        },
        "gantry:secrets": [{"name": "API_KEYS", "create": False}],
        "gantry:deployment": {"strategy": "codedeploy", "trafficPercent": 10},
        "gantry:operations": {"severity": {"cpuHigh": "ticket", "p99Latency": "page"}},
    }
    assert sorted(restatements(config)) == sorted(
        [
            "network.availabilityZones",
            "edge.mode",
            "edge.waf.rateWindowSeconds",
            "loadBalancer.healthCheck",
            "service.capacityProviders[0].weight",
            "secrets[0].create",
            "deployment.trafficPercent",
            "operations.severity.cpuHigh",
        ]
    )
    # edge.mode is pinned: a stack may state it; the rest must go.
    assert "edge.mode" not in unpinned_restatements(config)
    assert len(unpinned_restatements(config)) == len(restatements(config)) - 1

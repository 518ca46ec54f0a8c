"""The benchmark's model-only ceiling: the sweep's best configurations are measured again, longer.

A ceiling picked as the best of many one-second samples is the luckiest sample, not the model's
speed; these check that model_ceiling.py re-measures exactly the sweep's top configurations, each
the way the sweep measured it, and that benchmark.py then compares servers with that measurement.
"""

from __future__ import annotations

import importlib.util

from conftest import APP_DIR
from test_benchmark_requirements import load_benchmark


def load_model_ceiling():
    spec = importlib.util.spec_from_file_location("gantry_model_ceiling", APP_DIR / "bench" / "model_ceiling.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWEEP = {
    "arrival": {"1": 100.0, "4": 300.0, "32": 280.0},
    "sorted": {"1": 110.0, "4": 350.0, "32": 290.0},
    "sorted_cells": {"128": 360.0, "256": 340.0},
}


def test_confirm_measures_the_top_configurations_again_and_keeps_the_best(monkeypatch):
    ceiling = load_model_ceiling()
    calls = []
    # The longer measurements disagree with the sweep's order: the sweep's winner was lucky.
    again = {("sorted_cells", 128): 330.0, ("sorted", 4): 345.0, ("sorted_cells", 256): 320.0}

    def fake_rate(run, texts, batch, seconds):
        order = "sorted" if texts == ["s"] else "arrival"
        calls.append((order, batch, seconds))
        return again[(order, batch)]

    def fake_rate_cells(run, texts, cells, seconds):
        assert texts == ["s"]  # runs of cells are cut from the length-sorted texts
        calls.append(("sorted_cells", cells, seconds))
        return again[("sorted_cells", cells)]

    monkeypatch.setattr(ceiling, "rate", fake_rate)
    monkeypatch.setattr(ceiling, "rate_cells", fake_rate_cells)
    result = ceiling.confirm(None, {"arrival": ["a"], "sorted": ["s"]}, SWEEP, seconds=10.0)
    assert sorted(calls) == [("sorted", 4, 10.0), ("sorted_cells", 128, 10.0), ("sorted_cells", 256, 10.0)]
    assert result == {"order": "sorted", "size": 4, "texts_per_s": 345.0, "seconds": 10.0}


def test_the_share_of_ceiling_uses_the_confirmed_measurement():
    benchmark = load_benchmark()
    assert benchmark.ceiling_of(SWEEP) == (360.0, "128 cells per run, sorted")
    confirmed = {**SWEEP, "confirmed": {"order": "sorted", "size": 4, "texts_per_s": 345.0, "seconds": 10.0}}
    assert benchmark.ceiling_of(confirmed) == (345.0, "batch 4, sorted")


def test_a_comparison_keeps_every_interleaved_pair_and_each_rounds_ceiling():
    ceiling = load_model_ceiling()
    # Round 2 ran on a busier host: both sides slower, their ratio unchanged.
    samples = {
        "sorted 16": {"before": [200.0, 100.0, 210.0], "after": [260.0, 130.0, 252.0]},
        "sorted 4": {"before": [190.0, 120.0, 200.0], "after": [200.0, 125.0, 280.0]},
    }
    summary = ceiling.summarize(samples)
    assert summary["configurations"]["sorted 16"]["ratios"] == [1.3, 1.3, 1.2]
    # A round's ceiling is its best configuration, whichever it is on each side.
    assert summary["ceiling"]["before"] == [200.0, 120.0, 210.0]
    assert summary["ceiling"]["after"] == [260.0, 130.0, 280.0]
    assert summary["ceiling"]["ratios"] == [1.3, 130.0 / 120.0, 280.0 / 210.0]
    assert summary["ceiling"]["median_ratio"] == 1.3


def test_a_comparison_measures_both_builds_on_every_configuration_in_turn(monkeypatch):
    ceiling = load_model_ceiling()
    calls = []
    monkeypatch.setattr(ceiling, "rate", lambda run, texts, size, seconds, clock: calls.append((run, size)) or 1.0)
    monkeypatch.setattr(
        ceiling, "rate_cells", lambda run, texts, cells, seconds, clock: calls.append((run, cells)) or 1.0
    )
    summary = ceiling.compare({"before": "b", "after": "a"}, {"sorted": ["s"]}, [4], seconds=1.0, rounds=2)
    one_round = [("b", 4), ("a", 4)] + [(run, cells) for cells in ceiling.CELL_CAPS for run in ("b", "a")]
    assert calls == one_round * 2
    assert set(summary["configurations"]) == {"sorted 4"} | {f"sorted_cells {cells}" for cells in ceiling.CELL_CAPS}

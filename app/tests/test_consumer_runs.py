"""The consumer's inference runs are the ones the batcher's calibrated cost model forms (issue 22).

The batch path was 22 % below online batch-32 requests on the same texts because the consumer's
batcher ran with the uncalibrated caps (runs up to 2048 cells, a guessed fixed cost) while the API's
is calibrated at start. Here a fake CPU (a fixed cost per run, a per-cell cost that doubles past 256
cells, as in test_batcher.py) is calibrated through `calibrate_runs`, a part of mixed-length lines
goes through the consumer's own line handling, and the runs the model is handed must equal what a
`BatchFormer` with the calibrated caps and overhead cuts from the same texts (sorted by length,
cheapest cut first) — and must differ from the uncalibrated cut, so that the test can fail.
Not timed: it compares runs, not speed (bench/batch_vs_online.py measures that).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson

from worker.batch_store import BatchStore
from worker.batcher import DEFAULT_RUN_OVERHEAD_CELLS, MAX_BATCH_CELLS, Batcher, BatchFormer, _Request
from worker.config import load_consumer_settings
from worker.consumer import Consumer, calibrate_runs
from worker.model import DIMENSIONS, Embedder


class _Tokenizer:
    """Token ids of a text of N words: [CLS], N word ids, [SEP] (the real tokenizer's shape)."""

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [[101, *range(1000, 1000 + len(text.split())), 102] for text in texts]


class _FakeCpu:
    def __init__(self) -> None:
        self.now = 0.0
        self.runs: list[list[list[int]]] = []

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        cells = len(batch) * max(map(len, batch))
        self.now += 0.002 + cells * (1e-5 if cells <= 256 else 2e-5)
        self.runs.append([list(ids) for ids in batch])
        return np.zeros((len(batch), DIMENSIONS), dtype=np.float32)


def _consumer(tmp_path: Path, batcher: Batcher) -> Consumer:
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    env = {
        "MODEL_DIR": str(tmp_path),
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "BATCH_BUCKET": "b",
        "BATCH_TABLE": "t",
        "BATCH_TOKEN_BUDGET_PER_MINUTE": str(10**9),
        # No wait window: every run is the cut's run holding the oldest text, so the order is exact.
        "MAX_BATCH_WAIT_MS": "0",
    }
    settings = load_consumer_settings(env, cpus=1)
    return Consumer(settings, cast(BatchStore, None), cast(Embedder, _Tokenizer()), batcher)


def _part(lengths: list[int]) -> list[tuple[bytes, int]]:
    lines = []
    for index, words in enumerate(lengths):
        body = {"model": "all-MiniLM-L6-v2", "input": " ".join(["word"] * words)}
        lines.append({"custom_id": f"c{index}", "method": "POST", "url": "/v1/embeddings", "body": body})
    return [(orjson.dumps(line), index) for index, line in enumerate(lines)]


def _cut(texts: list[list[int]], max_cells: int, overhead: float) -> list[list[list[int]]]:
    """The runs a BatchFormer with these caps takes from `texts` queued together, in order."""
    former = BatchFormer(32, max_cells, 0.0, overhead)
    for row, ids in enumerate(texts):
        former.add(ids, cast(_Request, None), row, 0.0)
    runs = []
    while len(former):
        runs.append([list(text.ids) for text in former.take(1.0)])
    return runs


async def _runs_of_a_part(tmp_path: Path, lengths: list[int]) -> tuple[list[Any], Any, list[bytes]]:
    cpu = _FakeCpu()
    batcher = Batcher(cpu.embed_ids, DIMENSIONS, 32, 0, 10_000)
    batcher.start()
    try:
        calibration = await calibrate_runs(batcher, cpu.embed_ids, 32, lambda: cpu.now)
        cpu.runs.clear()
        consumer = _consumer(tmp_path, batcher)
        outputs, errors = await consumer._embed_lines("team-a", "batch_1", 0, _part(lengths))
    finally:
        await batcher.stop()
    assert not errors
    return cpu.runs, calibration, outputs


def test_the_consumers_runs_are_the_calibrated_cost_models_cut_of_its_part(tmp_path: Path) -> None:
    generator = random.Random(22)
    # Mixed lengths, as bench/workloads.py's mix: queries, sentences and passages in one part.
    lengths = [generator.choice([3, 5, 8, 12, 20, 40, 60, 90, 120]) + generator.randrange(3) for _ in range(100)]
    runs, calibration, outputs = asyncio.run(_runs_of_a_part(tmp_path, lengths))
    assert calibration.max_cells == 256  # the fake CPU's cache cliff
    texts = _Tokenizer().token_ids([" ".join(["w"] * words) for words in lengths])
    expected = _cut(texts, calibration.max_cells, calibration.overhead_cells)
    assert runs == expected
    assert all(len(run) * max(map(len, run)) <= 256 for run in runs)
    assert max(map(len, runs)) > 1, "texts of one length must share runs"
    # The test can fail: without the calibration the batcher would cut this part differently.
    assert expected != _cut(texts, MAX_BATCH_CELLS, DEFAULT_RUN_OVERHEAD_CELLS)
    # Each line still gets its own answer, in input order.
    assert [orjson.loads(line)["custom_id"] for line in outputs] == [f"c{i}" for i in range(len(lengths))]

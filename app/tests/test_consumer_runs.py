"""The consumer's inference runs are the ones the batcher's calibrated cost model forms (issue 22).

The batch path was 22 % below online batch-32 requests on the same texts because the consumer's
batcher ran with the uncalibrated caps (runs up to 2048 cells, a guessed fixed cost) while the API's
is calibrated at start. Here a fake CPU (a fixed cost per run, a per-cell cost that doubles past 256
cells, as in test_batcher.py) is calibrated through `calibrate_runs`, a part of mixed-length lines
goes through the consumer's own line handling, and the runs the model is handed must equal what a
`BatchFormer` with the calibrated caps and overhead cuts from the same texts (sorted by length,
cheapest cut first) — and must differ from the uncalibrated cut, so that the test can fail.
The last test holds the other half of the fix: a part's writes run while the next part is embedded.
Not timed: it compares runs and the order of events, not speed (bench/batch_vs_online.py measures that).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson

from worker.batch_format import Checkpoint
from worker.batch_size import calibrate_runs
from worker.batch_store import BatchStore
from worker.batcher import DEFAULT_RUN_OVERHEAD_CELLS, MAX_BATCH_CELLS, Batcher, BatchFormer, _Request
from worker.consumer import Consumer
from worker.model import DIMENSIONS, Embedder
from worker_harness import consumer_settings


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


def _consumer(tmp_path: Path, batcher: Batcher, store: object = None, **env_overrides: str) -> Consumer:
    # No wait window: every run is the cut's run holding the oldest text, so the order is exact.
    env = {"BATCH_TOKEN_BUDGET_PER_MINUTE": str(10**9), "MAX_BATCH_WAIT_MS": "0"} | env_overrides
    settings = consumer_settings(tmp_path, **env)
    return Consumer(settings, cast(BatchStore, store), cast(Embedder, _Tokenizer()), batcher)


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


class _OverlapStore:
    """Holds the first part's upload until the model has been handed a text of the second part."""

    def __init__(self, data: bytes, second_part_started: threading.Event):
        self.data = data
        self.second_part_started = second_part_started
        self.overlapped: bool | None = None
        self.checkpoints: list[tuple[int, int]] = []

    def file_key(self, tenant: str, file_id: str) -> str:
        return f"{tenant}/{file_id}"

    def batch_prefix(self, tenant: str, batch_id: str) -> str:
        return f"{tenant}/{batch_id}/"

    def stream(self, key: str, start: int = 0):
        yield self.data[start:]

    def put_object(self, key: str, data: bytes) -> None:
        if self.overlapped is None:
            self.overlapped = self.second_part_started.wait(timeout=10)

    def save_checkpoint(self, tenant: str, batch_id: str, before: Checkpoint, after: Checkpoint) -> dict:
        self.checkpoints.append((before.next_line, after.next_line))
        return {"tenant": tenant, "id": batch_id, "status": "in_progress", "expires_at": time.time() + 3600}


def test_a_parts_writes_run_while_the_next_part_is_embedded(tmp_path: Path) -> None:
    lengths = [4] * 3 + [9] * 3 + [5] * 2
    data = b"".join(raw + b"\n" for raw, _ in _part(lengths))
    second_part_started = threading.Event()
    store = _OverlapStore(data, second_part_started)

    def embed_ids(batch: Sequence[Sequence[int]]) -> np.ndarray:
        if any(len(ids) == 9 + 2 for ids in batch):  # a text of the second part (lines 3-5)
            second_part_started.set()
        return np.zeros((len(batch), DIMENSIONS), dtype=np.float32)

    async def run() -> tuple[dict[str, Any], bool]:
        batcher = Batcher(embed_ids, DIMENSIONS, 32, 0, 10_000)
        batcher.start()
        try:
            consumer = _consumer(tmp_path, batcher, store, CHECKPOINT_LINES="3")
            item = {"tenant": "team-a", "id": "batch_1", "input_file_id": "file-1", "total": len(lengths)}
            return await consumer._run(item | {"status": "in_progress", "expires_at": time.time() + 3600})
        finally:
            await batcher.stop()

    _, finished = asyncio.run(run())
    assert finished
    assert store.overlapped is True, "the first part's upload did not overlap the second part's embedding"
    # Overlapped, and still recorded in order, each part after the one before it.
    assert store.checkpoints == [(0, 3), (3, 6), (6, 8)]

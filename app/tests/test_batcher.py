"""Unit tests for the length-aware batch former, the async batcher and the run-size calibration.

All with fake models and explicit clocks: no ONNX model, no timing. The former's decisions take
`now` as an argument, so the wait bound is checked by stepping a number, not by sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import numpy as np
import pytest

from worker.batch_size import CALIBRATION_WIDTH, calibrate, choose_cells
from worker.batcher import BUCKET_EDGES, Batcher, BatchFormer, bucket_of


class _Request:
    """Stands in for the batcher's per-request record; the former only carries it along."""


def _add(former: BatchFormer, lengths: list[int], now: float) -> list[tuple[int, int]]:
    """Queue one text per length; returns (length, row) pairs in the order added."""
    request = _Request()
    for row, length in enumerate(lengths):
        former.add([7] * length, request, row, now)
    return [(length, row) for row, length in enumerate(lengths)]


def _lengths(batch) -> list[int]:
    return [len(text.ids) for text in batch]


def test_buckets_cover_the_window_with_bounded_padding():
    assert bucket_of(1) == bucket_of(16) == 0
    assert bucket_of(17) == 1
    assert bucket_of(256) == len(BUCKET_EDGES) - 1
    assert bucket_of(10_000) == len(BUCKET_EDGES) - 1
    for low, high in itertools.pairwise(BUCKET_EDGES[1:]):
        assert high / low <= 1.5


def test_similar_lengths_are_grouped_and_padding_drops():
    former = BatchFormer(max_rows=4, max_cells=4096, max_wait_s=0.002)
    # Alternating queries and passages, as mixed traffic arrives.
    _add(former, [10, 200, 12, 230, 11, 210, 9, 205], now=0.0)
    batches = []
    while len(former):
        batches.append(_lengths(former.take(now=1.0)))
    assert batches == [[10, 12, 11, 9], [200, 230, 210, 205]]
    fifo_cells = 4 * 230 + 4 * 210  # arrival order: every run holds a passage
    grouped_cells = 4 * 12 + 4 * 230
    assert grouped_cells < 0.6 * fifo_cells


def test_single_length_traffic_is_plain_fifo():
    former = BatchFormer(max_rows=3, max_cells=4096, max_wait_s=0)
    request = _Request()
    for row in range(7):
        former.add([row] * 64, request, row, now=0.0)
    rows = [[text.row for text in former.take(now=0.0)] for _ in range(3)]
    assert rows == [[0, 1, 2], [3, 4, 5], [6]]


def test_cells_cap_bounds_rows_times_width():
    former = BatchFormer(max_rows=32, max_cells=512, max_wait_s=0)
    _add(former, [200] * 5, now=0.0)
    assert _lengths(former.take(now=0.0)) == [200, 200]
    # One text wider than the whole budget still runs, alone.
    former = BatchFormer(max_rows=32, max_cells=100, max_wait_s=0)
    _add(former, [256, 256], now=0.0)
    assert _lengths(former.take(now=0.0)) == [256]


def test_wait_bound_an_idle_text_runs_at_its_deadline_not_later():
    former = BatchFormer(max_rows=8, max_cells=4096, max_wait_s=0.005)
    _add(former, [12], now=10.0)
    assert former.deadline() == pytest.approx(10.005)
    assert not former.ready(now=10.004)
    assert former.take(now=10.004) == []
    assert former.ready(now=10.005)
    assert _lengths(former.take(now=10.005)) == [12]


def test_a_full_run_does_not_wait_for_the_window():
    former = BatchFormer(max_rows=4, max_cells=4096, max_wait_s=10.0)
    _add(former, [12, 13, 14], now=0.0)
    assert not former.ready(now=0.0)
    _add(former, [15], now=0.0)
    assert former.ready(now=0.0)
    assert _lengths(former.take(now=0.0)) == [12, 13, 14, 15]


def test_a_full_bucket_may_overtake_a_young_text_but_not_an_old_one():
    former = BatchFormer(max_rows=2, max_cells=4096, max_wait_s=0.005)
    _add(former, [200], now=0.0)
    _add(former, [10, 11, 12, 13], now=0.001)
    # Within the passage's window, the full run of queries goes first ...
    assert _lengths(former.take(now=0.002)) == [10, 11]
    # ... once its window is over, the passage goes next although a full run of queries waits.
    assert _lengths(former.take(now=0.005)) == [200]
    assert _lengths(former.take(now=0.005)) == [12, 13]


def test_no_starvation_a_long_text_behind_endless_short_ones():
    former = BatchFormer(max_rows=4, max_cells=4096, max_wait_s=0.002)
    _add(former, [10] * 6, now=0.0)
    _add(former, [250], now=0.0)
    now, runs_until_long = 0.0, None
    for run in range(1, 50):
        _add(former, [10] * 4, now=now)  # short texts keep arriving faster than they run
        batch = former.take(now=now)
        if 250 in _lengths(batch):
            runs_until_long = run
            break
        now += 0.001
    # Six short texts were ahead of it: it runs as soon as its window is over, not never.
    assert runs_until_long is not None and runs_until_long <= 4


def test_former_rejects_impossible_limits():
    with pytest.raises(ValueError, match="max_rows=0"):
        BatchFormer(max_rows=0, max_cells=10, max_wait_s=0)


def _fake_embed(calls):
    def embed_ids(batch):
        calls.append([len(ids) for ids in batch])
        # Each vector encodes its text (first id) so results can be traced back to inputs.
        return np.array([[float(ids[0]), float(len(ids)), 0, 0] for ids in batch], dtype=np.float32)

    return embed_ids


def test_batcher_returns_each_requests_vectors_in_its_own_order():
    async def scenario():
        calls = []
        batcher = Batcher(_fake_embed(calls), 4, max_batch_size=4, max_batch_wait_ms=20, max_queued_inputs=1000)
        batcher.start()
        requests = []
        for n in range(8):
            # Each request mixes a query and a passage, so its rows run in different batches.
            texts = [[n] * (5 + n), [100 + n] * (150 + n), [200 + n] * (8 + n)]
            requests.append((texts, batcher.submit(texts)))
        results = [(texts, await future) for texts, future in requests]
        await batcher.stop()
        return calls, results, batcher.stats

    calls, results, stats = asyncio.run(scenario())
    for texts, (embeddings, largest) in results:
        assert embeddings[:, 0].tolist() == [ids[0] for ids in texts]
        assert embeddings[:, 1].tolist() == [len(ids) for ids in texts]
        assert largest > 1
    # No run mixed a query with a passage.
    for lengths in calls:
        assert max(lengths) <= 1.5 * min(lengths) or max(lengths) <= 16
    assert stats.texts == 24 and stats.cells < 1.2 * stats.tokens


def test_batcher_limits_can_be_changed_while_running():
    async def scenario():
        calls = []
        batcher = Batcher(_fake_embed(calls), 4, max_batch_size=32, max_batch_wait_ms=50, max_queued_inputs=100)
        batcher.start()
        batcher.set_limits(max_batch_size=32, max_cells=40)
        await batcher.submit([[1] * 10 for _ in range(12)])
        with pytest.raises(ValueError, match="max_cells=0"):
            batcher.set_limits(max_batch_size=4, max_cells=0)
        await batcher.stop()
        return calls

    assert asyncio.run(scenario()) == [[10] * 4] * 3


def test_run_exclusive_uses_the_inference_thread():
    async def scenario():
        batcher = Batcher(_fake_embed([]), 4, max_batch_size=4, max_batch_wait_ms=0, max_queued_inputs=10)
        batcher.start()

        name = await batcher.run_exclusive(lambda: threading.current_thread().name)
        await batcher.stop()
        return name

    assert asyncio.run(scenario()).startswith("inference")


def test_choose_cells_takes_the_smallest_run_near_the_cheapest():
    assert choose_cells({32: 10.0, 64: 6.0, 128: 5.1, 256: 5.0, 512: 5.4}) == 128
    assert choose_cells({32: 1.0, 64: 2.0}) == 32
    assert choose_cells({32: 9.0, 1024: 5.0}, tolerance=1.0) == 1024
    with pytest.raises(ValueError, match="no measurements"):
        choose_cells({})
    with pytest.raises(ValueError, match="tolerance=0.5"):
        choose_cells({32: 1.0}, tolerance=0.5)


def test_calibrate_finds_the_cache_cliff_of_a_fake_cpu():
    """A fake model: a fixed cost per run, then a per-cell cost that doubles beyond 256 cells."""
    clock = [0.0]

    def embed_ids(batch):
        assert all(len(ids) == CALIBRATION_WIDTH for ids in batch)
        cells = len(batch) * CALIBRATION_WIDTH
        clock[0] += 0.002 + cells * (1e-5 if cells <= 256 else 2e-5)

    result = calibrate(embed_ids, clock=lambda: clock[0])
    assert sorted(result.seconds_per_cell) == [32, 64, 128, 256, 512, 1024]
    assert result.max_cells == 256

"""The run size that fits this CPU, measured once at start on the model itself.

A run's cost is set by its cells, rows x padded width: that is the M dimension of every weight
matmul in the graph. Per cell, small runs pay the fixed cost of dispatching hundreds of graph
nodes; large runs outgrow the CPU caches (the FFN activation alone is 6 KB per cell). Where the
sweet spot lies depends on the CPU — on an AVX-512 VNNI machine batch 4 beat batch 32 by 25-68 %
(issue 13), on the AVX2-only development VM they are within a few per cent — so a constant
chosen on one machine is wrong on another. `calibrate` times the model on synthetic 32-token
texts at 1, 2, ... 32 rows (32 to 1024 cells, best of two runs each, about 4000 cells in all:
under a second on one AVX2 core) and `choose_cells` picks the smallest run whose cost per cell is within 5 % of the
cheapest: the same throughput at the lowest latency. The same numbers give the batcher's cost
model its fixed cost per run (`overhead_cells`, in cells: the intercept of the run cost's line;
11 on the development VM's AVX2 core, about one short text). The worker does this on the inference thread
right after it reports healthy, so cold start does not pay for it (with one inference thread it
times the thread's CPU time, which requests arriving meanwhile cannot inflate); until it finishes (and always
when MAX_BATCH_SIZE is set) runs are capped at the configured rows and 2048 cells. Security
stance: the calibration feeds only synthetic token ids and logs only timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker import logs

if TYPE_CHECKING:
    from worker.batcher import Batcher

CALIBRATION_WIDTH = 32
CALIBRATION_ROWS = (1, 2, 4, 8, 16, 32)
REPEATS = 2
# Smallest run whose cost per cell is within this factor of the cheapest one.
TOLERANCE = 1.05
# Ordinary WordPiece ids (not [PAD]/[CLS]/[SEP]); the model's cost does not depend on which.
_CLS, _SEP, _FIRST_WORD = 101, 102, 1000


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per cell by run size (cells), and the run size and fixed run cost chosen from them."""

    seconds_per_cell: Mapping[int, float]
    max_cells: int
    overhead_cells: float


def choose_cells(seconds_per_cell: Mapping[int, float], tolerance: float = TOLERANCE) -> int:
    """Smallest cell count whose cost per cell is at most `tolerance` x the cheapest measured."""
    if not seconds_per_cell:
        raise ValueError("no measurements to choose a run size from")
    if tolerance < 1:
        raise ValueError(f"tolerance={tolerance} must be >= 1")
    cheapest = min(seconds_per_cell.values())
    return min(cells for cells, cost in seconds_per_cell.items() if cost <= cheapest * tolerance)


def overhead_cells(seconds_per_cell: Mapping[int, float]) -> float:
    """A run's fixed cost in cells, from the line through the smallest run and the cheapest per cell.

    With run cost = overhead x rate + cells x rate, the cost of the smallest run (c0 cells) and of
    the run cheapest per cell (c1) fix the line; its intercept over its slope is the overhead.
    Never negative (noise can make the smallest run look cheapest).
    """
    if not seconds_per_cell:
        raise ValueError("no measurements to derive a run overhead from")
    smallest = min(seconds_per_cell)
    cheapest = min(seconds_per_cell, key=lambda cells: seconds_per_cell[cells])
    if cheapest <= smallest:
        return 0.0
    small_cost, cheap_cost = smallest * seconds_per_cell[smallest], cheapest * seconds_per_cell[cheapest]
    rate = (cheap_cost - small_cost) / (cheapest - smallest)
    if rate <= 0:
        return 0.0
    return max(0.0, (small_cost - rate * smallest) / rate)


def synthetic_batch(rows: int, width: int = CALIBRATION_WIDTH) -> list[list[int]]:
    text = [_CLS, *range(_FIRST_WORD, _FIRST_WORD + width - 2), _SEP]
    return [list(text) for _ in range(rows)]


def calibrate(
    embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray],
    clock: Callable[[], float] = time.perf_counter,
    rows: Sequence[int] = CALIBRATION_ROWS,
    repeats: int = REPEATS,
) -> Calibration:
    """Time `embed_ids` on synthetic runs; blocking, so call it on the inference thread."""
    embed_ids(synthetic_batch(1))  # first run allocates ORT's buffers; not representative
    seconds_per_cell = {}
    for count in rows:
        batch = synthetic_batch(count)
        best = float("inf")
        for _ in range(repeats):
            started = clock()
            embed_ids(batch)
            best = min(best, clock() - started)
        seconds_per_cell[count * CALIBRATION_WIDTH] = best / (count * CALIBRATION_WIDTH)
    return Calibration(seconds_per_cell, choose_cells(seconds_per_cell), overhead_cells(seconds_per_cell))


async def calibrate_runs(
    batcher: Batcher, embed_ids: Callable[[Sequence[Sequence[int]]], Any], max_rows: int, clock: Callable[[], float]
) -> Calibration:
    """Calibrate on the batcher's inference thread (between runs) and give it the caps and overhead found.

    The consumer calls this before its first receive (the API's `_calibrate` takes the same steps).
    Uncalibrated, runs may reach 2048 cells, where this model does about a quarter fewer texts per
    second than at the calibrated size on the mixed workload; that was most of the batch path's gap
    to the online path (issue 22). The consumer submits a whole part at once, so the batcher's cut
    of its queue (sorted by length, runs priced rows x width + the calibrated overhead) sees the
    part's texts together, as it sees the texts of concurrent online requests. `max_rows`
    (MAX_BATCH_SIZE) still caps the rows: the calibration only lowers the cells and sets the overhead.
    """
    started = time.monotonic()
    result = await batcher.run_exclusive(calibrate, embed_ids, clock)
    batcher.set_limits(max_rows, result.max_cells, result.overhead_cells)
    logs.event(
        "batch_calibrated",
        max_cells=result.max_cells,
        overhead_cells=round(result.overhead_cells, 1),
        max_batch_size=max_rows,
        microseconds_per_cell={str(cells): round(cost * 1e6, 2) for cells, cost in result.seconds_per_cell.items()},
        seconds=round(time.monotonic() - started, 3),
    )
    return result

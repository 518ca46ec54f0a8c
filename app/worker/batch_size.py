"""The run size that fits this CPU, measured at start on the model itself, in idle time.

A run's cost is set by its cells, rows x padded width: that is the M dimension of every weight
matmul in the graph. Per cell, small runs pay the fixed cost of dispatching hundreds of graph
nodes; large runs outgrow the CPU caches (the FFN activation alone is 6 KB per cell). Where the
sweet spot lies depends on the CPU — on an AVX-512 VNNI machine batch 4 beat batch 32 by 25-68 %
(issue 13), on the AVX2-only development VM they are within a few per cent — so a constant
chosen on one machine is wrong on another. The calibration times the model on synthetic 32-token
texts at 1, 2, 4 ... 32 rows (32 to 1024 cells). The numbers give the batcher's cost model its
fixed cost per run (`overhead_cells`, in cells: the intercept of the run cost's line; about 10
on the development VM's AVX2 core, one short text), and `choose_cells` the smallest run whose
cost per cell is within 5 % of the line's best, so the fixed cost is at most 5 % of a run: the
same throughput at the lowest latency, capped where the caches make larger runs dearer.

Robust to a shared host (issue 23: six starts chose 256 or 512 cells and 10.5-26.9 cells of
overhead from best-of-two timings): every size is timed `REPEATS` times in interleaved rounds
(1, 2, 4 ... 32 rows, then again), so a burst of noise lands on all sizes alike instead of on one;
each size's cost is the least of its samples, because a shared host's noise only ever adds time
(another process's cache misses, a preempted core): the least of seven is the closest to the
undisturbed cost, where a median still moves with every burst that hits half the samples. The
overhead is the median of the estimates of every pair of sizes (Theil-Sen: one outlying size
cannot move it), and it is clamped to `OVERHEAD_BOUNDS`; the run size follows from that overhead, rounded to the nearest
measured size on a log scale (not from a threshold on two noisy sizes), and is clamped to
`CELLS_BOUNDS`.

It never delays a request: the worker runs it one synthetic run at a time on the inference
thread, each only when no text is waiting or running and none has arrived for
`QUIET_SECONDS` (`calibrate_when_idle`), so a request waits at most for the one synthetic run
(at most 1024 cells) that was already running when it arrived. Until it finishes (and always
when MAX_BATCH_SIZE is set) runs are capped at the configured rows and 2048 cells with a fixed
cost of 16 cells. With one inference thread it times that thread's CPU time, which requests and
other processes cannot inflate. Security stance: the calibration feeds only synthetic token ids
and logs only timings.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from worker import logs

if TYPE_CHECKING:
    from worker.batcher import Batcher

CALIBRATION_WIDTH = 32
CALIBRATION_ROWS = (1, 2, 4, 8, 16, 32)
# Samples per size, taken in interleaved rounds; the least of each size's samples is its cost.
REPEATS = 7
# Smallest run whose cost per cell is within this factor of the cheapest one.
TOLERANCE = 1.05
# What a measurement may conclude, whatever the noise: a run of at least 4 short texts and at most
# the memory bound, and a fixed run cost of at most a quarter of the largest run timed (the AVX2 VM
# measures about 11; a VNNI core, with cheaper cells, more).
CELLS_BOUNDS = (128, 2048)
OVERHEAD_BOUNDS = (0.0, 256.0)
# Idle time the worker waits for before each synthetic run, so that traffic always goes first.
QUIET_SECONDS = 0.25
# Ordinary WordPiece ids (not [PAD]/[CLS]/[SEP]); the model's cost does not depend on which.
_CLS, _SEP, _FIRST_WORD = 101, 102, 1000


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per cell by run size (cells), and the run size and fixed run cost chosen from them."""

    seconds_per_cell: Mapping[int, float]
    max_cells: int
    overhead_cells: float


def choose_cells(seconds_per_cell: Mapping[int, float], overhead: float, tolerance: float = TOLERANCE) -> int:
    """The run size at which the fixed run cost is `tolerance - 1` of a run's cost, not past the cache knee.

    On the run cost's line a run of c cells costs (overhead + c) x rate per run, so per cell it is
    within `tolerance` of the line's best exactly when c >= overhead / (tolerance - 1): the same
    throughput at the lowest latency. That target is taken to the nearest measured size on a log
    scale, so an overhead anywhere within a factor of 1.4 either way gives the same choice (the
    smallest size within 5 % of the cheapest measured one sat on a threshold and flipped between
    256 and 512 cells from start to start). It is capped at the knee, the largest size within
    `tolerance` of the cheapest per cell: beyond it the caches make cells dearer.
    """
    if not seconds_per_cell:
        raise ValueError("no measurements to choose a run size from")
    if tolerance <= 1:
        raise ValueError(f"tolerance={tolerance} must be > 1")
    cheapest = min(seconds_per_cell.values())
    knee = max(cells for cells, cost in seconds_per_cell.items() if cost <= cheapest * tolerance)
    sizes = sorted(seconds_per_cell)
    if overhead <= 0:
        return min(sizes[0], knee)
    target = math.log(overhead / (tolerance - 1))
    nearest = min(sizes, key=lambda cells: abs(math.log(cells) - target))
    return min(nearest, knee)


def overhead_cells(seconds_per_cell: Mapping[int, float]) -> float:
    """A run's fixed cost in cells, from the cost per cell as a line in 1 / cells.

    With run cost = (overhead + cells) x rate, the cost per cell is rate + overhead x rate / cells:
    a line in 1 / cells whose slope over its intercept is the overhead. Timing noise is a share of
    each run's cost, so in this form it is about the same at every size, and the small runs, where
    the overhead is a large share, decide it. Slope and intercept come from every pair of sizes up
    to the one cheapest per cell (beyond it the caches bend the line) at least a factor of 4 apart
    (closer pairs divide noise by a small difference); the result is the median of the pairs'
    overheads (Theil-Sen: one outlying size cannot move it), never negative.
    """
    if not seconds_per_cell:
        raise ValueError("no measurements to derive a run overhead from")
    cheapest = min(seconds_per_cell, key=lambda cells: seconds_per_cell[cells])
    sizes = sorted(cells for cells in seconds_per_cell if cells <= cheapest)
    pairs = [(small, large) for small in sizes for large in sizes if large >= 4 * small]
    if not pairs:
        pairs = [(small, large) for small in sizes for large in sizes if large > small]
    estimates = []
    for small, large in pairs:
        slope = (seconds_per_cell[small] - seconds_per_cell[large]) / (1 / small - 1 / large)
        rate = seconds_per_cell[large] - slope / large
        estimates.append(max(0.0, slope / rate) if rate > 0 else 0.0)
    return statistics.median(estimates) if estimates else 0.0


def robust_choice(samples: Mapping[int, Sequence[float]]) -> Calibration:
    """The run size and fixed run cost from repeated timings (seconds per run, by cells per run).

    The least timing per size, the Theil-Sen overhead, both clamped to their bounds (see the module
    docstring).
    """
    if not samples or not all(samples.values()):
        raise ValueError("every calibrated size needs at least one timing")
    seconds_per_cell = {cells: min(runs) / cells for cells, runs in sorted(samples.items())}
    overhead = min(max(overhead_cells(seconds_per_cell), OVERHEAD_BOUNDS[0]), OVERHEAD_BOUNDS[1])
    cells = min(max(choose_cells(seconds_per_cell, overhead), CELLS_BOUNDS[0]), CELLS_BOUNDS[1])
    return Calibration(seconds_per_cell, cells, overhead)


def synthetic_batch(rows: int, width: int = CALIBRATION_WIDTH) -> list[list[int]]:
    text = [_CLS, *range(_FIRST_WORD, _FIRST_WORD + width - 2), _SEP]
    return [list(text) for _ in range(rows)]


def plan(rows: Sequence[int] = CALIBRATION_ROWS, repeats: int = REPEATS) -> list[int]:
    """Row counts in the order they are timed: `repeats` interleaved rounds over every size."""
    if repeats < 1 or not rows:
        raise ValueError(f"repeats={repeats} must be >= 1 and rows={list(rows)} not empty")
    return [count for _ in range(repeats) for count in rows]


def timed_run(
    embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray], rows: int, clock: Callable[[], float]
) -> float:
    """Seconds of one synthetic run of `rows` texts; blocking, so call it on the inference thread."""
    batch = synthetic_batch(rows)
    started = clock()
    embed_ids(batch)
    return clock() - started


def calibrate(
    embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray],
    clock: Callable[[], float] = time.perf_counter,
    rows: Sequence[int] = CALIBRATION_ROWS,
    repeats: int = REPEATS,
) -> Calibration:
    """The whole calibration in one blocking call (scripts, tests); the worker uses `calibrate_when_idle`."""
    embed_ids(synthetic_batch(1))  # first run allocates ORT's buffers; not representative
    samples: dict[int, list[float]] = {}
    for count in plan(rows, repeats):
        samples.setdefault(count * CALIBRATION_WIDTH, []).append(timed_run(embed_ids, count, clock))
    return robust_choice(samples)


class IdleRunner(Protocol):
    """What `calibrate_when_idle` needs of the batcher: one call on its thread when it is idle."""

    async def run_when_idle(self, quiet_s: float, function: Callable[..., Any], *args: Any) -> Any: ...


async def calibrate_when_idle(
    runner: IdleRunner,
    embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray],
    clock: Callable[[], float] = time.perf_counter,
    rows: Sequence[int] = CALIBRATION_ROWS,
    repeats: int = REPEATS,
    quiet_s: float = QUIET_SECONDS,
) -> Calibration:
    """`calibrate`, one synthetic run at a time, each only once the batcher has been idle `quiet_s`."""
    await runner.run_when_idle(quiet_s, embed_ids, synthetic_batch(1))
    samples: dict[int, list[float]] = {}
    for count in plan(rows, repeats):
        seconds = await runner.run_when_idle(quiet_s, timed_run, embed_ids, count, clock)
        samples.setdefault(count * CALIBRATION_WIDTH, []).append(seconds)
    return robust_choice(samples)


async def calibrate_runs(
    batcher: Batcher, embed_ids: Callable[[Sequence[Sequence[int]]], Any], max_rows: int, clock: Callable[[], float]
) -> Calibration:
    """Calibrate on the batcher's inference thread in idle time and give it the caps and overhead found.

    The API calls it once its model is loaded; the consumer before its first receive.
    Uncalibrated, runs may reach 2048 cells, where this model does about a quarter fewer texts per
    second than at the calibrated size on the mixed workload; that was most of the batch path's gap
    to the online path (issue 22). The consumer submits a whole part at once, so the batcher's cut
    of its queue (sorted by length, runs priced rows x width + the calibrated overhead) sees the
    part's texts together, as it sees the texts of concurrent online requests. `max_rows`
    (MAX_BATCH_SIZE) still caps the rows: the calibration only lowers the cells and sets the overhead.
    """
    started = time.monotonic()
    result = await calibrate_when_idle(batcher, embed_ids, clock)
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

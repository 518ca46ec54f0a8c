"""Dynamic batching: merges the texts of concurrent requests into shared inference runs.

One ONNX run over several texts costs less than one run per text, so texts that arrive together
are embedded together — but a run costs what its padded shape costs (rows x the longest text),
so a 200-token passage batched with 10-token queries makes each query cost 200 tokens, and even
queries of 7 to 16 tokens padded to 16 waste a third of the run. The batcher therefore keeps the
waiting texts sorted by length and makes each run a stretch of neighbours in that order, chosen
with a cost model of a run: `rows x width + overhead_cells`, where the overhead is the fixed cost
of dispatching the graph once, in cells (measured at start by worker/batch_size.py: about one
short text on an AVX2 core). The queue is cut into the runs that cost least in total, so a run
holds texts of nearly one length unless merging two lengths saves more overhead than it pads;
runs are capped at `max_batch_size` rows and `max_cells` rows x width.

Which run: once the oldest waiting text has waited `max_batch_wait_ms`, the next run is the one
of that cut that holds it, always — so no text starves: it runs at the
latest when the texts that arrived before it have run (under load that is every run, and runs
form around the oldest text). Before that, only a run that is already full (its row or cell cap
reached, padded at most `MAX_EARLY_PADDING`) may go first; otherwise the batcher waits, at most
until that deadline, for more texts (the wait window only matters when the worker is nearly
idle: under load the queue fills runs by itself). Under single-length traffic this is exactly
FIFO batching. Results go back to each request in input order.

The model runs on a dedicated thread so the event loop keeps accepting and answering requests;
while one batch runs the next fills up, so under load batches grow by themselves. The queue is
bounded by `max_queued_inputs` texts (waiting plus running): `submit` refuses work beyond it at
once, so an overloaded task answers 503 immediately instead of letting requests time out in a
queue the load balancer cannot see. The class is independent of HTTP: any caller with token
ids (the API, a queue consumer) submits them and awaits the future. Work that must never delay a
request (the start-up calibration) goes to the same thread through `run_when_idle`, one call at a
time, only when no text has been waiting or running for a quiet spell.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from worker.background import cancel_and_wait

# Upper bound on rows x padded width per run whatever the CPU: attention memory grows with
# batch * length^2 (measured on one core: peak RSS 200 MB at 33 x 122 tokens, 170 MB at 16).
MAX_BATCH_CELLS = 2048

# A run's fixed cost in cells until the start-up calibration has measured this CPU's (and always
# when MAX_BATCH_SIZE is set): the development VM's AVX2 core measures 10, and a CPU with faster
# int8 arithmetic (VNNI) has a larger one in cells, as its per-cell cost is lower.
DEFAULT_RUN_OVERHEAD_CELLS = 16

# A full run may overtake the oldest text within its wait window only if its cells are at most
# this many times its real tokens (a run of 10- to 15-token texts, not queries padded to a passage).
MAX_EARLY_PADDING = 1.5

# How many runs' worth of texts on each side of the oldest one the cut of the queue looks at.
_CUT_REACH = 2


@dataclass
class _Request:
    future: asyncio.Future
    embeddings: np.ndarray
    remaining: int
    largest_batch: int = 0
    on_run: Callable[[], None] | None = None  # tracing's hook: called once, when a run first takes a text


@dataclass
class _Text:
    ids: Sequence[int]
    request: _Request
    row: int
    arrived: float
    seq: int  # arrival order
    taken: bool = False


class BatchFormer:
    """The pending texts and the rule that picks the next run; no I/O and no clock of its own.

    Callers pass `now` (any monotonic clock in seconds), which keeps every decision testable.
    """

    def __init__(
        self, max_rows: int, max_cells: int, max_wait_s: float, overhead_cells: float = DEFAULT_RUN_OVERHEAD_CELLS
    ):
        if max_rows < 1 or max_cells < 1 or max_wait_s < 0 or overhead_cells < 0:
            raise ValueError(
                f"max_rows={max_rows} and max_cells={max_cells} must be >= 1, max_wait_s={max_wait_s} "
                f"and overhead_cells={overhead_cells} >= 0"
            )
        self.max_rows = max_rows
        self.max_cells = max_cells
        self.max_wait_s = max_wait_s
        self.overhead_cells = overhead_cells
        # Waiting texts by (length, arrival); `_keys` mirrors `_sorted` for bisect.
        self._sorted: list[_Text] = []
        self._keys: list[tuple[int, int]] = []
        self._arrivals: deque[_Text] = deque()  # arrival order; taken texts are skipped lazily
        self._seq = 0
        self._memo_state: tuple | None = None
        self._memo_window: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, ids: Sequence[int], request: _Request, row: int, now: float) -> None:
        text = _Text(ids, request, row, now, self._seq)
        # Keys are unique and seq grows, so a new text goes after every waiting text of its length.
        index = bisect.bisect_right(self._keys, (len(ids), self._seq))
        self._keys.insert(index, (len(ids), self._seq))
        self._sorted.insert(index, text)
        self._arrivals.append(text)
        self._seq += 1

    def _oldest(self) -> _Text | None:
        while self._arrivals and self._arrivals[0].taken:
            self._arrivals.popleft()
        return self._arrivals[0] if self._arrivals else None

    def deadline(self) -> float:
        """When the oldest waiting text must run at the latest (its arrival + the wait window)."""
        oldest = self._oldest()
        if oldest is None:
            raise LookupError("no text is waiting")
        return oldest.arrived + self.max_wait_s

    def _rows_cap(self, width: int) -> int:
        return max(1, min(self.max_rows, self.max_cells // width))

    def _run_with(self, anchor: int) -> tuple[int, int]:
        """[start, end) in length order of the run holding text `anchor` in the cheapest cut of the queue.

        The texts around the anchor (sorted by length) are cut into consecutive runs so that
        the total cost, sum of rows x width + overhead_cells, is least: a dynamic program over
        where each run ends, leftmost-longest on ties so that equal lengths stay FIFO. Only
        `_CUT_REACH` runs' worth on each side take part: farther texts do not move the anchor's
        cut, and the work stays a few thousand steps however long the queue. It runs on the
        event loop once per run, so the inner loop reads plain local lists (widths, row caps)
        rather than calling a method per step: that was the largest named cost of the request
        path under load (issue 23).
        """
        keys, overhead = self._keys, self.overhead_cells
        max_rows, max_cells = self.max_rows, self.max_cells
        reach = _CUT_REACH * max_rows
        low, high = max(0, anchor - reach), min(len(keys), anchor + reach + 1)
        size = high - low
        widths = [key[0] for key in keys[low:high]]
        caps = [max(1, min(max_rows, max_cells // width)) for width in widths]
        # cost[i]: least cost of the window's texts i.. cut into runs; end[i]: where the first ends.
        cost = [0.0] * (size + 1)
        end = [size] * (size + 1)
        for i in range(size - 1, -1, -1):
            best, best_end = float("inf"), i + 1
            for j in range(i + 1, min(size, i + max_rows) + 1):
                width = widths[j - 1]
                if j - i > caps[j - 1]:
                    break  # wider runs hold fewer rows: no later end fits either
                total = (j - i) * width + overhead + cost[j]
                if total <= best:
                    best, best_end = total, j
            cost[i], end[i] = best, best_end
        start, target = 0, anchor - low
        while end[start] <= target:
            start = end[start]
        return low + start, low + end[start]

    def _first_full(self) -> tuple[int, int] | None:
        """[start, end) of the shortest texts that already fill a run padded at most MAX_EARLY_PADDING."""
        keys = self._keys
        tokens = 0  # of keys[start:end]
        start = 0
        for end in range(len(keys)):
            tokens += keys[end][0]
            width = keys[end][0]
            cap = self._rows_cap(width)
            while end - start + 1 > cap:
                tokens -= keys[start][0]
                start += 1
            if end - start + 1 == cap and cap * width <= MAX_EARLY_PADDING * tokens:
                return start, end + 1
        return None

    def _next_run(self, now: float) -> tuple[int, int] | None:
        oldest = self._oldest()
        if oldest is None:
            return None
        due = now >= oldest.arrived + self.max_wait_s
        # `ready` and then `take` ask the same question of the same queue: the answer depends only
        # on the queue (texts added, runs taken), the limits and whether the deadline has passed.
        state = (self._seq, len(self._keys), due, self.max_rows, self.max_cells, self.overhead_cells)
        if state == self._memo_state:
            return self._memo_window
        window: tuple[int, int] | None
        if due:
            window = self._run_with(bisect.bisect_left(self._keys, (len(oldest.ids), oldest.seq)))
        else:
            # Within the oldest text's window, a run that is already full need not wait for it.
            window = self._first_full()
        self._memo_state, self._memo_window = state, window
        return window

    def ready(self, now: float) -> bool:
        """True when a run should start now: a full run waits, or the oldest text's wait is over."""
        return self._next_run(now) is not None

    def take(self, now: float) -> list[_Text]:
        """The next run (empty if none is ready): its texts in arrival order."""
        window = self._next_run(now)
        if window is None:
            return []
        start, end = window
        batch = self._sorted[start:end]
        del self._sorted[start:end]
        del self._keys[start:end]
        for text in batch:
            text.taken = True
        return sorted(batch, key=lambda text: text.seq)


@dataclass
class BatchStats:
    """Running totals since start; `batches < texts` proves that requests were merged."""

    batches: int = 0
    texts: int = 0
    cells: int = 0  # rows x padded width, summed over runs
    tokens: int = 0  # real tokens, summed over runs; cells / tokens is the padding overhead


class QueueFull(Exception):
    """Accepting the request would exceed MAX_QUEUED_INPUTS."""


class Batcher:
    """Async front of a BatchFormer: `submit` token ids, await the future of their embeddings."""

    def __init__(
        self,
        embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray],
        dimensions: int,
        max_batch_size: int,
        max_batch_wait_ms: float,
        max_queued_inputs: int,
        on_batch: Callable[[int], None] | None = None,
        max_cells: int = MAX_BATCH_CELLS,
    ):
        self._embed_ids = embed_ids
        self._dimensions = dimensions
        self._max_queued = max_queued_inputs
        self._on_batch = on_batch
        self._former = BatchFormer(max_batch_size, min(max_cells, MAX_BATCH_CELLS), max_batch_wait_ms / 1000.0)
        self._outstanding = 0
        self._arrived = asyncio.Event()
        # Set while no text is waiting or running; `_busy_until` is when the last one was answered
        # (or arrived), on the loop's clock: idle-time work waits for both (`run_when_idle`).
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy_until = float("-inf")
        # One inference at a time: ORT already spreads a run over INFERENCE_THREADS cores, and a
        # second concurrent run would only split the same cores while adding memory.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None
        self.stats = BatchStats()

    @property
    def outstanding(self) -> int:
        """Texts accepted and not yet answered (queued or in the running batch)."""
        return self._outstanding

    def set_limits(self, max_batch_size: int, max_cells: int, overhead_cells: float | None = None) -> None:
        """Change the run caps and cost model (from a calibration); applies from the next run on."""
        if max_batch_size < 1 or max_cells < 1 or (overhead_cells is not None and overhead_cells < 0):
            raise ValueError(
                f"max_batch_size={max_batch_size} and max_cells={max_cells} must be >= 1, "
                f"overhead_cells={overhead_cells} >= 0"
            )
        self._former.max_rows = max_batch_size
        self._former.max_cells = min(max_cells, MAX_BATCH_CELLS)
        if overhead_cells is not None:
            self._former.overhead_cells = overhead_cells

    async def run_when_idle(self, quiet_s: float, function: Callable, *args):
        """Run `function(*args)` on the inference thread once no text has been waiting or running for `quiet_s`.

        For work that must never delay a request (the start-up calibration): a request that
        arrives while it runs waits for that one call only, then goes before any further one.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self._idle.wait()
            remaining = self._busy_until + quiet_s - loop.time()
            if remaining <= 0 and self._idle.is_set():
                return await loop.run_in_executor(self._executor, function, *args)
            await asyncio.sleep(max(0.0, remaining))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._executor.shutdown(wait=True)

    def has_room(self, count: int) -> bool:
        return self._outstanding + count <= self._max_queued

    def submit(self, token_ids: Sequence[Sequence[int]], on_run: Callable[[], None] | None = None) -> asyncio.Future:
        """Queue the texts of one request; the future resolves to (embeddings, largest batch).

        Raises QueueFull rather than exceed MAX_QUEUED_INPUTS.
        """
        count = len(token_ids)
        if not self.has_room(count):
            raise QueueFull
        loop = asyncio.get_running_loop()
        request = _Request(
            future=loop.create_future(),
            embeddings=np.empty((count, self._dimensions), dtype=np.float32),
            remaining=count,
            on_run=on_run,
        )
        now = loop.time()
        for row, ids in enumerate(token_ids):
            self._former.add(ids, request, row, now)
        self._outstanding += count
        self._idle.clear()
        self._busy_until = now
        self._arrived.set()
        return request.future

    async def _until_ready(self) -> None:
        """Wait for texts, then (bounded by the oldest text's deadline) for its run to fill."""
        loop = asyncio.get_running_loop()
        while not self._former.ready(loop.time()):
            self._arrived.clear()
            if not len(self._former):
                await self._arrived.wait()
                continue
            try:
                await asyncio.wait_for(self._arrived.wait(), max(0.0, self._former.deadline() - loop.time()))
            except TimeoutError:
                continue

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._until_ready()
            batch = self._former.take(loop.time())
            for text in batch:
                hook, text.request.on_run = text.request.on_run, None
                if hook is not None:
                    hook()
            await self._run_isolating(batch)

    async def _run_isolating(self, batch: list[_Text]) -> None:
        """Embed `batch`; if the run fails, bisect it by request so only the failing request fails.

        One text the model cannot take (or a fault it triggers) must not fail the requests that
        merely shared its run: a failed run of several requests is split into two halves of whole
        requests, each run again, until the failure is pinned to one request. That costs about
        2·log2(requests) extra runs, once, and only when a run has failed.
        """
        try:
            vectors = await self._embed(batch)
        except Exception as exc:  # a failed run fails its requests, never the batcher
            requests = list(dict.fromkeys(id(text.request) for text in batch))
            if len(requests) == 1:
                self._deliver(batch, None, exc)
                return
            first = set(requests[: len(requests) // 2])
            await self._run_isolating([text for text in batch if id(text.request) in first])
            await self._run_isolating([text for text in batch if id(text.request) not in first])
            return
        self._deliver(batch, vectors, None)

    async def _embed(self, batch: list[_Text]) -> np.ndarray:
        """One model run on the inference thread, counted in the stats whether it succeeds or not."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._embed_ids, [text.ids for text in batch])
        finally:
            self.stats.batches += 1
            self.stats.texts += len(batch)
            self.stats.cells += len(batch) * max(len(text.ids) for text in batch)
            self.stats.tokens += sum(len(text.ids) for text in batch)
            if self._on_batch is not None:
                self._on_batch(len(batch))

    def _deliver(self, batch: list[_Text], vectors: np.ndarray | None, error: Exception | None) -> None:
        self._outstanding -= len(batch)
        if self._outstanding == 0:
            self._busy_until = asyncio.get_running_loop().time()
            self._idle.set()
        for index, text in enumerate(batch):
            request = text.request
            if request.future.done():
                continue
            if error is not None or vectors is None:
                request.future.set_exception(error or RuntimeError("the model returned no vectors"))
                continue
            request.embeddings[text.row] = vectors[index]
            request.largest_batch = max(request.largest_batch, len(batch))
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result((request.embeddings, request.largest_batch))

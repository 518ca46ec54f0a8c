"""Dynamic batching: merges the texts of concurrent requests into shared inference runs.

One ONNX run over several texts costs less than one run per text, so texts that arrive together
are embedded together — but a run costs what its padded shape costs (rows x the longest text),
so a 200-token passage batched with 10-token queries makes each query cost 200 tokens. Texts
therefore wait in length buckets (`BUCKET_EDGES`: at most 1.5x padding above 32 tokens, and
never more than 16 tokens of padding for short texts), each in arrival order. A run is the
oldest texts of one bucket, up to `max_batch_size` rows and `max_cells` rows x width. Which
bucket: once the oldest waiting text has waited `max_batch_wait_ms`, its bucket, always — so no
text starves: it runs at the latest when the texts that arrived before it have run. Before that,
only a bucket that already fills a whole run may go first; otherwise the batcher waits, at most
until that deadline, for more texts (the wait window only matters when the worker is nearly
idle: under load the queue fills runs by itself). Under single-length traffic every text is in
one bucket and this is exactly FIFO batching. Results go back to each request in input order.

The model runs on a dedicated thread so the event loop keeps accepting and answering requests;
while one batch runs the next fills up, so under load batches grow by themselves. The queue is
bounded by `max_queued_inputs` texts (waiting plus running): `submit` refuses work beyond it at
once, so an overloaded task answers 503 immediately instead of letting requests time out in a
queue the load balancer cannot see. The class is independent of HTTP: any caller with token
ids (the API, a queue consumer) submits them and awaits the future.
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

# Upper edges (tokens, inclusive) of the length buckets; the last is the model's window.
BUCKET_EDGES = (16, 32, 48, 64, 96, 128, 192, 256)


def bucket_of(length: int) -> int:
    """Index of the length bucket of a text with `length` tokens (longer texts share the last)."""
    return min(bisect.bisect_left(BUCKET_EDGES, length), len(BUCKET_EDGES) - 1)


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
    seq: int  # arrival order across all buckets


class BatchFormer:
    """The pending texts and the rule that picks the next run; no I/O and no clock of its own.

    Callers pass `now` (any monotonic clock in seconds), which keeps every decision testable.
    """

    def __init__(self, max_rows: int, max_cells: int, max_wait_s: float):
        if max_rows < 1 or max_cells < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_rows={max_rows} and max_cells={max_cells} must be >= 1, max_wait_s={max_wait_s} >= 0"
            )
        self.max_rows = max_rows
        self.max_cells = max_cells
        self.max_wait_s = max_wait_s
        self._buckets: list[deque[_Text]] = [deque() for _ in BUCKET_EDGES]
        self._count = 0
        self._seq = 0

    def __len__(self) -> int:
        return self._count

    def add(self, ids: Sequence[int], request: _Request, row: int, now: float) -> None:
        self._buckets[bucket_of(len(ids))].append(_Text(ids, request, row, now, self._seq))
        self._seq += 1
        self._count += 1

    def _heads(self) -> list[deque[_Text]]:
        """Non-empty buckets, the one holding the oldest text first."""
        return sorted((bucket for bucket in self._buckets if bucket), key=lambda bucket: bucket[0].seq)

    def _plan(self, bucket: deque[_Text]) -> tuple[int, bool]:
        """How many of the bucket's oldest texts one run takes (at least one), and whether that run is full."""
        rows, width = 0, 0
        for text in bucket:
            next_width = max(width, len(text.ids))
            if rows and (rows + 1 > self.max_rows or next_width * (rows + 1) > self.max_cells):
                return rows, True
            rows, width = rows + 1, next_width
        return rows, rows >= self.max_rows or (rows + 1) * width > self.max_cells

    def deadline(self) -> float:
        """When the oldest waiting text must run at the latest (its arrival + the wait window)."""
        heads = self._heads()
        if not heads:
            raise LookupError("no text is waiting")
        return heads[0][0].arrived + self.max_wait_s

    def _next_bucket(self, now: float) -> deque[_Text] | None:
        heads = self._heads()
        if not heads:
            return None
        if now >= heads[0][0].arrived + self.max_wait_s:
            return heads[0]
        # Within the oldest text's window, a bucket that already fills a run need not wait for it.
        return next((bucket for bucket in heads if self._plan(bucket)[1]), None)

    def ready(self, now: float) -> bool:
        """True when a run should start now: some bucket fills a run, or the oldest text's wait is over."""
        return self._next_bucket(now) is not None

    def take(self, now: float) -> list[_Text]:
        """The next run (empty if none is ready): its texts in arrival order."""
        bucket = self._next_bucket(now)
        if bucket is None:
            return []
        batch = [bucket.popleft() for _ in range(self._plan(bucket)[0])]
        self._count -= len(batch)
        return batch


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
        # One inference at a time: ORT already spreads a run over INFERENCE_THREADS cores, and a
        # second concurrent run would only split the same cores while adding memory.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None
        self.stats = BatchStats()

    @property
    def outstanding(self) -> int:
        """Texts accepted and not yet answered (queued or in the running batch)."""
        return self._outstanding

    @property
    def max_batch_size(self) -> int:
        return self._former.max_rows

    @property
    def max_cells(self) -> int:
        return self._former.max_cells

    def set_limits(self, max_batch_size: int, max_cells: int) -> None:
        """Change the run caps (from a calibration); applies from the next run on."""
        if max_batch_size < 1 or max_cells < 1:
            raise ValueError(f"max_batch_size={max_batch_size} and max_cells={max_cells} must be >= 1")
        self._former.max_rows = max_batch_size
        self._former.max_cells = min(max_cells, MAX_BATCH_CELLS)

    async def run_exclusive(self, function: Callable, *args):
        """Run `function(*args)` on the inference thread, between batches, never during one."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

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
            vectors: np.ndarray | None = None
            error: Exception | None = None
            try:
                vectors = await loop.run_in_executor(self._executor, self._embed_ids, [text.ids for text in batch])
            except Exception as exc:  # a failed run fails its requests, never the batcher
                error = exc
            self.stats.batches += 1
            self.stats.texts += len(batch)
            self.stats.cells += len(batch) * max(len(text.ids) for text in batch)
            self.stats.tokens += sum(len(text.ids) for text in batch)
            if self._on_batch is not None:
                self._on_batch(len(batch))
            self._deliver(batch, vectors, error)

    def _deliver(self, batch: list[_Text], vectors: np.ndarray | None, error: Exception | None) -> None:
        self._outstanding -= len(batch)
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

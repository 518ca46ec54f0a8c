"""Dynamic batching: merges the texts of concurrent requests into one inference call.

One ONNX run over 32 short texts costs far less than 32 runs over one (about 510 vs 405 texts/s
on one core, and the gap widens with more threads), so requests that arrive together are
embedded together. Texts wait in one FIFO; a single asyncio task takes up to `max_batch_size`
of them — waiting at most `max_batch_wait` for more to arrive when the queue is short — and runs
the model on a dedicated thread so the event loop keeps accepting and answering requests. While
one batch runs, the next one fills up, so under load batches grow by themselves and the wait
only matters when the worker is nearly idle.

The queue is bounded by `max_queued_inputs` texts (waiting plus running): `submit` refuses work
beyond it at once, so an overloaded task answers 503 immediately instead of letting requests
time out in a queue the load balancer cannot see.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from worker.background import cancel_and_wait

# Upper bound on batch rows x padded length per run. Attention memory grows with
# batch * length^2, and for long texts the per-text cost dominates anyway: measured on one core,
# 16 x 122-token texts per run embed as fast as 33 while peak RSS drops from 200 to 170 MB.
# 32 texts of up to 64 tokens still share one run.
MAX_BATCH_CELLS = 2048


@dataclass
class _Request:
    future: asyncio.Future
    embeddings: np.ndarray
    remaining: int
    largest_batch: int = 0


@dataclass
class _Text:
    ids: Sequence[int]
    request: _Request
    row: int


@dataclass
class BatchStats:
    """Running totals since start; `batches < texts` proves that requests were merged."""

    batches: int = 0
    texts: int = 0


class QueueFull(Exception):
    """Accepting the request would exceed MAX_QUEUED_INPUTS."""


class Batcher:
    def __init__(
        self,
        embed_ids: Callable[[Sequence[Sequence[int]]], np.ndarray],
        dimensions: int,
        max_batch_size: int,
        max_batch_wait_ms: float,
        max_queued_inputs: int,
        on_batch: Callable[[int], None] | None = None,
    ):
        self._embed_ids = embed_ids
        self._dimensions = dimensions
        self._max_batch = max_batch_size
        self._max_wait = max_batch_wait_ms / 1000.0
        self._max_queued = max_queued_inputs
        self._on_batch = on_batch
        self._pending: deque[_Text] = deque()
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

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._executor.shutdown(wait=True)

    def has_room(self, count: int) -> bool:
        return self._outstanding + count <= self._max_queued

    def submit(self, token_ids: Sequence[Sequence[int]]) -> asyncio.Future:
        """Queue the texts of one request; the future resolves to (embeddings, largest batch).

        Raises QueueFull rather than exceed MAX_QUEUED_INPUTS.
        """
        count = len(token_ids)
        if not self.has_room(count):
            raise QueueFull
        request = _Request(
            future=asyncio.get_running_loop().create_future(),
            embeddings=np.empty((count, self._dimensions), dtype=np.float32),
            remaining=count,
        )
        self._pending.extend(_Text(ids, request, row) for row, ids in enumerate(token_ids))
        self._outstanding += count
        self._arrived.set()
        return request.future

    async def _gather(self) -> None:
        """Wait (bounded) for the queue to hold a full batch; returns early once it does."""
        deadline = asyncio.get_running_loop().time() + self._max_wait
        while len(self._pending) < self._max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Text]:
        batch = [self._pending.popleft()]
        width = len(batch[0].ids)
        while self._pending and len(batch) < self._max_batch:
            next_width = max(width, len(self._pending[0].ids))
            if next_width * (len(batch) + 1) > MAX_BATCH_CELLS:
                break
            width = next_width
            batch.append(self._pending.popleft())
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            if self._max_wait > 0 and len(self._pending) < self._max_batch:
                await self._gather()
            batch = self._take_batch()
            try:
                vectors = await loop.run_in_executor(
                    self._executor, self._embed_ids, [text.ids for text in batch]
                )
            except Exception as exc:  # a failed run fails its requests, never the batcher
                vectors, error = None, exc
            else:
                error = None
            self.stats.batches += 1
            self.stats.texts += len(batch)
            if self._on_batch is not None:
                self._on_batch(len(batch))
            self._deliver(batch, vectors, error)

    def _deliver(self, batch: list[_Text], vectors: np.ndarray | None, error: Exception | None) -> None:
        self._outstanding -= len(batch)
        for index, text in enumerate(batch):
            request = text.request
            if request.future.done():
                continue
            if error is not None:
                request.future.set_exception(error)
                continue
            request.embeddings[text.row] = vectors[index]
            request.largest_batch = max(request.largest_batch, len(batch))
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result((request.embeddings, request.largest_batch))

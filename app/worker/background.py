"""Background tasks on the worker's event loop (the batcher's loop, the metrics flusher).

Stopping one means cancelling it and waiting until it has really finished, so nothing it owns is
torn down underneath it; that sequence lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel `task` (if started) and return once it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""The consumer's heartbeat: renews its message's visibility every HEARTBEAT_SECONDS, and stops past the window.

A fake store records the calls (the real SQS calls are exercised by tests/test_batch_e2e.py, where
removing the beat lets a second consumer take a running batch). What only a unit test can hold
cheaply: a batch whose work hangs past its 24 h window is not held forever — the beat stops, the
message becomes visible, and the next receive ends the batch `expired` (worker/consumer.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

from worker.batch_store import BatchStore
from worker.batcher import Batcher
from worker.consumer import Consumer
from worker.model import Embedder
from worker_harness import consumer_settings


class _Store:
    def __init__(self) -> None:
        self.beats: list[tuple[str, int, float]] = []

    def set_visibility(self, receipt: str, seconds: int) -> None:
        self.beats.append((receipt, seconds, time.monotonic()))


def _consumer(tmp_path: Path, store: _Store) -> Consumer:
    settings = consumer_settings(tmp_path, VISIBILITY_TIMEOUT_SECONDS="3")
    assert settings.heartbeat_seconds == 1
    return Consumer(settings, cast(BatchStore, store), cast(Embedder, None), cast(Batcher, None))


async def _beat_for(consumer: Consumer, seconds: float) -> bool:
    """Run the heartbeat for `seconds`; True if it ended by itself."""
    beat = asyncio.ensure_future(consumer._heartbeat("receipt-1"))
    done, _ = await asyncio.wait({beat}, timeout=seconds)
    beat.cancel()
    return bool(done)


def test_the_heartbeat_renews_the_visibility_every_interval(tmp_path: Path) -> None:
    store = _Store()
    consumer = _consumer(tmp_path, store)
    consumer.window_ends = time.time() + 3600
    assert not asyncio.run(_beat_for(consumer, 2.5))
    assert [(receipt, seconds) for receipt, seconds, _ in store.beats] == [("receipt-1", 3), ("receipt-1", 3)]
    # Each beat renews the full visibility (3 s) every second: two beats may fail before the message is free.
    first, second = store.beats[0][2], store.beats[1][2]
    assert 0.8 < second - first < 1.5


def test_the_heartbeat_stops_once_the_window_has_passed(tmp_path: Path) -> None:
    store = _Store()
    consumer = _consumer(tmp_path, store)
    consumer.window_ends = time.time() + 1.5
    assert asyncio.run(_beat_for(consumer, 4.0)), "past the window the beat must end by itself"
    assert len(store.beats) == 1

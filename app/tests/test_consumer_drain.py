"""A drain's hand-back: drains never spend a receive, crashes and failures still count (issue 22).

A fake store records the queue calls (the real SQS path, a batch drained more often than
MAX_RECEIVES still completing, is app/tests/test_batch_e2e.py's). What a unit test holds cheaply:
the fresh message carries exactly the receives that counted — so a batch that crashed before a
drain is not given a fresh budget of attempts — and a failed send falls back to the old release.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import orjson

from worker.batch_store import BatchStore
from worker.batcher import Batcher
from worker.consumer import Consumer
from worker.model import Embedder
from worker_harness import consumer_settings


class _Store:
    def __init__(self, send_fails: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.send_fails = send_fails

    def send(self, tenant: str, batch_id: str, attempts: int = 0) -> None:
        if self.send_fails:
            raise ConnectionError("SQS is unreachable")
        self.calls.append(("send", tenant, batch_id, attempts))

    def delete(self, receipt: str) -> None:
        self.calls.append(("delete", receipt))

    def set_visibility(self, receipt: str, seconds: int) -> None:
        self.calls.append(("set_visibility", receipt, seconds))

    def note_error(self, tenant: str, batch_id: str, reason: str, statuses: tuple[str, ...]) -> None:
        self.calls.append(("note_error", batch_id))


def _consumer(tmp_path: Path, store: _Store) -> Consumer:
    settings = consumer_settings(tmp_path, MAX_RECEIVES="5")
    return Consumer(settings, cast(BatchStore, store), cast(Embedder, None), cast(Batcher, None))


def _message(receives: int, **body: Any) -> dict[str, Any]:
    return {
        "ReceiptHandle": "receipt-1",
        "Body": orjson.dumps({"tenant": "team-a", "batch_id": "batch_1", **body}).decode(),
        "Attributes": {"ApproximateReceiveCount": str(receives)},
    }


def test_a_drain_sends_a_fresh_message_carrying_the_receives_that_counted(tmp_path: Path) -> None:
    store = _Store()
    consumer = _consumer(tmp_path, store)
    # Two earlier messages' attempts were carried; this message's third receive is the drained one.
    message = _message(3, attempts=2)
    assert consumer._attempts(message) == 5
    asyncio.run(consumer._hand_back(message, "stopping"))
    # The drained receive does not count (5 - 1); the fresh message is sent before the old one goes.
    assert store.calls == [("send", "team-a", "batch_1", 4), ("delete", "receipt-1")]


def test_a_first_drain_carries_nothing_and_bad_counts_are_ignored(tmp_path: Path) -> None:
    store = _Store()
    consumer = _consumer(tmp_path, store)
    asyncio.run(consumer._hand_back(_message(1), "stopping"))
    assert store.calls == [("send", "team-a", "batch_1", 0), ("delete", "receipt-1")]
    assert consumer._attempts(_message(2, attempts="9")) == 2
    assert consumer._attempts(_message(2, attempts=-3)) == 2


def test_without_a_send_the_drain_releases_the_message_as_before(tmp_path: Path) -> None:
    store = _Store(send_fails=True)
    consumer = _consumer(tmp_path, store)
    asyncio.run(consumer._hand_back(_message(2), "stopping"))
    assert store.calls == [("note_error", "batch_1"), ("set_visibility", "receipt-1", 0)]

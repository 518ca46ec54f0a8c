"""One-line JSON records on stdout: request logs, lifecycle events and EMF metric documents.

In ECS the awslogs driver turns each stdout line into one CloudWatch Logs event, so every record
is a single line of JSON written with one call under a lock (metric documents are written from a
helper thread and must not interleave with request lines). Callers pass only safe fields: this
module never sees API keys or input texts, by construction of its callers.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import orjson

_lock = threading.Lock()


def write_line(line: bytes | str) -> None:
    """Write one already-serialised record followed by a newline, atomically w.r.t. other writers."""
    data = line.encode() if isinstance(line, str) else line
    with _lock:
        stream = sys.stdout.buffer
        stream.write(data + b"\n")
        # Flushed per line: a record still in a buffer when the task is killed is lost.
        stream.flush()


def event(name: str, **fields: Any) -> None:
    """Log a lifecycle or request event as JSON: {"ts", "event", ...fields}."""
    record = {"ts": round(time.time(), 3), "event": name, **fields}
    write_line(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))

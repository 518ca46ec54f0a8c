"""uvicorn, with SIGTERM turned into a graceful drain that exits 0.

ECS stops a task with SIGTERM and, stopTimeout seconds later, SIGKILL. Stock uvicorn closes the
listener at once and then re-raises the signal after shutting down, so the process dies "killed by
SIGTERM" (exit 143) and a racing health probe sees a refused connection. Here the first SIGTERM
(or SIGINT) only marks the app as draining: /health answers 503 "draining", new embedding
requests get 503 with `Connection: close`, and requests already accepted run to completion. As
soon as none is left — or DRAIN_TIMEOUT_SECONDS have passed, whichever is first — uvicorn's
normal shutdown closes the listener and connections and runs the lifespan shutdown (final metrics
flush), and the process exits 0. A second signal forces an immediate exit.
"""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn

from worker import logs
from worker.api import WorkerApp

# Longer than the ALB's default 60 s idle timeout: if the worker closed idle keep-alive
# connections first, the load balancer could send a request into a closing socket (a 502).
KEEP_ALIVE_SECONDS = 75


class _JsonLogHandler(logging.Handler):
    """Routes uvicorn's own log records (warnings and errors) into the JSON log stream."""

    def emit(self, record: logging.LogRecord) -> None:
        logs.event("log", level=record.levelname.lower(), logger=record.name, message=record.getMessage())


class DrainingServer(uvicorn.Server):
    def __init__(self, app: WorkerApp, host: str = "0.0.0.0"):
        settings = app.settings
        config = uvicorn.Config(
            app,
            host=host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            ws="none",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            # No route reads the client address or scheme, so X-Forwarded-* need not be parsed
            # into the scope on every request (uvicorn's middleware for it cost ~2 % of the loop).
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # The drain below already waited for in-flight work; this only bounds closing sockets.
            timeout_graceful_shutdown=5,
            backlog=2048,
        )
        super().__init__(config)
        self.app = app
        self.exit_code = 0
        self._drain_deadline: float | None = None
        handler = _JsonLogHandler(level=logging.WARNING)
        for name in ("uvicorn", "uvicorn.error", "asyncio"):
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.propagate = False
            logger.setLevel(logging.WARNING)

    def fail(self) -> None:
        """Stop the process with exit code 1 (the model could not be loaded)."""
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Deliberately not calling super(): it records the signal and re-raises it after shutdown.
        if self._drain_deadline is not None:
            logs.event("forced_exit", signal=sig, in_flight=self.app.in_flight)
            self.should_exit = True
            self.force_exit = True
            return
        self._drain_deadline = time.monotonic() + self.app.settings.drain_timeout_seconds
        self.app.begin_drain()

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self._drain_deadline is None:
            return False
        if self.app.in_flight == 0:
            logs.event("drained")
            return True
        if time.monotonic() >= self._drain_deadline:
            logs.event("drain_timeout", abandoned_requests=self.app.in_flight)
            self.force_exit = True
            return True
        return False

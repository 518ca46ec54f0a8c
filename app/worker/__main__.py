"""Entry point: `python -m worker` (run from app/, or with app/ on PYTHONPATH).

Validates the environment first: a bad or missing variable prints one clear line naming it (to
stderr, and as a JSON event to stdout for the log stream) and exits 2 before anything is loaded.
Then serves until SIGTERM and drains; exits 0 after a drain, 1 if the model could not load.
"""

from __future__ import annotations

import sys

from worker import logs, tracing
from worker.config import ConfigError, load_settings


def main() -> int:
    try:
        settings = load_settings()
        tracer = tracing.from_env()
    except ConfigError as error:
        logs.event("config_error", error=str(error))
        print(f"worker: configuration error: {error}", file=sys.stderr)
        return 2
    # Imported only after the configuration is known to be good: a config error should be fast.
    from worker.api import WorkerApp
    from worker.server import DrainingServer

    server: DrainingServer | None = None

    def on_fatal() -> None:
        # The app reports a fatal error only while serving, after `server` is assigned below.
        if server is not None:
            server.fail()

    app = WorkerApp(settings, on_fatal=on_fatal, tracer=tracer)
    server = DrainingServer(app)
    logs.event("starting", port=settings.port, settings=_public(settings))
    server.run()
    return server.exit_code


def _public(settings) -> dict:
    """Settings safe to log: everything except the keys (tenant names only)."""
    return {
        name: (str(value) if name == "model_dir" else value)
        for name, value in vars(settings).items()
        if name != "api_keys"
    } | {"tenants": sorted(settings.api_keys)}


if __name__ == "__main__":
    sys.exit(main())

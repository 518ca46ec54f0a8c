"""The guide's team service (docs/own-service.md): an API on $PORT with its own health path, /healthz.

Stdlib only. It stands for a team's service in its own repository: `tests/test_own_service_guide.py`
copies it outside the gantry checkout and follows the guide on it. It needs its two secrets (ECS injects
them as environment variables) and refuses to start without them, as a real service would.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRETS = ("UPSTREAM_TOKEN", "SIGNING_KEY")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        status, body = (200, {"status": "ok"}) if self.path == "/healthz" else (404, {"error": "not found"})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    missing = [name for name in SECRETS if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"missing secrets: {', '.join(missing)}")
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)  # noqa: S104 - in a container
    server.daemon_threads = False  # shutdown waits for requests in flight: the drain
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()

"""A minimal HTTP service that keeps gantry's image contract: PORT, GET /health, SIGTERM drain.

Stdlib only. It stands for "your own service" in the tests (a config that deploys it must pass every
whole-stack check) and in the README, where it shows the contract in forty lines.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        status, body = (200, {"status": "ok"}) if self.path == "/health" else (404, {"error": "not found"})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server signature
        print(json.dumps({"request": format % args}), flush=True)


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)  # noqa: S104 - in a container
    server.daemon_threads = False  # shutdown waits for requests in flight: the drain
    # SIGTERM (ECS stopping the task) stops accepting, lets in-flight requests finish, then exits 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()

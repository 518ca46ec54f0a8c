"""Container health check: `python -m worker.healthcheck` exits 0 if the worker is healthy, else 1.

The final image has no curl, so the ECS task definition's healthCheck runs this instead. It asks
GET http://127.0.0.1:$PORT/health with a short timeout and succeeds only on HTTP 200, i.e. the
model is loaded and the worker is not draining. Standard library only, so it starts in a few ms.
"""

from __future__ import annotations

import http.client
import os
import sys

TIMEOUT_SECONDS = 3.0


def check(port: int, timeout: float = TIMEOUT_SECONDS) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def main() -> int:
    try:
        port = int(os.environ["PORT"])
    except (KeyError, ValueError):
        print("healthcheck: PORT is not set to an integer", file=sys.stderr)
        return 1
    return 0 if check(port) else 1


if __name__ == "__main__":
    sys.exit(main())

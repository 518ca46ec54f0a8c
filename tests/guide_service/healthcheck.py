"""The in-image health command ECS runs (exec form): exit 0 when GET /healthz answers 200."""

import os
import sys
import urllib.request

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{os.environ['PORT']}/healthz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)

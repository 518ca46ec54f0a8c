"""The own-service fixture keeps gantry's image contract, checked the way a deploy would exercise it.

`tests/own_service` stands for a team's own image in the whole-stack tests (OWN_SERVICE in harness.py);
here it is run as a process (no Docker engine here): it serves on $PORT, its health command succeeds
only while it answers, SIGTERM drains it to exit 0, and hadolint passes its Dockerfile, whose final
stage declares what the task definition assumes.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness import OWN_SERVICE_CHANGES, ROOT
from tests.test_app_contract import final_stage

SERVICE = ROOT / "tests" / "own_service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_service_serves_reports_health_and_drains_on_sigterm():
    port = free_port()
    env = {"PORT": str(port), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "service.py"], cwd=SERVICE, env=env)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert response.status == 200 and json.load(response) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "the service never answered /health"
                time.sleep(0.1)
        check = subprocess.run([sys.executable, "healthcheck.py"], cwd=SERVICE, env=env, timeout=10)
        assert check.returncode == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    # With nothing listening, the health command fails: ECS would replace the task.
    assert subprocess.run([sys.executable, "healthcheck.py"], cwd=SERVICE, env=env, timeout=10).returncode == 1


def test_the_dockerfile_declares_what_the_task_definition_assumes():
    instructions = dict(final_stage((SERVICE / "Dockerfile").read_text()))
    container = OWN_SERVICE_CHANGES["gantry:container"]
    assert instructions["USER"] == "10001:10001"
    assert json.loads(instructions["VOLUME"]) == ["/tmp"]
    assert instructions["EXPOSE"] == str(container["port"])
    assert json.loads(instructions["CMD"]) == ["python", "service.py"]
    assert instructions["HEALTHCHECK"].endswith("CMD " + json.dumps(container["healthCheckCommand"][1:]))


def test_hadolint_passes_the_own_service_dockerfile():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([binary, str(SERVICE / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

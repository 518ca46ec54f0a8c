"""Helpers for the worker tests: run `python -m worker` as a real process and talk HTTP to it.

`Worker` wraps one worker subprocess (port, process, captured stdout JSON lines); `call`/`embed`
make single HTTP requests with the stdlib client so that what is tested is the wire protocol.
Kept apart from conftest.py so that test modules can import it by a name no other conftest has.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.config import ConsumerSettings, load_consumer_settings
from worker.healthcheck import check

APP_DIR = Path(__file__).resolve().parents[1]
MODEL = "all-MiniLM-L6-v2"
TENANT_KEYS = {"team-a": "key-a-0123456789abcdef", "team-b": "key-b-fedcba9876543210"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(model_dir: Path, port: int, **overrides: Any) -> dict[str, str]:
    """What a task definition would set, plus PATH; an override of None removes the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "API_KEYS": json.dumps(TENANT_KEYS),
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
        "TOKEN_BUDGET_PER_MINUTE": "100000000",
        "INFERENCE_THREADS": "1",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


@dataclass
class Worker:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict]:
        """Every line the worker wrote so far, parsed as JSON ({"unparsed": line} otherwise)."""
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"unparsed": raw})
        return lines

    def requests_logged(self) -> list[dict]:
        return [line for line in self.log_lines() if line.get("event") == "request" and line.get("path") != "/health"]

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit code; kill only if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def consumer_settings(tmp_path: Path, **env: str) -> ConsumerSettings:
    """Consumer settings for in-process tests: a placeholder model directory and a fake queue, `env` on top."""
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    base = {
        "MODEL_DIR": str(tmp_path),
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "BATCH_BUCKET": "b",
        "BATCH_TABLE": "t",
    }
    return load_consumer_settings(base | env, cpus=1)


def spawn(model_dir: Path, log_path: Path, popen_kwargs: dict | None = None, **overrides: Any) -> Worker:
    """Start `python -m worker` from app/ without waiting for health; stdout+stderr to log_path."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=APP_DIR,
            env=worker_env(model_dir, port, **overrides),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **(popen_kwargs or {}),
        )
    return Worker(process, port, log_path)


def wait_healthy(worker: Worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise AssertionError(
                f"worker exited with {worker.process.returncode}: {worker.log_path.read_text()[-2000:]}"
            )
        if check(worker.port, timeout=1.0):
            return
        time.sleep(0.05)
    raise AssertionError(f"worker not healthy after {timeout}s: {worker.log_path.read_text()[-2000:]}")


def call(
    worker: Worker,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = TENANT_KEYS["team-a"],
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns (status, lower-cased headers, parsed JSON body or None)."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=timeout)
    try:
        send_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            send_headers["authorization"] = f"Bearer {key}"
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, body=payload, headers=send_headers)
        response = connection.getresponse()
        data = response.read()
        parsed = json.loads(data) if data else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        connection.close()


def embed(worker: Worker, texts: Any, key: str | None = TENANT_KEYS["team-a"], timeout: float = 60.0, **fields: Any):
    """POST /v1/embeddings with the served model name, `input=texts` and any extra body fields."""
    body = {"model": MODEL, "input": texts, **fields}
    return call(worker, "POST", "/v1/embeddings", body, key=key, timeout=timeout)


def assert_openai_error(status: int, body: Any, expected_status: int, code: str | None = None) -> dict:
    """Check OpenAI's error body shape; returns the inner error object."""
    assert status == expected_status, f"{status}: {str(body)[:300]}"
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error

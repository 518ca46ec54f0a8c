"""Shared fixtures for the worker tests: the model, built once, and real worker processes.

`model_dir` (session): $MODEL_DIR if set (CI builds once and exports it), else `<repo>/build/model`,
rebuilt with `python -m worker.build_model` only when missing or when a build input changed (the
cache key hashes build_model.py, the calibration set, the golden data and requirements-build.txt).
The check and the build run under a file lock (build/model.lock), so that under pytest-xdist exactly one
worker builds and the others wait, then reuse what it built.
`start_worker` runs `python -m worker` from app/ as a subprocess on a free port — the same command
the image's CMD runs — and stops it at teardown; `shared_worker` is one such worker per module for
tests that do not change its state. `worker` comes from the repository's editable install
(`pip install -e .`), and `worker_harness` from this directory, which pytest puts on the path (its
rootdir-relative "prepend" import of a test directory that is not a package).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

TESTS_DIR = Path(__file__).resolve().parent
APP_DIR = TESTS_DIR.parent
REPO_DIR = APP_DIR.parent

from worker_harness import Worker, spawn, wait_healthy  # noqa: E402

BUILD_INPUTS = ["worker/build_model.py", "worker/calibration.jsonl", "requirements-build.txt"]


def build_key() -> str:
    """Digest of everything the model build reads from this repository."""
    digest = hashlib.sha256()
    inputs = [APP_DIR / name for name in BUILD_INPUTS] + sorted((APP_DIR / "worker").glob("golden*"))
    for path in inputs:
        digest.update(path.relative_to(APP_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_model() -> Path:
    """The model build's output: MODEL_DIR when set, else build/model, rebuilt when its inputs changed.
    Shared by the worker tests and the blue/green hook tests (one build, one cache key)."""
    if os.environ.get("MODEL_DIR"):
        path = Path(os.environ["MODEL_DIR"])
        assert (path / "manifest.json").is_file(), f"MODEL_DIR={path} holds no built model"
        return path
    path = REPO_DIR / "build" / "model"
    key_file = REPO_DIR / "build" / "model.key"
    key = build_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (xdist workers, two pytest runs): a waiter re-reads the key the builder wrote.
    with FileLock(REPO_DIR / "build" / "model.lock"):
        if not (path / "manifest.json").is_file() or not key_file.is_file() or key_file.read_text() != key:
            subprocess.run(
                [sys.executable, "-m", "worker.build_model", "--out", str(path)],
                cwd=APP_DIR,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            key_file.write_text(key)
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return ensure_model()


@pytest.fixture
def start_worker(model_dir: Path, tmp_path_factory) -> Iterator:
    """Factory: start_worker(wait=True, popen_kwargs=None, **env_overrides) -> Worker."""
    started: list[Worker] = []

    def start(wait: bool = True, popen_kwargs: dict | None = None, **overrides: Any) -> Worker:
        log_path = tmp_path_factory.mktemp("worker") / "stdout.jsonl"
        worker = spawn(model_dir, log_path, popen_kwargs, **overrides)
        started.append(worker)
        if wait:
            wait_healthy(worker)
        return worker

    yield start
    for worker in started:
        worker.terminate()


@pytest.fixture(scope="module")
def shared_worker(model_dir: Path, tmp_path_factory) -> Iterator[Worker]:
    """One worker per test module."""
    worker = spawn(model_dir, tmp_path_factory.mktemp("shared-worker") / "stdout.jsonl")
    try:
        wait_healthy(worker)
        yield worker
    finally:
        worker.terminate()

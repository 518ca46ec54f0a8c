"""Lifecycle of a real worker: health transitions, SIGTERM drain, dynamic batching, healthcheck.

The drain test sends SIGTERM while requests are in flight and checks the contract ECS relies on:
/health turns 503 "draining" at once, new work is refused with 503, every accepted request still
completes with 200, and the process exits 0. The batching test proves concurrent requests were
merged into shared inference runs (the per-request `batch` log field and the EMF BatchSize
values), and that merging does not change the answers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from worker_harness import APP_DIR, assert_openai_error, call, embed, spawn


def emf_documents(worker, dimensions):
    return [
        line
        for line in worker.log_lines()
        if "_aws" in line and line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == dimensions
    ]


def test_sigterm_drains_in_flight_requests_and_exits_0(start_worker):
    worker = start_worker(DRAIN_TIMEOUT_SECONDS=60, MAX_BATCH_SIZE=4)
    long_texts = [f"request {n}: " + "a long sentence that keeps the model busy for a while " * 18 for n in range(48)]
    with ThreadPoolExecutor(6) as pool:
        in_flight = [pool.submit(embed, worker, long_texts) for _ in range(6)]
        # Wait until the worker has accepted work (its queue metric is not observable, but the
        # requests are several seconds of inference in total and were sent first).
        time.sleep(0.5)
        worker.process.send_signal(15)
        time.sleep(0.2)
        health, _, body = call(worker, "GET", "/health", key=None)
        assert health == 503 and body["status"] == "draining"
        status, headers, refused = embed(worker, "new work after SIGTERM")
        assert_openai_error(status, refused, 503, "draining")
        assert headers["connection"] == "close"
        results = [future.result(timeout=120) for future in in_flight]
    assert [status for status, _, _ in results] == [200] * 6
    assert all(len(body["data"]) == 48 for _, _, body in results)
    assert worker.process.wait(60) == 0
    events = [line.get("event") for line in worker.log_lines()]
    assert "draining" in events and "drained" in events and events[-1] == "stopped"
    assert "drain_timeout" not in events


def test_drain_is_bounded_by_drain_timeout(start_worker):
    worker = start_worker(DRAIN_TIMEOUT_SECONDS=0.5, MAX_BATCH_SIZE=1)
    long_texts = ["an even longer sentence to keep one inference thread busy " * 20] * 200
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(embed, worker, long_texts, timeout=120) for _ in range(2)]
        time.sleep(0.5)
        started = time.monotonic()
        worker.process.send_signal(15)
        assert worker.process.wait(30) == 0
        assert time.monotonic() - started < 10
        for future in pending:
            future.exception(timeout=30)  # the abandoned requests fail; that is the bound's price
    events = [line.get("event") for line in worker.log_lines()]
    assert "drain_timeout" in events


def test_the_first_embedding_does_not_wait_for_the_calibration(start_worker):
    """Issue 23: the first request after /health turned green waited for the whole start-up
    calibration on the one inference thread. Now the calibration runs in idle time: the first
    answer is logged before the calibration's result, which then still arrives."""
    worker = start_worker()  # MAX_BATCH_SIZE unset: the worker calibrates
    status, _, body = embed(worker, "the first request after start")
    assert status == 200 and len(body["data"][0]["embedding"]) == 384
    events = [line.get("event") for line in worker.log_lines()]
    answered = next(index for index, line in enumerate(worker.log_lines()) if line.get("path") == "/v1/embeddings")
    assert "batch_calibrated" not in events[:answered]
    deadline = time.monotonic() + 60
    while "batch_calibrated" not in [line.get("event") for line in worker.log_lines()]:
        assert time.monotonic() < deadline, "the calibration never finished in idle time"
        time.sleep(0.1)
    (calibrated,) = [line for line in worker.log_lines() if line.get("event") == "batch_calibrated"]
    assert 128 <= calibrated["max_cells"] <= 2048 and 0 <= calibrated["overhead_cells"] <= 256


def test_concurrent_requests_are_merged_into_batches(start_worker):
    worker = start_worker(MAX_BATCH_WAIT_MS=50, MAX_BATCH_SIZE=32)
    texts = [f"sentence number {n} about batching requests together" for n in range(24)]
    alone = {text: np.array(embed(worker, text)[2]["data"][0]["embedding"]) for text in texts[:3]}
    barrier = threading.Barrier(len(texts))

    def one(text):
        barrier.wait()
        return embed(worker, text)

    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(one, texts))
    assert all(status == 200 for status, _, _ in results)
    logged = worker.requests_logged()[-len(texts) :]
    assert max(line["batch"] for line in logged) > 1, logged
    # Merging must not change a text's vector: every activation quantizer works element by element
    # (static ranges) or per token, so the company a text keeps changes only float summation order.
    for text, (_, _, body) in zip(texts, results, strict=True):
        if text in alone:
            assert float(alone[text] @ np.array(body["data"][0]["embedding"])) >= 0.99999
    assert worker.terminate() == 0
    batch_sizes = []
    for document in emf_documents(worker, [["Service"]]):
        sizes = document.get("BatchSize", [])
        batch_sizes += sizes if isinstance(sizes, list) else [sizes]
    assert sum(batch_sizes) == len(texts) + 3
    assert len(batch_sizes) < len(texts) + 3


def test_emf_metrics_have_service_and_tenant_dimensions(start_worker):
    worker = start_worker(SERVICE_NAME="svc-test", METRICS_NAMESPACE="Test/Worker")
    assert embed(worker, ["one", "two"])[0] == 200
    assert embed(worker, "x", key="bad-key-0000000000")[0] == 401
    assert worker.terminate() == 0
    (service,) = emf_documents(worker, [["Service"]])
    assert service["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test/Worker"
    assert service["Service"] == "svc-test"
    assert service["Requests"] == 2 and service["Errors4xx"] == 1 and service["Tokens"] > 0
    names = {metric["Name"] for metric in service["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Requests", "Tokens", "Latency", "InFlight", "BatchSize", "Throttled"} <= names
    (tenant,) = emf_documents(worker, [["Service", "Tenant"]])
    assert tenant["Tenant"] == "team-a" and tenant["Requests"] == 1 and tenant["Tokens"] == service["Tokens"]


def test_health_transitions_loading_ready_draining(model_dir, tmp_path):
    # Poll a fresh start as fast as possible: the listener comes up before the model is loaded,
    # so answers go from 503 "loading" (if the poll is quick enough to see it) to 200 "ready" —
    # never anything else, and never back.
    worker = spawn(model_dir, tmp_path / "log.jsonl")
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _, body = call(worker, "GET", "/health", key=None, timeout=2)
            except OSError:
                time.sleep(0.005)
                continue
            seen.append((status, body["status"]))
            if status == 200:
                break
        assert seen[-1] == (200, "ready")
        assert all(entry in {(503, "loading"), (200, "ready")} for entry in seen), seen
        worker.process.send_signal(15)
        assert worker.process.wait(30) == 0
    finally:
        worker.terminate()


def test_unloadable_model_exits_1_with_the_reason(model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    with (broken / "tokenizer.json").open("a") as handle:
        handle.write(" ")
    worker = spawn(broken, tmp_path / "log.jsonl")
    try:
        assert worker.process.wait(60) == 1
    finally:
        worker.terminate()
    failure = [line for line in worker.log_lines() if line.get("event") == "model_load_failed"]
    assert failure and "sha256" in failure[0]["error"]


def test_healthcheck_module_exit_codes(shared_worker, tmp_path):
    def healthcheck(port):
        return subprocess.run(
            [sys.executable, "-m", "worker.healthcheck"], cwd=APP_DIR, env={"PORT": str(port)}, timeout=30
        ).returncode

    assert healthcheck(shared_worker.port) == 0
    from worker_harness import free_port

    assert healthcheck(free_port()) == 1
    assert (
        subprocess.run(
            [sys.executable, "-m", "worker.healthcheck"], cwd=APP_DIR, env={}, capture_output=True
        ).returncode
        == 1
    )

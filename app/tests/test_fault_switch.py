"""The rollback drill's fault switch (FAULT_INJECT): off unless set, only from the environment, and
each mode broken exactly where the deploy checks look (the ALB health check, the eval's embeddings)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from worker.config import ConfigError, load_settings
from worker_harness import TENANT_KEYS, call, embed

TEXTS = ["How do I reset my password?", "The recipe needs two cups of flour."]


@pytest.fixture
def env(tmp_path):
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    return {"PORT": "8000", "MODEL_DIR": str(tmp_path), "API_KEYS": json.dumps({"team-a": "a" * 20})}


def test_off_unless_set(env):
    assert load_settings(env, cpus=1).fault_inject is None
    assert load_settings({**env, "FAULT_INJECT": " "}, cpus=1).fault_inject is None


def test_only_the_drill_modes(env):
    assert load_settings({**env, "FAULT_INJECT": "5xx"}, cpus=1).fault_inject == "5xx"
    with pytest.raises(ConfigError, match="FAULT_INJECT='crash' is not a fault mode; allowed: 5xx, bad-embeddings"):
        load_settings({**env, "FAULT_INJECT": "crash"}, cpus=1)


def _wait_listening(worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, body = call(worker, "GET", "/health", key=None)
        except OSError:
            time.sleep(0.05)
            continue
        if body.get("model_loaded"):
            return
        time.sleep(0.05)
    raise AssertionError("worker did not load its model")


def test_5xx_fails_health_and_every_embeddings_call(start_worker):
    worker = start_worker(wait=False, FAULT_INJECT="5xx")
    _wait_listening(worker)
    status, _, body = call(worker, "GET", "/health", key=None)
    assert status == 503 and body["status"] == "ready"
    status, _, body = embed(worker, TEXTS)
    assert status == 500 and body["error"]["code"] == "fault"
    # Auth still comes first: an anonymous client learns nothing about the fault.
    status, _, _ = embed(worker, TEXTS, key=None)
    assert status == 401


def test_bad_embeddings_pass_health_but_not_the_eval(start_worker, shared_worker):
    faulty = start_worker(FAULT_INJECT="bad-embeddings")
    assert call(faulty, "GET", "/health", key=None)[0] == 200
    _, _, good = embed(shared_worker, TEXTS)
    status, _, bad = embed(faulty, TEXTS)
    assert status == 200
    good_vectors = np.array([d["embedding"] for d in good["data"]])
    bad_vectors = np.array([d["embedding"] for d in bad["data"]])
    assert bad_vectors.shape == good_vectors.shape
    np.testing.assert_allclose(np.linalg.norm(bad_vectors, axis=1), 1.0, atol=1e-3)
    # Far below the eval's 0.97 minimum cosine to the reference.
    assert (np.sum(good_vectors * bad_vectors, axis=1) < 0.5).all()


def test_no_request_can_switch_it_on(shared_worker):
    status, _, body = embed(shared_worker, TEXTS, key=TENANT_KEYS["team-a"], fault="5xx")
    assert status != 500 and body.get("error", {}).get("code") != "fault"
    status, _, _ = call(shared_worker, "GET", "/health", key=None, headers={"x-fault-inject": "5xx"})
    assert status == 200

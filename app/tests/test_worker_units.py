"""Unit tests for the pure parts of the worker: settings, CPU detection, auth, limits, batcher.

These run without a model or a server. The startup tests at the end run `python -m worker` with
bad environments and check it refuses to start, naming the variable, without leaking a key.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from worker.auth import ANONYMOUS, Authenticator
from worker.batcher import Batcher, QueueFull
from worker.config import ConfigError, available_cpus, load_settings
from worker.limits import TenantLimits, retry_after_seconds
from worker_harness import APP_DIR

KEYS = {"team-a": "a" * 20, "team-b": "b" * 20}


@pytest.fixture
def env(tmp_path):
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    return {"PORT": "8000", "MODEL_DIR": str(tmp_path), "API_KEYS": json.dumps(KEYS)}


def test_defaults(env):
    settings = load_settings(env, cpus=3)
    assert settings.port == 8000 and settings.inference_threads == 3
    assert settings.max_batch_size is None and settings.max_input_tokens == 256
    assert settings.auth_disabled is False and dict(settings.api_keys) == KEYS
    assert "a" * 20 not in repr(settings)


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"PORT": None}, "PORT is required"),
        ({"PORT": "http"}, "PORT='http' is not an integer"),
        ({"PORT": "70000"}, "PORT=70000 is out of range"),
        ({"MODEL_DIR": None}, "MODEL_DIR is required"),
        ({"MODEL_DIR": "/nonexistent"}, "MODEL_DIR='/nonexistent' has no model.onnx"),
        ({"API_KEYS": None}, "API_KEYS is required"),
        ({"API_KEYS": "[]"}, "API_KEYS must be a non-empty JSON object"),
        ({"API_KEYS": "{}"}, "API_KEYS must be a non-empty JSON object"),
        ({"API_KEYS": json.dumps({"bad tenant": "x" * 20})}, "tenant 'bad tenant' is invalid"),
        ({"API_KEYS": json.dumps({"t": "short"})}, "at least 16 characters"),
        ({"API_KEYS": json.dumps({"t": 12345678901234567})}, "must be a string"),
        ({"API_KEYS": json.dumps({"t1": "x" * 20, "t2": "x" * 20})}, "same key for two tenants"),
        ({"AUTH_DISABLED": "1"}, "AUTH_DISABLED='1' is invalid"),
        ({"AUTH_DISABLED": "True"}, "AUTH_DISABLED='True' is invalid"),
        ({"AUTH_DISABLED": "true"}, "API_KEYS is set while AUTH_DISABLED=true"),
        ({"MAX_BATCH_SIZE": "0"}, "MAX_BATCH_SIZE=0 is out of range"),
        ({"MAX_BATCH_WAIT_MS": "nan"}, "MAX_BATCH_WAIT_MS='nan' is out of range"),
        ({"MAX_BATCH_WAIT_MS": "soon"}, "MAX_BATCH_WAIT_MS='soon' is not a number"),
        ({"MAX_INPUT_TOKENS": "512"}, "MAX_INPUT_TOKENS=512 is out of range"),
        ({"MAX_INPUTS_PER_REQUEST": "100", "MAX_QUEUED_INPUTS": "50"}, "larger than MAX_QUEUED_INPUTS=50"),
        ({"DRAIN_TIMEOUT_SECONDS": "-1"}, "DRAIN_TIMEOUT_SECONDS='-1' is out of range"),
        ({"INFERENCE_THREADS": "0"}, "INFERENCE_THREADS=0 is out of range"),
        ({"RATE_LIMIT_REQUESTS_PER_MINUTE": "0"}, "RATE_LIMIT_REQUESTS_PER_MINUTE=0 is out of range"),
        ({"TOKEN_BUDGET_PER_MINUTE": "lots"}, "TOKEN_BUDGET_PER_MINUTE='lots' is not an integer"),
        ({"SERVICE_NAME": "has space"}, "SERVICE_NAME='has space' is invalid"),
    ],
)
def test_bad_settings_name_the_variable(env, overrides, named):
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace("[", r"\[")):
        load_settings(env, cpus=1)


def test_invalid_api_keys_json_is_not_echoed(env):
    env["API_KEYS"] = '{"t": "super-secret-value-123'
    with pytest.raises(ConfigError) as error:
        load_settings(env, cpus=1)
    assert "super-secret" not in str(error.value)


def test_auth_disabled_is_an_explicit_opt_in(env):
    del env["API_KEYS"]
    env["AUTH_DISABLED"] = "true"
    assert load_settings(env, cpus=1).auth_disabled is True
    env["AUTH_DISABLED"] = "false"
    with pytest.raises(ConfigError, match="API_KEYS is required"):
        load_settings(env, cpus=1)


def test_available_cpus_honours_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(affinity=8, cgroup_root=tmp_path) == 2
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(affinity=8, cgroup_root=tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(affinity=4, cgroup_root=tmp_path) == 4
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(affinity=16, cgroup_root=v1) == 4
    assert available_cpus(affinity=3, cgroup_root=tmp_path / "missing") == 3


def test_authenticator():
    auth = Authenticator(KEYS, disabled=False)
    assert auth.tenant_for(b"Bearer " + b"a" * 20) == "team-a"
    assert auth.tenant_for(b"bearer " + b"b" * 20) == "team-b"
    assert auth.tenant_for(b"Bearer " + b"a" * 19) is None
    assert auth.tenant_for(b"Basic " + b"a" * 20) is None
    assert auth.tenant_for(b"a" * 20) is None
    assert auth.tenant_for(None) is None
    assert Authenticator({}, disabled=True).tenant_for(None) == ANONYMOUS


def test_token_buckets_refill_per_minute():
    now = [1000.0]
    limits = TenantLimits(requests_per_minute=2, tokens_per_minute=60, clock=lambda: now[0])
    assert limits.admit_request("t") == 0 and limits.admit_request("t") == 0
    wait = limits.admit_request("t")
    assert wait == pytest.approx(30.0)
    assert limits.admit_request("other") == 0
    now[0] += 30
    assert limits.admit_request("t") == 0
    assert limits.admit_tokens("t", 50) == 0
    assert limits.admit_tokens("t", 20) == pytest.approx(10.0)  # 10 missing at 1 token/s
    assert limits.admit_tokens("t", 10) == 0  # the refused request took nothing
    assert retry_after_seconds(0.01) == 1 and retry_after_seconds(10.2) == 11


def _fake_embed(calls):
    def embed_ids(batch):
        calls.append(len(batch))
        return np.array([[float(ids[0])] * 4 for ids in batch], dtype=np.float32)

    return embed_ids


def test_batcher_merges_concurrent_requests_and_keeps_order():
    async def scenario():
        calls = []
        batcher = Batcher(_fake_embed(calls), 4, max_batch_size=8, max_batch_wait_ms=20, max_queued_inputs=100)
        batcher.start()
        futures = [batcher.submit([[n], [n + 100]]) for n in range(6)]
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return calls, results

    calls, results = asyncio.run(scenario())
    assert sum(calls) == 12 and len(calls) < 6 and max(calls) <= 8
    for n, (embeddings, largest) in enumerate(results):
        assert embeddings[:, 0].tolist() == [n, n + 100]
        assert largest > 1


def test_batcher_bounds_queue_and_fails_requests_not_itself():
    async def scenario():
        def broken(batch):
            raise RuntimeError("inference failed")

        batcher = Batcher(broken, 4, max_batch_size=8, max_batch_wait_ms=0, max_queued_inputs=3)
        batcher.start()
        first = batcher.submit([[1], [2]])
        with pytest.raises(QueueFull):
            batcher.submit([[3], [4]])
        with pytest.raises(RuntimeError):
            await first
        assert batcher.outstanding == 0
        second = batcher.submit([[5]])
        with pytest.raises(RuntimeError):
            await second
        await batcher.stop()

    asyncio.run(scenario())


def test_startup_refuses_bad_configuration_with_a_clear_message(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PORT": "8000", "MODEL_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "MODEL_DIR" in result.stderr and "has no model.onnx" in result.stderr


def test_startup_without_keys_or_opt_in_is_refused(model_dir):
    env = {"PATH": "/usr/bin:/bin", "PORT": "8000", "MODEL_DIR": str(model_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "API_KEYS is required" in result.stderr and "AUTH_DISABLED=true" in result.stderr
    event = json.loads(result.stdout.splitlines()[-1])
    assert event["event"] == "config_error" and "API_KEYS" in event["error"]

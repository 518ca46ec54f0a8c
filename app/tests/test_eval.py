"""Tests for the eval gate: it passes against the real worker and fails for the right reasons.

The passing case runs the real worker (`python -m worker` with the int8 model
of the session fixture `model_dir`, via conftest's `shared_worker`) and the
real `python -m worker.eval` CLI against it. The failure paths use a small
in-process HTTP server that plays the embeddings endpoint with controlled
vectors (random, drifted, erroring), the only way to make a served model
deliberately bad; they use synthetic references, so they need no model. Exit
codes are read from the real CLI process: 0 pass, 1 threshold missed, 2 usage,
connection or protocol error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from worker.golden import load_golden, reference_texts
from worker_harness import TENANT_KEYS, free_port

APP_DIR = Path(__file__).resolve().parent.parent
DIM = 384


def run_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("EVAL_API_KEY", "MODEL_DIR")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "worker.eval", *args],
        cwd=APP_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the real worker with the built int8 model


def test_eval_passes_against_the_real_worker(shared_worker, model_dir):
    result = run_eval(
        "--url", shared_worker.base_url, "--json",
        env={"MODEL_DIR": str(model_dir), "EVAL_API_KEY": TENANT_KEYS["team-a"]},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = report(result)
    assert data["failed"] == []
    assert data["texts"] == len(reference_texts(load_golden()))
    # The dataset is meant to be unambiguous for the fp32 model itself: every case ranks right.
    assert data["reference_top1_correct"] == data["cases"]
    # The key went in a header only: it must not be echoed in the report.
    assert TENANT_KEYS["team-a"] not in result.stdout + result.stderr


def test_eval_text_report_against_the_real_worker(shared_worker, model_dir):
    result = run_eval(
        "--url", shared_worker.base_url + "/v1", "--api-key", TENANT_KEYS["team-b"], env={"MODEL_DIR": str(model_dir)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: PASS" in result.stdout
    assert "cosine vs fp32 (min)" in result.stdout


def test_eval_without_a_key_is_refused_by_the_real_worker(shared_worker, model_dir):
    result = run_eval("--url", shared_worker.base_url, env={"MODEL_DIR": str(model_dir)})
    assert result.returncode == 2
    assert "rejected the API key (401" in result.stderr


# --- synthetic references and a fake embeddings server for the failure paths


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """references.npz for the golden texts where every positive is its query's nearest passage."""
    rng = np.random.default_rng(7)
    cases = load_golden()
    texts = reference_texts(cases)
    vectors = {text: rng.standard_normal(DIM) for text in texts}
    for case in cases:
        vectors[case.positive] = vectors[case.query] + 0.3 * rng.standard_normal(DIM)
    matrix = np.stack([vectors[text] for text in texts])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    path = tmp_path_factory.mktemp("refs") / "references.npz"
    np.savez(path, texts=np.array(texts, dtype=str), embeddings=matrix.astype(np.float32))
    return {"path": path, "cases": cases, "vectors": dict(zip(texts, matrix, strict=True))}


@contextmanager
def fake_server(answer):
    """Serve POST /v1/embeddings with `answer(texts) -> (status, body dict, headers)` on 127.0.0.1."""
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": request})
            status, body, headers = answer(request["input"])
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def embeddings_body(vectors) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)]
    # Answer in reverse order: the client must sort by `index`, as the OpenAI format allows.
    return {"object": "list", "data": data[::-1], "model": "fake", "usage": {"prompt_tokens": 1, "total_tokens": 1}}


def serve_vectors(lookup):
    return lambda texts: (200, embeddings_body([lookup(text) for text in texts]), {})


def report(result: subprocess.CompletedProcess) -> dict:
    data = json.loads(result.stdout)
    data["failed"] = sorted(check["name"] for check in data["checks"] if not check["passed"])
    return data


def test_exact_references_pass(synthetic):
    with fake_server(serve_vectors(synthetic["vectors"].__getitem__)) as (url, calls):
        result = run_eval(
            "--url",
            url,
            "--references",
            str(synthetic["path"]),
            "--json",
            "--batch-size",
            "50",
            env={"EVAL_API_KEY": "k-123"},
        )
    assert result.returncode == 0, result.stderr
    data = report(result)
    assert data["passed"] and data["failed"] == []
    assert data["top1_correct"] == data["cases"] == len(synthetic["cases"])
    # Batched: every text sent once, at most 50 per request, with the key as a bearer token.
    sent = [text for call in calls for text in call["body"]["input"]]
    assert sorted(sent) == sorted(synthetic["vectors"])
    assert max(len(call["body"]["input"]) for call in calls) == 50
    assert {call["path"] for call in calls} == {"/v1/embeddings"}
    assert {call["auth"] for call in calls} == {"Bearer k-123"}


def test_random_embeddings_fail_every_check(synthetic):
    rng = np.random.default_rng(1)
    with fake_server(serve_vectors(lambda text: rng.standard_normal(DIM))) as (url, _):
        result = run_eval("--url", url, "--references", str(synthetic["path"]), "--json")
    assert result.returncode == 1, result.stderr
    data = report(result)
    assert data["failed"] == ["cosine vs fp32 (mean)", "cosine vs fp32 (min)", "retrieval top-1"]
    assert data["missed_cases"]


def test_one_drifted_embedding_fails_only_the_min_cosine(synthetic):
    victim = synthetic["cases"][0].distractors[0]
    rng = np.random.default_rng(2)
    drift = rng.standard_normal(DIM)

    def lookup(text):
        vector = synthetic["vectors"][text]
        return vector + 0.5 * drift / np.linalg.norm(drift) if text == victim else vector

    with fake_server(serve_vectors(lookup)) as (url, _):
        result = run_eval("--url", url, "--references", str(synthetic["path"]), "--json")
    assert result.returncode == 1, result.stderr
    data = report(result)
    assert data["failed"] == ["cosine vs fp32 (min)"]
    assert data["lowest_cosine"][0]["text"].startswith(victim[:40])


def test_top1_threshold_is_enforced(synthetic):
    # Pull one query towards a distractor: exactly that case ranks wrong, and its
    # cosine to its reference stays positive so the loosened cosine checks pass.
    case = synthetic["cases"][3]
    vectors = synthetic["vectors"]
    moved = 0.4 * vectors[case.query] + 0.6 * vectors[case.distractors[0]]
    lookup = lambda text: moved if text == case.query else vectors[text]  # noqa: E731
    loose = ("--min-cosine", "0", "--mean-cosine", "0")
    with fake_server(serve_vectors(lookup)) as (url, _):
        strict = run_eval("--url", url, "--references", str(synthetic["path"]), "--json", "--min-top1", "1", *loose)
        default = run_eval("--url", url, "--references", str(synthetic["path"]), *loose)
    assert strict.returncode == 1, strict.stderr
    data = report(strict)
    assert data["failed"] == ["retrieval top-1"]
    assert [miss["id"] for miss in data["missed_cases"]] == [case.id]
    assert default.returncode == 0, default.stderr
    assert f"missed {case.id}" in default.stdout and "RESULT: PASS" in default.stdout


def test_busy_server_is_retried_after_the_advertised_delay(synthetic):
    attempts = []

    def answer(texts):
        attempts.append(len(texts))
        if len(attempts) == 1:
            return 429, {"error": {"message": "budget exhausted", "type": "rate_limit_error"}}, {"Retry-After": "0"}
        return 200, embeddings_body([synthetic["vectors"][text] for text in texts]), {}

    with fake_server(answer) as (url, _):
        result = run_eval("--url", url, "--references", str(synthetic["path"]))
    assert result.returncode == 0, result.stderr
    assert attempts[0] == attempts[1]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, {"error": {"message": "invalid API key"}}, "rejected the API key (401: invalid API key)"),
        (500, {"error": {"message": "boom"}}, "answered HTTP 500: boom"),
        (200, {"unexpected": True}, "not an embeddings response"),
    ],
)
def test_server_errors_exit_2_with_the_reason(synthetic, status, body, message):
    with fake_server(lambda texts: (status, body, {})) as (url, _):
        result = run_eval("--url", url, "--references", str(synthetic["path"]))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_wrong_dimensions_exit_2(synthetic):
    with fake_server(serve_vectors(lambda text: np.ones(DIM * 2))) as (url, _):
        result = run_eval("--url", url, "--references", str(synthetic["path"]))
    assert result.returncode == 2
    assert "768 dimensions, the references 384" in result.stderr


def test_unreachable_server_exits_2(synthetic):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_eval("--url", url, "--references", str(synthetic["path"]))
    assert result.returncode == 2
    assert f"eval: error: cannot reach {url}/v1/embeddings" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_references_exit_2():
    result = run_eval("--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "no reference embeddings: pass --references PATH or set MODEL_DIR" in result.stderr


def test_references_from_another_golden_set_exit_2(tmp_path):
    path = tmp_path / "references.npz"
    np.savez(path, texts=np.array(["something else"]), embeddings=np.ones((1, DIM), dtype=np.float32))
    result = run_eval("--url", "http://127.0.0.1:9", "--references", str(path))
    assert result.returncode == 2
    assert f"lacks {len(reference_texts(load_golden()))} golden text(s)" in result.stderr
    assert "rebuild the model" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://host"], "--url must be an http(s) URL"),
        (["--url", "http://h", "--min-cosine", "1.5"], "--min-cosine: must be between 0 and 1"),
        (["--url", "http://h", "--batch-size", "0"], "--batch-size: must be at least 1"),
        ([], "the following arguments are required: --url"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = run_eval(*args)
    assert result.returncode == 2
    assert message in result.stderr

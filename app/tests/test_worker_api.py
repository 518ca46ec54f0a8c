"""API contract of a real worker process: OpenAI-compatible embeddings, auth, bad input, logs.

Everything here goes over HTTP to `python -m worker` running the real int8 model. Bad input of
every class must come back as a 4xx with OpenAI's error shape — never a 500 — and the worker
must still be healthy afterwards; keys and texts must never reach the logs.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from worker_harness import MODEL, TENANT_KEYS, assert_openai_error, call, embed

SIMILAR = ("How do I reset my password?", "I forgot my password and need to change it.")
UNRELATED = "The recipe needs two cups of flour and a pinch of salt."


def vectors(body) -> np.ndarray:
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float32)


def test_health_reports_ready(shared_worker):
    status, headers, body = call(shared_worker, "GET", "/health", key=None)
    assert status == 200
    assert body == {"status": "ready", "model": MODEL, "model_loaded": True}


def test_embeddings_float_contract(shared_worker, model_dir):
    texts = [SIMILAR[0], SIMILAR[1], UNRELATED]
    status, headers, body = embed(shared_worker, texts)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert body["object"] == "list" and body["model"] == MODEL
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert all(item["object"] == "embedding" for item in body["data"])
    matrix = vectors(body)
    assert matrix.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-3)
    # Meaning survives quantization: paraphrases are closer than an unrelated sentence.
    assert matrix[0] @ matrix[1] > matrix[0] @ matrix[2] + 0.3

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    expected_tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))
    assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}


def test_string_input_and_base64_match_float(shared_worker):
    status, _, as_float = embed(shared_worker, UNRELATED, encoding_format="float")
    assert status == 200
    status, _, as_base64 = embed(shared_worker, UNRELATED, encoding_format="base64")
    assert status == 200
    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    np.testing.assert_allclose(decoded, vectors(as_float)[0], atol=1e-6)


def test_dimensions_equal_to_native_size_is_accepted(shared_worker):
    status, _, body = embed(shared_worker, "hello", dimensions=384, user="someone")
    assert status == 200 and len(body["data"][0]["embedding"]) == 384


def test_model_aliases_and_models_endpoint(shared_worker):
    status, _, body = call(
        shared_worker, "POST", "/v1/embeddings", {"model": f"sentence-transformers/{MODEL}", "input": "x y"}
    )
    assert status == 200 and body["model"] == MODEL
    status, _, body = call(shared_worker, "GET", "/v1/models")
    assert status == 200 and [card["id"] for card in body["data"]] == [MODEL]
    status, _, body = call(shared_worker, "GET", f"/v1/models/{MODEL}")
    assert status == 200 and body["id"] == MODEL
    status, _, body = call(shared_worker, "GET", "/v1/models/gpt-4")
    assert_openai_error(status, body, 404, "model_not_found")


def test_official_openai_client(shared_worker):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{shared_worker.base_url}/v1", api_key=TENANT_KEYS["team-b"], max_retries=0)
    # The client asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model=MODEL, input=[SIMILAR[0], SIMILAR[1]])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    first, second = (np.array(item.embedding) for item in result.data)
    assert first @ second > 0.5
    assert result.usage.prompt_tokens > 0
    single = client.embeddings.create(model=MODEL, input="plain string", encoding_format="float")
    assert len(single.data[0].embedding) == 384
    assert [model.id for model in client.models.list()] == [MODEL]

    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert refused.value.status_code == 400
    assert refused.value.body["code"] == "unsupported_dimensions"
    assert "384" in refused.value.body["message"]

    bad_key = openai.OpenAI(base_url=f"{shared_worker.base_url}/v1", api_key="wrong-key-000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.embeddings.create(model=MODEL, input="x")


@pytest.mark.parametrize(
    "key, headers",
    [
        (None, None),
        ("not-a-valid-key-12345", None),
        (None, {"authorization": f"Basic {TENANT_KEYS['team-a']}"}),
        (None, {"authorization": "Bearer "}),
        (TENANT_KEYS["team-a"] + "x", None),
        (TENANT_KEYS["team-a"][:-1], None),
    ],
    ids=["missing", "unknown", "wrong-scheme", "empty", "longer", "prefix"],
)
def test_requests_without_a_valid_key_get_401(shared_worker, key, headers):
    status, response_headers, body = call(
        shared_worker, "POST", "/v1/embeddings", {"model": MODEL, "input": "x"}, key=key, headers=headers
    )
    assert_openai_error(status, body, 401, "invalid_api_key")
    assert response_headers["www-authenticate"] == "Bearer"


def test_each_tenant_is_identified_by_its_own_key(shared_worker):
    for tenant, key in TENANT_KEYS.items():
        marker = f"tenant probe {tenant}"
        status, _, _ = embed(shared_worker, [marker, marker], key=key)
        assert status == 200
        logged = shared_worker.requests_logged()[-1]
        assert logged["tenant"] == tenant and logged["inputs"] == 2


BAD_REQUESTS = [
    ("malformed-json", b'{"model": "all-MiniLM-L6-v2", "input": ', 400, "invalid_json"),
    ("not-utf8", b'{"model": "all-MiniLM-L6-v2", "input": "\xff\xfe"}', 400, "invalid_json"),
    ("not-an-object", b'["hello"]', 400, "invalid_json"),
    ("missing-input", {"model": MODEL}, 400, "missing_required_parameter"),
    ("missing-model", {"input": "x"}, 400, "missing_required_parameter"),
    ("unknown-model", {"model": "text-embedding-3-small", "input": "x"}, 404, "model_not_found"),
    ("model-not-string", {"model": 3, "input": "x"}, 400, "invalid_type"),
    ("empty-string", {"model": MODEL, "input": ""}, 400, "empty_input"),
    ("empty-list", {"model": MODEL, "input": []}, 400, "empty_input"),
    ("empty-item", {"model": MODEL, "input": ["ok", ""]}, 400, "empty_input"),
    ("number", {"model": MODEL, "input": 42}, 400, "invalid_type"),
    ("null", {"model": MODEL, "input": None}, 400, "invalid_type"),
    ("object", {"model": MODEL, "input": {"text": "x"}}, 400, "invalid_type"),
    ("mixed-list", {"model": MODEL, "input": ["ok", 3.5]}, 400, "invalid_type"),
    ("nested-list", {"model": MODEL, "input": [["a", "b"]]}, 400, "invalid_type"),
    ("token-ids", {"model": MODEL, "input": [101, 7592, 102]}, 400, "invalid_type"),
    ("token-id-arrays", {"model": MODEL, "input": [[101, 7592, 102]]}, 400, "invalid_type"),
    ("too-many-inputs", {"model": MODEL, "input": ["x"] * 257}, 400, "too_many_inputs"),
    ("over-long-input", {"model": MODEL, "input": ["short", "word " * 300]}, 400, "context_length_exceeded"),
    ("bad-encoding", {"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "invalid_value"),
    ("dimensions", {"model": MODEL, "input": "x", "dimensions": 256}, 400, "unsupported_dimensions"),
    ("dimensions-type", {"model": MODEL, "input": "x", "dimensions": "384"}, 400, "unsupported_dimensions"),
    ("unknown-field", {"model": MODEL, "input": "x", "temperature": 1}, 400, "unknown_parameter"),
    ("user-type", {"model": MODEL, "input": "x", "user": 7}, 400, "invalid_type"),
    ("too-large", {"model": MODEL, "input": "x" * (3 * 1024 * 1024)}, 413, "request_too_large"),
]


@pytest.mark.parametrize(
    "body, status, code", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_input_gets_a_clear_4xx_and_the_worker_survives(shared_worker, body, status, code):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, _, response = call(shared_worker, "POST", "/v1/embeddings", raw=raw)
    error = assert_openai_error(got, response, status, code)
    if code == "context_length_exceeded":
        assert "input[1]" in error["message"] and "256" in error["message"]
    health, _, _ = call(shared_worker, "GET", "/health", key=None)
    assert health == 200


def test_wrong_method_and_unknown_path(shared_worker):
    status, headers, body = call(shared_worker, "GET", "/v1/embeddings")
    assert_openai_error(status, body, 405, "method_not_allowed")
    assert headers["allow"] == "POST"
    status, _, body = call(shared_worker, "GET", "/v1/chat/completions")
    assert_openai_error(status, body, 404, "not_found")


def test_one_log_line_per_request_without_key_or_text(shared_worker):
    secret_text = "confidential-marker-7f3a does not belong in logs"
    before = len(shared_worker.requests_logged())
    status, _, _ = embed(shared_worker, [secret_text, "another"])
    assert status == 200
    status, _, _ = embed(shared_worker, secret_text, key="wrong-key-but-secret-abcdef")
    assert status == 401
    logged = shared_worker.requests_logged()[before:]
    assert len(logged) == 2
    ok, refused = logged
    assert ok["status"] == 200 and ok["tenant"] == "team-a" and ok["inputs"] == 2 and ok["tokens"] > 4
    assert ok["latency_ms"] > 0
    assert refused["status"] == 401 and refused["tenant"] is None
    everything = shared_worker.log_path.read_text()
    assert "confidential-marker" not in everything
    for key in (*TENANT_KEYS.values(), "wrong-key-but-secret-abcdef"):
        assert key not in everything

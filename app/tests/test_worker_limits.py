"""Per-tenant rate and token limits and the queue bound, on real worker processes.

Over-limit requests must be refused at once with 429 and a usable Retry-After, only for the
tenant that is over its limit; a full queue must answer 503 immediately rather than time out.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from worker_harness import TENANT_KEYS, assert_openai_error, embed


def test_request_rate_limit_is_per_tenant_with_retry_after(start_worker):
    worker = start_worker(RATE_LIMIT_REQUESTS_PER_MINUTE=2)
    assert embed(worker, "one")[0] == 200
    assert embed(worker, "two")[0] == 200
    status, headers, body = embed(worker, "three")
    error = assert_openai_error(status, body, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    # One request refills every 30 s at 2 per minute.
    assert 1 <= int(headers["retry-after"]) <= 30
    # The other tenant has its own bucket.
    assert embed(worker, "four", key=TENANT_KEYS["team-b"])[0] == 200


def test_token_budget_is_per_tenant_and_counts_real_tokens(start_worker):
    worker = start_worker(TOKEN_BUDGET_PER_MINUTE=20)
    status, _, body = embed(worker, "alpha beta gamma delta epsilon zeta eta theta iota kappa")
    assert status == 200
    used = body["usage"]["total_tokens"]
    assert 10 < used <= 20 < 2 * used
    status, headers, body = embed(worker, "alpha beta gamma delta epsilon zeta eta theta iota kappa")
    error = assert_openai_error(status, body, 429, "rate_limit_exceeded")
    assert error["type"] == "tokens"
    retry_after = int(headers["retry-after"])
    # Missing tokens refill at 20 per minute, i.e. one every 3 s.
    assert 1 <= retry_after <= 60
    assert embed(worker, "alpha beta", key=TENANT_KEYS["team-b"])[0] == 200


def test_request_larger_than_the_whole_budget_is_a_400_not_a_retry(start_worker):
    worker = start_worker(TOKEN_BUDGET_PER_MINUTE=10)
    status, headers, body = embed(worker, "one two three four five six seven eight nine ten eleven")
    assert_openai_error(status, body, 400, "token_budget_exceeded")
    assert "retry-after" not in headers


def test_full_queue_answers_503_at_once(start_worker):
    # Room for one request of four long texts at a time, one text per inference run: concurrent
    # requests must find the queue full.
    worker = start_worker(MAX_QUEUED_INPUTS=4, MAX_INPUTS_PER_REQUEST=4, MAX_BATCH_SIZE=1)
    texts = ["a considerably long sentence about queues and limits " * 8] * 4
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: embed(worker, texts), range(16)))
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for status, headers, body in results:
        if status == 503:
            assert_openai_error(status, body, 503, "overloaded")
            assert headers["retry-after"] == "1"

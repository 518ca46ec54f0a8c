"""When S3, SQS or DynamoDB is down or hangs, the Batch API's routes answer 503 with Retry-After, in bounded time.

The store is the real `BatchStore` (boto3 over HTTP), first against moto's server to prove the
route works, then with the server stopped (connection refused) and against a socket that accepts
and never answers (AWS hanging): in-process mocking would hide both faults, which live in the
HTTP client's timeouts and exceptions. No model is needed: status reads do not embed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from worker import batch_store
from worker.batch_api import STORE_RETRY_AFTER_SECONDS, BatchApi
from worker.batch_store import BatchStore, store_unavailable
from worker.config import load_batch_settings
from worker.errors import ApiError
from worker_harness import free_port

TABLE = "outage-batches"
BUCKET = "outage-files"


def _settings(endpoint: str, monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_batch_settings(
        {"QUEUE_URL": f"{endpoint}/123456789012/outage", "BATCH_BUCKET": BUCKET, "BATCH_TABLE": TABLE}, True
    )
    assert settings is not None
    return settings


@pytest.fixture
def moto_endpoint() -> Iterator[tuple[str, ThreadedMotoServer]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # moto keeps its backends per process, not per server: a second server already has the table.
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    if TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "tenant", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "tenant", "AttributeType": "S"},
                {"AttributeName": "id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    try:
        yield endpoint, server
    finally:
        server.stop()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP endpoint that accepts connections and never answers: AWS hanging mid-call."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def _refusal(call) -> ApiError:
    with pytest.raises(ApiError) as raised:
        asyncio.run(call)
    return raised.value


def _assert_store_unavailable(error: ApiError) -> None:
    assert error.status == 503 and error.code == "store_unavailable"
    assert (b"retry-after", str(STORE_RETRY_AFTER_SECONDS).encode()) in error.headers
    assert b"batch store" in error.body() and b"internal error" not in error.body()


def test_status_and_file_reads_answer_503_with_retry_after_when_the_store_is_down(
    moto_endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, server = moto_endpoint
    api = BatchApi(BatchStore(_settings(endpoint, monkeypatch)))
    # Up: an unknown id is a 404 from DynamoDB's real answer (the route and the store work).
    assert _refusal(api.batch("team-a", "batch_nope")).status == 404
    server.stop()
    for call in (api.batch("team-a", "batch_x"), api.file("team-a", "file-x"), api.content("team-a", "file-x")):
        _assert_store_unavailable(_refusal(call))


def test_a_hanging_store_is_a_503_within_the_timeouts(black_hole: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_store, "READ_TIMEOUT_SECONDS", 0.5)
    api = BatchApi(BatchStore(_settings(black_hole, monkeypatch)))
    started = time.monotonic()
    _assert_store_unavailable(_refusal(api.batch("team-a", "batch_x")))
    # MAX_ATTEMPTS reads of 0.5 s each plus the standard mode's jittered backoff (under 1 s + 2 s):
    # without a read timeout botocore would wait 60 s per attempt.
    assert time.monotonic() - started < batch_store.MAX_ATTEMPTS * 0.5 + 4


def test_every_client_has_bounded_connect_and_read_timeouts(moto_endpoint, monkeypatch) -> None:
    store = BatchStore(_settings(moto_endpoint[0], monkeypatch))
    for client in (store.s3, store.sqs, store.table.meta.client):
        config = client.meta.config
        assert config.connect_timeout == batch_store.CONNECT_TIMEOUT_SECONDS
        assert config.retries == {"total_max_attempts": batch_store.MAX_ATTEMPTS, "mode": "standard"}
    assert store.s3.meta.config.read_timeout == store.table.meta.client.meta.config.read_timeout == 10
    # SQS's long poll holds the socket up to 20 s (ReceiveMessage WaitTimeSeconds): its read timeout must exceed that.
    assert store.sqs.meta.config.read_timeout > batch_store.LONG_POLL_MAX_SECONDS


def test_only_outages_count_as_the_store_being_unavailable() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem")

    assert store_unavailable(EndpointConnectionError(endpoint_url="http://x"))
    assert store_unavailable(ReadTimeoutError(endpoint_url="http://x"))
    assert store_unavailable(client_error("InternalServerError", 500))
    assert store_unavailable(client_error("ProvisionedThroughputExceededException", 400))
    assert not store_unavailable(client_error("AccessDeniedException", 400))
    assert not store_unavailable(client_error("NoSuchKey", 404))
    assert not store_unavailable(ValueError("a bug"))

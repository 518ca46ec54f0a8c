"""The Batch API end to end: the official `openai` client, the worker and `python -m worker.consumer`
as subprocesses, and moto's server as the AWS emulator (S3, SQS with a dead-letter queue, DynamoDB)
spoken to over HTTP by boto3 exactly as AWS would be (AWS_ENDPOINT_URL, dummy credentials).

Slow consumers are made slow by their tenant token budget (BATCH_TOKEN_BUDGET_PER_MINUTE), not by
sleeps: a budget below the batch's token count guarantees the batch is still running when the test
signals or cancels it, however loaded the machine. No assertion depends on how long anything takes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import openai
import pytest
from moto.server import ThreadedMotoServer

from worker_harness import APP_DIR, MODEL, TENANT_KEYS, Worker, free_port, spawn, wait_healthy

MAX_RECEIVES = 3
VISIBILITY = 4
TABLE = "gantry-batches"
BUCKET = "gantry-batch-files"


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, str]]:
    """moto on a random local port, with the queue, dead-letter queue, bucket and table created."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    endpoint = env["AWS_ENDPOINT_URL"]
    sqs = session.client("sqs", endpoint_url=endpoint)
    dlq_url = sqs.create_queue(QueueName="gantry-batch-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
    queue_url = sqs.create_queue(
        QueueName="gantry-batch", Attributes={"VisibilityTimeout": str(VISIBILITY), "RedrivePolicy": redrive}
    )["QueueUrl"]
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    session.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "tenant", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "tenant", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    env |= {"QUEUE_URL": queue_url, "BATCH_BUCKET": BUCKET, "BATCH_TABLE": TABLE, "DLQ_URL": dlq_url}
    try:
        yield env
    finally:
        server.stop()


def _batch_env(aws: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in aws.items() if name != "DLQ_URL"}


@pytest.fixture(scope="module")
def api(model_dir: Path, aws: dict[str, str], tmp_path_factory) -> Iterator[Worker]:
    worker = spawn(model_dir, tmp_path_factory.mktemp("batch-api") / "stdout.jsonl", **_batch_env(aws))
    try:
        wait_healthy(worker)
        yield worker
    finally:
        worker.terminate()


class Consumer:
    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process = process
        self.log_path = log_path

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for raw in self.log_path.read_text().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("event") == name:
                found.append(record)
        return found

    def wait_event(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            if self.process.poll() is not None:
                raise AssertionError(f"consumer exited {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {name} event in {timeout}s: {self.log_path.read_text()[-3000:]}")


@pytest.fixture
def start_consumer(model_dir: Path, aws: dict[str, str], tmp_path_factory) -> Iterator:
    started: list[Consumer] = []

    def start(**overrides: Any) -> Consumer:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "MODEL_DIR": str(model_dir),
            "INFERENCE_THREADS": "1",
            "VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
            "MAX_RECEIVES": str(MAX_RECEIVES),
            "RETRY_DELAY_SECONDS": "0",
            "CHECKPOINT_LINES": "3",
            "WAIT_TIME_SECONDS": "1",
            **_batch_env(aws),
            **{name: str(value) for name, value in overrides.items()},
        }
        log_path = tmp_path_factory.mktemp("consumer") / "stdout.jsonl"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.consumer"],
                cwd=APP_DIR,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        consumer = Consumer(process, log_path)
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        if consumer.process.poll() is None:
            consumer.process.send_signal(signal.SIGTERM)
            try:
                consumer.process.wait(60)
            except subprocess.TimeoutExpired:
                consumer.process.kill()
                consumer.process.wait()


def client(api: Worker, tenant: str = "team-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.base_url}/v1", api_key=TENANT_KEYS[tenant], max_retries=0, timeout=60)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def request_line(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def submit(api: Worker, lines: list[dict[str, Any]], tenant: str = "team-a"):
    oa = client(api, tenant)
    uploaded = oa.files.create(file=("corpus.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    batch = oa.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert (
        batch.status == "validating" and batch.request_counts is not None and batch.request_counts.total == len(lines)
    )
    return oa, batch


def wait_status(oa: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = oa.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout}s")


def read_jsonl(oa: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in oa.files.content(file_id).content.splitlines()]


def vector(item: dict[str, Any]) -> np.ndarray:
    embedding = item["embedding"]
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


def slow_corpus(count: int) -> list[dict[str, Any]]:
    return [
        request_line(f"doc-{index}", {"model": MODEL, "input": f"document number {index} about rivers"})
        for index in range(count)
    ]


def assert_each_once(oa: openai.OpenAI, batch, expected: list[str]) -> None:
    output = read_jsonl(oa, batch.output_file_id) + read_jsonl(oa, batch.error_file_id)
    ids = [line["custom_id"] for line in output]
    assert sorted(ids) == sorted(expected), f"{len(ids)} lines for {len(expected)} inputs"
    assert len({line["id"] for line in output}) == len(output)


def test_batch_matches_the_synchronous_api_and_reports_bad_lines(api: Worker, start_consumer) -> None:
    texts = [
        ["the river floods in spring"],
        ["a short query", "and a much longer passage about the migration of birds across the northern sea"],
        ["ünïcödé text with accents", "日本語のテキスト", "emoji 🚀 text"],
    ] * 3
    good = [request_line(f"good-{index}", {"model": MODEL, "input": batch}) for index, batch in enumerate(texts)]
    good.append(request_line("good-b64", {"model": MODEL, "input": "encoded as base64", "encoding_format": "base64"}))
    bad = [
        request_line("bad-model", {"model": "text-embedding-3-small", "input": "x"}),
        request_line("bad-empty", {"model": MODEL, "input": ""}),
        request_line("bad-long", {"model": MODEL, "input": "word " * 400}),
        request_line("bad-field", {"model": MODEL, "input": "x", "temperature": 1}),
        request_line("bad-ids", {"model": MODEL, "input": [1, 2, 3]}),
    ]
    lines = good[:4] + bad[:2] + good[4:] + bad[2:]
    oa, batch = submit(api, lines)
    start_consumer()
    done = wait_status(oa, batch.id, {"completed", "failed"})
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        len(lines),
        len(good),
        len(bad),
    )

    outputs = {line["custom_id"]: line for line in read_jsonl(oa, done.output_file_id)}
    assert set(outputs) == {line["custom_id"] for line in good}
    for line in good:
        answer = outputs[line["custom_id"]]
        assert answer["error"] is None and answer["id"].startswith("batch_req_")
        assert answer["response"]["status_code"] == 200 and answer["response"]["request_id"].startswith("req_")
        body = answer["response"]["body"]
        inputs = line["body"]["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        sync = oa.embeddings.create(model=MODEL, input=inputs, encoding_format="float")
        assert body["usage"]["prompt_tokens"] == sync.usage.prompt_tokens
        for got, want in zip(body["data"], sync.data, strict=True):
            a, b = vector(got), np.asarray(want.embedding, dtype=np.float32)
            assert a.shape == (384,)
            assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.99999
    assert isinstance(outputs["good-b64"]["response"]["body"]["data"][0]["embedding"], str)

    errors = {line["custom_id"]: line for line in read_jsonl(oa, done.error_file_id)}
    assert set(errors) == {line["custom_id"] for line in bad}
    codes = {custom_id: line["response"]["body"]["error"]["code"] for custom_id, line in errors.items()}
    assert codes == {
        "bad-model": "model_not_found",
        "bad-empty": "empty_input",
        "bad-long": "context_length_exceeded",
        "bad-field": "unknown_parameter",
        "bad-ids": "invalid_type",
    }
    assert errors["bad-model"]["response"]["status_code"] == 404
    assert errors["bad-long"]["response"]["status_code"] == 400


def test_batch_routes_answer_404_without_a_queue(shared_worker: Worker) -> None:
    with pytest.raises(openai.NotFoundError, match="QUEUE_URL"):
        client(shared_worker).batches.retrieve("batch_x")


def test_the_api_does_not_import_boto3_unless_batches_are_enabled() -> None:
    code = "import sys, worker.api, worker.server; assert 'boto3' not in sys.modules, 'boto3 imported'"
    subprocess.run([sys.executable, "-c", code], cwd=APP_DIR, check=True)


def test_the_consumer_refuses_to_start_without_its_configuration(model_dir: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODEL_DIR": str(model_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "worker.consumer"], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "QUEUE_URL is required by the consumer" in result.stderr


def test_tenants_see_only_their_own_files_and_batches(api: Worker) -> None:
    oa, batch = submit(api, slow_corpus(2))
    other = client(api, "team-b")
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.input_file_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch.id)
    assert oa.files.retrieve(batch.input_file_id).id == batch.input_file_id
    oa.batches.cancel(batch.id)


def test_upload_is_validated_line_by_line(api: Worker) -> None:
    oa = client(api)
    lines = jsonl(slow_corpus(1)) + b'{"custom_id": "x", "method": "GET", "url": "/v1/embeddings", "body": {}}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        oa.files.create(file=("bad.jsonl", lines), purpose="batch")
    assert "line 2" in str(refused.value) and "method" in str(refused.value)
    with pytest.raises(openai.BadRequestError, match="custom_id is repeated"):
        oa.files.create(file=("dup.jsonl", jsonl(slow_corpus(2) + slow_corpus(1))), purpose="batch")
    # Issue 22: a 3 MiB line was accepted and failed only later; now the upload names it (MAX_BATCH_LINE_BYTES 2 MiB).
    huge = request_line("huge", {"model": MODEL, "input": "word " * (3 << 18)})
    with pytest.raises(openai.BadRequestError, match="line 2 is .* bytes, more than 2097152") as too_large:
        oa.files.create(file=("huge.jsonl", jsonl([*slow_corpus(1), huge])), purpose="batch")
    assert too_large.value.code == "line_too_large"
    # Over MAX_BATCH_LINES (50,000): refused while the body arrives, with the limit named.
    with pytest.raises(openai.BadRequestError, match="more than 50000 lines .*refused while uploading"):
        oa.files.create(file=("long.jsonl", jsonl(slow_corpus(60_000))), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        uploaded = oa.files.create(file=("ok.jsonl", jsonl(slow_corpus(1))), purpose="batch")
        oa.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="1h")  # type: ignore[arg-type]


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_second_consumer_finishes_an_interrupted_batch_exactly_once(
    api: Worker, start_consumer, stop_signal: signal.Signals
) -> None:
    lines = slow_corpus(60)
    oa, batch = submit(api, lines)
    # About 9 tokens a line: 540 tokens against 240 a minute cannot finish before the signal.
    first = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
    first.wait_event("batch_progress")
    first.process.send_signal(stop_signal)
    code = first.process.wait(120)
    if stop_signal == signal.SIGTERM:
        assert code == 0
        assert first.events("message_released"), "a drained consumer must hand its message back"
    running = oa.batches.retrieve(batch.id)
    assert running.status == "in_progress"
    assert running.request_counts is not None and 0 < running.request_counts.completed < len(lines)

    second = start_consumer()
    resumed = second.wait_event("batch_resumed")
    assert resumed["next_line"] == running.request_counts.completed
    done = wait_status(oa, batch.id, {"completed", "failed"})
    assert done.status == "completed"
    assert_each_once(oa, done, [line["custom_id"] for line in lines])


def test_the_heartbeat_keeps_a_running_batch_from_a_second_consumer(api: Worker, start_consumer) -> None:
    lines = slow_corpus(40)
    oa, batch = submit(api, lines)
    # 360 tokens against 240 a minute: the batch outlives many visibility timeouts (VISIBILITY s).
    first = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
    first.wait_event("batch_started")
    second = start_consumer()
    done = wait_status(oa, batch.id, {"completed", "failed"})
    assert done.status == "completed"
    assert not second.events("batch_resumed") and not second.events("batch_started")
    assert not first.events("checkpoint_conflict")
    assert_each_once(oa, done, [line["custom_id"] for line in lines])


def test_cancel_mid_run_keeps_what_is_done(api: Worker, start_consumer) -> None:
    lines = slow_corpus(60)
    oa, batch = submit(api, lines)
    consumer = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
    consumer.wait_event("batch_progress")
    assert oa.batches.cancel(batch.id).status == "cancelling"
    done = wait_status(oa, batch.id, {"cancelled", "completed", "failed"})
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and 0 < done.request_counts.completed < len(lines)
    output = read_jsonl(oa, done.output_file_id)
    assert len(output) == done.request_counts.completed
    assert len({line["custom_id"] for line in output}) == len(output)


def test_a_poison_batch_fails_and_its_message_reaches_the_dead_letter_queue(
    api: Worker, aws: dict[str, str], start_consumer
) -> None:
    oa, batch = submit(api, slow_corpus(3))
    endpoint = aws["AWS_ENDPOINT_URL"]
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # The record says the input exists; S3 no longer has it, so every attempt fails the same way.
    for listed in session.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]:
        if listed["Key"].endswith(f"{batch.input_file_id}.jsonl"):
            session.client("s3", endpoint_url=endpoint).delete_object(Bucket=BUCKET, Key=listed["Key"])
    consumer = start_consumer()
    failed = wait_status(oa, batch.id, {"failed", "completed"})
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data
    reason = failed.errors.data[0].message or ""
    assert f"after {MAX_RECEIVES} attempts" in reason and "NoSuchKey" in reason
    assert len(consumer.events("batch_retry")) == MAX_RECEIVES - 1

    sqs = session.client("sqs", endpoint_url=endpoint)
    deadline = time.monotonic() + 60
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        dead = sqs.receive_message(QueueUrl=aws["DLQ_URL"], WaitTimeSeconds=1).get("Messages", [])
    assert dead and json.loads(dead[0]["Body"])["batch_id"] == batch.id
    sqs.delete_message(QueueUrl=aws["DLQ_URL"], ReceiptHandle=dead[0]["ReceiptHandle"])
    with pytest.raises(openai.ConflictError):
        oa.batches.cancel(batch.id)


def _dead_letters_of(aws: dict[str, str], batch_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Receive from the dead-letter queue until this batch's message is there; delete it (tests share the queue)."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sqs = session.client("sqs", endpoint_url=aws["AWS_ENDPOINT_URL"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=aws["DLQ_URL"], WaitTimeSeconds=1).get("Messages", []):
            if json.loads(message["Body"])["batch_id"] == batch_id:
                sqs.delete_message(QueueUrl=aws["DLQ_URL"], ReceiptHandle=message["ReceiptHandle"])
                return [message]
            sqs.change_message_visibility(
                QueueUrl=aws["DLQ_URL"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    return []


def test_a_batch_whose_consumer_keeps_crashing_fails_with_its_finished_lines_kept(
    api: Worker, aws: dict[str, str], start_consumer
) -> None:
    """Issue 22: a line that kills the process (here: SIGKILL at the same point, as ECS restarts a
    task that dies) stranded its batch `in_progress` forever once SQS dead-lettered the message.
    Now the MAX_RECEIVES-th receive ends it as `failed`, keeping the finished lines, without any
    other message arriving."""
    lines = slow_corpus(60)
    oa, batch = submit(api, lines)
    crashed = 0
    while crashed < MAX_RECEIVES:
        consumer = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
        deadline = time.monotonic() + 120
        while not consumer.events("batch_progress") and not consumer.events("batch_failed"):
            assert time.monotonic() < deadline, consumer.log_path.read_text()[-3000:]
            assert consumer.process.poll() is None, consumer.log_path.read_text()[-3000:]
            time.sleep(0.1)
        if consumer.events("batch_failed"):
            break
        # It has done some lines and is at work on the next: die there, with no handler running.
        consumer.process.kill()
        consumer.process.wait()
        crashed += 1
    assert crashed == MAX_RECEIVES - 1, "the last receive ends the batch instead of running it again"
    done = wait_status(oa, batch.id, {"failed", "completed", "expired"}, timeout=60)
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None and done.errors.data
    reason = done.errors.data[0].message or ""
    assert done.errors.data[0].code == "batch_failed"
    assert f"after {MAX_RECEIVES} attempts" in reason and "stopped without a trace" in reason, reason
    # The lines finished before the crashes are kept, each once, and match the counts.
    assert done.request_counts is not None and 0 < done.request_counts.completed < len(lines)
    output = read_jsonl(oa, done.output_file_id)
    assert len(output) == done.request_counts.completed == len({line["custom_id"] for line in output})
    assert f"{done.request_counts.completed} of {len(lines)} lines were done" in reason
    # The message still reaches the dead-letter queue, so its alarm tells an operator.
    assert _dead_letters_of(aws, batch.id)


def test_a_batch_past_its_window_expires_at_its_next_checkpoint(
    api: Worker, aws: dict[str, str], start_consumer
) -> None:
    """Issue 22: the 24 h window was checked only when a message was received; a batch kept running
    by its heartbeat ran on past it. Now each checkpoint checks it, and the batch ends `expired`."""
    lines = slow_corpus(60)
    oa, batch = submit(api, lines)
    consumer = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
    consumer.wait_event("batch_progress")
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # The window ends now (as if 24 h had passed): rewrite the record's expires_at.
    session.client("dynamodb", endpoint_url=aws["AWS_ENDPOINT_URL"]).update_item(
        TableName=TABLE,
        Key={"tenant": {"S": "team-a"}, "id": {"S": batch.id}},
        UpdateExpression="SET expires_at = :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()) - 1)}},
    )
    done = wait_status(oa, batch.id, {"expired", "completed", "failed"})
    assert done.status == "expired" and done.expired_at is not None
    assert done.errors is not None and done.errors.data and done.errors.data[0].code == "batch_expired"
    assert done.request_counts is not None and 0 < done.request_counts.completed < len(lines)
    output = read_jsonl(oa, done.output_file_id)
    assert len(output) == done.request_counts.completed == len({line["custom_id"] for line in output})
    # The message was deleted (the batch ended), not dead-lettered.
    assert consumer.events("batch_finished")[-1]["status"] == "expired"


def test_a_batch_drained_more_often_than_max_receives_still_completes(
    api: Worker, aws: dict[str, str], start_consumer
) -> None:
    """Issue 22: every SIGTERM release (a deploy, a Spot interruption) spent one of the message's
    SQS receives, so a batch drained MAX_RECEIVES - 1 times ended `failed` with nothing wrong with
    it. Now a drain sends the batch a fresh message and deletes the old one: here it is drained
    MAX_RECEIVES + 1 times and still completes, each line once, with nothing dead-lettered."""
    lines = slow_corpus(200)
    oa, batch = submit(api, lines)
    done_before = 0
    released = []
    for _ in range(MAX_RECEIVES + 1):
        # The budget (240 tokens a minute, ~9 a line) keeps each consumer from finishing the batch.
        consumer = start_consumer(BATCH_TOKEN_BUDGET_PER_MINUTE=240)
        deadline = time.monotonic() + 120
        while not consumer.events("batch_progress") and not consumer.events("batch_failed"):
            assert time.monotonic() < deadline, consumer.log_path.read_text()[-3000:]
            time.sleep(0.1)
        assert not consumer.events("batch_failed"), "a drained batch ran out of receives"
        consumer.process.send_signal(signal.SIGTERM)
        assert consumer.process.wait(120) == 0
        released += consumer.events("message_released")
        running = oa.batches.retrieve(batch.id)
        assert running.status == "in_progress" and running.request_counts is not None
        assert running.request_counts.completed > done_before, "each drained consumer checkpointed its part"
        done_before = running.request_counts.completed
    finisher = start_consumer()
    done = wait_status(oa, batch.id, {"completed", "failed", "expired"})
    assert done.status == "completed" and not done.errors, done.errors
    assert finisher.events("batch_resumed")[0]["next_line"] == done_before
    assert_each_once(oa, done, [line["custom_id"] for line in lines])
    assert not _dead_letters_of(aws, batch.id, timeout=3)
    assert len(released) == MAX_RECEIVES + 1 and all(event["resent"] for event in released), released


def test_list_and_delete_as_openais_client_pages_them_tenant_scoped(api: Worker) -> None:
    """Issue 22: GET /v1/batches, GET /v1/files and DELETE /v1/files/{id} answered 405."""
    oa, first = submit(api, slow_corpus(1), tenant="team-b")
    created = [first.id] + [submit(api, slow_corpus(1), tenant="team-b")[1].id for _ in range(4)]
    for batch_id in created:
        oa.batches.cancel(batch_id)  # no consumer runs here: keep the queue for the other tests' batches
    # Pages of 2, followed by the client's own auto-pagination (`after` = the last id of each page).
    page = oa.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    listed = [batch.id for batch in oa.batches.list(limit=2)]
    assert sorted(set(created) & set(listed)) == sorted(created) and len(listed) == len(set(listed))
    assert all(batch.object == "batch" for batch in page.data)
    # Tenant-scoped: team-a's listings never show team-b's records.
    other = client(api, "team-a")
    assert not set(created) & {batch.id for batch in other.batches.list(limit=100)}
    files = {file.id: file for file in oa.files.list()}
    assert first.input_file_id in files and files[first.input_file_id].purpose == "batch"
    assert first.input_file_id not in {file.id for file in other.files.list()}
    assert oa.files.retrieve(first.input_file_id).bytes == files[first.input_file_id].bytes
    # Delete: another tenant's delete is a 404 and changes nothing; the owner's removes record and bytes.
    with pytest.raises(openai.NotFoundError):
        other.files.delete(first.input_file_id)
    deleted = oa.files.delete(first.input_file_id)
    assert deleted.deleted and deleted.id == first.input_file_id
    with pytest.raises(openai.NotFoundError):
        oa.files.retrieve(first.input_file_id)
    with pytest.raises(openai.NotFoundError):
        oa.files.content(first.input_file_id)
    assert first.input_file_id not in {file.id for file in oa.files.list()}
    with pytest.raises(openai.BadRequestError, match="limit must be an integer from 1 to 100"):
        oa.batches.list(limit=101)

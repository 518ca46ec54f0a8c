"""Batch storage on AWS: files in S3, one SQS message per batch, records in DynamoDB.

Status lives in DynamoDB, not in S3 objects with conditional writes, because the batch record is
written by two parties at once — the API (cancel) and the consumer (progress) — and DynamoDB's
conditional UpdateItem changes only the named attributes under a condition
(`status = :in_progress AND next_line = :start`) in one call: a cancel never has to re-read and
re-write a whole progress document, and a stale consumer (its message redelivered to another) can
never move a checkpoint it does not hold. S3's If-Match would give the same compare-and-swap but
only on whole objects, so every progress write would race every cancel and need a read-retry loop.
The table's key is (`tenant`, `id`): every read names the caller's tenant, so one tenant cannot
even address another's file or batch. S3 keys are `<BATCH_PREFIX><tenant>/...` for the same
reason, and so that IAM can grant per-prefix access. boto3 is imported when a store is built, never
by the API's import path (the API's cold start does not pay for it). Standard AWS SDK
configuration (AWS_ENDPOINT_URL, AWS_REGION, credentials chain) applies unchanged. All calls are
blocking; async callers run them in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from worker.batch_format import Checkpoint, part_key
from worker.config import BatchSettings

# S3 GetObject streaming read size: large enough to amortise calls, small against task memory.
READ_CHUNK_BYTES = 1 << 20
# Every AWS call is bounded, so a hung endpoint is an error, not a hung request or consumer.
# botocore's defaults are 60 s connect and 60 s read with up to 3 attempts (legacy) — minutes per
# call. A TCP connect within a region takes milliseconds; 3 s is generous. S3 and DynamoDB answer
# a small request in well under a second and start a GetObject body promptly; 10 s without a byte
# is an outage. SQS's long poll legitimately holds the socket for up to WaitTimeSeconds (at most
# 20 s), so its read timeout is that plus READ_TIMEOUT_SECONDS. Standard retry mode retries
# throttling, 5xx and connection errors with jittered backoff inside the SDK; 3 attempts in all
# (`total_max_attempts` counts the first; `max_attempts` would count retries only).
# https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html ,
# https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
LONG_POLL_MAX_SECONDS = 20
MAX_ATTEMPTS = 3
# Error codes AWS answers when the service, not the request, is at fault (after the SDK's retries).
_UNAVAILABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalServerError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottlingException",
        "Throttling",
    }
)


class ConditionFailed(Exception):
    """A conditional write lost: the record is not in the state the writer expected."""


def store_unavailable(error: BaseException) -> bool:
    """True when `error` says S3, SQS or DynamoDB is unreachable, timing out, throttling or failing (5xx).

    Those are the store's outages, which a caller should retry later; anything else (a missing
    object, a denied call, a bad parameter) is a bug or a misconfiguration and stays an error.
    """
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):
        return True  # connect refused or timed out, read timed out, connection closed mid-answer
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or error.response.get("Error", {}).get("Code") in _UNAVAILABLE_CODES
    return False


class BatchStore:
    def __init__(self, settings: BatchSettings):
        import boto3
        from botocore.config import Config

        retries: Any = {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}
        config = Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS, retries=retries)
        long_poll = config.merge(Config(read_timeout=LONG_POLL_MAX_SECONDS + READ_TIMEOUT_SECONDS))
        self.settings = settings
        self.s3 = boto3.client("s3", config=config)
        self.sqs = boto3.client("sqs", config=long_poll)
        self.table = boto3.resource("dynamodb", config=config).Table(settings.table)
        self._conditional = self.table.meta.client.exceptions.ConditionalCheckFailedException

    # --- keys ----------------------------------------------------------------------------------

    def file_key(self, tenant: str, file_id: str) -> str:
        return f"{self.settings.prefix}{tenant}/files/{file_id}.jsonl"

    def batch_prefix(self, tenant: str, batch_id: str) -> str:
        return f"{self.settings.prefix}{tenant}/batches/{batch_id}/"

    # --- records -------------------------------------------------------------------------------

    def get(self, tenant: str, record_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"tenant": tenant, "id": record_id}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def page(self, tenant: str, id_prefix: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` of a tenant's records whose id starts with `id_prefix`, in id order, after `after`.

        One Query on the table's key (tenant, and the id prefix that names the kind: `batch_`,
        `file-`), so a page costs its own size however many records the tenant has; returns the
        records and whether more follow. DynamoDB returns at most 1 MB per call, hence the loop.
        """
        found: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {
            "KeyConditionExpression": "tenant = :tenant AND begins_with(id, :prefix)",
            "ExpressionAttributeValues": {":tenant": tenant, ":prefix": id_prefix},
            "ConsistentRead": True,
        }
        if after is not None:
            arguments["ExclusiveStartKey"] = {"tenant": tenant, "id": after}
        while len(found) <= limit:
            answer = self.table.query(**arguments, Limit=limit + 1 - len(found))
            found.extend(dict(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found[:limit], len(found) > limit

    def delete_record(self, tenant: str, record_id: str) -> None:
        """Delete a record if it exists (raises ConditionFailed if not: someone deleted it first)."""
        try:
            self.table.delete_item(Key={"tenant": tenant, "id": record_id}, ConditionExpression="attribute_exists(id)")
        except self._conditional:
            raise ConditionFailed(f"{record_id}: already deleted") from None

    def put_new(self, item: dict[str, Any]) -> None:
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")

    def update(
        self, tenant: str, record_id: str, values: dict[str, Any], condition: str, condition_values: dict[str, Any]
    ) -> dict[str, Any]:
        """SET every `values` attribute if `condition` holds; returns the new record or raises ConditionFailed."""
        names = {f"#{index}": name for index, name in enumerate(values)}
        assignments = ", ".join(f"#{index} = :v{index}" for index in range(len(values)))
        expression_values = {f":v{index}": value for index, value in enumerate(values.values())}
        try:
            answer = self.table.update_item(
                Key={"tenant": tenant, "id": record_id},
                UpdateExpression=f"SET {assignments}",
                ConditionExpression=condition,
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues={**expression_values, **condition_values},
                ReturnValues="ALL_NEW",
            )
        except self._conditional:
            raise ConditionFailed(f"{record_id}: {condition}") from None
        return dict(answer["Attributes"])

    def transition(self, tenant: str, batch_id: str, allowed: tuple[str, ...], status: str, **values: Any) -> dict:
        """Move a batch to `status` (stamping `<status>_at`) if its status is one of `allowed`."""
        placeholders = {f":s{index}": state for index, state in enumerate(allowed)}
        return self.update(
            tenant,
            batch_id,
            {"status": status, f"{status}_at": int(time.time()), **values},
            f"#status IN ({', '.join(placeholders)})",
            placeholders,
        )

    def note_error(self, tenant: str, batch_id: str, reason: str, open_statuses: tuple[str, ...]) -> None:
        """Record the last failed attempt's reason on a batch that has not ended (no status change)."""
        placeholders = {f":s{index}": state for index, state in enumerate(open_statuses)}
        self.update(tenant, batch_id, {"last_error": reason}, f"#status IN ({', '.join(placeholders)})", placeholders)

    def save_checkpoint(self, tenant: str, batch_id: str, before: Checkpoint, after: Checkpoint) -> dict:
        """Record `after` if the batch is in progress and still at `before` (nobody else advanced it)."""
        return self.update(
            tenant,
            batch_id,
            {
                "next_line": after.next_line,
                "next_byte": after.next_byte,
                "completed": after.completed,
                "failed": after.failed,
                "part_ends": list(after.part_ends),
            },
            "#status = :running AND next_line = :start",
            {":running": "in_progress", ":start": before.next_line},
        )

    # --- files ---------------------------------------------------------------------------------

    def put_object(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=data, ContentType="application/jsonl")

    def stream(self, key: str, start: int = 0) -> Iterator[bytes]:
        """The object's bytes from offset `start` on, in chunks (an HTTP Range read)."""
        arguments: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": key}
        if start:
            arguments["Range"] = f"bytes={start}-"
        body = self.s3.get_object(**arguments)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK_BYTES)
        finally:
            body.close()

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.settings.bucket, Key=key)

    def object_size(self, key: str) -> int:
        return int(self.s3.head_object(Bucket=self.settings.bucket, Key=key)["ContentLength"])

    def concatenate(self, keys: list[str], destination: str) -> int:
        """Write the objects `keys`, in order, as one object (a streamed multipart upload); returns its size."""
        reader = _ChainReader(self, keys)
        self.s3.upload_fileobj(
            reader, self.settings.bucket, destination, ExtraArgs={"ContentType": "application/jsonl"}
        )
        return reader.size

    # --- queue ---------------------------------------------------------------------------------

    def send(self, tenant: str, batch_id: str, attempts: int = 0) -> None:
        """Queue a batch; `attempts`: receives of its earlier messages that count toward MAX_RECEIVES
        (a drained batch's fresh message carries them, see worker/consumer.py `_hand_back`)."""
        body = {"tenant": tenant, "batch_id": batch_id} | ({"attempts": attempts} if attempts > 0 else {})
        self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=orjson.dumps(body).decode())

    def receive(self, wait_seconds: int, visibility_seconds: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.settings.queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(answer.get("Messages", []))

    def set_visibility(self, receipt: str, seconds: int) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.settings.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )

    def delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt)


class _ChainReader:
    """A read()-able view of several S3 objects one after another, for upload_fileobj's streaming upload."""

    def __init__(self, store: BatchStore, keys: list[str]):
        self._chunks = (chunk for key in keys for chunk in store.stream(key))
        self._buffer = b""
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.size += len(data)
        return data


def part_keys(store: BatchStore, tenant: str, batch_id: str, checkpoint: Checkpoint, kind: str) -> list[str]:
    prefix = store.batch_prefix(tenant, batch_id)
    return [part_key(prefix, start, end, kind) for start, end in checkpoint.parts()]

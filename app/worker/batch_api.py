"""The OpenAI Batch API's HTTP half on the worker: /v1/files and /v1/batches.

Accepting a batch is cheap and bounded: the upload is read into memory up to MAX_BATCH_FILE_BYTES,
validated line by line (worker/batch_format.py; at most MAX_BATCH_LINES), written to S3 under the
caller's tenant prefix and recorded in DynamoDB; creating a batch records it (status
`validating`) and sends one SQS message; the embedding happens in `python -m worker.consumer`.
Security stance: every record is read with the authenticated tenant as its key (worker/batch_store.py),
so another tenant's id answers 404 exactly like an id that never existed, and ids are 128-bit random.
Contents are streamed back in chunks, never held whole in memory. Every call to AWS runs in a thread
so the event loop keeps serving embeddings meanwhile, and is bounded (worker/batch_store.py's
timeouts): when S3, SQS or DynamoDB is down or hangs, a route answers 503 `store_unavailable` with
`Retry-After` within that bound instead of a 500 or a hung request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from worker.batch_format import (
    COMPLETION_WINDOW,
    ENDPOINT,
    WINDOW_SECONDS,
    UploadLineCounter,
    batch_object,
    file_object,
    list_object,
    list_parameters,
    new_id,
    parse_multipart,
    validate_input_file,
    validate_metadata,
)
from worker.batch_store import BatchStore, ConditionFailed, store_unavailable
from worker.errors import ApiError, decode_json_body

T = TypeVar("T")

_BATCH_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})
# What a cancel may interrupt; `finalizing` is already writing the result files.
_CANCELLABLE = ("validating", "in_progress")

Answer = tuple[int, bytes | Iterator[bytes], list[tuple[bytes, bytes]]]
# Seconds a client is told to wait when the store is down: a few SDK attempts' worth, so a client
# polling batches.retrieve neither hammers an outage nor waits long after it ends.
STORE_RETRY_AFTER_SECONDS = 5


class BatchApi:
    def __init__(self, store: BatchStore):
        self.store = store

    async def _aws(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking store call in a thread; an outage of S3, SQS or DynamoDB is a 503, not a 500."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            raise ApiError(
                503,
                f"the batch store (S3, SQS or DynamoDB) is unavailable ({type(exc).__name__}); "
                f"retry in {STORE_RETRY_AFTER_SECONDS} s",
                type="server_error",
                code="store_unavailable",
                headers=[(b"retry-after", str(STORE_RETRY_AFTER_SECONDS).encode())],
            ) from None

    def line_counter(self) -> UploadLineCounter:
        """What the API feeds an upload's chunks to while they arrive (refuses past MAX_BATCH_LINES)."""
        return UploadLineCounter(self.store.settings.max_lines)

    async def upload(self, tenant: str, content_type: str, body: bytes) -> Answer:
        fields = parse_multipart(content_type, body)
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if purpose != "batch":
            raise ApiError(
                400, f"purpose must be 'batch' (got {purpose!r}); this worker stores batch input only", param="purpose"
            )
        if "file" not in fields:
            raise ApiError(400, "the multipart body has no 'file' field", code="missing_required_parameter")
        filename, data = fields["file"]
        lines = await asyncio.to_thread(
            validate_input_file, data, self.store.settings.max_lines, self.store.settings.max_line_bytes
        )
        file_id = new_id("file-")
        await self._aws(self.store.put_object, self.store.file_key(tenant, file_id), data)
        item: dict[str, Any] = {
            "tenant": tenant,
            "id": file_id,
            "kind": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": (filename or "batch.jsonl")[:255],
            "purpose": "batch",
            "lines": lines,
        }
        await self._aws(self.store.put_new, item)
        return 200, orjson.dumps(file_object(item)), []

    async def _record(self, tenant: str, record_id: str, kind: str) -> dict[str, Any]:
        item = await self._aws(self.store.get, tenant, record_id)
        if item is None or item.get("kind") != kind:
            raise ApiError(404, f"no such {kind}: {record_id!r}", code="not_found", param="id")
        return item

    async def file(self, tenant: str, file_id: str) -> Answer:
        return 200, orjson.dumps(file_object(await self._record(tenant, file_id, "file"))), []

    async def content(self, tenant: str, file_id: str) -> Answer:
        await self._record(tenant, file_id, "file")
        chunks = self.store.stream(self.store.file_key(tenant, file_id))
        # The first read opens the object, so a missing one fails here, before a 200 has gone out.
        first = await self._aws(next, chunks, b"")
        return 200, itertools.chain([first], chunks), [(b"content-type", b"application/octet-stream")]

    async def create(self, tenant: str, body: bytes) -> Answer:
        payload = decode_json_body(body)
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object", code="invalid_json")
        unknown = sorted(set(payload) - _BATCH_FIELDS)
        if unknown:
            raise ApiError(
                400, f"unrecognized request argument: {unknown[0]}", code="unknown_parameter", param=unknown[0]
            )
        if payload.get("endpoint") != ENDPOINT:
            raise ApiError(400, f"endpoint must be {ENDPOINT!r}", code="invalid_value", param="endpoint")
        if payload.get("completion_window") != COMPLETION_WINDOW:
            raise ApiError(
                400, f"completion_window must be {COMPLETION_WINDOW!r}", code="invalid_value", param="completion_window"
            )
        input_file_id = payload.get("input_file_id")
        if not isinstance(input_file_id, str):
            raise ApiError(400, "input_file_id must be a file id", code="invalid_type", param="input_file_id")
        source = await self._record(tenant, input_file_id, "file")
        if source.get("purpose") != "batch" or "lines" not in source:
            raise ApiError(400, f"file {input_file_id!r} is not a batch input file", param="input_file_id")
        now = int(time.time())
        item: dict[str, Any] = {
            "tenant": tenant,
            "id": new_id("batch_"),
            "kind": "batch",
            "status": "validating",
            "input_file_id": input_file_id,
            "created_at": now,
            "expires_at": now + WINDOW_SECONDS,
            "total": int(source["lines"]),
            "completed": 0,
            "failed": 0,
            "next_line": 0,
            "next_byte": 0,
            "part_ends": [],
            "metadata": validate_metadata(payload.get("metadata")),
        }
        await self._aws(self.store.put_new, item)
        try:
            await self._aws(self.store.send, tenant, item["id"])
        except Exception:
            # Without its message nobody would ever run the batch: say so instead of leaving it "validating".
            await self._aws(
                self.store.transition,
                tenant,
                item["id"],
                ("validating",),
                "failed",
                error_code="enqueue_failed",
                error_reason="the batch could not be queued; create it again",
            )
            raise
        return 200, orjson.dumps(batch_object(item)), []

    async def list_batches(self, tenant: str, query: str) -> Answer:
        """GET /v1/batches: the tenant's batches, `after`/`limit` (1-100, default 20) as OpenAI's API."""
        after, limit = list_parameters(query, default_limit=20, max_limit=100)
        items, more = await self._aws(self.store.page, tenant, "batch_", after, limit)
        return 200, orjson.dumps(list_object([batch_object(item) for item in items], more)), []

    async def list_files(self, tenant: str, query: str) -> Answer:
        """GET /v1/files: the tenant's files (inputs and results), `after`/`limit` (1-10000, default 10000)."""
        after, limit = list_parameters(query, default_limit=10_000, max_limit=10_000)
        items, more = await self._aws(self.store.page, tenant, "file-", after, limit)
        return 200, orjson.dumps(list_object([file_object(item) for item in items], more)), []

    async def delete_file(self, tenant: str, file_id: str) -> Answer:
        """DELETE /v1/files/{id}: the bytes, then the record (a record never points at nothing it promised)."""
        await self._record(tenant, file_id, "file")
        await self._aws(self.store.delete_object, self.store.file_key(tenant, file_id))
        try:
            await self._aws(self.store.delete_record, tenant, file_id)
        except ConditionFailed:
            raise ApiError(404, f"no such file: {file_id!r}", code="not_found", param="id") from None
        return 200, orjson.dumps({"id": file_id, "object": "file", "deleted": True}), []

    async def batch(self, tenant: str, batch_id: str) -> Answer:
        return 200, orjson.dumps(batch_object(await self._record(tenant, batch_id, "batch"))), []

    async def cancel(self, tenant: str, batch_id: str) -> Answer:
        item = await self._record(tenant, batch_id, "batch")
        if item["status"] in ("cancelling", "cancelled"):
            return 200, orjson.dumps(batch_object(item)), []
        try:
            # The consumer sees `cancelling` at its next checkpoint and finishes it as `cancelled`.
            item = await self._aws(self.store.transition, tenant, batch_id, _CANCELLABLE, "cancelling")
        except ConditionFailed:
            current = await self._record(tenant, batch_id, "batch")
            raise ApiError(
                409,
                f"batch {batch_id} is {current['status']}; only a validating or in-progress batch can be cancelled",
                code="batch_not_cancellable",
            ) from None
        return 200, orjson.dumps(batch_object(item)), []

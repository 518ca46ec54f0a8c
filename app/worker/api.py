"""The HTTP API as a plain ASGI application: OpenAI-compatible embeddings, models and health.

Three routes do not need a framework, and at several hundred requests per second per core the
per-request overhead of one matters, so this is a direct ASGI callable served by uvicorn.

Request path for `POST /v1/embeddings`: authenticate the bearer key -> per-tenant request rate ->
read the body (bounded by MAX_REQUEST_BYTES) -> parse and validate as OpenAI does -> tokenize
(the real tokenizer: this count is both the usage reported and the budget spent) -> refuse inputs
longer than MAX_INPUT_TOKENS (they are never truncated) -> queue room -> per-tenant token budget
-> dynamic batcher -> JSON or base64 response. Every refusal is a 4xx/503 with OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`; an unexpected failure is a 500 with the same
shape and never takes the process down. With QUEUE_URL/BATCH_BUCKET/BATCH_TABLE set, /v1/files and
/v1/batches serve OpenAI's Batch API (worker/batch_api.py; run by `python -m worker.consumer`), whose
lines are validated by the same `parse_embeddings_request` and `check_input_lengths` as this
endpoint. Each request produces one JSON log line with tenant, inputs, tokens, latency and
status — never the key or any input text.
"""

from __future__ import annotations

import asyncio
import base64
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from worker import logs
from worker.auth import Authenticator
from worker.background import cancel_and_wait
from worker.batch_size import calibrate_runs
from worker.batcher import Batcher
from worker.config import DEFAULT_MAX_BATCH_SIZE, Settings
from worker.errors import ApiError, decode_json_body
from worker.limits import TenantLimits, retry_after_seconds
from worker.metrics import Metrics
from worker.model import DIMENSIONS, MODEL_ID, Embedder

if TYPE_CHECKING:
    from worker.batch_api import BatchApi
    from worker.tracing import RequestTrace, Tracer

# Names clients may put in `model`; answers always name MODEL_ID.
MODEL_ALIASES = frozenset({MODEL_ID, f"sentence-transformers/{MODEL_ID}"})
_KNOWN_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
# Tokenizing a large request inline would stall every other request on the event loop; above
# this many characters it goes to a thread (below it, the thread hop costs more than it saves).
_INLINE_TOKENIZE_CHARS = 8192

_JSON = (b"content-type", b"application/json")


class ClientDisconnected(Exception):
    """The client went away before sending its whole body."""


class _Log:
    """Fields of the one log line written per request (safe fields only)."""

    __slots__ = ("tenant", "inputs", "tokens", "batch", "code", "trace")

    def __init__(self, trace: RequestTrace | None = None) -> None:
        self.tenant: str | None = None
        self.inputs = 0
        self.tokens = 0
        self.batch = 0
        self.code: str | None = None
        self.trace = trace


class WorkerApp:
    """ASGI app plus the worker's lifecycle state: loading -> ready -> draining (or failed)."""

    def __init__(self, settings: Settings, on_fatal: Callable[[], None] | None = None, tracer: Tracer | None = None):
        self.settings = settings
        # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set (worker/tracing.py): then no span is ever made.
        self.tracer = tracer
        self.auth = Authenticator(settings.api_keys, settings.auth_disabled)
        self.limits = TenantLimits(settings.rate_limit_requests_per_minute, settings.token_budget_per_minute)
        self.metrics = Metrics(settings.metrics_namespace, settings.service_name)
        self.embedder: Embedder | None = None
        self.batcher: Batcher | None = None
        # Built at start-up only when QUEUE_URL/BATCH_BUCKET/BATCH_TABLE are set (it imports boto3).
        self.batches: BatchApi | None = None
        self.state = "loading"
        self.in_flight = 0
        self._on_fatal = on_fatal
        self._started = time.monotonic()
        self._loader: asyncio.Task | None = None
        self._calibration: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Stop taking new work; in-flight requests finish (the server waits for them)."""
        if self.state != "draining":
            self.state = "draining"
            logs.event("draining", in_flight=self.in_flight)

    async def _startup(self) -> None:
        # Load in the background so /health can answer "loading" while the model comes up.
        self._loader = asyncio.get_running_loop().create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        settings = self.settings
        try:
            if settings.batch is not None:
                from worker.batch_api import BatchApi
                from worker.batch_store import BatchStore

                self.batches = BatchApi(await asyncio.to_thread(BatchStore, settings.batch))
            self.embedder = await asyncio.to_thread(Embedder, settings.model_dir, settings.inference_threads)
        except Exception as exc:
            self.state = "failed"
            logs.event("model_load_failed", error=f"{type(exc).__name__}: {exc}")
            if self._on_fatal is not None:
                self._on_fatal()
            return
        self.batcher = Batcher(
            self.embedder.embed_ids,
            DIMENSIONS,
            settings.max_batch_size or DEFAULT_MAX_BATCH_SIZE,
            settings.max_batch_wait_ms,
            settings.max_queued_inputs,
            on_batch=self.metrics.batch_ran,
        )
        self.batcher.start()
        if settings.max_batch_size is None:
            self._calibration = asyncio.get_running_loop().create_task(self._calibrate(), name="calibration")
        self.metrics.start()
        if self.tracer is not None:
            self.tracer.start()
        if self.state == "loading":
            self.state = "ready"
        logs.event(
            "ready",
            seconds_since_start=round(time.monotonic() - self._started, 3),
            model=MODEL_ID,
            inference_threads=settings.inference_threads,
            tenants=self.auth.tenants,
            auth_disabled=settings.auth_disabled,
        )

    @property
    def running_batcher(self) -> Batcher:
        """The batcher, which exists from start-up on (requests are refused before that)."""
        if self.batcher is None:
            raise RuntimeError("the worker has not started")
        return self.batcher

    @property
    def loaded_embedder(self) -> Embedder:
        if self.embedder is None:
            raise RuntimeError("the worker has not loaded its model")
        return self.embedder

    async def _calibrate(self) -> None:
        """Fit the run size to this CPU (worker/batch_size.py) in idle time: no request waits for it.

        Until it finishes the batcher serves with the safe default (32 rows, 2048 cells, a fixed
        cost of 16 cells); each synthetic run waits until nothing has been queued or running for
        a quiet spell, so a request waits at most for the one synthetic run already under way.
        """
        # With one inference thread ORT runs the model on the calling thread, so that thread's CPU
        # time is the model's cost even if requests already keep the event loop busy meanwhile.
        clock = time.thread_time if self.settings.inference_threads == 1 else time.perf_counter
        await calibrate_runs(self.running_batcher, self.loaded_embedder.embed_ids, DEFAULT_MAX_BATCH_SIZE, clock)

    async def _shutdown(self) -> None:
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        await cancel_and_wait(self._calibration)
        if self.batcher is not None:
            await self.batcher.stop()
        await self.metrics.stop()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.stop)
        logs.event("stopped")

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- ASGI entry ----------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = scope["method"]
        if path == "/health":
            await self._health(method, send)
            return

        started = time.perf_counter()
        log = _Log(self._trace(method, path, scope) if self.tracer is not None else None)
        status = 500
        self.in_flight += 1
        self.metrics.request_started()
        try:
            status, body, headers = await self._route(path, method, scope, receive, log)
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
            log.code = error.code
        except ClientDisconnected:
            status, body, headers = 499, b"", []
            log.code = "client_disconnected"
        except Exception as exc:
            # Log where it failed, not the message: exception text could quote an input.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            logs.event("internal_error", error=type(exc).__name__, at=f"{frame.filename}:{frame.lineno}")
            failure = ApiError(
                500, "internal error while embedding; retry the request", type="server_error", code="internal_error"
            )
            status, body, headers = 500, failure.body(), []
            log.code = failure.code
        finally:
            self.in_flight -= 1
        if self.state == "draining":
            # Tell keep-alive clients (the load balancer) to reconnect elsewhere.
            headers = [*headers, (b"connection", b"close")]
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.metrics.request_finished(log.tenant, status, log.tokens, latency_ms)
        if log.trace is not None:
            log.trace.finish(
                status, {"gantry.tenant": log.tenant, "gantry.inputs": log.inputs, "gantry.tokens": log.tokens}
            )
        # Logged before the response goes out, so that a client that has its answer can rely on
        # the line being there (the send itself is the kernel's buffer copy, not worth timing).
        logs.event(
            "request",
            method=method,
            path=path,
            status=status,
            tenant=log.tenant,
            inputs=log.inputs,
            tokens=log.tokens,
            batch=log.batch,
            latency_ms=round(latency_ms, 2),
            code=log.code,
        )
        if status == 499:
            return
        if not any(name == b"content-type" for name, _ in headers):
            headers = [_JSON, *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if isinstance(body, bytes):
            await send({"type": "http.response.body", "body": body})
            return
        # A stored file, streamed from S3 chunk by chunk (each read in a thread: it blocks).
        while (chunk := await asyncio.to_thread(next, body, None)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _trace(self, method: str, path: str, scope) -> RequestTrace | None:
        assert self.tracer is not None
        parent = next((value for name, value in scope["headers"] if name == b"traceparent"), None)
        return self.tracer.request(method, path, parent)

    async def _health(self, method: str, send) -> None:
        if method not in ("GET", "HEAD"):
            error = ApiError(405, "use GET /health", code="method_not_allowed", headers=[(b"allow", b"GET, HEAD")])
            status, body, headers = 405, error.body(), error.headers
        else:
            # The drill's 5xx fault fails the load balancer's health check, so ECS's circuit breaker sees it.
            status = 200 if self.state == "ready" and self.settings.fault_inject != "5xx" else 503
            body = orjson.dumps({"status": self.state, "model": MODEL_ID, "model_loaded": self.embedder is not None})
            headers = [(b"cache-control", b"no-store")]
        # Health probes are logged like any request so that a failing probe is visible.
        logs.event("request", method=method, path="/health", status=status, state=self.state)
        await send({"type": "http.response.start", "status": status, "headers": [_JSON, *headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _route(self, path: str, method: str, scope, receive, log: _Log):
        if path == "/v1/embeddings":
            self._require(method, "POST")
            return await self._embeddings(scope, receive, log)
        if path == "/v1/models" or path.startswith("/v1/models/"):
            self._require(method, "GET")
            log.tenant = self._authenticate(scope)
            return self._models(path[len("/v1/models/") :] if path != "/v1/models" else None)
        if path.startswith(("/v1/files", "/v1/batches")):
            return await self._batch_route(path, method, scope, receive, log)
        raise ApiError(
            404,
            f"no route for {path}; this worker serves /v1/embeddings, /v1/models, /v1/files, /v1/batches and /health",
            code="not_found",
        )

    async def _batch_route(self, path: str, method: str, scope, receive, log: _Log):
        batches = self.batches
        if batches is None:
            raise ApiError(
                404,
                "the batch API is not enabled on this worker (QUEUE_URL, BATCH_BUCKET and BATCH_TABLE are unset)",
                code="not_found",
            )
        tenant = log.tenant = self._authenticate(scope)
        self._admit(tenant)
        parts = path.strip("/").split("/")[1:]
        query = scope.get("query_string", b"").decode("latin-1")
        if parts == ["files"]:
            self._require(method, "POST", "GET")
            if method == "GET":
                return await batches.list_files(tenant, query)
            content_type = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
            counter = batches.line_counter()
            body = await self._read_body(
                scope, receive, self.settings.batch_file_limit, "MAX_BATCH_FILE_BYTES", counter.feed
            )
            return await batches.upload(tenant, content_type.decode("latin-1"), body)
        if parts == ["batches"]:
            self._require(method, "POST", "GET")
            if method == "GET":
                return await batches.list_batches(tenant, query)
            return await batches.create(tenant, await self._read_body(scope, receive))
        if len(parts) == 2 and parts[0] == "files":
            self._require(method, "GET", "DELETE")
            if method == "DELETE":
                return await batches.delete_file(tenant, parts[1])
            return await batches.file(tenant, parts[1])
        if len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            self._require(method, "GET")
            return await batches.content(tenant, parts[1])
        if len(parts) == 2 and parts[0] == "batches":
            self._require(method, "GET")
            return await batches.batch(tenant, parts[1])
        if len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
            self._require(method, "POST")
            return await batches.cancel(tenant, parts[1])
        raise ApiError(404, f"no route for {path}", code="not_found")

    def _admit(self, tenant: str) -> None:
        wait = self.limits.admit_request(tenant)
        if wait:
            raise ApiError(
                429,
                f"rate limit of {self.limits.requests_per_minute} requests per minute reached for tenant {tenant}",
                type="requests",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(retry_after_seconds(wait)).encode())],
            )

    @staticmethod
    def _require(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise ApiError(
                405,
                f"method {method} not allowed; use {' or '.join(allowed)}",
                code="method_not_allowed",
                headers=[(b"allow", ", ".join(allowed).encode())],
            )

    def _authenticate(self, scope) -> str:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        tenant = self.auth.tenant_for(authorization)
        if tenant is None:
            raise ApiError(
                401,
                "missing or invalid API key; send it as 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )
        return tenant

    def _models(self, model_id: str | None):
        card = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "gantry"}
        if model_id is None:
            return 200, orjson.dumps({"object": "list", "data": [card]}), []
        if model_id not in MODEL_ALIASES:
            raise ApiError(
                404,
                f"model {model_id!r} does not exist; this worker serves {MODEL_ID!r}",
                code="model_not_found",
                param="model",
            )
        return 200, orjson.dumps(card), []

    # --- embeddings ----------------------------------------------------------------------------

    async def _embeddings(self, scope, receive, log: _Log):
        if self.state != "ready":
            raise ApiError(
                503,
                f"worker is {self.state}; retry on another instance",
                type="server_error",
                code=self.state,
                headers=[(b"retry-after", b"1")],
            )
        tenant = log.tenant = self._authenticate(scope)
        if self.settings.fault_inject == "5xx":
            raise ApiError(
                500, "fault injected by FAULT_INJECT=5xx (rollback drill)", type="server_error", code="fault"
            )
        self._admit(tenant)

        request = parse_embeddings_request(
            decode_json_body(await self._read_body(scope, receive)), self.settings.max_inputs_per_request
        )
        texts = request["input"]
        log.inputs = len(texts)
        if log.trace is not None:
            log.trace.tokenizing()
        if sum(map(len, texts)) <= _INLINE_TOKENIZE_CHARS:
            token_ids = self.loaded_embedder.token_ids(texts)
        else:
            token_ids = await asyncio.to_thread(self.loaded_embedder.token_ids, texts)
        check_input_lengths(token_ids, self.settings.max_input_tokens)
        tokens = log.tokens = sum(map(len, token_ids))

        batcher = self.running_batcher
        if not batcher.has_room(len(texts)):
            raise ApiError(
                503,
                "worker is at capacity (queued inputs limit); retry shortly",
                type="server_error",
                code="overloaded",
                headers=[(b"retry-after", b"1")],
            )
        if tokens > self.limits.tokens_per_minute:
            raise ApiError(
                400,
                f"request needs {tokens} tokens, more than the per-minute token budget "
                f"({self.limits.tokens_per_minute}); split it into smaller requests",
                code="token_budget_exceeded",
                param="input",
            )
        wait = self.limits.admit_tokens(tenant, tokens)
        if wait:
            raise ApiError(
                429,
                f"token budget of {self.limits.tokens_per_minute} tokens per minute reached for tenant {tenant}",
                type="tokens",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(retry_after_seconds(wait)).encode())],
            )
        # No await since has_room(): the room is still there, and the budget is spent only now.
        future = batcher.submit(token_ids, log.trace.queued() if log.trace is not None else None)
        self.metrics.queued(batcher.outstanding)
        embeddings, log.batch = await future
        if self.settings.fault_inject == "bad-embeddings":
            # Reversed components: still unit vectors of the right size, so only the eval can tell.
            embeddings = np.ascontiguousarray(embeddings[:, ::-1])
        return 200, embeddings_response(embeddings, request["encoding_format"], tokens), []

    async def _read_body(
        self,
        scope,
        receive,
        limit: int | None = None,
        variable: str = "MAX_REQUEST_BYTES",
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """The request body, refused with 413 as soon as it passes `limit`; `on_chunk` sees each
        chunk as it arrives (and may refuse the upload there, e.g. past MAX_BATCH_LINES)."""
        limit = self.settings.max_request_bytes if limit is None else limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise ApiError(413, f"request body is larger than {limit} bytes ({variable})", code="request_too_large")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is larger than {limit} bytes ({variable})", code="request_too_large")
            if on_chunk is not None:
                on_chunk(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def parse_embeddings_request(payload: Any, max_inputs: int) -> dict[str, Any]:
    """Validate a decoded embeddings request body as OpenAI does; returns input as a list plus the encoding format.

    The one definition of a valid embeddings request: the HTTP endpoint and the batch consumer
    (worker/consumer.py, per input line) both call it, so a line of a batch is accepted exactly
    when the same body sent to POST /v1/embeddings would be. Raises ApiError naming the field.
    """
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    unknown = sorted(set(payload) - _KNOWN_FIELDS)
    if unknown:
        raise ApiError(400, f"unrecognized request argument: {unknown[0]}", code="unknown_parameter", param=unknown[0])

    if "model" not in payload:
        raise ApiError(400, "you must provide a model parameter", code="missing_required_parameter", param="model")
    model = payload["model"]
    if not isinstance(model, str):
        raise ApiError(400, "model must be a string", code="invalid_type", param="model")
    if model not in MODEL_ALIASES:
        raise ApiError(
            404,
            f"model {model!r} does not exist; this worker serves {MODEL_ID!r}",
            code="model_not_found",
            param="model",
        )

    encoding_format = payload.get("encoding_format")
    if encoding_format is None:
        encoding_format = "float"
    if encoding_format not in ("float", "base64"):
        raise ApiError(
            400,
            f"encoding_format must be 'float' or 'base64', got {encoding_format!r}",
            code="invalid_value",
            param="encoding_format",
        )

    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions != DIMENSIONS):
        raise ApiError(
            400,
            f"dimensions={dimensions!r} is not supported: {MODEL_ID} produces {DIMENSIONS}-dimensional "
            f"embeddings and cannot shorten them; omit dimensions or send {DIMENSIONS}",
            code="unsupported_dimensions",
            param="dimensions",
        )
    if payload.get("user") is not None and not isinstance(payload["user"], str):
        raise ApiError(400, "user must be a string", code="invalid_type", param="user")

    if "input" not in payload:
        raise ApiError(400, "you must provide an input parameter", code="missing_required_parameter", param="input")
    raw = payload["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise ApiError(400, "input must be a string or an array of strings", code="invalid_type", param="input")
    if not texts:
        raise ApiError(400, "input must not be an empty array", code="empty_input", param="input")
    if len(texts) > max_inputs:
        raise ApiError(
            400,
            f"input has {len(texts)} items; the limit is {max_inputs} per request (MAX_INPUTS_PER_REQUEST)",
            code="too_many_inputs",
            param="input",
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            if isinstance(text, int) or (isinstance(text, list) and all(isinstance(t, int) for t in text)):
                message = "token-id input is not supported (ids from another tokenizer would be meaningless); send text"
            else:
                message = f"input[{index}] must be a string, got {_json_type(text)}"
            raise ApiError(400, message, code="invalid_type", param="input")
        if not text:
            raise ApiError(400, f"input[{index}] is an empty string", code="empty_input", param="input")
    return {"input": texts, "encoding_format": encoding_format}


def embeddings_response(embeddings: np.ndarray, encoding_format: str, tokens: int) -> bytes:
    """The body of a successful embeddings answer (also the `response.body` of a batch output line)."""
    if encoding_format == "base64":
        # OpenAI's base64 format: the little-endian float32 bytes of each vector.
        little = embeddings.astype("<f4", copy=False)
        vectors = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        vectors = list(embeddings)
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)
            ],
            "model": MODEL_ID,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def check_input_lengths(token_ids: list[list[int]], limit: int) -> None:
    """Refuse (never truncate) any input longer than `limit` tokens; shared with the batch consumer."""
    for index, ids in enumerate(token_ids):
        if len(ids) > limit:
            raise ApiError(
                400,
                f"input[{index}] is {len(ids)} tokens long; the limit is {limit} tokens per input "
                "(special tokens included). Over-long input is refused, not truncated: split it",
                code="context_length_exceeded",
                param="input",
            )


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", float: "number", int: "number", type(None): "null"}.get(
        type(value), type(value).__name__
    )

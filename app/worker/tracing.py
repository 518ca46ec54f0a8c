"""OpenTelemetry spans for the worker, exported as OTLP/HTTP JSON from a background thread (stdlib only).

Enabled only by the standard variables the infrastructure sets with `tracing: {enabled: true}`:
OTEL_EXPORTER_OTLP_ENDPOINT (the collector sidecar's base URL; spans go to <base>/v1/traces, as the
OTLP exporter spec defines for OTLP/HTTP) and OTEL_SERVICE_NAME (the `service.name` resource
attribute). Unset, `from_env` returns None and the request path allocates no span and makes no call.
Each embeddings request is one trace: `request` (SERVER) with children `tokenize`, `queue` (until
the batcher starts a run holding the request's first text) and `inference` (until its vectors are
back). A W3C `traceparent` header (https://www.w3.org/TR/trace-context/) is honoured: its trace id
and parent span id are kept, and an unsampled parent means no spans. New trace ids carry the Unix
time in their first 4 bytes, which X-Ray's trace ids require (the X-Ray id generators of the
OpenTelemetry SDKs do the same) and which is still a valid W3C id; since collector v0.84 the awsxray
exporter also passes fully random ids on (open-telemetry/opentelemetry-collector-contrib#26553).
Ids are lower-case hex in OTLP/JSON, as the OTLP spec's JSON encoding requires.
Export never blocks a request: ended spans go into a bounded in-memory buffer (dropped, and
counted, when it is full); a daemon thread sends them in batches with a short timeout and drops a
batch the collector does not take. Security stance: spans carry method, route, status, tenant name
and counts, never keys, headers or input text; the exporter talks only to the configured http URL
(the sidecar on localhost).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from worker import logs
from worker.config import ConfigError

KIND_INTERNAL, KIND_SERVER = 1, 2  # OTLP Span.SpanKind
STATUS_ERROR = 2  # OTLP Status.StatusCode
SCOPE = "gantry.worker"
MAX_BUFFERED_SPANS = 4096
BATCH_SPANS = 512
EXPORT_INTERVAL_SECONDS = 1.0
EXPORT_TIMEOUT_SECONDS = 1.0
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def new_trace_id(now_ns: int | None = None) -> str:
    """32 hex digits: 4 bytes of Unix seconds (X-Ray's rule), 12 random bytes."""
    seconds = (time.time_ns() if now_ns is None else now_ns) // 1_000_000_000
    return f"{seconds & 0xFFFFFFFF:08x}{os.urandom(12).hex()}"


def new_span_id() -> str:
    while (span_id := os.urandom(8).hex()) == _ZERO_SPAN:
        continue
    return span_id


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) from a W3C traceparent, or None when it is not a valid one."""
    m = _TRACEPARENT.match(value.strip())
    if not m:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    # Version ff is invalid; version 00 has exactly four fields; later versions may append more.
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, bool(int(flags, 16) & 1)


class Span:
    __slots__ = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "attributes", "error")

    def __init__(self, name: str, trace_id: str, parent_id: str | None, kind: int = KIND_INTERNAL):
        self.name = name
        self.trace_id = trace_id
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.kind = kind
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attributes: dict[str, str | int | float | bool] = {}
        self.error = False

    def otlp(self) -> dict:
        span = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": str(self.start_ns),
            "endTimeUnixNano": str(self.end_ns),
            "attributes": [{"key": k, "value": _value(v)} for k, v in self.attributes.items()],
            "status": {"code": STATUS_ERROR} if self.error else {},
        }
        if self.parent_id is not None:
            span["parentSpanId"] = self.parent_id
        return span


def _value(value: str | int | float | bool) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


class RequestTrace:
    """The spans of one request: the root and its tokenize -> queue -> inference children."""

    __slots__ = ("_tracer", "root", "_open")

    def __init__(self, tracer: Tracer, root: Span):
        self._tracer = tracer
        self.root = root
        self._open: Span | None = None

    def _step(self, name: str) -> None:
        if self._open is not None:
            self._tracer.end(self._open)
        self._open = Span(name, self.root.trace_id, self.root.span_id)

    def tokenizing(self) -> None:
        self._step("tokenize")

    def queued(self) -> Callable[[], None]:
        """Start `queue`; the returned callback (the batcher calls it when a run takes the request)
        ends it and starts `inference`."""
        self._step("queue")
        return lambda: self._step("inference")

    def finish(self, status: int, attributes: Mapping[str, str | int | None]) -> None:
        if self._open is not None:
            self._tracer.end(self._open)
            self._open = None
        root = self.root
        root.attributes["http.response.status_code"] = status
        root.attributes.update({k: v for k, v in attributes.items() if v is not None})
        root.error = status >= 500
        self._tracer.end(root)


class Tracer:
    """Buffers ended spans and exports them from one daemon thread; `end` never blocks."""

    def __init__(self, endpoint: str, service_name: str):
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} is invalid; allowed: an http:// base URL such as "
                "http://localhost:4318 (the collector sidecar)"
            )
        self._host, self._port = parts.hostname, parts.port or 80
        self._path = parts.path.rstrip("/") + "/v1/traces"
        self._resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]}
        self._buffer: deque[Span] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.exported = 0
        self._failing = False

    def request(self, method: str, path: str, traceparent: bytes | None) -> RequestTrace | None:
        """The trace of one request, or None when its caller's traceparent says not sampled."""
        parent = parse_traceparent(traceparent.decode("latin-1")) if traceparent else None
        if parent is not None and not parent[2]:
            return None
        trace_id, parent_id = (parent[0], parent[1]) if parent else (new_trace_id(), None)
        root = Span("request", trace_id, parent_id, KIND_SERVER)
        root.attributes.update({"http.request.method": method, "url.path": path})
        return RequestTrace(self, root)

    def end(self, span: Span) -> None:
        span.end_ns = time.time_ns()
        if len(self._buffer) >= MAX_BUFFERED_SPANS:
            self.dropped += 1
            return
        self._buffer.append(span)
        if len(self._buffer) >= BATCH_SPANS:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is buffered (bounded by `timeout`) and stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(EXPORT_INTERVAL_SECONDS)
            self._wake.clear()
            stopping = self._stopping.is_set()
            while self._buffer:
                self._send([self._buffer.popleft() for _ in range(min(BATCH_SPANS, len(self._buffer)))])
            if stopping:
                return

    def _send(self, spans: list[Span]) -> None:
        # Imported here, on the exporter thread: http.client pulls in the email package, which a
        # worker without tracing (or its cold start) should not pay for.
        import http.client

        body = json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": self._resource,
                        "scopeSpans": [{"scope": {"name": SCOPE}, "spans": [s.otlp() for s in spans]}],
                    }
                ]
            }
        ).encode()
        connection = http.client.HTTPConnection(self._host, self._port, timeout=EXPORT_TIMEOUT_SECONDS)
        try:
            connection.request("POST", self._path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status // 100 != 2:
                raise OSError(f"collector answered {response.status}")
            self.exported += len(spans)
            self._failing = False
        except (OSError, http.client.HTTPException) as error:
            # A slow or absent collector costs these spans, never a request; logged once per outage.
            self.dropped += len(spans)
            if not self._failing:
                logs.event("trace_export_failed", spans=len(spans), error=f"{type(error).__name__}: {error}")
            self._failing = True
        finally:
            connection.close()


def from_env(env: Mapping[str, str] | None = None) -> Tracer | None:
    """A Tracer when OTEL_EXPORTER_OTLP_ENDPOINT is set (raises ConfigError when it is not an http URL)."""
    env = os.environ if env is None else env
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return None
    return Tracer(endpoint, env.get("OTEL_SERVICE_NAME", "").strip() or "gantry-worker")

"""Tracing: a real worker process exports its spans to a fake OTLP/HTTP collector; without the variables, nothing.

The fake collector is a local HTTP server that records every POST to /v1/traces. The worker runs as
the image runs it (`python -m worker`), configured only by the OTEL_* variables the infrastructure
sets with tracing on. Unit tests hold the W3C traceparent rules, the X-Ray-compatible ids and the
exporter's never-block behaviour; the tracing-off test proves no span object is built and no
connection is opened on the request path.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from worker import tracing
from worker.config import ConfigError
from worker_harness import call, embed


class _Collector(http.server.ThreadingHTTPServer):
    def __init__(self, status: int = 200, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.status, self.delay = status, delay

    def spans(self) -> list[dict]:
        return [
            {**span, "resource": rs["resource"], "scope": ss["scope"]}
            for body in self.bodies
            for rs in body["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        ]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:  # noqa: N802 - the http.server method name
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        time.sleep(self.server.delay)
        self.server.paths.append(self.path)
        self.server.bodies.append(body)
        self.send_response(self.server.status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def attributes(span: dict) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_a_request_is_one_trace_request_tokenize_queue_inference(start_worker, collector):
    worker = start_worker(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}", OTEL_SERVICE_NAME="gantry-test"
    )
    parent_trace, parent_span = "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
    status, _, _ = embed(worker, ["hello", "world"], timeout=60)
    assert status == 200
    status, _, _ = call(
        worker,
        "POST",
        "/v1/embeddings",
        {"model": "all-MiniLM-L6-v2", "input": "traced from outside"},
        headers={"traceparent": f"00-{parent_trace}-{parent_span}-01"},
    )
    assert status == 200
    wait_for(lambda: len([s for s in collector.spans() if s["name"] == "request"]) >= 2)
    assert set(collector.paths) == {"/v1/traces"}
    spans = collector.spans()
    assert {s["resource"]["attributes"][0]["value"]["stringValue"] for s in spans} == {"gantry-test"}
    by_trace: dict[str, list[dict]] = {}
    for span in spans:
        by_trace.setdefault(span["traceId"], []).append(span)
    assert len(by_trace) == 2
    outside = by_trace.pop(parent_trace)
    (own,) = by_trace.values()
    for trace in (own, outside):
        names = {s["name"]: s for s in trace}
        assert set(names) == {"request", "tokenize", "queue", "inference"}
        root = names["request"]
        assert root["kind"] == tracing.KIND_SERVER
        for child in ("tokenize", "queue", "inference"):
            assert names[child]["parentSpanId"] == root["spanId"]
            assert int(root["startTimeUnixNano"]) <= int(names[child]["startTimeUnixNano"])
            assert int(names[child]["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])
        # The steps follow each other: tokenize, then queue, then inference.
        assert int(names["tokenize"]["endTimeUnixNano"]) <= int(names["queue"]["startTimeUnixNano"])
        assert names["queue"]["endTimeUnixNano"] <= names["inference"]["startTimeUnixNano"]
        assert attributes(root)["http.response.status_code"] == "200"
        assert attributes(root)["gantry.tenant"] == "team-a"
        assert attributes(root)["url.path"] == "/v1/embeddings"
        assert all(len(s["spanId"]) == 16 and len(s["traceId"]) == 32 for s in trace)
    assert attributes(next(s for s in own if s["name"] == "request"))["gantry.inputs"] == "2"
    assert next(s for s in outside if s["name"] == "request")["parentSpanId"] == parent_span
    assert "parentSpanId" not in next(s for s in own if s["name"] == "request")
    # X-Ray's rule for new trace ids: the first 4 bytes are the Unix time the trace started.
    own_id = own[0]["traceId"]
    assert abs(int(own_id[:8], 16) - time.time()) < 600


def test_an_unsampled_caller_gets_no_spans(start_worker, collector):
    worker = start_worker(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}")
    status, _, _ = call(
        worker,
        "POST",
        "/v1/embeddings",
        {"model": "all-MiniLM-L6-v2", "input": "not sampled"},
        headers={"traceparent": "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"},
    )
    assert status == 200
    embed(worker, "sampled")
    wait_for(lambda: any(s["name"] == "request" for s in collector.spans()))
    worker.terminate()
    assert "5759e988bd862e3fe1be46a994272793" not in {s["traceId"] for s in collector.spans()}


def test_a_slow_or_absent_collector_never_delays_a_request(start_worker):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # Nothing listens on `port`: every export fails; the requests must not notice.
    worker = start_worker(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
    for _ in range(5):
        status, _, _ = embed(worker, "no collector", timeout=10)
        assert status == 200
    wait_for(lambda: any(line.get("event") == "trace_export_failed" for line in worker.log_lines()))
    assert sum(line.get("event") == "trace_export_failed" for line in worker.log_lines()) == 1


def test_end_never_blocks_and_a_full_buffer_drops():
    tracer = tracing.Tracer("http://127.0.0.1:9", "t")  # never started: nothing drains the buffer
    trace = tracer.request("POST", "/v1/embeddings", None)
    assert trace is not None
    started = time.perf_counter()
    for _ in range(tracing.MAX_BUFFERED_SPANS + 10):
        tracer.end(tracing.Span("s", trace.root.trace_id, None))
    assert time.perf_counter() - started < 1.0
    assert tracer.dropped == 10


def test_the_exporter_sends_batches_to_the_collector_and_drops_what_it_refuses(collector):
    tracer = tracing.Tracer(f"http://127.0.0.1:{collector.server_port}/", "svc")
    tracer.start()
    trace = tracer.request("GET", "/v1/models", None)
    assert trace is not None
    trace.finish(200, {"gantry.tenant": "team-a", "gantry.code": None})
    tracer.stop()
    assert tracer.exported == 1 and collector.paths == ["/v1/traces"]
    (span,) = collector.spans()
    assert span["scope"] == {"name": tracing.SCOPE} and span["status"] == {}
    assert attributes(span) == {
        "http.request.method": "GET",
        "url.path": "/v1/models",
        "http.response.status_code": "200",
        "gantry.tenant": "team-a",
    }
    collector.status = 503
    tracer = tracing.Tracer(f"http://127.0.0.1:{collector.server_port}", "svc")
    tracer.start()
    trace = tracer.request("POST", "/v1/embeddings", None)
    assert trace is not None
    trace.finish(500, {})
    tracer.stop()
    assert (tracer.exported, tracer.dropped) == (0, 1)
    assert collector.spans()[-1]["status"] == {"code": tracing.STATUS_ERROR}


TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, PARENT, True)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, False)),
        (f"01-{TRACE}-{PARENT}-01-future", (TRACE, PARENT, True)),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None),
        ("garbage", None),
    ],
)  # fmt: skip
def test_traceparent_follows_w3c_trace_context(header, parsed):
    assert tracing.parse_traceparent(header) == parsed


def test_new_ids_are_x_ray_compatible_hex():
    trace_id = tracing.new_trace_id(now_ns=1_480_615_200 * 10**9)
    assert trace_id.startswith("58406520") and len(trace_id) == 32 and int(trace_id, 16)
    assert len({tracing.new_span_id() for _ in range(1000)}) == 1000


def test_only_an_http_endpoint_enables_tracing():
    assert tracing.from_env({}) is None
    assert tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}) is None
    assert isinstance(tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}), tracing.Tracer)
    for bad in ("localhost:4318", "https://collector:4318", "grpc://localhost:4317", "http://:4318"):
        with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
            tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": bad})


def test_tracing_off_builds_no_span_and_opens_no_connection(model_dir, monkeypatch):
    from worker.api import WorkerApp
    from worker.config import load_settings
    from worker_harness import TENANT_KEYS, worker_env

    def forbidden(*args: Any, **kwargs: Any):
        raise AssertionError("tracing is off: nothing may build a span or connect")

    monkeypatch.setattr(tracing.Span, "__init__", forbidden)
    monkeypatch.setattr(tracing.RequestTrace, "__init__", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    env = worker_env(model_dir, 8000, INFERENCE_THREADS="1")
    app = WorkerApp(load_settings(env, cpus=1), tracer=tracing.from_env(env))
    assert app.tracer is None

    async def scenario() -> list[dict]:
        sent: list[dict] = []
        await app._startup()
        while app.state == "loading":
            await asyncio.sleep(0.05)
        body = json.dumps({"model": "all-MiniLM-L6-v2", "input": ["off", "again"]}).encode()
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "path": "/v1/embeddings",
            "method": "POST",
            "headers": [(b"authorization", f"Bearer {TENANT_KEYS['team-a']}".encode()), (b"traceparent", b"00-x")],
        }
        await app(scope, receive, send)
        await app._shutdown()
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 200

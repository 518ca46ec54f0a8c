"""What one short-text request costs on the event loop, piece by piece, on one pinned CPU.

Run from `app/` after building the model (see app/README.md, "Benchmark"). The benchmark reports
the event-loop thread's CPU per request under workload (a); this script splits it into what can be
timed alone, each on the CPU it is pinned to (`--cpu`), in thread CPU time:

- the HTTP stack's floor: uvicorn + httptools + uvloop serving a trivial ASGI app (a fixed answer
  after reading the body), under the same closed-loop load as (a) from bench/loadgen.py pinned to
  `--client-cpu`; nothing an application does can go below it on this stack;
- the worker's own steps on the golden queries (12 tokens on average): the tokenizer, the JSON
  body parsed and validated, the answer serialised, the log line, the limits and metrics, and the
  batcher's queue and cut per text with 32 texts waiting (as under (a)).

The sum is a lower bound of the worker's request path: it leaves out the awaits, futures and
thread hand-offs that join the steps. A measuring tool, not a test; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# The trivial app the floor is measured with, run as `python -c` under the same uvicorn options.
_FLOOR_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"object": "list"}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", ws="none",
            lifespan="off", log_config=None, access_log=False, server_header=False, proxy_headers=False)
"""


def per_call_us(function: Callable[[int], object], calls: int) -> float:
    started = time.thread_time()
    for index in range(calls):
        function(index)
    return (time.thread_time() - started) / calls * 1e6


def floor_us(args, texts_file: Path) -> float:
    """Event-loop CPU per request of a trivial ASGI app on uvicorn, under the (a) load."""
    from bench.benchmark import cpu_seconds

    server = subprocess.Popen(
        ["taskset", "-c", str(args.cpu), sys.executable, "-c", _FLOOR_APP, str(args.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/", data=b"{}", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("request_path_costs: the floor server did not start") from None
                time.sleep(0.05)
        before = cpu_seconds(server.pid, server.pid)
        command = [
            "taskset", "-c", str(args.client_cpu), sys.executable, str(BENCH_DIR / "loadgen.py"),
            "--url", f"http://127.0.0.1:{args.port}", "--texts-file", str(texts_file),
            "--concurrency", "32", "--warmup", "0", "--duration", str(args.duration),
        ]  # fmt: skip
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        after = cpu_seconds(server.pid, server.pid)
        return (after - before) / result["answered_total"] * 1e6
    finally:
        server.terminate()
        server.wait()


def worker_steps_us(model_dir: Path, calls: int) -> dict[str, float]:
    import numpy as np
    import orjson

    from worker import logs
    from worker.api import embeddings_response, parse_embeddings_request
    from worker.batcher import BatchFormer, _Request
    from worker.errors import decode_json_body
    from worker.golden import load_golden
    from worker.limits import TenantLimits
    from worker.metrics import Metrics
    from worker.model import Embedder

    queries = [case.query for case in load_golden()]
    embedder = Embedder(model_dir, 1)
    bodies = [orjson.dumps({"input": [query], "model": "all-MiniLM-L6-v2"}) for query in queries]
    vector = embedder.embed_ids(embedder.token_ids(queries[:1]))
    limits, metrics = TenantLimits(10**9, 10**12), Metrics("bench", "bench")

    def request_accounting(index: int) -> None:
        limits.admit_request("bench")
        limits.admit_tokens("bench", 12)
        metrics.request_started()
        metrics.request_finished("bench", 200, 12, 50.0)

    def log_line(index: int) -> None:
        logs.event("request", method="POST", path="/v1/embeddings", status=200, tenant="bench", inputs=1,
                   tokens=12, batch=10, latency_ms=50.0, code=None)  # fmt: skip

    ids = [embedder.token_ids([query])[0] for query in queries]
    former = BatchFormer(32, 2048, 0.002, 16)
    clock = [0.0]
    added = [0]

    def refill(count: int) -> None:
        for _ in range(count):
            former.add(ids[added[0] % len(ids)], _Request(None, np.empty(0), 1), 0, clock[0])
            added[0] += 1

    refill(32)
    texts = [0]

    def one_run(index: int) -> None:
        clock[0] += 0.01  # past every deadline: the cut around the oldest text, as under load
        former.ready(clock[0])
        batch = former.take(clock[0])
        texts[0] += len(batch)
        refill(len(batch))

    saved = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink  # the log line's cost, not the terminal's
        try:
            log_us = per_call_us(log_line, calls)
        finally:
            sys.stdout = saved
    runs = max(1, calls // 10)
    run_us = per_call_us(one_run, runs) * runs / max(1, texts[0])
    return {
        "tokenizer": per_call_us(lambda i: embedder.token_ids([queries[i % len(queries)]]), calls),
        "body parsed and validated": per_call_us(
            lambda i: parse_embeddings_request(decode_json_body(bodies[i % len(bodies)]), 256), calls
        ),
        "answer serialised": per_call_us(lambda i: embeddings_response(vector, "float", 12), calls),
        "log line": log_us,
        "limits and metrics": per_call_us(request_accounting, calls),
        "batcher queue and cut, per text": run_us,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("MODEL_DIR"), help="default: $MODEL_DIR")
    parser.add_argument("--cpu", type=int, default=0, help="CPU the server and the steps run on")
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU of the load generator")
    parser.add_argument("--port", type=int, default=18095)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load on the floor server")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timed step")
    args = parser.parse_args()
    if args.model_dir is None or not (Path(args.model_dir) / "model.onnx").is_file():
        parser.error("--model-dir (or $MODEL_DIR) must be a directory built by python -m worker.build_model")
    from worker.golden import load_golden

    with tempfile.TemporaryDirectory(prefix="gantry-costs-") as tmp:
        texts_file = Path(tmp) / "short.json"
        texts_file.write_text(json.dumps([case.query for case in load_golden()]))
        floor = floor_us(args, texts_file)
    os.sched_setaffinity(0, {args.cpu})
    steps = worker_steps_us(Path(args.model_dir), args.calls)
    load = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [
        f"Event-loop CPU per short-text request, microseconds, CPU {args.cpu}; load average at end {load}.",
        "",
        "| Step | µs |",
        "|---|---:|",
        f"| HTTP stack floor (uvicorn + httptools + uvloop, trivial app, (a) load) | {floor:.1f} |",
        *(f"| {name} | {value:.1f} |" for name, value in steps.items()),
        f"| **sum (a lower bound of the request path)** | **{floor + sum(steps.values()):.1f}** |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

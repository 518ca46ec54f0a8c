"""Closed-loop load generator for the embedding benchmark, run as its own process.

benchmark.py starts this script pinned to a different CPU from the server so
that generating load does not steal the server's core. Each of --concurrency
asyncio workers sends POST /v1/embeddings with --batch texts, waits for the
answer and sends the next, for a warm-up period (not recorded) and then until
--duration seconds or --max-requests requests, whichever comes first. It prints
one JSON object: counts, throughput and latency percentiles. It only talks to
the loopback URL it is given and reads the bearer key from $BENCH_API_KEY so
the key never appears in a process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
import numpy as np


async def run(args: argparse.Namespace, texts: list[str]) -> dict:
    # Serialise every distinct body up front: the client's CPU time per request
    # stays small and constant, so it measures the server and not json.dumps.
    bodies = [
        json.dumps({"input": [texts[(i + j) % len(texts)] for j in range(args.batch)], "model": args.model}).encode()
        for i in range(len(texts))
    ]
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("BENCH_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    url = args.url.rstrip("/") + "/v1/embeddings"

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sent = 0
    # Every answer, warm-up included: the server's CPU time over the whole run is divided by it.
    answered = 0
    started = time.perf_counter()
    measure_from = started + args.warmup
    deadline = measure_from + args.duration

    async def worker(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal sent, answered
        i = offset
        while True:
            now = time.perf_counter()
            if now >= deadline or sent >= args.max_requests:
                return
            body = bodies[i % len(bodies)]
            i += args.concurrency
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0  # reported as status "0": no HTTP answer at all
            t1 = time.perf_counter()
            answered += status != 0
            # Only requests sent after the warm-up and answered before the deadline
            # count, so the rate is not inflated by requests that straddle either edge.
            if t0 >= measure_from and t1 <= deadline:
                sent += 1
                statuses[status] += 1
                if status == 200:
                    latencies.append(t1 - t0)

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(n, session) for n in range(args.concurrency)))
    elapsed = min(time.perf_counter(), deadline) - measure_from

    ok = statuses.get(200, 0)
    lat_ms = np.asarray(latencies) * 1000.0
    return {
        "concurrency": args.concurrency,
        "batch": args.batch,
        "seconds": elapsed,
        "requests": sent,
        "answered_total": answered,
        "ok": ok,
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "texts_per_s": ok * args.batch / elapsed if elapsed > 0 else 0.0,
        "p50_ms": float(np.percentile(lat_ms, 50)) if ok else None,
        "p99_ms": float(np.percentile(lat_ms, 99)) if ok else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="server base URL on 127.0.0.1")
    parser.add_argument("--texts-file", required=True, help="JSON list of texts to send")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1, help="texts per request")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load first")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of recorded load")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many recorded requests")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    args = parser.parse_args()

    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only targets loopback servers")
    with open(args.texts_file, encoding="utf-8") as handle:
        texts = json.load(handle)
    print(json.dumps(asyncio.run(run(args, texts))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Batch path vs online batch-32 requests: texts/s on the same texts and CPU, interleaved in one run.

The issue's comparison (issue 22): the consumer (`python -m worker.consumer`) embedding a batch of
one text per line against the API (`python -m worker`) answering requests of 32 texts each from 4
clients (benchmark.py's scenario (b)), on the committed mixed-length workload (bench/workloads.py)
repeated to `--texts`. Both processes run the whole time, pinned to the same CPU set with
INFERENCE_THREADS equal to its size (one by default, as on a one-vCPU Fargate task); the benchmark
itself, moto's server (SQS, S3 and DynamoDB over HTTP, as app/tests/test_batch_e2e.py uses it) and
the client threads run on the other CPUs. Each round runs the online phase and then the batch phase
(A B A B ...), and the ratio is reported per round, so a change in the shared machine's load shows as
rounds that disagree instead of skewing one side; `uptime` is printed at start and end. The batch's
time runs from `batches.create` to `completed` (the consumer's `batch_finished` log line, so that no
polling loads the shared CPU), so it includes queueing, every part upload and checkpoint write, and
the output file's assembly; the online time is the whole phase's wall time. Beside wall-clock
texts/s it reports texts per CPU second of the process doing the work (the API's online, the
consumer's in batch, from /proc), which other jobs on a shared CPU disturb far less; a batch path
that idles (waiting on S3 or DynamoDB) shows only in the first.

    cd app && python bench/batch_vs_online.py --model-dir ../build/model --texts 1024 --rounds 6 --cpus 0

This measures, it does not judge: it prints JSON and exits 0 whatever the ratio.
Security stance: everything listens on 127.0.0.1 with throwaway credentials and no keys.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import workloads
from bench.batch_benchmark import MODEL, emulator, free_port, service_envs, start, wait_ready
from bench.benchmark import cpu_info

BATCH_SIZE = 32
CLIENTS = 4


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU seconds the process (all its threads) has used so far, from /proc."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def online(client, texts: list[str], batch_size: int, clients: int) -> float:
    """texts/s of `clients` closed-loop clients sending `batch_size` texts per request, in file order."""
    requests = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda chunk: client.embeddings.create(model=MODEL, input=chunk), requests))
    elapsed = time.perf_counter() - started
    if sum(len(answer.data) for answer in answers) != len(texts):
        raise SystemExit("the online phase lost texts")
    return len(texts) / elapsed


def upload(client, texts: list[str], workdir: Path) -> str:
    path = workdir / "batch.jsonl"
    with path.open("w") as out:
        for index, text in enumerate(texts):
            line = {"custom_id": f"t{index}", "method": "POST", "url": "/v1/embeddings"}
            out.write(json.dumps({**line, "body": {"model": MODEL, "input": text}}) + "\n")
    with path.open("rb") as handle:
        return client.files.create(file=handle, purpose="batch").id


def finished_at(log: Path, batch_id: str, timeout: float = 600) -> float:
    """The epoch time of the consumer's `batch_finished` event for `batch_id` (written right after `completed`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"batch_finished"' in line and batch_id in line:
                return float(json.loads(line)["ts"])
        time.sleep(0.2)
    raise SystemExit(f"batch {batch_id} did not finish in {timeout} s")


def batch(client, file_id: str, count: int, consumer_log: Path) -> float:
    """texts/s of one batch of one line per text, from batches.create to completed.

    The end is read from the consumer's log rather than by polling `batches.retrieve`: each poll
    would make the API, pinned to the same CPU, take time from the consumer it measures.
    """
    started = time.time()
    job = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    elapsed = finished_at(consumer_log, job.id) - started
    job = client.batches.retrieve(job.id)
    counts = job.request_counts.model_dump() if job.request_counts else {}
    if job.status != "completed" or counts.get("completed") != count:
        raise SystemExit(f"batch ended {job.status} with {counts}")
    return count / elapsed


def calibrated(log: Path, timeout: float = 30) -> dict | None:
    """The process's calibration event, waited for so that no phase runs under it (None: it logged none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"batch_calibrated"' in line:
                return json.loads(line)
        time.sleep(0.2)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1024, help="texts per phase (default 1024)")
    parser.add_argument("--rounds", type=int, default=6, help="online/batch pairs (default 6)")
    parser.add_argument("--cpus", default="0", help="CPU ids both worker processes are pinned to (default 0)")
    args = parser.parse_args()
    import openai

    cpus = {int(c) for c in args.cpus.split(",")}
    others = set(os.sched_getaffinity(0)) - cpus
    if others:
        # The client, moto and the JSON they parse must not compete with the processes measured.
        os.sched_setaffinity(0, others)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
    base = workloads.mixed_texts(workloads.tokenizer_for(args.model_dir))
    texts = (base * (args.texts // len(base) + 1))[: args.texts]
    load_before = uptime()
    server, aws = emulator()
    port = free_port()
    api_env, consumer_env = service_envs(args.model_dir, len(cpus), aws, port)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        api = start([sys.executable, "-m", "worker"], api_env, cpus, workdir / "api.log")
        consumer = start([sys.executable, "-m", "worker.consumer"], consumer_env, cpus, workdir / "consumer.log")
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            wait_ready(client, api)
            api_calibration = calibrated(workdir / "api.log")
            consumer_calibration = calibrated(workdir / "consumer.log")
            file_id = upload(client, texts, workdir)
            online(client, texts[: BATCH_SIZE * CLIENTS * 2], BATCH_SIZE, CLIENTS)  # warm-up, not counted
            for _ in range(args.rounds):
                before = cpu_seconds(api)
                online_rate = online(client, texts, BATCH_SIZE, CLIENTS)
                online_cpu = cpu_seconds(api) - before
                before = cpu_seconds(consumer)
                batch_rate = batch(client, file_id, len(texts), workdir / "consumer.log")
                batch_cpu = cpu_seconds(consumer) - before
                rounds.append((online_rate, batch_rate, len(texts) / online_cpu, len(texts) / batch_cpu))
        finally:
            for process in (api, consumer):
                process.terminate()
                process.wait(timeout=120)
            server.stop()
    ratios = [b / o for o, b, _, _ in rounds]
    cpu_ratios = [b / o for _, _, o, b in rounds]
    result = {
        "cpu": cpu_info(),
        "pinned_cpus": sorted(cpus),
        "texts_per_phase": len(texts),
        "online": f"{CLIENTS} clients x {BATCH_SIZE} texts per request",
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "calibration": {
            name: event and {key: event.get(key) for key in ("max_cells", "overhead_cells", "max_batch_size")}
            for name, event in (("api", api_calibration), ("consumer", consumer_calibration))
        },
        "rounds": [
            {
                "online_texts_per_s": round(o, 1),
                "batch_texts_per_s": round(b, 1),
                "batch_over_online": round(b / o, 3),
                "online_texts_per_cpu_s": round(oc, 1),
                "batch_texts_per_cpu_s": round(bc, 1),
                "batch_over_online_per_cpu_s": round(bc / oc, 3),
            }
            for o, b, oc, bc in rounds
        ],
        "batch_over_online_median": round(statistics.median(ratios), 3),
        "batch_over_online_per_cpu_s_median": round(statistics.median(cpu_ratios), 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

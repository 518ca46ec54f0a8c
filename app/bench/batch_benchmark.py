"""Batch workload: texts/s through the consumer (Batch API) vs the synchronous API, same CPU, same run.

One run starts moto's server (SQS, S3, DynamoDB over HTTP, as app/tests/test_batch_e2e.py does), the
API (`python -m worker`) and the consumer (`python -m worker.consumer`), both pinned to the same CPU
set with one inference thread, as on a one-vCPU Fargate task. It then embeds the same texts twice:
synchronously (32 clients, one text per request, through the official openai client) while the
consumer only long-polls, and as one batch (one line per text: `files.create`, `batches.create`, poll
`batches.retrieve` until completed) while the API is idle. The batch's time runs from `batches.create`
to `completed`, so it includes queueing, every checkpoint write and assembling the output file. The
texts are the committed mixed-length workload (bench/workloads.py), repeated to `--texts`. The two
phases alternate for `--rounds` rounds, so a change in the machine's load shows as rounds that disagree.

    python bench/batch_benchmark.py --model-dir ../build/model --texts 512 --rounds 2 --cpus 0

Results are ratios measured side by side; app/README.md ("Long jobs") quotes one with its CPU.
Security stance: everything listens on 127.0.0.1 with throwaway credentials and no keys.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent

# `bench` is a package of the repository's editable install (pyproject.toml).
from bench import workloads  # noqa: E402
from bench.benchmark import cpu_info  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator() -> tuple[object, dict[str, str]]:
    """moto's server with the queue, bucket and table; the environment that points boto3 at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    queue_url = session.client("sqs", endpoint_url=endpoint).create_queue(QueueName="bench")["QueueUrl"]
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-files")
    session.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName="bench-records",
        KeySchema=[{"AttributeName": "tenant", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "tenant", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return server, {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "QUEUE_URL": queue_url,
        "BATCH_BUCKET": "bench-files",
        "BATCH_TABLE": "bench-records",
    }


def service_envs(model_dir: Path, threads: int, aws: dict[str, str], port: int) -> tuple[dict, dict]:
    """The API's and the consumer's environments: no auth, budgets no benchmark reaches, one model."""
    common = {
        "PATH": os.environ.get("PATH", ""),
        "MODEL_DIR": str(model_dir.resolve()),
        "INFERENCE_THREADS": str(threads),
        **aws,
    }
    api_env = {**common, "PORT": str(port), "AUTH_DISABLED": "true", "TOKEN_BUDGET_PER_MINUTE": str(10**12)}
    api_env["RATE_LIMIT_REQUESTS_PER_MINUTE"] = str(10**9)
    consumer_env = {**common, "BATCH_TOKEN_BUDGET_PER_MINUTE": str(10**12), "WAIT_TIME_SECONDS": "1"}
    return api_env, consumer_env


def start(command: list[str], env: dict[str, str], cpus: set[int], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=APP_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )


def wait_ready(client, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited with {process.returncode}")
        try:
            client.embeddings.create(model=MODEL, input=["warm up"])
            return
        except Exception:  # noqa: BLE001 - not up yet; any failure means retry until the deadline
            time.sleep(0.5)
    raise SystemExit("the API did not become ready")


def synchronous(client, texts: list[str], clients: int) -> float:
    """texts/s with `clients` concurrent requests of one text each."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda text: client.embeddings.create(model=MODEL, input=[text]), texts))
    return len(texts) / (time.perf_counter() - started)


def batch(client, texts: list[str], workdir: Path) -> tuple[float, dict]:
    """texts/s of one batch of one line per text, from batches.create to completed."""
    path = workdir / "batch.jsonl"
    with path.open("w") as out:
        for index, text in enumerate(texts):
            line = {"custom_id": f"t{index}", "method": "POST", "url": "/v1/embeddings"}
            out.write(json.dumps({**line, "body": {"model": MODEL, "input": text}}) + "\n")
    with path.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="batch")
    started = time.perf_counter()
    job = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    while job.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.1)
        job = client.batches.retrieve(job.id)
    elapsed = time.perf_counter() - started
    counts = job.request_counts.model_dump() if job.request_counts else {}
    if job.status != "completed" or counts.get("completed") != len(texts):
        raise SystemExit(f"batch ended {job.status} with {counts}")
    return len(texts) / elapsed, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=2048, help="texts per workload (default 2048)")
    parser.add_argument("--clients", type=int, default=32, help="synchronous clients (default 32)")
    parser.add_argument("--cpus", default="0", help="CPU ids both processes are pinned to (default 0)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating synchronous/batch rounds (default 2): load drifts"
    )
    args = parser.parse_args()
    import openai

    cpus = {int(c) for c in args.cpus.split(",")}
    base = workloads.mixed_texts(workloads.tokenizer_for(args.model_dir))
    texts = (base * (args.texts // len(base) + 1))[: args.texts]
    server, aws = emulator()
    port = free_port()
    api_env, consumer_env = service_envs(args.model_dir, len(cpus), aws, port)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        api = start([sys.executable, "-m", "worker"], api_env, cpus, workdir / "api.log")
        consumer = start([sys.executable, "-m", "worker.consumer"], consumer_env, cpus, workdir / "consumer.log")
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            wait_ready(client, api)
            rounds = []
            for _ in range(args.rounds):
                sync_rate = synchronous(client, texts, args.clients)
                batch_rate, counts = batch(client, texts, workdir)
                rounds.append((sync_rate, batch_rate))
        finally:
            for process in (api, consumer):
                process.terminate()
                process.wait(timeout=120)
            server.stop()
    result = {
        "cpu": cpu_info(),
        "pinned_cpus": sorted(cpus),
        "texts": len(texts),
        "rounds": [
            {
                "synchronous_texts_per_s": round(s, 1),
                "batch_texts_per_s": round(b, 1),
                "batch_over_sync": round(b / s, 2),
            }
            for s, b in rounds
        ],
        "request_counts_last_batch": counts,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

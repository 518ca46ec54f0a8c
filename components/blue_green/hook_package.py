"""What goes into the hook function's archive, and the pure-JSON references the eval check packages.

`archive_files(check)` lists (path on disk, name in the archive) for `pulumi.AssetArchive`: the handler
always, and the golden set with fp32 references only for the eval check. `reference_document` turns the
model build's references.npz (fp32 torch embeddings of the golden texts, app/worker/build_model.py) and
the golden cases into the JSON the handler reads without numpy; `python -m
components.blue_green.hook_package --model-dir build/model` rewrites hook/golden.json, and a test checks
that the committed file matches what the model build produces within float32 tolerance
(`reference_drift`): the build runs on whatever CPU the developer or CI has, and its fp32 embeddings
differ by float rounding between CPUs, so no committed number is held to more digits than float32
carries. Security stance: the archive holds code
and public evaluation data only; no secret or key is ever packaged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

HOOK_DIR = Path(__file__).resolve().parent / "hook"
HANDLER = HOOK_DIR / "handler.py"
# The one-off task runner (standard library only), shipped beside the handler when deployment.preTraffic is set.
PRE_TRAFFIC = HOOK_DIR.parents[1] / "pre_traffic.py"
REFERENCE = HOOK_DIR / "golden.json"
LAMBDA_HANDLER = "handler.handler"
"""The function's `handler` setting for this archive layout."""
# Eight decimals keep each component within 5e-9 of fp32 (cosine changes in the 8th digit) at ~1 MB.
DECIMALS = 8
# How far a committed reference component may lie from a fresh build's and still be "the same
# reference". torch's fp32 kernels sum in a CPU-specific order (AVX2 and AVX-512 block the matmuls
# differently), and six transformer layers accumulate those roundings: an AVX-512 build differs from
# the AVX2 build that wrote golden.json by at most 1.6e-7 per component (float32's epsilon is 1.2e-7;
# the components are below 0.2, so this is a few ulps of float32 accumulated over the layers).
# 1e-5 leaves 60x headroom for other CPUs and still catches every real staleness: a changed model,
# tokenizer or text moves components by 1e-3 or more, and fewer DECIMALS rounds by 5e-4 or more.
# Its cost to the eval gate is bounded: for unit vectors a cosine moves by at most the reference's
# error norm, sqrt(384) * 1e-5 = 2e-4, a hundredth of the gate's 0.97 -> 0.985 margins.
REFERENCE_ATOL = 1e-5
# The same statement as the eval gate reads it: every text's cosine to the fresh build's vector.
# At REFERENCE_ATOL on every component 1 - cosine <= |error|^2 / 2 = 2e-8; measured across CPUs 4e-13.
REFERENCE_MIN_COSINE = 1 - 1e-6


def archive_files(check: str, *, pre_traffic: bool = False) -> list[tuple[Path, str]]:
    """(source path, archive name) of every file the hook needs for `check` ("eval" or "smoke"), plus the
    one-off task runner when the hook runs `deployment.preTraffic` first."""
    if check not in ("eval", "smoke"):
        raise ValueError(f"hook check={check!r} is invalid; allowed: eval, smoke")
    files = [(HANDLER, "handler.py")]
    if check == "eval":
        files.append((REFERENCE, "golden.json"))
    if pre_traffic:
        files.append((PRE_TRAFFIC, "pre_traffic.py"))
    for path, _ in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing; for golden.json run python -m components.blue_green.hook_package"
            )
    return files


def reference_document(references_npz: Path, golden_path: Path | None = None) -> dict[str, Any]:
    """The handler's reference data: golden cases, texts in the eval's order, fp32 embeddings."""
    import numpy as np

    # The worker is part of the installed package (pyproject.toml maps app/worker to `worker`).
    from worker.golden import DEFAULT_PATH, load_golden, reference_texts

    cases = load_golden(golden_path)
    texts = reference_texts(cases)
    with np.load(references_npz, allow_pickle=False) as npz:
        ref_texts = [str(t) for t in npz["texts"]]
        vectors = np.asarray(npz["embeddings"], dtype=np.float64)
    index = {text: row for row, text in enumerate(ref_texts)}
    missing = [t for t in texts if t not in index]
    if missing:
        raise ValueError(
            f"{references_npz} lacks {len(missing)} golden text(s), e.g. {missing[0][:60]!r}; rebuild the model"
        )
    golden_bytes = Path(golden_path or DEFAULT_PATH).read_bytes()
    return {
        "model_id": "all-MiniLM-L6-v2",
        "golden_sha256": hashlib.sha256(golden_bytes).hexdigest(),
        "cases": [{"id": c.id, "query": c.query, "candidates": list(c.candidates)} for c in cases],
        "texts": texts,
        "embeddings": [[round(float(x), DECIMALS) for x in vectors[index[t]]] for t in texts],
    }


def reference_drift(committed: ArrayLike, rebuilt: ArrayLike) -> list[str]:
    """Why the committed reference embeddings are not the rebuilt ones (empty when they agree within
    float32 tolerance, see REFERENCE_ATOL): a shape change, a component further than REFERENCE_ATOL,
    or a text whose cosine to its rebuilt vector is below REFERENCE_MIN_COSINE."""
    import numpy as np

    old = np.asarray(committed, dtype=np.float64)
    new = np.asarray(rebuilt, dtype=np.float64)
    if old.shape != new.shape:
        return [f"shape {old.shape} != rebuilt {new.shape}"]
    problems = []
    error = np.abs(old - new)
    if not np.isfinite(error).all() or error.max() > REFERENCE_ATOL:
        row, col = np.unravel_index(int(np.argmax(np.where(np.isfinite(error), error, np.inf))), error.shape)
        problems.append(f"text {row} component {col} differs by {error[row, col]:.3g} (tolerance {REFERENCE_ATOL:g})")
    norms = np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.einsum("ij,ij->i", old, new) / norms
    low = np.flatnonzero(~(cosines >= REFERENCE_MIN_COSINE))
    if low.size:
        problems.append(f"{low.size} text(s) below cosine {REFERENCE_MIN_COSINE}, e.g. text {low[0]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.blue_green.hook_package", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="directory written by python -m worker.build_model"
    )
    args = parser.parse_args(argv)
    document = reference_document(args.model_dir / "references.npz")
    REFERENCE.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE} ({len(document['texts'])} texts)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

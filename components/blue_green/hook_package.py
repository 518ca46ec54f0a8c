"""What goes into the hook function's archive, and the pure-JSON references the eval check packages.

`archive_files(check)` lists (path on disk, name in the archive) for `pulumi.AssetArchive`: the handler
always, and the golden set with fp32 references only for the eval check. `reference_document` turns the
model build's references.npz (fp32 torch embeddings of the golden texts, app/worker/build_model.py) and
the golden cases into the JSON the handler reads without numpy; `python -m
components.blue_green.hook_package --model-dir build/model` rewrites hook/golden.json, and a test checks
that the committed file matches what the model build produces. Security stance: the archive holds code
and public evaluation data only; no secret or key is ever packaged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HOOK_DIR = Path(__file__).resolve().parent / "hook"
HANDLER = HOOK_DIR / "handler.py"
# The one-off task runner (standard library only), shipped beside the handler when deployment.preTraffic is set.
PRE_TRAFFIC = HOOK_DIR.parents[1] / "pre_traffic.py"
REFERENCE = HOOK_DIR / "golden.json"
LAMBDA_HANDLER = "handler.handler"
"""The function's `handler` setting for this archive layout."""
# Eight decimals keep each component within 5e-9 of fp32 (cosine changes in the 8th digit) at ~1 MB.
DECIMALS = 8


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

    app_dir = Path(__file__).resolve().parents[2] / "app"
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
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

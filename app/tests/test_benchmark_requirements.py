"""The benchmark measures the worker's installed dependencies from the hash-locked runtime lock."""

from __future__ import annotations

import importlib.util
import sys

from conftest import APP_DIR


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gantry_benchmark", APP_DIR / "bench" / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_runtime_lock_reads_as_exact_pins_with_markers_applied():
    requirements = load_benchmark().read_requirements(APP_DIR / "requirements.txt")
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"onnxruntime", "tokenizers", "numpy", "uvicorn"} <= names
    assert all("==" in r and "\\\\" not in r and "--hash" not in r for r in requirements)
    # Entries the lock disables with a never-true marker (tokenizers' unused huggingface_hub) are not counted.
    assert "huggingface-hub" not in names and "huggingface_hub" not in names

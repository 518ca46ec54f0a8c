"""Regenerates every hash-locked requirements file from its human-edited ``*.in`` input, with uv.

Run it from the dev virtualenv (uv is pinned in requirements-dev.txt): ``python scripts/lock.py``.
Extra arguments go to every uv call: ``--upgrade`` moves everything to the newest versions the inputs
allow, ``--upgrade-package NAME`` one package. The locks are universal (one file for x86_64 and
aarch64 Linux and Apple-silicon macOS, environment markers where they differ) for Python 3.11, the
project's Python (CI, the worker image); only torch's hashes are limited to 3.11 (see below).

The development lock is resolved first and the others take it as a constraint, so a package has one
version in every lock and the worker image runs exactly what the tests ran.

torch on Linux is the CPU build, 2.13.0+cpu, which only the PyTorch CPU wheel index serves.
TORCH_FIND_LINKS says where uv finds it: that index's torch page by default, or a directory holding
the wheel (a machine that cannot reach the index). uv hashes only the wheels it sees, so the script
then adds the CPU index's published digests from TORCH_CPU_WHEELS for the Linux wheels uv did not
see, so the lock installs on both architectures. Security stance: every file pip may install is
pinned by sha256; the PyTorch index is only a place to fetch a file whose digest the lock already
holds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TORCH_FIND_LINKS = "https://download.pytorch.org/whl/cpu/torch/"

# (output, input, extra uv arguments), in order: the dev lock first, the constraint of the others.
LOCKS: list[tuple[str, str, list[str]]] = [
    ("requirements-dev.txt", "requirements-dev.in", []),
    ("requirements.txt", "requirements.in", ["--constraint", "requirements-dev.txt"]),
    (
        "app/requirements.txt",
        "app/requirements.in",
        ["--constraint", "requirements-dev.txt", "--override", "app/requirements-overrides.txt"],
    ),
    ("app/requirements-build.txt", "app/requirements-build.in", ["--constraint", "requirements-dev.txt"]),
    ("app/requirements-bench.txt", "app/requirements-bench.in", ["--constraint", "requirements-dev.txt"]),
    # Not constrained by the dev lock: pulumi-policy 1.21.0 needs protobuf 5 (see policy/requirements.in).
    ("policy/requirements.txt", "policy/requirements.in", []),
]

# sha256 of the CPU index's Linux torch wheels for Python 3.11, as the index lists them at
# https://download.pytorch.org/whl/cpu/torch/ (x86_64 also recomputed from the downloaded wheel).
# A torch upgrade fails below until its wheels are added here.
TORCH_CPU_WHEELS: dict[str, str] = {
    "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl": (
        "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"
    ),
    "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_aarch64.whl": (
        "84453b69508ec79902f899c5ed9495acb9e2bbe9fda5f1d5d6f19e3c3842e1a7"
    ),
}

TORCH_CPU_ENTRY = re.compile(r"^torch==(?P<version>[^\s;]+\+cpu)\b.*?(?=^\S|\Z)", re.MULTILINE | re.DOTALL)
HASH_LINE = re.compile(r"^    --hash=sha256:(?P<digest>[0-9a-f]{64})(?: \\)?$", re.MULTILINE)


def torch_cpu_digests(version: str) -> list[str]:
    """The recorded digests of the CPU index's wheels of torch `version` (e.g. "2.13.0+cpu")."""
    return [digest for name, digest in TORCH_CPU_WHEELS.items() if name.split("-")[1] == version]


def add_torch_cpu_hashes(lock: str) -> str:
    """`lock` with every recorded CPU-wheel digest on its torch +cpu entry (sorted, deduplicated)."""
    match = TORCH_CPU_ENTRY.search(lock)
    if match is None:
        return lock
    version = match["version"]
    recorded = torch_cpu_digests(version)
    if not recorded:
        raise SystemExit(
            f"lock: no CPU-wheel digests recorded for torch {version}: add its Linux cp311 wheels from "
            f"{DEFAULT_TORCH_FIND_LINKS} to TORCH_CPU_WHEELS in scripts/lock.py"
        )
    entry = match.group(0)
    hash_lines = list(HASH_LINE.finditer(entry))
    if not hash_lines:
        raise SystemExit(f"lock: the torch {version} entry has no hashes; run uv with --generate-hashes")
    digests = sorted({line["digest"] for line in hash_lines} | set(recorded))
    head = entry[: hash_lines[0].start()]
    tail = entry[hash_lines[-1].end() :]
    body = " \\\n".join(f"    --hash=sha256:{digest}" for digest in digests)
    return lock.replace(entry, head + body + tail, 1)


def main(uv_args: list[str]) -> int:
    find_links = os.environ.get("TORCH_FIND_LINKS", DEFAULT_TORCH_FIND_LINKS)
    compile_command = [
        sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--universal", "--python-version", "3.11",
        "--generate-hashes", "--find-links", find_links, "--custom-compile-command", "python scripts/lock.py",
    ]  # fmt: skip
    for output, source, extra in LOCKS:
        print(f"lock: {source} -> {output}", file=sys.stderr)
        subprocess.run([*compile_command, *extra, *uv_args, source, "-o", output], cwd=ROOT, check=True)
        path = ROOT / output
        path.write_text(add_torch_cpu_hashes(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

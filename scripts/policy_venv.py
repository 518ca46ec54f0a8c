"""Create policy/venv, the policy pack's own virtualenv, from policy/requirements.txt (--require-hashes).

`pulumi preview|up --policy-pack policy` does not create it: for a local pack the CLI only loads the
analyzer (pkg/engine/update.go `installAndLoadPolicyPlugins` installs Pulumi Cloud's required packs,
not `--policy-pack` paths), and the Python analyzer shim stops with "'venv' doesn't appear to be a
virtual environment" when it is missing (sdk/python/dist/pulumi-analyzer-policy-python). So every
setup and workflow that passes `--policy-pack` runs `python3 scripts/policy_venv.py` first. Stdlib only,
so any python3 runs it. The pack imports `policy` and `components` from the repository, so the venv also
gets the repository's editable install, as the development one does (`pip install --no-deps
--no-build-isolation -e .`: the lock's dependencies only, built with the lock's setuptools), instead of a
path fix in policy/__main__.py. Security stance: every file pip installs must match a sha256 of the lock
(--require-hashes) and pip is used as the venv ships it (an upgrade would be an unpinned download); the
editable install downloads nothing. An existing venv is reused only while its stamp matches the digest of
the lock and of pyproject.toml (what the editable install is made from); otherwise it is rebuilt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "policy" / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
VENV = ROOT / "policy" / "venv"
STAMP_NAME = "gantry-requirements.sha256"
"""Inside the venv: the sha256 of the lock and pyproject.toml it was filled from (a change rebuilds it)."""


def lock_digest(lock: Path = LOCK) -> str:
    return hashlib.sha256(lock.read_bytes() + b"\0" + PYPROJECT.read_bytes()).hexdigest()


def is_current(target: Path = VENV, lock: Path = LOCK) -> bool:
    """Whether `target` is a complete venv filled from this very lock."""
    stamp = target / STAMP_NAME
    return (target / "bin" / "python").is_file() and stamp.is_file() and stamp.read_text().strip() == lock_digest(lock)


def ensure(target: Path = VENV, lock: Path = LOCK) -> Path:
    """The pack's interpreter, after (re)building `target` from `lock` unless it is current."""
    python = target / "bin" / "python"
    if is_current(target, lock):
        return python
    shutil.rmtree(target, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(lock)], check=True)
    # Then the repository itself, as the documented install does (the pack imports `components`).
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    # Written last: an interrupted install leaves no stamp and is rebuilt next time.
    (target / STAMP_NAME).write_text(lock_digest(lock) + "\n")
    return python


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)

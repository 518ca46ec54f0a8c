"""docs/own-service.md, performed as written on a team's service outside the repository.

Convention for fenced commands in the README and docs/: a block whose info string is `sh` is run by a
test exactly as written; `sh aws` marks commands that need an AWS account (no test runs them). Every
other shell-looking block is refused here, so a command cannot slip in unmarked.

The test makes what a newcomer has after cloning: a copy of this checkout's files (what `git clone`
gives, uncommitted edits included) in a temporary directory, and beside it the team's service
(`tests/guide_service`: port 8080, health path /healthz, two secrets) as `../my-api`, so the service is
outside the repository. It runs every `sh` command of the guide there, in order, with the dev
environment's Python first on PATH (the install is excluded from the count), and counts the commands
from the clone to the plan: the clone itself plus each `sh` command, at most five. The plan must exit 0
(the program accepts the stack file, no mandatory policy finding). The stack file the scaffold wrote is
then held to the service itself: started with the port and secrets it declares, the service answers the
health path, and the health command it declares succeeds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.harness import ROOT

GUIDE = ROOT / "docs" / "own-service.md"
SERVICE = ROOT / "tests" / "guide_service"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "zsh"}
MAX_COMMANDS = 5  # issue 21's goal: from a fresh clone to a clean offline plan


def blocks(text: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for info, body in FENCE.findall(text)]


def commands(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_shell_block_is_run_by_a_test_or_marked_as_needing_aws():
    for info, body in blocks(GUIDE.read_text()):
        language = info.split()[0] if info else ""
        if language in SHELL_LANGUAGES:
            assert info in ("sh", "sh aws"), f"unmarked shell block ({info!r}): {body[:80]}"


def fresh_clone(dest: Path) -> None:
    """The checkout's files as a clone has them (tracked and new, not ignored), committed in a new repository."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True, check=True
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        elif source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(os.readlink(source))
    # A clone is a git checkout: the program records its commit on the image.
    git = ["git", "-C", str(dest), "-c", "user.name=guide", "-c", "user.email=guide@acme-ai.io"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_guide_takes_a_team_service_outside_the_repository_to_a_clean_plan(tmp_path: Path):
    checkout, service = tmp_path / "gantry", tmp_path / "my-api"
    fresh_clone(checkout)
    shutil.copytree(SERVICE, service)
    steps = [c for info, body in blocks(GUIDE.read_text()) if info == "sh" for c in commands(body)]
    assert 1 + len(steps) <= MAX_COMMANDS, steps  # the clone, then the guide's own commands
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for step in steps:
        done = subprocess.run(["bash", "-c", step], cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (step, done.stdout[-3000:], done.stderr[-3000:])
        assert "Traceback" not in done.stderr, done.stderr
        outputs.append(done.stdout)
    assert "every mandatory rule passes" in outputs[-1]
    # The commands the scaffold says are left are the ones the guide's AWS blocks give.
    aws = {c for info, body in blocks(GUIDE.read_text()) if info == "sh aws" for c in commands(body)}
    printed = [line for line in outputs[0].split("\nnext:\n", 1)[1].splitlines() if line and line[0] != "#"]
    assert set(printed) <= aws, set(printed) - aws

    config = yaml.safe_load((checkout / "Pulumi.my-api.yaml").read_text())["config"]
    assert config["gantry:image"] == {"context": "../my-api"}  # outside the repository
    container = config["gantry:container"]
    port = free_port()
    secrets = {s["name"]: f"guide-test-{s['name'].lower()}" for s in config["gantry:secrets"]}
    run_env = {"PATH": "/usr/bin:/bin", "PORT": str(port), **secrets}
    proc = subprocess.Popen([sys.executable, "service.py"], cwd=service, env=run_env)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{container['healthCheckPath']}", timeout=1) as r:
                    assert r.status == 200 and json.load(r) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the service never answered"
                time.sleep(0.1)
        command = container["healthCheckCommand"]
        assert command[0] == "CMD"
        executable = sys.executable if command[1] == "python" else command[1]
        check = subprocess.run([executable, *command[2:]], cwd=service, env=run_env, timeout=10)
        assert check.returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)

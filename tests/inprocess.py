"""`python -m gantry.plan` and `python -m gantry.init` run inside the test process: what a subprocess would
print and exit with.

A plan subprocess spends ~4 s of CPU importing the Pulumi SDKs and the provider modules before it
synthesizes anything; in a test process that has them imported, a plan takes a fraction of a second.
The config matrix (tests/test_plan_config_matrix.py) runs its many stack files this way, and keeps true
subprocess cases for what only a process shows (the exit status, no traceback, nothing else on stderr);
tests/test_init.py runs the scaffold's repeat runs this way beside one process whose output they equal.

What stays equal to the subprocess: the command line (`gantry.plan.main(argv)`), the checkout it plans
(the plan's ROOT and the working directory are the checkout it was started in, as `python -m` from there
would have them), the environment, stdout, stderr and the exit status (argparse's `SystemExit`
included); an exception the plan lets escape is printed as the interpreter would, "Traceback" and all.
What cannot be equal is the imported code: this process imported this checkout's. So the checkout must
hold the same program (a copy of this one, with its own stack files) and name its commit in GITHUB_SHA,
as CI does: the program then asks no git of the checkout it was imported from. Both are checked, not
assumed. Security stance: only the checkout's files are read; nothing is written but what the plan writes
itself (`--output`) or the scaffold writes (its stack file).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import subprocess
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from components import stack_config
from gantry import init, plan
from tests.harness import ROOT

# What the program, the plan and its policy rules are made of: the modules a subprocess would import.
PROGRAM = ("__main__.py", "components", "gantry", "policy/rules.py")


def _code(root: Path) -> dict[str, str]:
    files: list[Path] = []
    for name in PROGRAM:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_main(
    root: Path, main: Callable[[list[str]], int], argv: list[str], env: Mapping[str, str]
) -> tuple[int, str, str]:
    """`main(argv)` as the interpreter would run it from `root` with `env`: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None
    with (
        contextlib.chdir(root),
        _environment(env),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's usage errors, as the interpreter would exit
            code = stop.code
        except Exception:  # noqa: BLE001 - what the interpreter prints for an uncaught exception, exit 1
            traceback.print_exc()
            code = 1
    if code is None:
        code = 0
    elif isinstance(code, str):
        print(code, file=stderr)
        code = 1
    return code, stdout.getvalue(), stderr.getvalue()


def run_plan(root: Path, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m gantry.plan *args` started in checkout `root` with environment `env`, in this process."""
    if root != ROOT and _code(root) != _code(ROOT):
        raise AssertionError(f"{root} holds another program than this process imported: run the plan as a process")
    if "GITHUB_SHA" not in env:
        raise AssertionError("set GITHUB_SHA: without it the program reads the revision of the imported checkout")
    # The plan reads the ROOT it imported from gantry.offline: its own module global is the one to set.
    names = vars(plan)
    saved_root = names["ROOT"]
    names["ROOT"] = root
    try:
        code, out, err = _run_main(root, plan.main, list(args), env)
    finally:
        names["ROOT"] = saved_root
    return subprocess.CompletedProcess(["python", "-m", "gantry.plan", *args], code, out, err)


def run_init(root: Path, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m gantry.init *args` started in checkout `root` with environment `env`, in this process.

    A process started in `root` imports that checkout's program, which resolves its paths (`../my-api`,
    the git revision it labels the image with) from its own directory, `components.stack_config
    .PROJECT_DIR`, and the scaffold writes and plans in it (`project_dir`, whose default is bound to the
    imported checkout): both are set to `root` for the run and put back after."""
    if root != ROOT and _code(root) != _code(ROOT):
        raise AssertionError(f"{root} holds another program than this process imported: run the scaffold as a process")
    names, program = vars(init), vars(stack_config)
    saved = names["scaffold"], program["PROJECT_DIR"]
    names["scaffold"] = functools.partial(saved[0], project_dir=root)
    program["PROJECT_DIR"] = root
    try:
        code, out, err = _run_main(root, init.main, list(args), env)
    finally:
        names["scaffold"], program["PROJECT_DIR"] = saved
    return subprocess.CompletedProcess(["python", "-m", "gantry.init", *args], code, out, err)

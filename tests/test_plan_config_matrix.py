"""The offline plan says about a stack file's config what `pulumi preview` would: a matrix of stack files.

Each case is a stack file (the committed dev stack with one change) and what the Pulumi CLI would hand the
program for it, written out by hand from the CLI's rules (pulumi/pulumi sdk/go/common/workspace/loaders.go
`stackConfigNamespacedWithProject`: a key without a namespace is the project's; key.go `ParseKey`;
`pulumi config set --secret [--path]` stores `secure:` values, decrypted for the program and listed as
secret keys: https://www.pulumi.com/docs/iac/concepts/secrets/). The plan runs on the file in a copy of
this checkout (in this process, tests/inprocess.py, and three cases also as a subprocess); the program
(`__main__.py` under mocks) runs on the CLI's view. Their verdicts must agree: accepted by both, or
refused by both with the program's own message, which the plan prints on stderr with exit status 2 and
no traceback. Where the CLI itself refuses the file (YAML it
cannot parse, a `config:` that is no mapping, a key it cannot parse) the program never runs: the plan
refuses with exit 2 and a message naming the file.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from gantry.offline import STAND_IN_PREFIX, TEST_SECRET_VALUE, run_program, stack_config
from tests.harness import ROOT
from tests.inprocess import run_plan

DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
# What an operator would set with `pulumi config set --secret --path 'secretValues.API_KEYS'`: the CLI
# hands the program this plaintext; the stack file holds only its ciphertext.
REAL_KEYS = '{"gantry-eval": "k-matrix-real-eval-5be1", "team-a": "k-matrix-real-team-a-90d3"}'
CIPHERTEXT = "v1:c2FsdHlzYWx0:AAAAAAAAAAAAAAAAbWF0cml4LWNpcGhlcnRleHQ="


@dataclass(frozen=True)
class Case:
    name: str
    stack_file: str
    """The Pulumi.<stack>.yaml text."""
    cli_view: dict[str, Any] | None = None
    """The config the CLI passes (project defaults + stack file, qualified, decrypted); None: the CLI refuses."""
    secret_keys: list[str] = field(default_factory=list)
    refusal: str = ""
    """What the refusal says (a part of the program's message, or of the plan's for a CLI refusal); '' accepted."""


def _defaults() -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return {f"gantry:{k}": v["default"] for k, v in project["config"].items()}


def _dev_with(changes: dict[str, Any], drop: tuple[str, ...] = ()) -> str:
    document = copy.deepcopy(DEV)
    for key in drop:
        del document["config"][key]
    document["config"].update(changes)
    return yaml.safe_dump(document, sort_keys=False)


def _view(changes: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    view = {**_defaults(), **copy.deepcopy(DEV["config"])}
    for key in drop:
        del view[key]
    view.update(changes)
    return view


# What the committed dev stack runs with once its team set API_KEYS as the README says.
SET_KEYS = {"gantry:secretValues": {"API_KEYS": REAL_KEYS}}
BAD_PORT = {"port": "8000"}  # a string where the validator wants a whole number

CASES = [
    Case(
        "secure value set with --path",
        _dev_with({"gantry:secretValues": {"API_KEYS": {"secure": CIPHERTEXT}}}),
        _view(SET_KEYS),
        ["gantry:secretValues"],
    ),
    Case(
        "secure object set without --path",
        _dev_with({"gantry:secretValues": {"secure": CIPHERTEXT}}),
        _view(SET_KEYS),
        ["gantry:secretValues"],
    ),
    Case(
        "unprefixed key belongs to the project",
        _dev_with(
            {"container": BAD_PORT, "secretValues": {"API_KEYS": {"secure": CIPHERTEXT}}}, drop=("gantry:container",)
        ),
        # The CLI's view: both keys qualified under the project (gantry), values as written.
        _view({"gantry:container": BAD_PORT, **SET_KEYS}),
        ["gantry:secretValues"],
        refusal="gantry:container.port: '8000' is not allowed",
    ),
    Case(
        "other project's namespace is not gantry's",
        _dev_with({"other:container": BAD_PORT, "gantry:secretValues": {"API_KEYS": {"secure": CIPHERTEXT}}}),
        _view({"other:container": BAD_PORT, **SET_KEYS}),
        ["gantry:secretValues"],
    ),
    Case(
        "secure value in another namespace",
        _dev_with({"other:token": {"secure": CIPHERTEXT}, "gantry:secretValues": {"API_KEYS": {"secure": CIPHERTEXT}}}),
        _view({"other:token": "k-matrix-other-token-77af", **SET_KEYS}),
        ["gantry:secretValues", "other:token"],
    ),
    Case(
        "secret values in plain text",
        _dev_with(SET_KEYS),
        _view(SET_KEYS),
        [],
        refusal="gantry:secretValues: is stored in plain text",
    ),
    Case(
        "validator error",
        _dev_with({"gantry:container": {**DEV["config"]["gantry:container"], **BAD_PORT}}),
        _view({"gantry:container": {**DEV["config"]["gantry:container"], **BAD_PORT}, **SET_KEYS}),
        ["gantry:secretValues"],
        refusal="gantry:container.port: '8000' is not allowed",
    ),
    Case(
        "no config: (optional for the CLI)",
        "# a stack file someone emptied\nsecretsprovider: passphrase\n",
        _defaults(),
        [],
        refusal="aws:region: is not set",
    ),
    Case("config: is a list", "config:\n  - aws:region\n", None, refusal="`config:` must be a mapping"),
    Case("YAML syntax error", "config:\n  aws:region: [eu-west-1\n", None, refusal="not valid YAML"),
    Case("unparsable key", _dev_with({"gantry:config:x:y": 1}), None, refusal="could not parse 'gantry:config:x:y'"),
]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout's files, where the matrix's stack files are written."""
    copy_root = tmp_path_factory.mktemp("matrix")
    for name in filter(None, _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")):
        source = ROOT / name
        if source.is_symlink() or source.is_file():
            (copy_root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy_root / name, follow_symlinks=False)
    return copy_root


def program_verdict(stack: str, case: Case) -> str:
    """'' when the program under mocks accepts the CLI's view of the case, else its refusal message."""
    assert case.cli_view is not None
    try:
        run_program(stack, copy.deepcopy(case.cli_view), list(case.secret_keys))
    except pulumi.RunError as error:
        return str(error)
    return ""


# The cases also run as a real `python -m gantry.plan` process: one the program accepts, one it refuses,
# one the CLI refuses. Only a process shows its exit status end to end and that nothing but the message
# (no traceback, no stray warning) reaches stderr; every case runs in-process (tests/inprocess.py).
END_TO_END = ("secure value set with --path", "validator error", "YAML syntax error")
STACK = "matrix"
# The copy is no git checkout: the commit the program records is given as CI gives it.
SHA = "0" * 39 + "1"


def assert_agrees(case: Case, result: subprocess.CompletedProcess[str]) -> None:
    """The plan's verdict on `case` (its exit status, stdout and stderr) is the program's."""
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (REAL_KEYS, CIPHERTEXT, TEST_SECRET_VALUE):
        assert secret not in result.stdout + result.stderr
    if case.cli_view is None:  # the CLI refuses the file: no program runs
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"gantry.plan: Pulumi.{STACK}.yaml: ") and case.refusal in result.stderr
        return
    verdict = program_verdict(STACK, case)
    if case.refusal:
        assert case.refusal in verdict, verdict
        assert result.returncode == 2, result.stderr
        # The program's own message, whole, naming the file it came from.
        assert result.stderr == f"gantry.plan: Pulumi.{STACK}.yaml: {verdict}\n"
    else:
        assert verdict == "", verdict
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["mandatoryFindings"] == 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_plan_and_the_program_agree(checkout: Path, case: Case) -> None:
    (checkout / f"Pulumi.{STACK}.yaml").write_text(case.stack_file)
    result = run_plan(checkout, STACK, "--no-diff", "--json", env={**os.environ, "GITHUB_SHA": SHA})
    assert_agrees(case, result)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in END_TO_END], ids=END_TO_END)
def test_the_plan_process_and_the_program_agree(checkout: Path, case: Case) -> None:
    (checkout / f"Pulumi.{STACK}.yaml").write_text(case.stack_file)
    result = subprocess.run(
        [sys.executable, "-m", "gantry.plan", STACK, "--no-diff", "--json"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GITHUB_SHA": SHA},
    )
    assert_agrees(case, result)
    # And the in-process run says exactly what the process said: the runner is the command.
    inside = run_plan(checkout, STACK, "--no-diff", "--json", env={**os.environ, "GITHUB_SHA": SHA})
    assert (inside.returncode, inside.stdout, inside.stderr) == (result.returncode, result.stdout, result.stderr)


def test_the_end_to_end_cases_are_matrix_cases() -> None:
    names = [c.name for c in CASES]
    assert all(name in names for name in END_TO_END), END_TO_END


def test_a_secure_value_runs_as_a_recognisable_stand_in_of_the_shape_its_key_needs(checkout: Path) -> None:
    """The stand-in is the sample worker's tenant -> key JSON with deployment.evalTenant's key, marked
    secret, never the ciphertext; a re-encrypted value gives another stand-in (a changed secret is a change)."""
    from gantry.offline import cli_config

    (checkout / "Pulumi.matrix.yaml").write_text(
        _dev_with(
            {
                "gantry:deployment": {"strategy": "rolling", "evalTenant": "eval-bot"},
                "gantry:secretValues": {"API_KEYS": {"secure": CIPHERTEXT}},
            }
        )
    )
    config, secret_keys = cli_config(stack_config("matrix", checkout))
    tenants = json.loads(config["gantry:secretValues"]["API_KEYS"])
    assert "eval-bot" in tenants and all(k.startswith(STAND_IN_PREFIX) for k in tenants.values())
    assert secret_keys == ["gantry:secretValues"]
    other, _ = cli_config({**config, "gantry:secretValues": {"API_KEYS": {"secure": CIPHERTEXT + "x"}}})
    assert other["gantry:secretValues"]["API_KEYS"] != config["gantry:secretValues"]["API_KEYS"]
    # Another namespace's secret reaches the program as the CLI hands it: a (stand-in) string, marked secret.
    foreign, foreign_keys = cli_config({"aws:secretKey": {"secure": CIPHERTEXT}})
    assert foreign["aws:secretKey"].startswith(STAND_IN_PREFIX) and foreign_keys == ["aws:secretKey"]

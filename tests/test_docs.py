"""The README and docs/, held to what they say: every fenced command is accounted for, every link lands.

The registry of fenced commands is the fence's info string, one convention for README.md, docs/*.md and
bootstrap/README.md (docs/own-service.md introduced it):

- `sh`: run exactly as written by a test. This file runs every such command of README.md and docs/*.md,
  in document order, from a fresh clone of the checkout with no network; docs/own-service.md's are run
  by tests/test_own_service_guide.py (on a team's service outside the repository), and the README's
  own-service steps must be exactly the guide's, so that test runs them too.
- `sh ci`: the install and test commands. They are what CI's `.ci/run` does on every change (a test
  checks that `.ci/run` names each one's program, files and URLs); running them here would reinstall the
  environment inside its own test.
- `sh aws`: needs an AWS account, the Pulumi CLI and a backend; no test runs it.
- `sh local`: runs on a developer's machine without AWS but needs the network (uv resolving the locks)
  or the model build and a running worker; no test runs it as written (app/tests cover the worker).

A fence without an info string, or a shell fence (`bash`, `shell`, `console`, `zsh`) without one of
these marks, fails: a command cannot slip in unmarked. Links: every relative Markdown link in these
files resolves to a file, and every `#anchor` to a heading of its target (GitHub's heading slugs).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT
from tests.test_own_service_guide import SERVICE, commands, fresh_clone

README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "own-service.md"
PAGES = sorted(
    [
        README,
        ROOT / "CHANGELOG.md",
        *(ROOT / "docs").glob("*.md"),
        *[p for p in [ROOT / "bootstrap" / "README.md"] if p.exists()],
    ]
)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "zsh"}
MARKS = {"sh", "sh ci", "sh aws", "sh local"}
# Fences of any length (the plan's sample output is a ````markdown block holding ``` fences).
FENCE = re.compile(r"^[ \t]*(`{3,})([^\n`]*)\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
NO_NETWORK = {
    # Every HTTP client the commands use (urllib, botocore, pip, uv) honours these: a command that
    # reached for the network would fail instead of passing on a machine that happens to be online.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "PIP_NO_INDEX": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def fences(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, outermost only, indented ones (in a list) included."""
    return [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text)]


def unmarked(text: str) -> list[str]:
    """The fences that say nothing about how they are checked."""
    problems = []
    for info, body in fences(text):
        language = info.split()[0] if info else ""
        if not info:
            problems.append(f"a fence without an info string: {body[:80]!r}")
        elif language in SHELL_LANGUAGES and info not in MARKS:
            problems.append(f"unmarked shell block ({info!r}): {body[:80]!r}")
    return problems


def marked(path: Path, mark: str) -> list[str]:
    return [c for info, body in fences(path.read_text()) if info == mark for c in commands(body)]


def prose(text: str) -> str:
    """The text outside fenced blocks and inline code, where a link is a link."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text()).splitlines():
        if match := re.match(r"^#{1,6} (.+?)#*\s*$", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not this repository's
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(root)}: {target} -> no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: {target} -> no heading #{anchor} in {dest.name}")
    return problems


# ---- The registry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_block_is_run_by_a_test_or_marked(page: Path):
    assert unmarked(page.read_text()) == []


def test_the_registry_check_refuses_an_unmarked_block():
    # The check itself can fail: a plain `bash` fence, a bare fence, and a mark nobody defined.
    text = "```bash\npulumi up\n```\n\n```\nls\n```\n\n```sh maybe\nrm -rf /\n```\n\n```sh aws\npulumi up\n```\n"
    text += "1. a step\n   ```console\n   pulumi destroy\n   ```\n"  # indented, inside a list item
    assert len(unmarked(text)) == 4


def test_the_readme_says_how_to_install_plan_and_test():
    # The README's set-up is the install and the test (CI runs them) and the offline plan (run here).
    ci = marked(README, "sh ci")
    assert any("requirements-dev.txt" in c for c in ci) and "pytest" in ci
    # The repository itself is installed after the lock (one import root; pyproject.toml).
    assert any(c.startswith("pip install --no-deps --no-build-isolation -e . ") for c in ci)
    assert "python -m gantry.plan dev --no-diff" in marked(README, "sh")
    assert marked(README, "sh aws"), "the first deploy is in the README, marked as needing AWS"


def test_ci_commands_are_what_ci_runs():
    ci_script = (ROOT / ".ci" / "run").read_text()
    commands_ = [c for page in PAGES for c in marked(page, "sh ci")]
    assert commands_
    for command in commands_:
        for word in shlex.split(command, comments=True):
            a_program_or_url = word in (
                "pytest",
                "venv",
                "--require-hashes",
                "--no-build-isolation",
            ) or word.startswith("https://")
            a_repository_file = not word.startswith("-") and (ROOT / word).is_file()
            if a_program_or_url or a_repository_file:
                used = re.search(rf"(?<![\w/.-]){re.escape(word)}(?![\w/.-])", ci_script)
                assert used, f"`{command}` says CI runs it, but .ci/run never uses {word!r}"


def test_the_readme_own_service_steps_are_the_guides():
    # The guide's test runs these from a fresh clone on a service outside the repository; the README must
    # show exactly those steps, so what it promises is what that test performs.
    guide = marked(GUIDE, "sh")
    readme_steps = [c for c in marked(README, "sh") if c.startswith("python -m gantry.init") or " my-api" in c]
    assert readme_steps == guide
    assert set(marked(README, "sh aws")) >= set(marked(GUIDE, "sh aws")) - {"pulumi up -s my-api-prod"}


# ---- Links -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_to_files_and_headings(page: Path):
    assert broken_links(page) == []


def test_the_link_check_refuses_a_missing_file_and_a_missing_heading(tmp_path: Path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with commas\n")
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-with-commas) [ok](#page) [ok](https://example.org/x)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [bad self](#nowhere)\n"
        "`[not a link](missing.md)`\n"
    )
    problems = [p.split(": ", 1)[1] for p in broken_links(page, root=tmp_path)]
    assert problems == [
        "missing.md -> no such file",
        "other.md#nope -> no heading #nope in other.md",
        "#nowhere -> no heading #nowhere in page.md",
    ]


# ---- The commands a newcomer runs, run -----------------------------------------------------------------


def runnable() -> list[tuple[Path, str]]:
    """Every `sh` command of the README and docs/, in order, but the guide's (its own test runs those)."""
    guide = set(marked(GUIDE, "sh"))
    return [
        (page, command)
        for page in PAGES
        if page != GUIDE and page.parent.name != "bootstrap"
        for command in marked(page, "sh")
        if command not in guide
    ]


def test_the_docs_sh_commands_run_from_a_fresh_clone(tmp_path: Path):
    steps = runnable()
    assert ("python -m gantry.plan dev --no-diff" in [c for _, c in steps]) and len(steps) >= 5
    checkout = tmp_path / "gantry"
    fresh_clone(checkout)
    # A clone of this repository has `main` to plan against, as `origin/main` or `main`.
    subprocess.run(["git", "-C", str(checkout), "branch", "-M", "main"], check=True, capture_output=True)
    shutil.copytree(SERVICE, tmp_path / "my-api")  # the own-service steps' ../my-api, should a page use it
    env = {**os.environ, **NO_NETWORK, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for page, command in steps:
        done = subprocess.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
        )
        where = f"{page.relative_to(ROOT)}: {command}"
        assert done.returncode == 0, (where, done.stdout[-3000:], done.stderr[-3000:])
        assert "Traceback" not in done.stderr, (where, done.stderr[-3000:])
        if command == "python -m gantry.plan dev --no-diff":
            assert "every mandatory rule passes" in done.stdout, where
    # Nothing the docs run may leave the committed files changed (`reference --write` must be a no-op).
    status = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == "", status.stdout

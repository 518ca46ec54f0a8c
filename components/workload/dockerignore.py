"""What a Docker build sees: the files of a context that its `.dockerignore` does not exclude (pure).

The image tag is a hash of exactly these files, so an edit the build never sees (a test, a README, a
local `.venv`) must not change it, and an edit it does see must. The rules are Docker's, not git's
(moby/patternmatcher): patterns are relative to the context root (`*.md` matches only top-level
files, unlike .gitignore), `**` matches any number of directories, a pattern that matches a directory
excludes everything below it, `!` re-includes, and the last matching line wins
(https://docs.docker.com/build/concepts/context/#dockerignore-files).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Rule:
    pattern: re.Pattern[str]
    exclude: bool
    """False for a `!` line, which re-includes what earlier lines excluded."""


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


def parse(text: str) -> list[Rule]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip()
        cleaned = posixpath.normpath(line).lstrip("/")
        if cleaned in ("", "."):
            continue
        rules.append(Rule(pattern=_regex(cleaned), exclude=exclude))
    return rules


def excluded(path: str, rules: list[Rule]) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for rule in rules:
        if any(rule.pattern.match(c) for c in candidates):
            result = rule.exclude
    return result


def context_files(context: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, file) for every file the build context sends, in a stable order."""
    ignore = context / ".dockerignore"
    rules = parse(ignore.read_text()) if ignore.is_file() else []
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context).as_posix()
        if not excluded(relative, rules):
            yield relative, path

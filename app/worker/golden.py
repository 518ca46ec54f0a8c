"""Golden retrieval dataset for the eval gate.

The eval gate (``python -m worker.eval``) and the model build
(``python -m worker.build_model``) both need the same fixed set of texts:
queries, each with the one passage that answers it and a few same-topic
passages that do not. This module is the single reader of that dataset
(``golden.jsonl`` beside this file, one JSON object per line), so that a
malformed case fails loudly at build time, naming the line, the case and the
field, instead of silently skewing the gate. It reads only a local file and
executes nothing from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("golden.jsonl")

_STRING_FIELDS = ("id", "topic", "query", "positive")
_FIELDS = frozenset((*_STRING_FIELDS, "distractors"))


class GoldenDataError(ValueError):
    """The golden dataset file is unreadable or a case in it is malformed."""


@dataclass(frozen=True)
class GoldenCase:
    """One retrieval case: ``query`` should rank ``positive`` above every distractor."""

    id: str
    topic: str
    query: str
    positive: str
    distractors: tuple[str, ...]

    @property
    def candidates(self) -> tuple[str, ...]:
        """The passages to rank, the relevant one first."""
        return (self.positive, *self.distractors)


def load_golden(path: str | Path | None = None) -> list[GoldenCase]:
    """Read and validate the golden dataset (default: the one shipped with the package).

    Raises GoldenDataError naming the file, line, case id and field of the
    first problem: unreadable file, invalid JSON, missing or unknown fields,
    empty strings, duplicate ids, no distractors, or a distractor that repeats
    the positive (which would make top-1 ill-defined).
    """
    source = Path(path) if path is not None else DEFAULT_PATH
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GoldenDataError(f"{source}: cannot read golden dataset: {exc.strerror or exc}") from exc

    cases: list[GoldenCase] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenDataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
        case = _parse_case(raw, where)
        if case.id in seen:
            raise GoldenDataError(f"{where}: case {case.id!r}: field 'id' duplicates the case on line {seen[case.id]}")
        seen[case.id] = lineno
        cases.append(case)

    if not cases:
        raise GoldenDataError(f"{source}: golden dataset holds no cases")
    return cases


def _parse_case(raw: object, where: str) -> GoldenCase:
    if not isinstance(raw, dict):
        raise GoldenDataError(f"{where}: each line must be a JSON object, got {type(raw).__name__}")
    label = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else "?"
    prefix = f"{where}: case {label!r}"

    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise GoldenDataError(f"{prefix}: unknown field(s) {', '.join(map(repr, unknown))}")
    for field in _STRING_FIELDS:
        value = raw.get(field)
        if not isinstance(value, str) or not value.strip():
            raise GoldenDataError(f"{prefix}: field {field!r} must be a non-empty string")

    distractors = raw.get("distractors")
    if not isinstance(distractors, list) or not distractors:
        raise GoldenDataError(f"{prefix}: field 'distractors' must be a non-empty list of strings")
    for index, text in enumerate(distractors):
        if not isinstance(text, str) or not text.strip():
            raise GoldenDataError(f"{prefix}: field 'distractors[{index}]' must be a non-empty string")
        if text == raw["positive"]:
            raise GoldenDataError(f"{prefix}: field 'distractors[{index}]' repeats the positive passage")
    if len(set(distractors)) != len(distractors):
        raise GoldenDataError(f"{prefix}: field 'distractors' holds the same passage twice")

    return GoldenCase(
        id=raw["id"],
        topic=raw["topic"],
        query=raw["query"],
        positive=raw["positive"],
        distractors=tuple(distractors),
    )


def reference_texts(cases: list[GoldenCase]) -> list[str]:
    """Every query and passage of ``cases``, each once, in first-seen order.

    The order is deterministic so that reference embeddings built from it
    line up with the texts the eval sends, whichever process produced them.
    """
    return list(dict.fromkeys(text for case in cases for text in (case.query, *case.candidates)))

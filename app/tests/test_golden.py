"""Tests for the golden dataset loader: the shipped data is usable, bad files fail clearly.

The eval gate and the reference build trust load_golden(), so a malformed case
must stop them with a message naming the line, the case and the field rather
than skew the gate. No model is needed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.golden import GoldenDataError, load_golden, reference_texts

GOOD = {
    "id": "c1",
    "topic": "cooking",
    "query": "How long do I boil an egg?",
    "positive": "Six minutes gives a runny yolk.",
    "distractors": ["Eggs keep for weeks in the fridge.", "Fresh eggs sink in water."],
}


def write_cases(tmp_path: Path, *cases: object) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(case) + "\n" for case in cases), encoding="utf-8")
    return path


def test_shipped_dataset_is_large_enough_and_every_case_has_distractors():
    cases = load_golden()
    assert len(cases) >= 50
    for case in cases:
        assert len(case.distractors) >= 3, case.id
        assert case.candidates[0] == case.positive


def test_shipped_dataset_spans_several_topics():
    topics = {case.topic for case in load_golden()}
    assert {"cloud", "machine learning", "cooking", "history", "health", "sports"} <= topics


def test_reference_texts_are_ordered_and_unique(tmp_path):
    second = dict(GOOD, id="c2", query="Another question?", distractors=["Fresh eggs sink in water.", "New."])
    cases = load_golden(write_cases(tmp_path, GOOD, second))
    texts = reference_texts(cases)
    assert texts == [
        GOOD["query"],
        GOOD["positive"],
        *GOOD["distractors"],
        "Another question?",
        "New.",
    ]


def test_reference_texts_cover_every_text_of_the_shipped_dataset():
    cases = load_golden()
    texts = reference_texts(cases)
    assert len(texts) == len(set(texts))
    assert set(texts) == {text for case in cases for text in (case.query, *case.candidates)}


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text("\n" + json.dumps(GOOD) + "\n\n", encoding="utf-8")
    assert [case.id for case in load_golden(path)] == ["c1"]


def test_duplicate_id_names_both_lines(tmp_path):
    path = write_cases(tmp_path, GOOD, dict(GOOD, query="Different question?"))
    with pytest.raises(GoldenDataError, match=r"golden.jsonl:2: case 'c1': field 'id' duplicates the case on line 1"):
        load_golden(path)


@pytest.mark.parametrize("field", ["id", "topic", "query", "positive"])
@pytest.mark.parametrize("value", ["", "   ", None, 7])
def test_empty_or_non_string_field_is_named(tmp_path, field, value):
    path = write_cases(tmp_path, dict(GOOD, **{field: value}))
    message = rf"golden.jsonl:1: case '.*': field '{field}' must be a non-empty string"
    with pytest.raises(GoldenDataError, match=message):
        load_golden(path)


def test_missing_field_is_named(tmp_path):
    case = dict(GOOD)
    del case["positive"]
    with pytest.raises(GoldenDataError, match=r"case 'c1': field 'positive' must be a non-empty string"):
        load_golden(write_cases(tmp_path, case))


@pytest.mark.parametrize("distractors", [[], None, "not a list"])
def test_case_without_distractors_is_rejected(tmp_path, distractors):
    with pytest.raises(GoldenDataError, match=r"case 'c1': field 'distractors' must be a non-empty list"):
        load_golden(write_cases(tmp_path, dict(GOOD, distractors=distractors)))


def test_empty_distractor_is_named_by_index(tmp_path):
    path = write_cases(tmp_path, dict(GOOD, distractors=["fine", " "]))
    with pytest.raises(GoldenDataError, match=r"case 'c1': field 'distractors\[1\]' must be a non-empty string"):
        load_golden(path)


def test_distractor_equal_to_positive_is_rejected(tmp_path):
    path = write_cases(tmp_path, dict(GOOD, distractors=["fine", GOOD["positive"]]))
    with pytest.raises(GoldenDataError, match=r"'distractors\[1\]' repeats the positive passage"):
        load_golden(path)


def test_repeated_distractor_is_rejected(tmp_path):
    path = write_cases(tmp_path, dict(GOOD, distractors=["same", "same"]))
    with pytest.raises(GoldenDataError, match=r"case 'c1': field 'distractors' holds the same passage twice"):
        load_golden(path)


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(GoldenDataError, match=r"case 'c1': unknown field\(s\) 'postive'"):
        load_golden(write_cases(tmp_path, dict(GOOD, postive="typo")))


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps(GOOD) + '\n{"id": "c2", "query": \n', encoding="utf-8")
    with pytest.raises(GoldenDataError, match=r"golden.jsonl:2: invalid JSON: .*column"):
        load_golden(path)


def test_line_that_is_not_an_object_is_rejected(tmp_path):
    with pytest.raises(GoldenDataError, match=r"golden.jsonl:1: each line must be a JSON object, got list"):
        load_golden(write_cases(tmp_path, ["c1"]))


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(GoldenDataError, match="holds no cases"):
        load_golden(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(GoldenDataError, match=r"nope.jsonl: cannot read golden dataset"):
        load_golden(tmp_path / "nope.jsonl")

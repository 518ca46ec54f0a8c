"""A small IAM policy evaluator for the tests: does a set of identity policies allow one request?

It follows IAM's documented evaluation logic for one account's identity policies ("Policy evaluation
logic", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html): an
explicit Deny in any statement wins, otherwise some Allow must match, otherwise the request is implicitly
denied. A statement matches when its Action (or NotAction) and Resource (or NotResource) match, IAM's `*`/`?` wildcards,
and every condition operator matches ("Condition operators",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
keys of one operator AND, values of one key OR; a key absent from the request makes a positive operator
false, a negated one (StringNotEquals) true, `...IfExists` true, and `Null: true` true. Only the operators
gantry's documents use are known; any other fails the test instead of guessing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Context = Mapping[str, str | Sequence[str]]


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _values(context: Context, key: str) -> list[str] | None:
    for k, v in context.items():
        if k.lower() == key.lower():
            return [v] if isinstance(v, str) else list(v)
    return None


def _operator_matches(operator: str, conditions: Mapping[str, Any], context: Context) -> bool:
    base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
    for key, wanted in conditions.items():
        wanted = [str(w) for w in _list(wanted)]
        present = _values(context, key)
        if base == "Null":
            if (present is None) != (wanted == ["true"]):
                return False
            continue
        if present is None:
            if if_exists or base.startswith(("StringNot", "ArnNot")):
                continue
            return False
        if base == "ForAnyValue:StringEquals" or base == "StringEquals":
            ok = any(v in wanted for v in present)
        elif base == "StringNotEquals":
            ok = not any(v in wanted for v in present)
        elif base in ("StringLike", "ArnLike"):
            ok = any(fnmatch.fnmatchcase(v, w) for v in present for w in wanted)
        elif base in ("StringNotLike", "ArnNotLike"):
            ok = not any(fnmatch.fnmatchcase(v, w) for v in present for w in wanted)
        elif base == "Bool":
            ok = any(v.lower() in [w.lower() for w in wanted] for v in present)
        else:
            raise AssertionError(f"iam_eval does not know the condition operator {operator}")
        if not ok:
            return False
    return True


def statement_matches(statement: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    if "Action" in statement:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _list(statement["Action"])):
            return False
    elif any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _list(statement["NotAction"])):
        return False
    if "NotResource" in statement:
        if any(fnmatch.fnmatchcase(resource, r) for r in _list(statement["NotResource"])):
            return False
    elif not any(fnmatch.fnmatchcase(resource, r) for r in _list(statement.get("Resource", "*"))):
        return False
    return all(_operator_matches(op, cond, context) for op, cond in statement.get("Condition", {}).items())


def allowed(documents: Iterable[Mapping[str, Any]], action: str, resource: str, context: Context | None = None) -> bool:
    """Whether the identity policies `documents` together allow `action` on `resource` in `context`."""
    statements = [s for d in documents for s in d["Statement"]]
    context = context or {}
    if any(s["Effect"] == "Deny" and statement_matches(s, action, resource, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and statement_matches(s, action, resource, context) for s in statements)


def request_tags(tags: Mapping[str, str]) -> dict[str, str | list[str]]:
    """The context of a request that sets `tags` (CreateKey's Tags, TagResource): aws:RequestTag/<k>, aws:TagKeys."""
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}


def resource_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The context of a request on a resource carrying `tags`: aws:ResourceTag/<k>."""
    return {f"aws:ResourceTag/{k}": v for k, v in tags.items()}

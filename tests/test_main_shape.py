"""`__main__.py` reads like the architecture diagram: settings in, one constructor per box, exports out.

It may only load settings, build components from settings sections, earlier components' handles and
AwsEnv, and export. Arithmetic, string building and indexing belong to the box that owns the value
(`load_balancer.attachment("main")`, `image.image_uri`); an AST walk holds that.
"""

from __future__ import annotations

import ast

from tests.harness import ROOT

FORBIDDEN = (
    ast.BinOp,
    ast.JoinedStr,
    ast.Subscript,
    ast.Lambda,
    ast.ListComp,
    ast.DictComp,
    ast.IfExp,
    ast.Compare,
    ast.If,
    ast.For,
    ast.While,
    ast.Try,
)


def test_main_holds_no_arithmetic_string_building_or_indexing():
    tree = ast.parse((ROOT / "__main__.py").read_text())
    offending = [f"line {node.lineno}: {type(node).__name__}" for node in ast.walk(tree) if isinstance(node, FORBIDDEN)]
    assert offending == []


def test_main_reads_no_config_itself():
    source = (ROOT / "__main__.py").read_text()
    assert "pulumi.Config" not in source and "runtime_config" not in source
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert calls <= {"current", "attachment", "export"}, calls


def test_the_shape_check_catches_what_it_forbids():
    for snippet in ('x = f"gantry-{stack}"', "x = a + b", 'x = d["main"]', "x = 1 if a else 2"):
        assert any(isinstance(n, FORBIDDEN) for n in ast.walk(ast.parse(snippet))), snippet

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


# Component constructors read like `__main__.py` too: a short list of named steps. A constructor holds at
# most CONSTRUCTOR_LINES lines; each of its statements at most STEP_LINES (a longer one, a resource with
# its whole argument list or a loop that builds several, is a step to name: a private method or a pure
# builder with its own tests); it opens with its type token and ends by registering its outputs.
CONSTRUCTOR_LINES = 60
STEP_LINES = 25
COMPONENTS = ROOT / "components"


def constructor_problems(source: str, where: str) -> list[str]:
    problems = []
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef) or not any("ComponentResource" in ast.unparse(b) for b in cls.bases):
            continue
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        if init is None or init.end_lineno is None:
            continue
        label = f"{where}:{cls.name}"
        if (lines := init.end_lineno - init.lineno + 1) > CONSTRUCTOR_LINES:
            problems.append(f"{label}: constructor of {lines} lines (at most {CONSTRUCTOR_LINES})")
        for statement in init.body:
            assert statement.end_lineno is not None
            if (span := statement.end_lineno - statement.lineno + 1) > STEP_LINES:
                problems.append(f"{label}: line {statement.lineno} is a {span}-line step; name it (a method)")
        first, last = ast.unparse(init.body[0]), ast.unparse(init.body[-1])
        if not first.startswith("super().__init__('gantry:"):
            problems.append(f"{label}: does not open with super().__init__ and its gantry: type token")
        if not last.startswith("self.register_outputs("):
            problems.append(f"{label}: does not end with self.register_outputs(...)")
    return problems


def test_every_component_constructor_is_a_short_list_of_named_steps():
    constructors = [p for p in sorted(COMPONENTS.rglob("*.py")) if "ComponentResource" in p.read_text()]
    assert len(constructors) >= 15, "the components are found"
    problems = [q for p in constructors for q in constructor_problems(p.read_text(), str(p.relative_to(ROOT)))]
    assert problems == []


def test_the_constructor_check_catches_a_long_constructor_and_a_long_step():
    resource = "        aws.s3.Bucket(\n" + "            x=1,\n" * 30 + "        )\n"
    source = (
        "class Box(pulumi.ComponentResource):\n"
        "    def __init__(self, name, args, opts=None):\n"
        "        super().__init__('gantry:box:Box', name, None, opts)\n"
        + resource
        + "        self.a = 1\n" * 40
        + "        self.register_outputs({})\n"
    )
    assert constructor_problems(source, "box.py") == [
        "box.py:Box: constructor of 75 lines (at most 60)",
        "box.py:Box: line 4 is a 32-line step; name it (a method)",
    ]
    untyped = (
        "class Box(pulumi.ComponentResource):\n"
        "    def __init__(self):\n"
        "        super().__init__('x', 'n')\n"
        "        pass\n"
    )
    assert constructor_problems(untyped, "box.py") == [
        "box.py:Box: does not open with super().__init__ and its gantry: type token",
        "box.py:Box: does not end with self.register_outputs(...)",
    ]

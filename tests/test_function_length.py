"""No function in stylemri is longer than MAX_LINES unless its docstring says why.

The project's rule: a long function is split into named steps; one that stays long (an argparse `register`
that only adds flags, a signature that names every setting) says so in a docstring line starting
"Long because". The span counted is the whole definition, decorators excluded (`def` line to last line)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stylemri

ROOT = Path(stylemri.__file__).parent
MAX_LINES = 60
REASON = "Long because"


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function (nested and methods too) over `max_lines` lines whose
    docstring has no line starting with REASON."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if length > max_lines and not any(line.strip().startswith(REASON) for line in doc.splitlines()):
                found.append((node.name, node.lineno, length))
    return found


def test_no_function_is_long_without_a_reason():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for name, line, length in long_functions(path.read_text(encoding="utf-8")):
            offenders.append(f"stylemri/{path.relative_to(ROOT)}:{line} {name}: {length} lines (split it into "
                             f"named steps, or give the reason in a docstring line '{REASON} ...')")
    assert not offenders, "\n".join(offenders)


def _function(lines: int, doc: str | None = None) -> str:
    head = "def f():\n" + (f'    """{doc}"""\n' if doc is not None else "")
    body_lines = lines - 1 - (doc is not None) - (doc.count("\n") if doc else 0)
    return head + "".join(f"    x{i} = {i}\n" for i in range(body_lines))


@pytest.mark.parametrize("lines, doc, flagged", [
    (60, None, False),
    (61, None, True),
    (61, "Short summary.", True),
    (61, "Short summary.\n\n    Long because it only adds arguments.", False),
    (61, "Long because it only adds arguments.", False),
    (61, "Summary; not Long because at the start of a line.", True),
])
def test_the_rule_itself(lines, doc, flagged):
    """The checker can fail: a 61-line function without the reason is found, with it (or at 60 lines) not."""
    source = _function(lines, doc)
    assert ast.parse(source).body[0].end_lineno == lines
    assert bool(long_functions(source)) is flagged


def test_nested_functions_and_methods_count():
    nested = "class C:\n    def m(self):\n        def inner():\n" + "".join(f"            y{i} = {i}\n" for i in range(70))
    assert [name for name, _, _ in long_functions(nested)] == ["m", "inner"]

"""docs/architecture.md draws exactly the imports between stylemri's packages, and they form no cycle.

The doc's mermaid block lists the edges (`A --> B`: some module of A imports one of B) and, in a
`%% foundation:` line, the modules any module may import (they import only each other). Every import counts,
a lazy one inside a function too (it would only hide a cycle). A node is a subpackage (`data`, `cli`, ...)
or a top-level module (`model`, `write_generated`); the package's `__init__.py` is the node `stylemri`,
`__main__.py` belongs to `cli`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import stylemri

ROOT = Path(stylemri.__file__).parent
DOC = ROOT.parent / "docs" / "architecture.md"
EDGE = re.compile(r"^\s*([A-Za-z_]\w*)\s*-->\s*([A-Za-z_]\w*)\s*$")


def doc_graph(text: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(edges, foundation modules) from the first ```mermaid block of the doc."""
    match = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md: expected a ```mermaid block with the package imports"
    edges, foundation = set(), set()
    for line in match.group(1).splitlines():
        if m := EDGE.match(line):
            edges.add((m.group(1), m.group(2)))
        elif line.strip().startswith("%% foundation:"):
            foundation = set(line.split(":", 1)[1].split())
    return edges, foundation


def top_level_names(root: Path = ROOT) -> set[str]:
    """The subpackages and modules directly in the package."""
    return {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if (p / "__init__.py").exists()}


def node_of(name: str, foundation: set[str]) -> str:
    """The drawn node of a top-level name ("" or "__init__": the package root)."""
    if name in ("", "__init__"):
        return "stylemri"
    if name == "__main__":
        return "cli"
    return "foundation" if name in foundation else name


def imported_names(tree: ast.AST, tops: set[str]) -> list[tuple[int, str]]:
    """(line, top-level name) of every stylemri import in a module; "" for a name of the package root."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "?relative"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stylemri":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:  # from stylemri import x: x is a subpackage/module, or a name the root re-exports
                found += [(node.lineno, a.name if a.name in tops else "") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, (a.name.split(".") + [""])[1]) for a in node.names
                      if a.name.split(".")[0] == "stylemri"]
    return found


def real_graph(root: Path, foundation: set[str]) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """The node -> node edges of the package's imports, each with one place that makes it."""
    tops = top_level_names(root)
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        here = node_of(rel.parts[0].removesuffix(".py"), foundation)
        for line, name in imported_names(ast.parse(path.read_text(encoding="utf-8")), tops):
            assert name != "?relative", f"stylemri/{rel}:{line}: a relative import; the project imports absolutely"
            there = node_of(name, foundation)
            if there != here:
                edges.setdefault((here, there), f"stylemri/{rel}:{line}")
    return set(edges), edges


def cycle(edges: set[tuple[str, str]]) -> list[str]:
    """One cycle of the graph as a node list, or [] when it has none."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


@pytest.fixture(scope="module")
def graphs():
    drawn, foundation = doc_graph(DOC.read_text(encoding="utf-8"))
    assert foundation, "docs/architecture.md: expected a '%% foundation: ...' line in the mermaid block"
    real, where = real_graph(ROOT, foundation)
    return drawn, foundation, real, where


def test_the_doc_draws_exactly_the_imports(graphs):
    drawn, foundation, real, where = graphs
    real_between = {e for e in real if "foundation" not in e}
    missing = sorted(real_between - drawn)
    extra = sorted(drawn - real_between)
    lines = [f"not drawn: {a} --> {b} (e.g. {where[a, b]})" for a, b in missing]
    lines += [f"drawn but no such import: {a} --> {b}" for a, b in extra]
    assert not lines, "docs/architecture.md is out of date:\n" + "\n".join(lines)


def test_every_top_level_module_is_drawn(graphs):
    drawn, foundation, _, _ = graphs
    nodes = {n for edge in drawn for n in edge} | foundation
    undrawn = sorted(n for n in (node_of(t, foundation) for t in top_level_names()) if n not in nodes | {"foundation"})
    assert not undrawn, f"new top-level module(s) {undrawn}: draw them in docs/architecture.md"


def test_the_foundation_imports_only_itself(graphs):
    _, _, real, where = graphs
    up = sorted(e for e in real if e[0] == "foundation")
    assert not up, "\n".join(f"{where[e]}: the foundation imports {e[1]}" for e in up)


def test_the_imports_form_no_cycle(graphs):
    _, _, real, _ = graphs
    assert cycle(real) == []


def test_the_checks_can_fail(tmp_path):
    """A sibling import the doc does not draw, a cycle and a lazy import are all found."""
    pkg = tmp_path / "stylemri"
    (pkg / "data").mkdir(parents=True)
    (pkg / "metrics").mkdir()
    for f in ("__init__.py", "errors.py", "data/__init__.py", "metrics/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "data" / "a.py").write_text("from stylemri.errors import UserError\n"
                                       "def f():\n    from stylemri.metrics import fid\n")
    (pkg / "metrics" / "fid.py").write_text("import stylemri.data.a\n")
    edges, where = real_graph(pkg, {"errors"})
    assert edges == {("data", "metrics"), ("metrics", "data"), ("data", "foundation")}
    assert where["data", "metrics"] == "stylemri/data/a.py:3"
    assert cycle(edges) in (["data", "metrics", "data"], ["metrics", "data", "metrics"])
    drawn, foundation = doc_graph("```mermaid\nflowchart TD\n    %% foundation: errors\n    data --> metrics\n```\n")
    assert drawn == {("data", "metrics")} and foundation == {"errors"}
    assert edges - {("data", "foundation")} != drawn  # the doc test would name metrics --> data

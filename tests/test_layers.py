"""The package imports in the order docs/architecture.md draws, with no exception hidden in a function:

    (errors, config, io, volumes_io, device, version) -> data -> networks -> metrics -> training
        -> model -> (write_generated, analysis, audit, explore, interop) -> cli

A module may import its own layer and the layers before it, never one after it (a lazy import inside a
function counts too: it would only hide the cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import stylemri

ORDER = {
    "errors": 0, "config": 0, "io": 0, "device": 0, "version": 0, "volumes_io": 0,
    "data": 1, "networks": 2, "metrics": 3, "training": 4, "model": 5,
    "write_generated": 6, "analysis": 6, "audit": 6, "explore": 6, "interop": 6, "": 6,  # "": the package root (stylemri.load)
    "cli": 7, "__main__": 8,
}
ROOT = Path(stylemri.__file__).parent


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stylemri":
            if node.module == "stylemri":  # from stylemri import x: x is a layer, or a name of the root
                found += [(node.lineno, f"stylemri.{a.name}" if a.name in ORDER else "stylemri") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "stylemri"]
    return found


def test_every_import_points_down_the_layers():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        here = "" if rel == Path("__init__.py") else rel.parts[0].removesuffix(".py")
        assert here in ORDER, f"{rel}: a new layer; add it to docs/architecture.md and to ORDER here"
        for line, module in _imports(path):
            there = _layer(module)
            if ORDER.get(there, 99) > ORDER[here]:
                wrong.append(f"stylemri/{rel}:{line} imports {module} (layer {there or 'root'} is above {here})")
    assert not wrong, "\n".join(wrong)


def test_the_architecture_doc_draws_this_order():
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "data/ → networks/ → metrics/ → training/ → model → (write_generated, analysis, audit, explore, interop) → cli" in doc

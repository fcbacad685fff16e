"""Dependency direction (issue 16), checked on the source text (AST), not by importing anything.

* ``star_track`` (the runtime SDK) imports nothing from ``train``, ``export`` or ``benchmarks``.
* ``train``, ``export``, ``benchmarks`` and ``examples`` use ``star_track``'s public names only: no
  ``star_track._module``, no ``from star_track.x import _name``, no ``star_track.x._name`` attribute.
* ``benchmarks`` do not monkeypatch product code: no assignment to (or ``setattr`` on) an attribute of a name
  imported from ``star_track``. Timing and per-face entry points are public: ``Tracker.on_stage``,
  ``Tracker.landmarks_for_boxes``.
"""
from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
OURS = ("train", "export", "benchmarks")
CONSUMERS = (*OURS, "examples")


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def test_the_runtime_imports_nothing_from_training_export_or_benchmarks():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _sources("star_track")
           for mod, _, line in _imports(ast.parse(p.read_text()))
           if mod.split(".")[0] in OURS]
    assert not bad, bad


def test_training_export_benchmarks_and_examples_use_public_names_only():
    bad = []
    for p in _sources(*CONSUMERS):
        tree = ast.parse(p.read_text())
        for mod, names, line in _imports(tree):
            if mod.split(".")[0] != "star_track":
                continue
            if _private(mod) or any(_private(n) for n in names):
                bad.append(f"{p.relative_to(ROOT)}:{line} imports {mod} {names}")
        aliases = _star_track_names(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, bad


def _star_track_names(tree: ast.AST) -> set[str]:
    """Local names bound to star_track modules, classes and functions by the imports of ``tree``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("star_track")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("star_track"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _patches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    ours = _star_track_names(tree)
    hits = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in ours:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno} assigns {sub.value.id}.{sub.attr}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in ours):
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno} setattr on {node.args[0].id}")
    return hits


def test_benchmarks_do_not_monkeypatch_product_code():
    bad = [h for p in _sources("benchmarks") for h in _patches(p)]
    assert not bad, bad

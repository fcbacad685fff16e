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


# -- inside star_track: no cycles, private names stay home, small modules (issue 29) ----------------------------
PACKAGE = ROOT / "star_track"
MAX_TOP_LEVEL_MODULES = 10
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
OVER_THE_LIMIT: dict[str, str] = {
    # "path:function": why. Each entry must still be over the limit (the list can only shrink).
}


def _module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of star_track (a package is its __init__)."""
    names = {}
    for p in _sources("star_track"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = p
    return names


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(star_track module, names) that the import ``node`` in ``module`` loads (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names if a.name in modules]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = _package_of(module, path).split(".")
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    names = [a.name for a in node.names]
    found = [(source, names)] if source in modules else []
    return found + [(f"{source}.{n}", []) for n in names if f"{source}.{n}" in modules]  # submodules


def _import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, list[str], int]]]:
    """Module -> the star_track modules it imports, anywhere in its body (function-level and TYPE_CHECKING
    imports too); and every (importer, imported, names, line)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    edges = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target, names in _targets(module, path, node, modules):
                if target != module:
                    graph[module].add(target)
                edges.append((module, target, names, node.lineno))
    return graph, edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles_and_the_graph_sees_function_level_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    graph, _ = _import_graph()
    assert "star_track.tracking.tracks" in graph["star_track.tracking.tracker"]  # module level
    assert "star_track.run.loop" in graph["star_track.cli.commands.video"]  # inside the command function
    assert "star_track.cli.app" in graph["star_track.cli.entry"]  # inside main()
    assert "star_track.run.batch.ray" in graph["star_track.run.batch"]  # a package's __init__


def test_no_import_cycle_inside_star_track():
    """Function-level imports count: they only postpone the cycle to the call."""
    graph, _ = _import_graph()
    assert _cycles(graph) == []


def test_private_names_stay_inside_their_package():
    """``_name`` (a module, a function, a class, a constant) is used only by the modules of its own package."""
    modules = _module_names()
    bad = []
    for importer, target, names, line in _import_graph()[1]:
        home = _package_of(target, modules[target])
        if _package_of(importer, modules[importer]) == home:
            continue
        if _private(target) or any(_private(n) for n in names):
            bad.append(f"{modules[importer].relative_to(ROOT)}:{line} imports {target} {names}")
    assert not bad, bad


def test_no_private_attribute_of_another_object():
    """``x._state`` and ``getattr(x, "_state")`` only on ``self``/``cls``: other objects' state goes through
    their public methods and properties."""
    bad = []
    for p in _sources("star_track"):
        tree = ast.parse(p.read_text())
        modules = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                   for a in n.names}  # a library's own underscore API (os._exit) is its business
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and _private(str(node.args[1].value))):
                owner = node.args[0]
            else:
                continue
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls", *modules)):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)[:80]}")
    assert not bad, bad


def test_at_most_ten_modules_directly_in_star_track():
    """The stages are subpackages; the top level holds only what every stage shares."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def _is_data(tree: ast.Module) -> bool:
    """A module of constants only (a docstring and assignments): a table, not code to read."""
    return all(isinstance(n, (ast.Expr, ast.Assign, ast.AnnAssign, ast.ImportFrom)) for n in tree.body)


def test_modules_and_functions_are_short():
    long_modules, long_functions = [], {}
    for p in _sources("star_track"):
        text = p.read_text()
        tree = ast.parse(text)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and not _is_data(tree):
            long_modules.append(f"{p.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions[f"{p.relative_to(ROOT)}:{node.name}"] = n
    assert not long_modules, long_modules
    assert set(long_functions) <= set(OVER_THE_LIMIT), long_functions
    assert set(OVER_THE_LIMIT) <= set(long_functions), "shortened: remove from OVER_THE_LIMIT"

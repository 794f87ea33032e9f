"""No import cycle inside the package (issue 26): the modules of `moecl` form a layered graph.

Every ``import`` of a `moecl` module counts, those made inside functions included (an import
deferred into a function hides a cycle from Python but not from a reader). The graph is
read from the sources with `ast`; an import of ``moecl.a.b`` from outside ``moecl.a`` also
imports the package ``moecl.a`` (its ``__init__``) first. A module's own packages are left out
(Python loads them before the module: ``from . import __version__`` inside ``moecl`` is no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "moecl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str, modules: dict) -> bool:
    return modules[name].name == "__init__.py"


def _targets(name: str, node: ast.AST, modules: dict) -> list[str]:
    """The `moecl` modules one import statement of module ``name`` loads."""
    found = []
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if _is_package(name, modules) else name.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        found = [module]
        for alias in node.names:  # ``from . import sweep`` loads the submodule moecl.sweep
            if f"{module}.{alias.name}" in modules:
                found.append(f"{module}.{alias.name}")
    loaded = []
    for target in found:
        if not (target == "moecl" or target.startswith("moecl.")):
            continue
        while target not in modules and "." in target:  # ``import moecl.x.attr``: the module part
            target = target.rsplit(".", 1)[0]
        parts = target.split(".")
        for k in range(1, len(parts) + 1):  # the module and the packages above it, except the importer's
            prefix = ".".join(parts[:k])  # own packages, which Python has begun to load before it
            if prefix in modules and not (name == prefix or name.startswith(prefix + ".")):
                loaded.append(prefix)
    return loaded


def import_graph() -> dict[str, set[str]]:
    """Module -> the `moecl` modules it imports anywhere in its source (functions included)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for target in _targets(name, node, modules)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first repeated last), or ``None``."""
    colour = {name: 0 for name in graph}  # 0 unvisited, 1 on the path, 2 done
    path: list[str] = []

    def visit(name):
        colour[name] = 1
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if colour.get(other) == 1:
                return path[path.index(other):] + [other]
            if colour.get(other) == 0:
                cycle = visit(other)
                if cycle:
                    return cycle
        path.pop()
        colour[name] = 2
        return None

    for name in sorted(graph):
        if colour[name] == 0:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_inside_functions_count():
    """The reader of the graph sees an import made inside a function (the form that hid the cycles)."""
    modules = {"moecl": Path("__init__.py"), "moecl.a": Path("a.py"), "moecl.b": Path("b.py")}
    tree = ast.parse("def f():\n    from .b import g\n")
    targets = [t for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for t in _targets("moecl.a", node, modules)]
    assert targets == ["moecl.b"]
    assert find_cycle({"moecl.a": {"moecl.b"}, "moecl.b": {"moecl.a"}}) == ["moecl.a", "moecl.b", "moecl.a"]
    assert find_cycle({"moecl.a": {"moecl.b"}, "moecl.b": set()}) is None


@pytest.mark.parametrize("upper, lower", [("moecl.simulation", "moecl.algorithm"), ("moecl.simulation", "moecl.sweep"),
                                          ("moecl.algorithm", "moecl.records"), ("moecl.sweep", "moecl.records")])
def test_the_layers_of_the_linear_engine(upper, lower):
    """The entry points sit above the engine and the sweep, the records below both; the sweep
    and the engine do not know each other."""
    graph = import_graph()
    assert lower in graph[upper]
    assert "moecl.algorithm" not in graph["moecl.sweep"] and "moecl.sweep" not in graph["moecl.algorithm"]

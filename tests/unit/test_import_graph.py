"""The import graph of the syncd package has no cycles.

Only imports that run when a module is imported count: imports inside functions
(deferred on purpose, to keep start-up light) and under ``if TYPE_CHECKING:``
are ignored. ``from package import name`` counts as importing ``package`` and,
when ``name`` is a module, that module too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncd

PACKAGE_ROOT = Path(syncd.__file__).parent


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    """True for ``if TYPE_CHECKING:`` and ``if typing.TYPE_CHECKING:``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module body that run when it is imported."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not is_type_checking(node.test):
                found += runtime_imports(node.body)
            found += runtime_imports(node.orelse)
        elif isinstance(node, ast.Try):
            found += runtime_imports(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += runtime_imports(handler.body)
        elif isinstance(node, ast.With):
            found += runtime_imports(node.body)
    return found


def targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> set[str]:
    """The dotted names one import statement may load."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        parts = importer.split(".") if is_package else importer.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def import_graph() -> dict[str, set[str]]:
    """Module name -> the syncd modules it imports when it is imported."""
    files = {module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in runtime_imports(tree.body):
            edges |= targets(node, name, path.name == "__init__.py")
        graph[name] = (edges & files.keys()) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, its first module repeated at the end; None if acyclic."""
    finished: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in finished:
            return None
        for child in sorted(graph[node]):
            cycle = visit(child, [*path, node])
            if cycle:
                return cycle
        finished.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_deferred_and_type_checking_imports_are_not_edges() -> None:
    tree = ast.parse(
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from syncd.config import Config\n"
        "def f():\n    from syncd.bootstrap import bootstrap\n"
        "from syncd.domain import states\n"
    )
    found = [targets(node, "syncd.x", False) for node in runtime_imports(tree.body)]
    assert found == [
        {"os"},
        {"typing", "typing.TYPE_CHECKING"},
        {"syncd.domain", "syncd.domain.states"},
    ]


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "syncd.config" in graph  # a package, by its __init__
    assert "syncd.config.loader" in graph["syncd.config"]
    assert "syncd.entrypoints.cli_common" in graph["syncd.entrypoints.cli_run"]


def test_the_syncd_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

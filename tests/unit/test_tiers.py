"""The slow tier's list in tests/conftest.py names tests that exist.

A renamed test would silently drop out of the list and slow ``make check`` down
(or, worse, nothing would notice a stale entry): each entry must name a file,
and classes and functions (by prefix) that are in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import SLOW_ELSEWHERE

ROOT = Path(__file__).resolve().parents[2]


def _defined(tree: ast.AST, parts: list[str]) -> bool:
    """Whether ``Class::test_prefix`` (or ``test_prefix``) is defined in ``tree``."""
    scope: list[ast.stmt] = list(getattr(tree, "body", []))
    for index, name in enumerate(parts):
        last = index == len(parts) - 1
        found = [
            node
            for node in scope
            if isinstance(node, ast.ClassDef | ast.FunctionDef)
            and (node.name.startswith(name) if last else node.name == name)
        ]
        if not found:
            return False
        scope = list(getattr(found[0], "body", []))
    return True


@pytest.mark.parametrize("entry", SLOW_ELSEWHERE)
def test_each_slow_entry_names_an_existing_test(entry: str) -> None:
    path, *parts = entry.split("::")
    source = ROOT / path
    assert source.is_file(), f"{path} does not exist"
    assert _defined(ast.parse(source.read_text()), parts), f"{entry} names nothing"

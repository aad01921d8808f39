"""The domain imports nothing from the configuration: the configuration builds the domain's values.

Read from the source (every ``syncd/domain`` file, every import statement,
also those inside functions or ``if TYPE_CHECKING``), so an import that runs
only on some path is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncd.domain

DOMAIN = Path(syncd.domain.__file__).parent
FORBIDDEN = "syncd.config"


def imported_modules(source: str, module: str) -> list[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved."""
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def config_imports(source: str, module: str) -> list[str]:
    """The imports of ``syncd.config`` (or any module under it) in ``source``."""
    return sorted(
        {
            name
            for name in imported_modules(source, module)
            if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")
        }
    )


def domain_files() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def module_name(path: Path) -> str:
    relative = path.relative_to(DOMAIN.parent.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_domain_file_is_read() -> None:
    names = {module_name(path) for path in domain_files()}
    assert {"syncd.domain.page_plan", "syncd.domain.soql", "syncd.domain.guard"} <= names


def test_no_domain_module_imports_the_config() -> None:
    offenders = {
        module_name(path): found
        for path in domain_files()
        if (found := config_imports(path.read_text(encoding="utf-8"), module_name(path)))
    }
    assert offenders == {}


def test_the_check_sees_every_form_of_import() -> None:
    module = "syncd.domain.example"
    assert config_imports("from syncd.config.models import SyncConfig\n", module) == [
        "syncd.config.models",
        "syncd.config.models.SyncConfig",
    ]
    assert config_imports("import syncd.config.types\n", module) == ["syncd.config.types"]
    assert config_imports("from syncd import config\n", module) == ["syncd.config"]
    assert config_imports("from .. import config\n", module) == ["syncd.config"]
    assert config_imports("from ..config.types import FieldRef\n", module) == [
        "syncd.config.types",
        "syncd.config.types.FieldRef",
    ]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import syncd.config\n"
    assert config_imports(guarded, module) == ["syncd.config"]
    inside = "def f():\n    from syncd.config import Config\n"
    assert config_imports(inside, module) == ["syncd.config", "syncd.config.Config"]
    assert config_imports("from syncd.domain.fields import FieldRef\n", module) == []
    assert config_imports("import syncd.configuration_notes\n", module) == []

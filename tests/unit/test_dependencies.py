"""pyproject.toml declares what syncd imports, bounds what could break it, and the lock matches."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def _requirements() -> dict[str, Requirement]:
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in dependencies}


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "syncd").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"syncd", "__future__"}


def _lock() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, _, rest = line.partition("==")
            pinned[canonicalize_name(name)] = Version(rest.split()[0].split(";")[0])
    return pinned


class TestDeclaredDependencies:
    def test_every_direct_import_is_declared(self) -> None:
        """Each third-party module syncd imports comes from a declared runtime dependency."""
        declared = set(_requirements())
        owners = packages_distributions()
        undeclared = {
            module: owners.get(module)
            for module in _imported_top_level_modules()
            if not {canonicalize_name(d) for d in owners.get(module, [])} & declared
        }
        assert undeclared == {}

    def test_majors_that_could_break_are_bounded(self) -> None:
        """Every runtime dependency has an upper bound, so a new major is a deliberate step."""
        unbounded = [
            name
            for name, requirement in _requirements().items()
            if not any(spec.operator in ("<", "<=", "~=", "==") for spec in requirement.specifier)
        ]
        assert unbounded == []


class TestLockFile:
    def test_lock_pins_every_runtime_dependency_within_its_range(self) -> None:
        """requirements.lock pins each declared dependency at a version the range allows."""
        pinned = _lock()
        for name, requirement in _requirements().items():
            assert name in pinned, f"{name} is not in requirements.lock (run make lock)"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"requirements.lock pins {name}=={pinned[name]}, outside {requirement.specifier} "
                "(run make lock)"
            )

    def test_lock_has_hashes(self) -> None:
        """Every pin carries at least one hash, so pip can install it with --require-hashes."""
        text = (REPO / "requirements.lock").read_text(encoding="utf-8")
        blocks = [b for b in text.split("\n") if b and not b[0].isspace() and "==" in b]
        assert blocks
        assert text.count("--hash=sha256:") >= len(blocks)

    def test_dockerfile_installs_from_the_lock(self) -> None:
        """The image installs the pinned set with hashes, then syncd alone without resolving."""
        dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
        assert "--require-hashes -r requirements.lock" in dockerfile
        assert "pip install --no-deps ." in dockerfile

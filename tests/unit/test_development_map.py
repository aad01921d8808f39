"""docs/development.md's layout map names every package under syncd/.

A package added without a line in the map leaves the next engineer guessing
where things live; this fails until the map says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAP = (ROOT / "docs" / "development.md").read_text("utf-8")
PACKAGES = sorted(
    path.parent.relative_to(ROOT / "syncd")
    for path in (ROOT / "syncd").rglob("__init__.py")
    if path.parent != ROOT / "syncd"
)


def test_packages_are_found() -> None:
    assert Path("domain") in PACKAGES and Path("services/operator") in PACKAGES


@pytest.mark.parametrize("package", PACKAGES, ids=str)
def test_every_package_is_in_the_map(package: Path) -> None:
    assert f"{package.name}/" in MAP, f"syncd/{package}/ is missing from docs/development.md"

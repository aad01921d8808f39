"""The built wheel carries its migrations and ``syncd migrate`` finds them outside the source tree.

The wheel is installed with ``--no-deps`` into a fresh venv in a temporary
folder. The dependencies come from the test's own environment through a
``.pth`` line naming its site-packages: a path listed in a ``.pth`` file is put
on ``sys.path`` but the ``.pth`` files inside it are not run, so the editable
install of the source tree stays out and ``import syncd`` must find the wheel.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TABLES = {"sync_state", "leads", "batches", "lead_transitions", "poll_runs", "pauses"}

CONFIG = """
database: {url: "sqlite:///./data/syncd.db"}
salesforce:
  auth: {method: password, username: u@example.com, password: pw}
simz: {api_key: key}
syncs: [{name: web, agent: agt_1, mapping: {phoneNumber: Phone}}]
"""


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def outside_env() -> dict[str, str]:
    """The environment without anything that would point Python back at the source tree."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SYNCD_CONFIG"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """syncd's wheel, built from the source tree."""
    out = tmp_path_factory.mktemp("dist")
    # Build offline with the dev environment's hatchling when it is there.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", out, REPO, cwd=out)
    [built] = out.glob("syncd-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv outside the repository with only the wheel installed as syncd."""
    root = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    run(base, "-m", "venv", root / "venv", cwd=root)
    python = root / "venv" / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=root).strip())  # fmt: skip
    (site / "_syncd_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=root, env=outside_env())  # fmt: skip
    return root / "venv"


@pytest.mark.slow
class TestWheel:
    def test_wheel_contains_migrations(self, wheel: Path) -> None:
        """The wheel ships env.py and every revision under syncd/migrations."""
        names = set(zipfile.ZipFile(wheel).namelist())
        assert "syncd/migrations/env.py" in names
        assert "syncd/migrations/script.py.mako" in names
        revisions = {path.name for path in (REPO / "migrations" / "versions").glob("*.py")}
        assert revisions
        for revision in revisions:
            assert f"syncd/migrations/versions/{revision}" in names
        assert "syncd/entrypoints/cli.py" in names

    def test_wheel_contains_every_module(self, wheel: Path) -> None:
        """Every module and data file of the source package is in the wheel."""
        names = set(zipfile.ZipFile(wheel).namelist())
        package = REPO / "syncd"
        sources = {
            path.relative_to(REPO).as_posix()
            for path in package.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert "syncd/sandbox/simz-openapi.yaml" in sources
        assert "syncd/data/us_calling_rules.yaml" in sources
        assert sorted(sources - names) == []

    def test_the_installed_wheel_reads_the_state_calling_rules(
        self, venv: Path, tmp_path: Path
    ) -> None:
        """calling_hours.profile: us reads its data file from the installed package."""
        out = run(
            venv / "bin" / "python",
            "-c",
            "from syncd.config.us_calling_rules import us_rules; r = us_rules(); "
            "print(r.compiled, len(r.entries))",
            cwd=tmp_path,
            env=outside_env(),
        )
        compiled, count = out.split()
        assert compiled == "2026-12-07" and int(count) >= 7

    def test_imports_the_wheel_not_the_source_tree(self, venv: Path, tmp_path: Path) -> None:
        """In the new venv, syncd and its migrations come from the installed wheel."""
        out = run(
            venv / "bin" / "python",
            "-c",
            "import syncd, syncd.adapters.migrate as m; print(syncd.__file__); "
            "print(m.migrations_dir())",
            cwd=tmp_path,
            env=outside_env(),
        )
        module_file, migrations = (Path(line) for line in out.splitlines())
        assert module_file.is_relative_to(venv), module_file
        assert migrations.is_relative_to(venv), migrations
        assert not migrations.is_relative_to(REPO)

    def test_migrate_outside_the_source_tree(self, venv: Path, tmp_path: Path) -> None:
        """The installed `syncd migrate` creates every table in a new SQLite file, then is idle."""
        (tmp_path / "cfg.yaml").write_text(CONFIG, encoding="utf-8")
        syncd = venv / "bin" / "syncd"
        first = run(syncd, "migrate", "-c", "cfg.yaml", cwd=tmp_path, env=outside_env())
        assert "migrated the database from empty to" in first
        database = tmp_path / "data" / "syncd.db"
        with sqlite3.connect(database) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert tables >= TABLES | {"alembic_version"}
        second = run(syncd, "migrate", "-c", "cfg.yaml", cwd=tmp_path, env=outside_env())
        assert "the database is up to date" in second

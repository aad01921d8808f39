"""Two ``syncd migrate`` processes started at once on an empty PostgreSQL schema.

Replicas of a Deployment (or their init containers) start together; both
migrate. The migration lock (``pg_advisory_lock``) makes the second wait for
the first and then find nothing to do, instead of failing on the catalog rows
the first one is creating. Each round gets a fresh schema.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from syncd.adapters import migrate
from syncd.adapters.db import make_engine
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL
from tests.e2e.harness import minimal_config, run_syncd

ROUNDS = 5


@pytest.fixture
def fresh_schema() -> Iterator[Any]:
    """Make empty schemas on demand (a URL whose search_path is each); all dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    admin = create_engine(POSTGRES_URL)
    made: list[str] = []

    def make() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        separator = "&" if "?" in POSTGRES_URL else "?"
        return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"

    try:
        yield make
    finally:
        with admin.begin() as connection:
            for schema in made:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def migrate_together(config: Path, cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run two ``syncd migrate`` released by one barrier, so they start at the same instant."""
    barrier = threading.Barrier(2)
    results: list[subprocess.CompletedProcess[str]] = []

    def one() -> None:
        barrier.wait()
        results.append(run_syncd("migrate", cwd=cwd, config=config, timeout=120))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_replicas_migrate_an_empty_schema_at_once(
    round_: int, fresh_schema: Any, tmp_path: Path
) -> None:
    """Both exit 0, exactly one migrated and the other found it up to date; schema at head."""
    url = fresh_schema()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(minimal_config(url)), encoding="utf-8")
    results = migrate_together(config, tmp_path)
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    outputs = sorted(result.stdout for result in results)
    assert sum("migrated the database from empty to" in out for out in outputs) == 1, outputs
    assert sum("the database is up to date" in out for out in outputs) == 1, outputs
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
    finally:
        engine.dispose()


def test_two_processes_migrate_an_empty_sqlite_file_at_once(tmp_path: Path) -> None:
    """SQLite: the second waits on the write lock (BEGIN IMMEDIATE), then finds nothing to do."""
    for round_ in range(2):
        url = f"sqlite:///{tmp_path}/round-{round_}.db"
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(minimal_config(url)), encoding="utf-8")
        results = migrate_together(config, tmp_path)
        for result in results:
            assert result.returncode == 0, result.stdout + result.stderr
        outputs = [result.stdout for result in results]
        assert sum("migrated the database from empty to" in out for out in outputs) == 1, outputs

"""The dry run's database: read-only on both backends, a throwaway one when there is none."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from syncd.adapters.dry_run_db import dry_run_engine
from syncd.adapters.migrate import current_revision, head_revision

WRITE = "CREATE TABLE dry_run_probe (x INTEGER)"


def test_existing_database_refuses_writes(engine: Engine, db_url: str) -> None:
    """A migrated database is read as it is, and a write through the dry-run engine fails."""
    with dry_run_engine(db_url) as dry:
        assert current_revision(dry) == head_revision(dry)
        with dry.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM leads")).scalar_one() == 0
        with pytest.raises(DBAPIError, match=r"(?i)read.only|readonly"), dry.begin() as connection:
            connection.execute(text(WRITE))
    with engine.connect() as connection:
        connection.execute(text("SELECT COUNT(*) FROM leads"))
        with pytest.raises(DBAPIError):
            connection.execute(text("SELECT COUNT(*) FROM dry_run_probe"))


def test_empty_postgres_gets_a_throwaway(postgres_url: str) -> None:
    """An empty PostgreSQL schema is not migrated: a temporary SQLite file stands in."""
    with dry_run_engine(postgres_url) as dry:
        assert dry.dialect.name == "sqlite"
        assert current_revision(dry) == head_revision(dry)
    from sqlalchemy import create_engine

    real = create_engine(postgres_url)
    try:
        assert current_revision(real) is None
    finally:
        real.dispose()

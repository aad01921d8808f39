"""The Alembic migrations against real databases: they agree with the models, up and down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from syncd.adapters import migrate
from syncd.adapters.db import make_engine
from syncd.adapters.orm import Base

TABLES = {"sync_state", "leads", "batches", "lead_transitions", "poll_runs", "pauses"}


@pytest.fixture
def bare_engine(db_url: str) -> Iterator[Engine]:
    """An empty database on each backend (not migrated)."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def differences(engine: Engine) -> list[Any]:
    """What Alembic autogenerate would write, with the options migrations/env.py uses."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": Base.metadata,
                "compare_type": True,
                "render_as_batch": connection.dialect.name == "sqlite",
            },
        )
        diff: list[Any] = compare_metadata(context, Base.metadata)
    return diff


class TestModelsAndMigrationsAgree:
    def test_no_autogenerate_difference(self, bare_engine: Engine) -> None:
        """After upgrade to head, autogenerate finds nothing: models and migrations agree."""
        migrate.upgrade(bare_engine)
        assert differences(bare_engine) == []

    def test_comparison_can_fail(self, bare_engine: Engine) -> None:
        """On an empty database the comparison reports every table missing (it can fail)."""
        added = {entry[1].name for entry in differences(bare_engine) if entry[0] == "add_table"}
        assert added >= TABLES


class TestUpgradeAndDowngrade:
    def test_upgrade_creates_tables(self, bare_engine: Engine) -> None:
        """Upgrading an empty database to head creates every table and records the revision."""
        result = migrate.upgrade(bare_engine)
        assert result.before is None
        assert result.after == migrate.head_revision(bare_engine)
        assert result.changed
        assert table_names(bare_engine) >= TABLES | {"alembic_version"}

    def test_upgrade_is_idempotent(self, bare_engine: Engine) -> None:
        """Upgrading an up-to-date database changes nothing."""
        migrate.upgrade(bare_engine)
        again = migrate.upgrade(bare_engine)
        assert not again.changed
        assert again.after == migrate.head_revision(bare_engine)

    def test_downgrade_then_upgrade(self, bare_engine: Engine) -> None:
        """Downgrading to base drops every table; upgrading again brings them back."""
        migrate.upgrade(bare_engine)
        down = migrate.downgrade(bare_engine)
        assert down.after is None
        assert table_names(bare_engine) & TABLES == set()
        up = migrate.upgrade(bare_engine)
        assert up.before is None and up.after == migrate.head_revision(bare_engine)
        assert table_names(bare_engine) >= TABLES
        assert differences(bare_engine) == []

    def test_migrations_found_in_source_tree(self) -> None:
        """The migrations folder holds env.py and at least one revision."""
        folder = migrate.migrations_dir()
        assert (folder / "env.py").is_file()
        assert list((folder / "versions").glob("*.py"))

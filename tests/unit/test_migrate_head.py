"""``HEAD_REVISION`` names the newest migration: the daemons' start trusts it without Alembic."""

from __future__ import annotations

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from syncd.adapters import migrate


def test_head_revision_is_the_newest_migration() -> None:
    """A new migration without a new HEAD_REVISION fails here, saying what to change."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrate.migrations_dir()))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert heads == [migrate.HEAD_REVISION], (
        f"the migrations end at {heads}, but syncd/adapters/migrate.py says "
        f"HEAD_REVISION = {migrate.HEAD_REVISION!r}: set HEAD_REVISION to the new head, "
        "or syncd run/once would treat a database at the new head as not migrated "
        "(and one at the old head as up to date)"
    )

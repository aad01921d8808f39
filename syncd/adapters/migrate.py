"""Run the Alembic migrations shipped inside the package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def migrations_dir() -> Path:
    """The migrations folder: inside the installed wheel, or at the top of a source tree."""
    packaged = Path(__file__).resolve().parent.parent / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "migrations"
    if (source_tree / "env.py").is_file():
        return source_tree
    raise FileNotFoundError(
        f"syncd's migrations are missing (looked in {packaged} and {source_tree})"
    )


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    cfg.attributes["configure_logging"] = False
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def known_revisions(engine: Engine) -> set[str]:
    """Every revision this syncd ships (a database at another one was migrated by a newer syncd)."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    return {revision.revision for revision in script.walk_revisions()}


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(engine: Engine, revision: str = "head") -> MigrationResult:
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    return MigrationResult(before, current_revision(engine))


def downgrade(engine: Engine, revision: str = "base") -> MigrationResult:
    before = current_revision(engine)
    command.downgrade(alembic_config(engine), revision)
    return MigrationResult(before, current_revision(engine))

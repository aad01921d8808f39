"""Run the Alembic migrations shipped inside the package, one process at a time.

Replicas start together (a Deployment's pods, their init containers, a
``docker compose up``), and each migrates. Two Alembic runs on an empty
PostgreSQL database both try to create the same tables and one fails on the
catalog's unique index, so every upgrade and downgrade runs under a lock held
by the database for the connection Alembic uses (:func:`migration_lock`): the
second process waits, then reads the revision the first one left and finds
nothing to do.

A database already at :data:`HEAD_REVISION` is told by one plain ``SELECT`` of
``alembic_version`` (:func:`at_head`), so the daemons' start (``syncd run``,
``syncd once``) on a migrated database never imports Alembic (about 12 MB of
memory held for the life of the process); Alembic is imported only when a
migration must run, and by the commands that report revisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

#: The PostgreSQL advisory lock key every syncd takes around a migration ("syncdmig").
MIGRATION_LOCK_KEY = 0x73796E63646D6967

#: The newest revision in migrations/versions/. A new migration changes it too
#: (tests/unit/test_migrate_head.py fails until it names the new head).
HEAD_REVISION = "0011"


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


def alembic_config(engine: Engine, connection: Connection | None = None) -> AlembicConfig:
    """Alembic's settings; with ``connection``, migrations/env.py runs on that connection."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes["configure_logging"] = False
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def known_revisions(engine: Engine) -> set[str]:
    """Every revision this syncd ships (a database at another one was migrated by a newer syncd)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    return {revision.revision for revision in script.walk_revisions()}


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the database's migration lock on ``connection`` for the ``with`` body.

    PostgreSQL: a session-level ``pg_advisory_lock`` on :data:`MIGRATION_LOCK_KEY`,
    waited for without a time limit (another process is migrating; its changes
    are committed before it unlocks) and released afterwards, even when the
    migration failed; a process that dies loses it with its connection.

    SQLite takes no extra lock here: syncd's engine begins every transaction
    with ``BEGIN IMMEDIATE`` (:mod:`syncd.adapters.db`), and the revision is
    read and the migrations run in the one transaction of ``connection``, so a
    second process queues on SQLite's write lock (its busy timeout) and then
    reads the revision the first one committed.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        _unlock(connection)


def _unlock(connection: Connection) -> None:
    try:
        connection.rollback()  # a failed migration leaves its transaction aborted
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
    except Exception:
        # Never hand a connection that may still hold the lock back to the pool.
        connection.invalidate()
        raise


def at_head(engine: Engine) -> bool:
    """Whether the database is at :data:`HEAD_REVISION`, read without Alembic.

    One ``SELECT`` of Alembic's ``alembic_version`` table (resolved through the
    search path, as Alembic does). False when the table is missing (a fresh
    database), holds another revision or several, or cannot be read: then
    :func:`upgrade` takes the migration lock and lets Alembic read it again. A
    database that cannot be reached raises, as Alembic's path would.
    """
    with engine.connect() as connection:
        try:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError:
            return False
    return [row[0] for row in rows] == [HEAD_REVISION]


def upgrade(engine: Engine, revision: str = "head") -> MigrationResult:
    """Upgrade to ``revision`` under :func:`migration_lock`; an up-to-date database is unchanged.

    A database already at :data:`HEAD_REVISION` is left as it is without taking the
    lock or importing Alembic (:func:`at_head`): nothing to do, and a process that
    migrated it has committed that revision. Otherwise the revision is read again
    under the lock, and Alembic runs from there.
    """
    if revision == "head" and at_head(engine):
        return MigrationResult(HEAD_REVISION, HEAD_REVISION)
    from alembic import command

    with engine.connect() as connection, migration_lock(connection):
        before = _revision(connection)
        command.upgrade(alembic_config(engine, connection), revision)
        after = _revision(connection)
        connection.commit()
    return MigrationResult(before, after)


def downgrade(engine: Engine, revision: str = "base") -> MigrationResult:
    """Downgrade to ``revision`` under :func:`migration_lock`."""
    from alembic import command

    with engine.connect() as connection, migration_lock(connection):
        before = _revision(connection)
        command.downgrade(alembic_config(engine, connection), revision)
        after = _revision(connection)
        connection.commit()
    return MigrationResult(before, after)

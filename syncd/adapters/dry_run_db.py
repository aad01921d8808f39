"""The database a dry run reads: the real one opened read-only, or a throwaway one.

A dry run must leave no trace. An existing database is opened read-only
(SQLite ``mode=ro``, PostgreSQL ``READ ONLY`` transactions), so a write
would fail instead of landing; it must already be at the latest schema, since
migrating it would be a write. A database that does not exist yet (no SQLite
file, or an empty PostgreSQL schema) is never created: the dry run reads a
temporary SQLite file migrated to head instead, which it deletes afterwards.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from syncd.adapters import migrate
from syncd.adapters.db import SQLITE_BUSY_TIMEOUT_MS, make_engine


class DryRunDatabaseError(Exception):
    """The database cannot be read without writing to it (e.g. it needs a migration)."""


def _sqlite_read_only(path: Path) -> Engine:
    """An engine on an existing SQLite file that cannot write to it (no pragmas, no BEGIN).

    A read-only reader of a WAL database still creates the ``-shm`` (and ``-wal``)
    files beside it. When there is no ``-wal`` file, no writer has the database
    open and every committed change is in the main file, so it is opened
    ``immutable`` (no side files at all); a writer that starts meanwhile may be
    missed, which a preview can afford. When a ``-wal`` file exists, the side
    files are already there and the reader shares them (``mode=ro``).
    """
    wal = path.with_name(path.name + "-wal")
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


def _set_read_only(dbapi_connection: Any, _record: Any) -> None:
    """Make every transaction of this PostgreSQL session read-only."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.autocommit = autocommit


def _postgres_read_only(url: str) -> Engine:
    """An engine whose sessions cannot write (the URL's own options, e.g. search_path, kept)."""
    engine = create_engine(url, poolclass=NullPool)
    event.listen(engine, "connect", _set_read_only)
    return engine


def read_only_engine(url: str) -> Engine:
    """An engine on an existing database that cannot write to it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_read_only(Path(str(parsed.database)).expanduser())
    return _postgres_read_only(url)


def _at_head(engine: Engine) -> bool:
    """True at the latest schema; raise if the database is behind; False if it is empty."""
    current = migrate.current_revision(engine)
    if current is None:
        return False
    head = migrate.head_revision(engine)
    if current != head:
        raise DryRunDatabaseError(
            f"the database schema is at revision {current}, not {head}; a dry run does not "
            "migrate: run `syncd migrate` first"
        )
    return True


@contextmanager
def _throwaway() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="syncd-dry-run-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'dry-run.db'}")
        try:
            migrate.upgrade(engine)
            yield engine
        finally:
            engine.dispose()


@contextmanager
def dry_run_engine(url: str) -> Iterator[Engine]:
    """The engine a dry run reads from; nothing it does can change the configured database.

    Raises :class:`DryRunDatabaseError`, and SQLAlchemy's errors (unreachable).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database)).expanduser()
        if not path.exists():
            with _throwaway() as engine:
                yield engine
            return
    engine = read_only_engine(url)
    try:
        at_head = _at_head(engine)
    except BaseException:
        engine.dispose()
        raise
    if not at_head:
        engine.dispose()
        with _throwaway() as throwaway:
            yield throwaway
        return
    try:
        yield engine
    finally:
        engine.dispose()

"""Engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on disk before it returns, even across a power cut or an OS
    # crash. A claim must be durable before its POST starts: with NORMAL, a claim
    # lost after the POST would put sent leads back in the queue.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _writer_queue() -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` class whose transactions queue on one ``threading.Lock``.

    Every transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock when
    it starts, not half-way through (two writers then queue instead of failing with
    "database is locked" on lock upgrade). Between threads of one process (the poll
    and delivery of ``syncd run`` or ``syncd once``), waiting on SQLite's busy
    handler is slow: it sleeps in steps of up to 100 ms and checks again, so a claim
    waiting behind a poll page sleeps on long after the page committed. Threads of
    one engine queue on a lock instead, taken before ``BEGIN IMMEDIATE`` and given
    back once ``COMMIT`` or ``ROLLBACK`` is done, which hands over at once. Other
    processes still meet the busy timeout; a wait longer than that falls through to
    SQLite, which then reports the lock as it always did instead of hanging.
    """
    lock = threading.Lock()

    class QueuedWriterConnection(sqlite3.Connection):
        _holds_lock = False

        def begin_immediate(self) -> None:
            held = lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            try:
                self.execute("BEGIN IMMEDIATE")
            except BaseException:
                if held:
                    lock.release()
                raise
            self._holds_lock = held

        def _release(self) -> None:
            if self._holds_lock:
                self._holds_lock = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

    return QueuedWriterConnection


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.connection.dbapi_connection.begin_immediate()


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    """Create an engine with syncd's settings for the URL's backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "isolation_level": None,
                "factory": _writer_queue(),
            },
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"

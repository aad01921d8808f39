"""Leases with expiry in the ``leases`` table, and the SQLite one-process lock.

Why leases in a table and not PostgreSQL session advisory locks: an advisory
lock lives and dies with one connection, but syncd's work runs on pooled
connections and its POSTs to SimZ run outside any transaction, so "I still hold
the lock" cannot be tied to "I may still send". A lease has an explicit expiry
that the holder can check before each POST without touching the database, it
works the same on SQLite, and it gives a bounded takeover time
(``expires_at`` + the other replicas' renewal period).

Every time comparison uses the **database's** clock (``clock_timestamp()`` on
PostgreSQL), so replicas with skewed clocks agree on when a lease expired. On
SQLite there is only one replica (:class:`SqliteRunLock`), so its clock is the
machine's.

A change of holder increments ``token`` (a fencing token). Work is fenced by
``(holder, token)``: a claim of leads checks, in its own transaction and with a
shared row lock, that the lease is still this holder's, with this token, and
not expired (:func:`holds`). A takeover locks the row for update, so it waits
for such a claim to commit and then sees the claimed leads (and turns them
``uncertain``, see :mod:`syncd.services.leadership`).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from syncd.adapters.orm import Lease, Replica, utcnow

SYNC_PREFIX = "sync:"


def sync_lease(sync_name: str) -> str:
    """The lease name of a sync's loops."""
    return f"{SYNC_PREFIX}{sync_name}"


@dataclass(frozen=True)
class LeaseRow:
    name: str
    holder: str
    token: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, lease: Lease) -> LeaseRow:
        return cls(
            lease.name,
            lease.holder,
            lease.token,
            lease.acquired_at,
            lease.renewed_at,
            lease.expires_at,
        )


@dataclass(frozen=True)
class Grant:
    """A lease this holder now has; ``new`` when it was not renewed but (re)acquired."""

    lease: LeaseRow
    new: bool
    previous_holder: str | None
    db_now: datetime


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> datetime:
    """The database's current time (PostgreSQL's ``clock_timestamp()``), aware UTC."""
    if _postgres(session):
        value = session.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value
    return utcnow()


def _upsert(session: Session, model: type[Lease] | type[Replica]) -> object:
    return (postgresql_insert if _postgres(session) else sqlite_insert)(model)


def acquire(
    session: Session,
    name: str,
    holder: str,
    ttl: timedelta,
    *,
    token: int | None = None,
    force: bool = False,
) -> Grant | None:
    """Renew (``token`` given: the one this holder got) or acquire the lease ``name``.

    A renewal succeeds only while the lease is still this holder's, with that
    token, and not expired. An acquisition succeeds when the row is missing or
    expired -- or with ``force``, which only the SQLite single-process start-up
    uses (its file lock proves every earlier holder is gone). Returns None when
    another holder has it. The caller commits.
    """
    if token is not None:
        return _renew(session, name, holder, ttl, token)
    current = session.scalars(
        select(Lease).where(Lease.name == name).with_for_update()
    ).one_or_none()
    # Read the clock after the row lock: a wait for a claim to commit counts.
    now = db_now(session)
    if current is None:
        return _insert(session, name, holder, ttl, now)
    if not force and current.expires_at > now:
        return None
    return _take_over(session, current, holder, ttl, now)


def _granted(
    session: Session, name: str, now: datetime, *, new: bool, previous: str | None
) -> Grant:
    row = session.get(Lease, name, populate_existing=True)
    assert row is not None
    return Grant(LeaseRow.of(row), new=new, previous_holder=previous, db_now=now)


def _renew(session: Session, name: str, holder: str, ttl: timedelta, token: int) -> Grant | None:
    now = db_now(session)
    renewed = session.execute(
        update(Lease)
        .where(
            Lease.name == name,
            Lease.holder == holder,
            Lease.token == token,
            Lease.expires_at > now,
        )
        .values(renewed_at=now, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _granted(session, name, now, new=False, previous=None)


def _insert(
    session: Session, name: str, holder: str, ttl: timedelta, now: datetime
) -> Grant | None:
    statement = _upsert(session, Lease)
    # RETURNING tells whether the row was inserted (rowcount is -1 here on psycopg).
    inserted = session.execute(
        statement.values(  # type: ignore[attr-defined]
            name=name,
            holder=holder,
            token=1,
            acquired_at=now,
            renewed_at=now,
            expires_at=now + ttl,
        )
        .on_conflict_do_nothing(index_elements=[Lease.name])
        .returning(Lease.name)
    ).first()
    if inserted is None:
        return None  # another replica inserted it first
    return _granted(session, name, now, new=True, previous=None)


def _take_over(
    session: Session, current: Lease, holder: str, ttl: timedelta, now: datetime
) -> Grant | None:
    """Take an expired (or, with ``force``, any) lease; the token moves on (fencing)."""
    previous = current.holder  # read before the refresh below reloads the row
    taken = session.execute(
        update(Lease)
        .where(Lease.name == current.name, Lease.token == current.token)
        .values(
            holder=holder,
            token=current.token + 1,
            acquired_at=now,
            renewed_at=now,
            expires_at=now + ttl,
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _granted(session, current.name, now, new=True, previous=previous)


def holds(session: Session, name: str, holder: str, token: int) -> bool:
    """True if ``holder`` still has lease ``name`` with ``token``, unexpired.

    Takes a shared lock on the row (PostgreSQL ``FOR SHARE``) until the caller's
    transaction ends, so a takeover waits for work fenced by this check.
    """
    row = session.execute(
        select(Lease.expires_at)
        .where(Lease.name == name, Lease.holder == holder, Lease.token == token)
        .with_for_update(read=True)
    ).one_or_none()
    return row is not None and row.expires_at > db_now(session)


def release(session: Session, name: str, holder: str, token: int) -> bool:
    """Let the lease expire now (a clean stop), so another replica takes over at once."""
    now = db_now(session)
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder, Lease.token == token)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- replicas


def heartbeat(
    session: Session, replica: str, *, host: str, pid: int, started_at: datetime, ttl: timedelta
) -> None:
    """Insert or refresh this replica's row (what ``syncd status`` lists)."""
    now = db_now(session)
    statement = _upsert(session, Replica)
    values = {
        "id": replica,
        "host": host[:255],
        "pid": pid,
        "started_at": started_at,
        "heartbeat_at": now,
        "expires_at": now + ttl,
    }
    insert = statement.values(**values)  # type: ignore[attr-defined]
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[Replica.id],
            set_={"heartbeat_at": now, "expires_at": now + ttl},
        )
    )


def forget_replica(session: Session, replica: str) -> None:
    """A clean stop removes the replica's row."""
    session.execute(delete(Replica).where(Replica.id == replica))


# --------------------------------------------------------------------------- sqlite


class AnotherReplicaRunning(OSError):
    """A second ``syncd run`` on one SQLite file: refused (SQLite is single-replica)."""


class SqliteRunLock:
    """An exclusive ``flock`` on ``<database>.lock`` held for the process's lifetime.

    The kernel releases it when the process dies in any way (``kill -9`` too),
    so a stale lock file never blocks a restart. Only ``syncd run`` takes it:
    ``syncd once``, ``status`` and the other commands may still open the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @classmethod
    def for_url(cls, url: str) -> SqliteRunLock | None:
        """The lock for a SQLite file URL; None for PostgreSQL or in-memory SQLite."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        database = Path(parsed.database or "").expanduser().resolve()
        return cls(database.with_name(database.name + ".lock"))

    def acquire(self) -> None:
        """Take the lock or raise :class:`AnotherReplicaRunning` with a one-line reason."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AnotherReplicaRunning(
                f"another syncd run ({holder}) is using this SQLite database "
                f"(lock {self.path}); SQLite supports one replica: use PostgreSQL "
                "to run several"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None

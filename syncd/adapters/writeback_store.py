"""The write-back queue's SQL: enqueue outcomes with their state change, claim, record.

Which states each sync writes back lives in the session factory's ``info``
(:func:`install`), so the outbox and the poll store, which see only a session,
know it without a global. When no sync writes a state back, a move to that
state costs no statement at all; otherwise one ``INSERT ... SELECT`` of the
moved leads, in the same transaction as the move, upserting on ``lead_id``: a
later outcome of the same lead replaces the row and makes it pending again
(``generation`` + 1, so a send of the older outcome cannot mark it done).

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    ColumnElement,
    Insert,
    Table,
    and_,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Lead, LeadTransition, Writeback, WritebackAttempt
from syncd.config.models import SyncConfig
from syncd.domain.writeback import DONE, FAILED, RETRY

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_WRITEBACKS: Table = Writeback.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = WritebackAttempt.__table__  # type: ignore[assignment]

#: The key in ``Session.info``: sync name -> the lead states it writes back.
INFO_KEY = "syncd.writeback_states"
PENDING = "pending"
#: Records per sObject Collections call (Salesforce's limit).
BATCH_LIMIT = 200


# --------------------------------------------------------------------------- registry


def registry_of(syncs: Iterable[SyncConfig]) -> dict[str, frozenset[str]]:
    """Sync name -> the states it writes back, for syncs with write-back on."""
    return {
        sync.name: frozenset(sync.writeback.states)
        for sync in syncs
        if sync.writeback is not None and sync.enabled
    }


def install(session_factory: sessionmaker[Session], syncs: Iterable[SyncConfig]) -> None:
    """Make every session of ``session_factory`` enqueue the write-backs of ``syncs``."""
    registry = registry_of(syncs)
    info = dict(session_factory.kw.get("info") or {})
    if registry:
        info[INFO_KEY] = registry
    else:
        info.pop(INFO_KEY, None)
    session_factory.configure(info=info)


def _registry(session: Session) -> Mapping[str, frozenset[str]] | None:
    found: Mapping[str, frozenset[str]] | None = session.info.get(INFO_KEY)
    return found


# --------------------------------------------------------------------------- enqueue


@functools.lru_cache(maxsize=8)
def _upsert(dialect: str) -> Any:
    return postgresql_insert if dialect == "postgresql" else sqlite_insert


def _enqueue_statement(dialect: str, leads_selected: ColumnElement[bool]) -> Insert:
    """``INSERT INTO writebacks SELECT ... FROM leads WHERE ... ON CONFLICT (lead_id) ...``."""
    columns = _WRITEBACKS.c
    now = bindparam("wb_now", type_=columns.updated_at.type)
    source = select(
        _LEADS.c.id,
        _LEADS.c.sync_name,
        _LEADS.c.state,
        literal(PENDING, columns.status.type),
        literal(1, columns.generation.type),
        literal(0, columns.attempts.type),
        now,
        now,
    ).where(
        leads_selected,
        # lower() (names and states are lower case already) keeps the planner on the
        # lead ids: on the bare columns SQLite walks ix_leads_claim through every lead
        # of the sync instead, a cost that grows with the table.
        func.lower(_LEADS.c.sync_name).in_(bindparam("wb_syncs", expanding=True)),
        func.lower(_LEADS.c.state).in_(bindparam("wb_states", expanding=True)),
    )
    statement = _upsert(dialect)(_WRITEBACKS).from_select(
        [
            "lead_id",
            "sync_name",
            "state",
            "status",
            "generation",
            "attempts",
            "created_at",
            "updated_at",
        ],
        source,
    )
    excluded = statement.excluded
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[columns.lead_id],
        set_={
            "sync_name": excluded.sync_name,
            "state": excluded.state,
            "status": PENDING,
            "generation": columns.generation + 1,
            "attempts": 0,
            "next_attempt_at": None,
            "last_error": None,
            "done_at": None,
            "updated_at": excluded.updated_at,
        },
    )
    return upsert


@functools.lru_cache(maxsize=8)
def _enqueue_ids_statement(dialect: str) -> Insert:
    return _enqueue_statement(dialect, _ids_in(dialect))


def _ids_in(dialect: str) -> ColumnElement[bool]:
    """``leads.id`` in the list bound as ``wb_ids``, as one parameter.

    An expanding ``IN`` is rendered anew for every execution (a bind per id),
    which cost as much as running the statement; this is on delivery's path, so
    the ids go as one array (PostgreSQL) or one JSON text (SQLite) and the
    statement is compiled once.
    """
    if dialect == "postgresql":
        return _LEADS.c.id == any_(bindparam("wb_ids", type_=ARRAY(BigInteger)))
    ids = select(column("value", BigInteger)).select_from(
        func.json_each(bindparam("wb_ids", type_=JSON))
    )
    return _LEADS.c.id.in_(ids.scalar_subquery())


def writers_of(session: Session, state: str) -> list[str] | None:
    """The syncs that write ``state`` back, or None when none does (the cheap check)."""
    registry = _registry(session)
    if not registry:
        return None
    syncs = sorted(name for name, states in registry.items() if state in states)
    return syncs or None


def enqueue_moved(session: Session, lead_ids: Sequence[int], state: str, now: datetime) -> int:
    """Queue write-backs for leads just moved to ``state``, for the syncs that write it.

    No statement at all when no sync writes ``state`` back.
    """
    syncs = writers_of(session, state)
    if syncs is None or not lead_ids:
        return 0
    connection = session.connection()
    result = connection.execute(
        _enqueue_ids_statement(connection.dialect.name),
        {"wb_ids": list(lead_ids), "wb_syncs": syncs, "wb_states": [state], "wb_now": now},
    )
    return int(result.rowcount)


def enqueue_by_state(session: Session, moved: Iterable[tuple[int, str]], now: datetime) -> None:
    """:func:`enqueue_moved` for (lead id, new state) pairs of several states at once."""
    by_state: dict[str, list[int]] = {}
    for lead_id, state in moved:
        by_state.setdefault(state, []).append(lead_id)
    for state, ids in sorted(by_state.items()):
        enqueue_moved(session, ids, state, now)


def enqueue_selected(
    session: Session,
    sync_name: str,
    leads_selected: ColumnElement[bool],
    present: Iterable[str],
    now: datetime,
) -> int:
    """Queue write-backs for ``sync_name``'s leads matching ``leads_selected`` whose
    state it writes back (the poll's new leads, whose states are ``present``).

    No statement at all when the sync writes none of the ``present`` states back.
    """
    registry = _registry(session)
    written = registry.get(sync_name) if registry else None
    states = written.intersection(present) if written else None
    if not states:
        return 0
    connection = session.connection()
    result = connection.execute(
        _enqueue_statement(connection.dialect.name, leads_selected),
        {"wb_syncs": [sync_name], "wb_states": sorted(states), "wb_now": now},
    )
    return int(result.rowcount)


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class DueWriteback:
    """A pending write-back with what the record's fields are made of."""

    id: int
    lead_id: int
    generation: int
    attempts: int
    state: str
    salesforce_id: str
    simz_batch_id: str | None
    sent_at: datetime | None
    error_code: str | None
    error_message: str | None


_DUE = (
    select(
        _WRITEBACKS.c.id,
        _WRITEBACKS.c.lead_id,
        _WRITEBACKS.c.generation,
        _WRITEBACKS.c.attempts,
        _WRITEBACKS.c.state,
        _LEADS.c.salesforce_id,
        _LEADS.c.simz_batch_id,
        _LEADS.c.sent_at,
        _LEADS.c.error_code,
        _LEADS.c.error_message,
    )
    .join(_LEADS, _LEADS.c.id == _WRITEBACKS.c.lead_id)
    .where(
        _WRITEBACKS.c.sync_name == bindparam("sync"),
        _WRITEBACKS.c.status == PENDING,
        or_(
            _WRITEBACKS.c.next_attempt_at.is_(None),
            _WRITEBACKS.c.next_attempt_at
            <= bindparam("now", type_=_WRITEBACKS.c.next_attempt_at.type),
        ),
    )
    .order_by(_WRITEBACKS.c.id)
    .limit(bindparam("limit"))
)


def due(
    session: Session, sync_name: str, now: datetime, limit: int = BATCH_LIMIT
) -> list[DueWriteback]:
    """The oldest pending write-backs of a sync that are due now."""
    rows = session.connection().execute(_DUE, {"sync": sync_name, "now": now, "limit": limit})
    # Positional: _DUE selects the dataclass's fields in its order (a test checks).
    return [DueWriteback(*tuple(row)) for row in rows]


@dataclass(frozen=True)
class WritebackResult:
    """What one try did for one write-back: done, retry (at ``retry_at``) or failed."""

    row: DueWriteback
    outcome: str
    error: str | None = None
    retry_at: datetime | None = None


_RECORD = (
    update(_WRITEBACKS)
    .where(_WRITEBACKS.c.id == bindparam("r_id"), _WRITEBACKS.c.generation == bindparam("r_gen"))
    .values(
        status=bindparam("r_status"),
        attempts=_WRITEBACKS.c.attempts + 1,
        next_attempt_at=bindparam("r_next", type_=_WRITEBACKS.c.next_attempt_at.type),
        last_error=bindparam("r_error"),
        done_at=None,
        updated_at=bindparam("r_now", type_=_WRITEBACKS.c.updated_at.type),
    )
)
_IDS = _WRITEBACKS.c.id.in_(bindparam("d_ids", expanding=True))
#: The rows written, all at once: one UPDATE per generation (nearly always just 1).
_RECORD_DONE = (
    update(_WRITEBACKS)
    .where(_IDS, _WRITEBACKS.c.generation == bindparam("d_gen"))
    .values(
        status=DONE,
        attempts=_WRITEBACKS.c.attempts + 1,
        next_attempt_at=None,
        last_error=None,
        done_at=bindparam("d_now", type_=_WRITEBACKS.c.done_at.type),
        updated_at=bindparam("d_now", type_=_WRITEBACKS.c.updated_at.type),
    )
)
#: Their attempts (the state that was sent, bound), built by the database from the rows.
_ATTEMPTS_DONE = insert(_ATTEMPTS).from_select(
    ["lead_id", "at", "state", "outcome", "error"],
    select(
        _WRITEBACKS.c.lead_id,
        bindparam("d_now", type_=_ATTEMPTS.c.at.type),
        bindparam("d_state", type_=_ATTEMPTS.c.state.type),
        literal(DONE, _ATTEMPTS.c.outcome.type),
        literal(None, _ATTEMPTS.c.error.type),
    )
    .where(_IDS)
    .order_by(_WRITEBACKS.c.id),
)


def record(session: Session, results: Sequence[WritebackResult], now: datetime) -> int:
    """Store the outcome of one try and its attempts; returns how many rows it settled.

    The records written (the usual case) cost a few set-based statements; the
    others an executemany each. A row replaced by a newer outcome meanwhile
    (another ``generation``) is left pending for its new state; the attempt of
    what was sent is still recorded.
    """
    if not results:
        return 0
    connection = session.connection()
    settled = 0
    done = [r for r in results if r.outcome == DONE]
    for generation in sorted({r.row.generation for r in done}):
        ids = [r.row.id for r in done if r.row.generation == generation]
        result = connection.execute(_RECORD_DONE, {"d_ids": ids, "d_gen": generation, "d_now": now})
        settled += int(result.rowcount)
    for state in sorted({r.row.state for r in done}):
        ids = [r.row.id for r in done if r.row.state == state]
        connection.execute(_ATTEMPTS_DONE, {"d_ids": ids, "d_now": now, "d_state": state})
    other = [r for r in results if r.outcome != DONE]
    if other:
        status = {FAILED: FAILED, RETRY: PENDING}
        params = [
            {
                "r_id": r.row.id,
                "r_gen": r.row.generation,
                "r_status": status[r.outcome],
                "r_next": r.retry_at if r.outcome == RETRY else None,
                "r_error": r.error[:2000] if r.error else None,
                "r_now": now,
            }
            for r in other
        ]
        settled += int(connection.execute(_RECORD, params).rowcount)
        connection.execute(
            insert(_ATTEMPTS),
            [
                {
                    "lead_id": r.row.lead_id,
                    "at": now,
                    "state": r.row.state,
                    "outcome": r.outcome,
                    "error": r.error[:2000] if r.error else None,
                }
                for r in other
            ],
        )
    return settled


# --------------------------------------------------------------------------- operators


def counts(session: Session) -> dict[tuple[str, str], int]:
    """(sync, status) -> number of write-backs."""
    rows = session.execute(
        select(Writeback.sync_name, Writeback.status, func.count()).group_by(
            Writeback.sync_name, Writeback.status
        )
    )
    return {(sync, status): int(count) for sync, status, count in rows}


def count_pending(session: Session, sync_name: str) -> int:
    """Pending write-backs of a sync (due or waiting for a retry), read off the due index."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Writeback)
            .where(Writeback.sync_name == sync_name, Writeback.status == PENDING)
        )
        or 0
    )


def attempts_of(session: Session, lead_ids: Sequence[int]) -> dict[int, list[WritebackAttempt]]:
    """Every write-back attempt of these leads, oldest first."""
    found: dict[int, list[WritebackAttempt]] = {lead_id: [] for lead_id in lead_ids}
    for start in range(0, len(lead_ids), 900):
        chunk = list(lead_ids[start : start + 900])
        query = (
            select(WritebackAttempt)
            .where(WritebackAttempt.lead_id.in_(chunk))
            .order_by(WritebackAttempt.lead_id, WritebackAttempt.id)
        )
        for attempt in session.scalars(query):
            found[attempt.lead_id].append(attempt)
    return found


def writebacks_of(session: Session, lead_ids: Sequence[int]) -> dict[int, Writeback]:
    """The write-back row of each of these leads that has one."""
    found: dict[int, Writeback] = {}
    for start in range(0, len(lead_ids), 900):
        chunk = list(lead_ids[start : start + 900])
        for row in session.scalars(select(Writeback).where(Writeback.lead_id.in_(chunk))):
            found[row.lead_id] = row
    return found


def count_failed(session: Session, sync_name: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Writeback)
            .where(Writeback.sync_name == sync_name, Writeback.status == FAILED)
        )
        or 0
    )


def field_errors(session: Session) -> dict[str, tuple[int, str]]:
    """Sync -> (failed write-backs refused on a field, the latest such error).

    ``INVALID_FIELD`` / ``INVALID_FIELD_FOR_INSERT_UPDATE``: a configured field
    was removed or made read-only, so the sync's write-back is broken until the
    field is back and the rows are retried.
    """
    refused = and_(Writeback.status == FAILED, Writeback.last_error.like("%INVALID_FIELD%"))
    rows = session.execute(
        select(Writeback.sync_name, func.count(), func.max(Writeback.last_error))
        .where(refused)
        .group_by(Writeback.sync_name)
    )
    return {sync: (int(count), str(error)) for sync, count, error in rows}


def retry_failed(session: Session, sync_name: str, now: datetime) -> int:
    """Failed write-backs of a sync back to pending, due now; returns how many."""
    result = session.execute(
        update(Writeback)
        .where(and_(Writeback.sync_name == sync_name, Writeback.status == FAILED))
        .values(status=PENDING, attempts=0, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def written_states(session: Session, sync_name: str) -> frozenset[str] | None:
    """The states ``sync_name`` writes back, or None when it has no write-back."""
    registry = _registry(session)
    return registry.get(sync_name) if registry else None


def resync_candidates(session: Session, sync_name: str, since: datetime | None) -> list[int]:
    """Ids of the sync's leads in a written state whose outcome ``resync`` would queue.

    Without ``since``: the leads that have no write-back row (their outcome came
    before write-back was on). With it: every such lead that changed state at or
    after ``since``, written or not.
    """
    states = written_states(session, sync_name)
    if not states:
        return []
    if since is None:
        chosen = ~exists().where(_WRITEBACKS.c.lead_id == _LEADS.c.id)
    else:
        transitions: Table = LeadTransition.__table__  # type: ignore[assignment]
        chosen = exists().where(transitions.c.lead_id == _LEADS.c.id, transitions.c.at >= since)
    query = (
        select(_LEADS.c.id)
        .where(_LEADS.c.sync_name == sync_name, _LEADS.c.state.in_(sorted(states)), chosen)
        .order_by(_LEADS.c.id)
    )
    return [int(lead_id) for lead_id in session.connection().execute(query).scalars()]


def enqueue_leads(session: Session, sync_name: str, lead_ids: Sequence[int], now: datetime) -> int:
    """Queue the current outcome of these leads of ``sync_name`` (those in a state it
    writes back), pending and due now; a lead's existing row is replaced."""
    states = written_states(session, sync_name)
    if not states or not lead_ids:
        return 0
    connection = session.connection()
    result = connection.execute(
        _enqueue_ids_statement(connection.dialect.name),
        {
            "wb_ids": list(lead_ids),
            "wb_syncs": [sync_name],
            "wb_states": sorted(states),
            "wb_now": now,
        },
    )
    # psycopg may not report the count of an INSERT ... SELECT ... ON CONFLICT.
    return int(result.rowcount) if result.rowcount >= 0 else len(lead_ids)

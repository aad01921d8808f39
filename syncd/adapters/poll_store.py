"""SQLAlchemy access for polling: sync_state, the page's lookups, poll_runs, the guard.

Set-based on purpose: one page of up to 2,000 records costs one SELECT of the
page's existing leads and one SELECT of recent phone numbers (on SQLite in
chunks of at most 900 values; on PostgreSQL one statement each, the page's
values bound as one JSON text, :mod:`syncd.adapters.number_param`). What the
page then writes to its leads (new leads, changed records, their audit trail
and write-backs) goes through
:mod:`syncd.adapters.ledger`, the one module that writes lead states.
Every function takes the caller's :class:`Session`; the caller owns the
transaction (one per page), so a page's leads and the watermark commit together.

On SQLite the page's lookups go straight to the driver, values converted by the
columns' own bind processors: the same SQL and the same values, without
SQLAlchemy's per-value parameter handling, which cost more CPU than SQLite's own work.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence, Sized
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from syncd.adapters.ledger import bind_processor, result_processor
from syncd.adapters.number_param import as_param, number_among
from syncd.adapters.orm import IntakeAdmission, Lead, PollRun, SyncState
from syncd.domain.page_plan import ExistingLead
from syncd.domain.rules import HOLDS_NUMBER, AgentPhone
from syncd.domain.states import LeadState

_CHUNK = 900  # stays under every backend's bound-parameter limit
_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_HOLDING_STATES = sorted(state.value for state in HOLDS_NUMBER)
_ACCEPTED = LeadState.ACCEPTED.value


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(values: Sized) -> str:
    """As many ``?`` placeholders as ``values`` has, for a SQLite IN list."""
    return ", ".join("?" * len(values))


def _sqlite_rows(session: Session, sql: str, params: tuple[Any, ...]) -> Sequence[Any]:
    """The rows of one SQLite statement run by the driver in the session's transaction."""
    return session.connection().exec_driver_sql(sql, params).all()


# --------------------------------------------------------------------------- sync_state


@dataclass(frozen=True)
class CursorState:
    """What a poll needs from sync_state."""

    start_at: datetime
    watermark: datetime | None
    paused_until: datetime | None
    pause_reason: str | None
    #: When syncd first polled the sync: records changed before are history.
    created_at: datetime | None = None


def _view(row: SyncState) -> CursorState:
    return CursorState(
        row.start_at, row.watermark, row.paused_until, row.pause_reason, row.created_at
    )


def get_state(session: Session, sync_name: str) -> CursorState | None:
    row = session.get(SyncState, sync_name)
    return _view(row) if row is not None else None


def ensure_state(
    session: Session, sync_name: str, start_at: datetime, now: datetime
) -> CursorState:
    """The sync's state, created with ``start_at`` on its first poll."""
    row = session.get(SyncState, sync_name)
    if row is None:
        row = SyncState(sync_name=sync_name, start_at=start_at, created_at=now, updated_at=now)
        session.add(row)
        session.flush()
    return _view(row)


def advance_watermark(session: Session, sync_name: str, value: datetime, now: datetime) -> None:
    """Move the watermark forward to ``value``; never backwards."""
    session.execute(
        update(SyncState)
        .where(
            SyncState.sync_name == sync_name,
            or_(SyncState.watermark.is_(None), SyncState.watermark < value),
        )
        .values(watermark=value, updated_at=now)
    )


def enter_pause(
    session: Session, sync_name: str, until: datetime, reason: str, now: datetime
) -> bool:
    """Pause polling until ``until``; True when the sync was not paused already."""
    row = session.get(SyncState, sync_name)
    if row is None:
        return False
    entering = row.paused_until is None or row.paused_until <= now
    row.paused_until = until
    row.pause_reason = reason
    row.updated_at = now
    return entering


def record_outcome(
    session: Session, sync_name: str, status: str, error: str | None, now: datetime
) -> None:
    """Remember the last poll's status (and error) on the sync for status views."""
    values: dict[str, Any] = {
        "last_poll_at": now,
        "last_poll_status": status,
        "updated_at": now,
    }
    if status == "ok":
        values.update(last_poll_ok_at=now, last_error=None, paused_until=None, pause_reason=None)
    elif status == "error":
        values["last_error"] = error
    session.execute(update(SyncState).where(SyncState.sync_name == sync_name).values(**values))


# --------------------------------------------------------------------------- poll_runs


def start_poll_run(
    session: Session,
    sync_name: str,
    now: datetime,
    window_from: datetime | None,
    window_to: datetime | None,
    status: str = "running",
) -> int:
    run = PollRun(
        sync_name=sync_name,
        started_at=now,
        window_from=window_from,
        window_to=window_to,
        status=status,
    )
    session.add(run)
    session.flush()
    return run.id


def finish_poll_run(session: Session, run_id: int, **values: Any) -> None:
    session.execute(update(PollRun).where(PollRun.id == run_id).values(**values))


# --------------------------------------------------------------------------- leads


def existing_leads(
    session: Session, sync_name: str, salesforce_ids: Sequence[str], *, lock: bool
) -> dict[str, ExistingLead]:
    """The page's leads already in the database, by Salesforce Id.

    With ``lock`` (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    writers) the rows stay locked until the page commits, so a delivery claim
    (``FOR UPDATE SKIP LOCKED``) cannot take one between this read and the update.
    """
    found: dict[str, ExistingLead] = {}
    dialect = session.get_bind().dialect
    stamp = result_processor(dialect, "record_stamp")
    if dialect.name == "sqlite":
        # The same query straight to the driver: SQLAlchemy's expansion of the IN list
        # cost several times the lookup itself. Nothing to lock on SQLite.
        for chunk in _chunks(salesforce_ids):
            sql = (
                "SELECT id, salesforce_id, state, record_hash, record_stamp, discarded_at "
                f"FROM leads WHERE sync_name = ? AND salesforce_id IN ({_marks(chunk)})"
            )
            for row in _sqlite_rows(session, sql, (sync_name, *chunk)):
                found[row[1]] = _existing(row, stamp)
        return found
    query = _PG_EXISTING_LOCKED if lock else _PG_EXISTING
    params = {"sync_name": sync_name, "ids": as_param(salesforce_ids)}
    for row in session.execute(query, params):
        found[row[1]] = _existing(row)
    return found


_EXISTING = (
    Lead.id,
    Lead.salesforce_id,
    Lead.state,
    Lead.record_hash,
    Lead.record_stamp,
    Lead.discarded_at,
)
#: PostgreSQL: the page's ids as one JSON text, one statement psycopg prepares
#: once (an IN list of up to 2,000 binds is parsed again on every page).
_PG_EXISTING = select(*_EXISTING).where(
    Lead.sync_name == bindparam("sync_name"),
    number_among(_LEADS.c.salesforce_id, "postgresql", "ids"),
)
_PG_EXISTING_LOCKED = _PG_EXISTING.with_for_update()


def _existing(row: Sequence[Any], stamp: Callable[[Any], Any] | None = None) -> ExistingLead:
    """An :class:`ExistingLead` from a row of the :data:`_EXISTING` columns.

    ``stamp`` converts a raw driver value (SQLite's text) to the aware datetime.
    """
    lead_id, _sf_id, state, digest, stored_stamp, discarded_at = row
    if stamp is not None:
        stored_stamp = stamp(stored_stamp)
    return ExistingLead(lead_id, state, digest, stored_stamp, discarded_at is not None)


def recent_phones(
    session: Session,
    phones: Collection[str],
    since: datetime,
    exclude_ids: Collection[int],
    agents: Collection[str] | None = None,
) -> set[AgentPhone]:
    """(agent, number) pairs held by another lead, across every sync.

    A lead that is ``queued``, ``sending`` or ``uncertain`` holds its number
    whatever its age (a lead waiting out a long outage still goes out later); an
    ``accepted`` one holds it when it was sent (or, unsent, created) since
    ``since``. Leads SimZ rejected do not count (nobody will call them); ``exclude_ids``
    are the leads being evaluated again, which must not block themselves.
    ``agents`` (the agents the numbers are meant for) limits the pairs to those
    that can matter, and lets the lookup use the (agent, phone) index instead of
    scanning every queued and sent lead for each page.
    """
    pairs: set[AgentPhone] = set()
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        # As below, straight to the driver (see existing_leads); ``since`` converted
        # as SQLAlchemy converts it for coalesce(sent_at, created_at).
        when_since = bind_processor(dialect, "sent_at")(since)
        agent_list = sorted(agents) if agents is not None else []
        for chunk in _chunks(sorted(phones)):
            sql = (
                "SELECT id, agent_id, phone_e164 FROM leads "
                f"WHERE phone_e164 IN ({_marks(chunk)}) AND (state IN ({_marks(_HOLDING_STATES)}) "
                "OR (state = ? AND coalesce(sent_at, created_at) >= ?))"
            )
            if agents is not None:
                sql += f" AND agent_id IN ({_marks(agent_list)})"
            params = (*chunk, *_HOLDING_STATES, _ACCEPTED, when_since, *agent_list)
            for lead_id, agent, phone in _sqlite_rows(session, sql, params):
                if lead_id not in exclude_ids and agent is not None and phone is not None:
                    pairs.add((agent, phone))
        return pairs
    values: dict[str, Any] = {"phones": as_param(sorted(phones)), "since": since}
    if agents is not None:
        values["agents"] = as_param(sorted(agents))
    query = _PG_RECENT_OF_AGENTS if agents is not None else _PG_RECENT
    for lead_id, agent, phone in session.execute(query, values):
        if lead_id not in exclude_ids and agent is not None and phone is not None:
            pairs.add((agent, phone))
    return pairs


def _pg_recent(of_agents: bool) -> Select[Any]:
    """PostgreSQL's :func:`recent_phones`: the numbers (and agents) as JSON texts."""
    leads = _LEADS.c
    when = func.coalesce(leads.sent_at, leads.created_at)
    query: Select[Any] = select(leads.id, leads.agent_id, leads.phone_e164).where(
        number_among(leads.phone_e164, "postgresql", "phones"),
        or_(
            leads.state.in_(_HOLDING_STATES),
            and_(leads.state == _ACCEPTED, when >= bindparam("since")),
        ),
    )
    if of_agents:
        query = query.where(number_among(leads.agent_id, "postgresql", "agents"))
    return query


_PG_RECENT = _pg_recent(of_agents=False)
_PG_RECENT_OF_AGENTS = _pg_recent(of_agents=True)


def refresh_statistics(session: Session) -> bool:
    """``ANALYZE`` the lead tables on PostgreSQL (a no-op elsewhere); True if it ran.

    A first backfill can grow ``leads`` from nothing to many thousand rows within
    one poll, before autovacuum's analyze comes round; with no statistics the
    planner scans the table for every page's lookups instead of using its indexes.
    """
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.execute(text("ANALYZE leads"))
    session.execute(text("ANALYZE lead_transitions"))
    return True


# --------------------------------------------------------------------------- the guard


def guard_history(session: Session, sync_name: str, limit: int) -> list[int]:
    """New leads ready to call of the sync's last ``limit`` ok polls the guard did not hold.

    Newest first; what the guard's trailing average is taken over.
    """
    rows = session.execute(
        select(PollRun.eligible)
        .where(
            PollRun.sync_name == sync_name,
            PollRun.status == "ok",
            PollRun.held == 0,
            PollRun.finished_at.is_not(None),
        )
        .order_by(PollRun.id.desc())
        .limit(limit)
    )
    return [int(eligible or 0) for (eligible,) in rows]


# --------------------------------------------------------------------------- the stream's guard


def admitted_since(session: Session, sync_name: str, since: datetime) -> int:
    """Leads the sync's stream intake made sendable since ``since`` (the rolling window)."""
    total = session.scalar(
        select(func.coalesce(func.sum(IntakeAdmission.leads), 0)).where(
            IntakeAdmission.sync_name == sync_name, IntakeAdmission.at >= since
        )
    )
    return int(total or 0)


#: Admissions older than this are deleted as new ones are written (no window is longer).
ADMISSIONS_KEPT = timedelta(days=1)


def record_admission(session: Session, sync_name: str, leads: int, now: datetime) -> None:
    """Count ``leads`` made sendable by one stream intake now; forget day-old counts."""
    session.add(IntakeAdmission(sync_name=sync_name, at=now, leads=leads))
    session.execute(
        delete(IntakeAdmission).where(
            IntakeAdmission.sync_name == sync_name, IntakeAdmission.at < now - ADMISSIONS_KEPT
        )
    )

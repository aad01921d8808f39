"""SQLAlchemy access for polling: sync_state, the leads a page upserts, poll_runs.

Set-based on purpose: one page of up to 2,000 records costs one SELECT of the
page's existing leads, one SELECT of recent phone numbers (each in chunks of
at most 900 values), one executemany INSERT plus one INSERT ... SELECT of the
first transitions (the audit trail), one executemany UPDATE, and for records
whose lead delivery already had, one executemany UPDATE plus one executemany
INSERT of their audit notes (:func:`record_changes`); and, only for a sync that
writes invalid, skipped or held leads back, one INSERT ... SELECT of their
write-backs (:mod:`syncd.adapters.writeback_store`).
The page's values (:class:`NewLead`, :class:`LeadChange`, :class:`RecordChange`)
are the domain's (:mod:`syncd.domain.page_plan`); this module turns them into rows.
Every function takes the caller's :class:`Session`; the caller owns the
transaction (one per page), so a page's leads and the watermark commit together.

On SQLite the page's lookups and its INSERT of new leads go straight to the
driver, values converted by the columns' own bind processors: the same SQL and
the same stored values, without SQLAlchemy's per-value parameter handling,
which cost more CPU than SQLite's own work.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence, Sized
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.orm import Lead, LeadTransition, PollRun, SyncState
from syncd.domain.page_plan import ExistingLead, LeadChange, NewLead, RecordChange
from syncd.domain.rules import HOLDS_NUMBER, AgentPhone
from syncd.domain.states import REEVALUATED_ON_CHANGE, LeadState, check_transition

_CHUNK = 900  # stays under every backend's bound-parameter limit
_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
_REEVALUATED = sorted(state.value for state in REEVALUATED_ON_CHANGE)
_HOLDING_STATES = sorted(state.value for state in HOLDS_NUMBER)
_ACCEPTED = LeadState.ACCEPTED.value
_HELD = LeadState.HELD.value
# Constants rendered inline: an expanding IN cannot be used with executemany.
_NOT_YET_CLAIMED = _LEADS.c.state.in_([literal_column(f"'{state}'") for state in _REEVALUATED])


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


def _view(row: SyncState) -> CursorState:
    return CursorState(row.start_at, row.watermark, row.paused_until, row.pause_reason)


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
    if session.get_bind().dialect.name == "sqlite":
        # The same query straight to the driver: SQLAlchemy's expansion of the IN list
        # cost several times the lookup itself. Nothing to lock on SQLite.
        for chunk in _chunks(salesforce_ids):
            sql = (
                "SELECT id, salesforce_id, state, record_hash FROM leads "
                f"WHERE sync_name = ? AND salesforce_id IN ({_marks(chunk)})"
            )
            for lead_id, sf_id, state, digest in _sqlite_rows(session, sql, (sync_name, *chunk)):
                found[sf_id] = ExistingLead(lead_id, state, digest)
        return found
    for chunk in _chunks(salesforce_ids):
        query = select(Lead.id, Lead.salesforce_id, Lead.state, Lead.record_hash).where(
            Lead.sync_name == sync_name, Lead.salesforce_id.in_(chunk)
        )
        if lock:
            query = query.with_for_update()
        for lead_id, sf_id, state, digest in session.execute(query):
            found[sf_id] = ExistingLead(lead_id, state, digest)
    return found


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
        when_since = _bind_processor(dialect, "sent_at")(since)
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
    when = func.coalesce(Lead.sent_at, Lead.created_at)
    for chunk in _chunks(sorted(phones)):
        query = select(Lead.id, Lead.agent_id, Lead.phone_e164).where(
            Lead.phone_e164.in_(chunk),
            or_(Lead.state.in_(_HOLDING_STATES), and_(Lead.state == _ACCEPTED, when >= since)),
        )
        if agents is not None:
            query = query.where(Lead.agent_id.in_(sorted(agents)))
        for lead_id, agent, phone in session.execute(query):
            if lead_id not in exclude_ids and agent is not None and phone is not None:
                pairs.add((agent, phone))
    return pairs


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


#: The columns insert_leads writes, in the order of its SQLite rows.
_NEW_LEAD_COLUMNS = (
    "sync_name",
    "salesforce_id",
    "agent_id",
    "state",
    "payload",
    "phone_e164",
    "record_cursor",
    "record_hash",
    "note",
    "do_not_call",
    "time_zone",
    "attempts",
    "created_at",
    "updated_at",
)
_SQLITE_INSERT_LEAD = (
    f"INSERT INTO {_LEADS.name} ({', '.join(_NEW_LEAD_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _NEW_LEAD_COLUMNS)})"
)


def insert_leads(session: Session, sync_name: str, leads: Sequence[NewLead], now: datetime) -> None:
    """Insert new leads and their first transition, in two set-based steps.

    On SQLite the rows go to the driver's executemany with their values
    converted by the columns' own bind processors (what SQLAlchemy would send,
    without its per-row, per-column parameter handling, about a third of the
    poll's CPU per record), and the first transitions take the rows above the
    largest id before the insert. Elsewhere one executemany INSERT ... RETURNING
    and the returned ids.
    """
    if not leads:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        # The page's transaction holds SQLite's write lock (BEGIN IMMEDIATE), and SQLite
        # gives a new row the largest rowid plus one: the new leads are exactly those
        # with an id above the largest one before the insert.
        before = session.execute(select(func.max(_LEADS.c.id))).scalar_one() or 0
        _insert_sqlite(session, dialect, sync_name, leads, now)
        added = _first_transitions(session, _LEADS.c.id > before, now)
        if added != len(leads):
            raise RuntimeError(f"{len(leads)} leads inserted but {added} found above id {before}")
        present = {lead.state for lead in leads}
        writeback_store.enqueue_selected(session, sync_name, _LEADS.c.id > before, present, now)
        return
    rows = [
        {
            "sync_name": sync_name,
            "salesforce_id": lead.salesforce_id,
            "agent_id": lead.agent_id,
            "state": lead.state,
            "payload": lead.payload,
            "phone_e164": lead.phone_e164,
            "record_cursor": lead.record_cursor,
            "record_hash": lead.record_hash,
            "note": lead.note,
            "do_not_call": lead.do_not_call,
            "time_zone": lead.time_zone,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for lead in leads
    ]
    returned = session.execute(insert(_LEADS).returning(_LEADS.c.id), rows).all()
    new_ids = _LEADS.c.id.in_([lead_id for (lead_id,) in returned])
    _first_transitions(session, new_ids, now)
    present = {lead.state for lead in leads}
    writeback_store.enqueue_selected(session, sync_name, new_ids, present, now)


def _bind_processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    """What SQLAlchemy applies to a value bound to ``leads.<column>`` on this dialect."""
    column_type = _LEADS.c[column].type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def _insert_sqlite(
    session: Session, dialect: Dialect, sync_name: str, leads: Sequence[NewLead], now: datetime
) -> None:
    payload = _bind_processor(dialect, "payload")
    cursor = _bind_processor(dialect, "record_cursor")
    flag = _bind_processor(dialect, "do_not_call")
    created = _bind_processor(dialect, "created_at")(now)
    updated = _bind_processor(dialect, "updated_at")(now)
    rows = [
        (
            sync_name,
            lead.salesforce_id,
            lead.agent_id,
            lead.state,
            payload(lead.payload),
            lead.phone_e164,
            cursor(lead.record_cursor),
            lead.record_hash,
            lead.note,
            flag(lead.do_not_call),
            lead.time_zone,
            0,
            created,
            updated,
        )
        for lead in leads
    ]
    session.connection().exec_driver_sql(_SQLITE_INSERT_LEAD, rows)


def _first_transitions(session: Session, new_leads: ColumnElement[bool], now: datetime) -> int:
    """The first transitions of the new leads, with one INSERT ... SELECT in id order.

    The reason is the one _reason() writes (for a held lead: that the guard held
    it), instead of an executemany bound lead by lead. Returns how many
    transitions were inserted.
    """
    what = "polled: new record"
    note = _LEADS.c.note
    reason = case(
        (_LEADS.c.state == _HELD, literal(f"{what}: held by the blast-radius guard", String)),
        (or_(note.is_(None), note == ""), literal(what, String)),
        else_=func.substr(literal(f"{what}: ", String) + note, 1, 500),
    )
    columns = _TRANSITIONS.c
    result = session.execute(
        insert(_TRANSITIONS).from_select(
            ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
            select(
                _LEADS.c.id,
                literal(None, columns.from_state.type),
                _LEADS.c.state,
                reason,
                literal(None, columns.batch_id.type),
                literal(now, columns.at.type),
            )
            .where(new_leads)
            .order_by(_LEADS.c.id),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def update_leads(session: Session, changes: Sequence[LeadChange], now: datetime) -> int:
    """Write changed records over leads not yet sent; returns how many rows changed.

    The ``state IN (queued, invalid, skipped)`` guard makes the update a no-op
    for a lead delivery claimed meanwhile: a lead in flight is never touched.
    """
    if not changes:
        return 0
    statement = (
        update(_LEADS)
        .where(_LEADS.c.id == bindparam("b_id"), _NOT_YET_CLAIMED)
        .values(
            agent_id=bindparam("b_agent"),
            state=bindparam("b_state"),
            payload=bindparam("b_payload"),
            phone_e164=bindparam("b_phone"),
            record_cursor=bindparam("b_cursor"),
            record_hash=bindparam("b_hash"),
            note=bindparam("b_note"),
            do_not_call=bindparam("b_dnc"),
            time_zone=bindparam("b_tz"),
            updated_at=bindparam("b_now"),
        )
    )
    params = [
        {
            "b_id": change.lead_id,
            "b_agent": change.agent_id,
            "b_state": change.state,
            "b_payload": change.payload,
            "b_phone": change.phone_e164,
            "b_cursor": change.record_cursor,
            "b_hash": change.record_hash,
            "b_note": change.note,
            "b_dnc": change.do_not_call,
            "b_tz": change.time_zone,
            "b_now": now,
        }
        for change in changes
    ]
    result = session.connection().execute(statement, params)
    moved = [change for change in changes if change.state != change.from_state]
    if moved:
        session.execute(
            insert(_TRANSITIONS),
            [
                {
                    "lead_id": change.lead_id,
                    "from_state": change.from_state,
                    "to_state": change.state,
                    "reason": _reason("polled: record changed", change.note),
                    "batch_id": None,
                    "at": now,
                }
                for change in moved
            ],
        )
        writeback_store.enqueue_by_state(session, [(c.lead_id, c.state) for c in moved], now)
    return int(result.rowcount)


def _reason(what: str, note: str | None) -> str:
    return (f"{what}: {note}" if note else what)[:500]


def _record_statement(with_payload: bool) -> Any:
    values: dict[str, Any] = {
        "record_cursor": bindparam("b_cursor"),
        "record_hash": bindparam("b_hash"),
        "do_not_call": bindparam("b_dnc"),
        "updated_at": bindparam("b_now"),
    }
    if with_payload:
        values.update(
            agent_id=bindparam("b_agent"),
            payload=bindparam("b_payload"),
            phone_e164=bindparam("b_phone"),
            time_zone=bindparam("b_tz"),
        )
    return (
        update(_LEADS)
        .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.state == bindparam("b_state"))
        .values(values)
    )


_RECORD_ONLY = _record_statement(False)
_RECORD_AND_PAYLOAD = _record_statement(True)


def record_changes(session: Session, changes: Sequence[RecordChange], now: datetime) -> int:
    """Store changed records of leads delivery already had, with an audit-trail note each.

    The lead's state does not change (the poll never sends a lead again); the
    update is guarded by the state the poll saw. Returns how many rows changed.
    """
    if not changes:
        return 0
    changed = 0
    for with_payload in (False, True):
        group = [change for change in changes if (change.payload is not None) is with_payload]
        if not group:
            continue
        params = [
            {
                "b_id": change.lead_id,
                "b_state": change.state,
                "b_cursor": change.record_cursor,
                "b_hash": change.record_hash,
                "b_dnc": change.do_not_call,
                "b_now": now,
                **(
                    {
                        "b_agent": change.agent_id,
                        "b_payload": change.payload,
                        "b_phone": change.phone_e164,
                        "b_tz": change.time_zone,
                    }
                    if with_payload
                    else {}
                ),
            }
            for change in group
        ]
        statement = _RECORD_AND_PAYLOAD if with_payload else _RECORD_ONLY
        changed += int(session.connection().execute(statement, params).rowcount)
    session.execute(
        insert(_TRANSITIONS),
        [
            {
                "lead_id": change.lead_id,
                "from_state": change.state,
                "to_state": change.state,
                "reason": change.reason[:500],
                "batch_id": None,
                "at": now,
            }
            for change in changes
        ],
    )
    return changed


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


def move_new_leads(
    session: Session,
    sync_name: str,
    salesforce_ids: Sequence[str],
    *,
    source: str,
    target: str,
    reason: str,
    now: datetime,
) -> int:
    """Move the named leads of a sync from ``source`` to ``target``, with their transitions.

    The UPDATE repeats the source state, so a lead that moved meanwhile (say,
    one delivery claimed) is left alone; only the leads that moved get a
    transition row. Returns how many moved.
    """
    check_transition(source, target)
    moved: list[int] = []
    for chunk in _chunks(list(salesforce_ids)):
        result = session.execute(
            update(Lead)
            .where(
                Lead.sync_name == sync_name,
                Lead.salesforce_id.in_(list(chunk)),
                Lead.state == source,
            )
            .values(state=target, updated_at=now)
            .returning(Lead.id)
            .execution_options(synchronize_session=False)
        )
        moved += [lead_id for (lead_id,) in result]
    if moved:
        session.execute(
            insert(_TRANSITIONS),
            [
                {
                    "lead_id": lead_id,
                    "from_state": source,
                    "to_state": target,
                    "reason": reason[:500],
                    "batch_id": None,
                    "at": now,
                }
                for lead_id in sorted(moved)
            ],
        )
        writeback_store.enqueue_moved(session, moved, target, now)
    return len(moved)

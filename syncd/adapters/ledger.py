"""The ledger: the one module that writes a lead's state, its audit trail and its write-backs.

Five paths change the same lead, often at once: the poll (and the backfill and
the stream, which run its page work), the re-fetch of ``requeue`` and
``resend_uncertain``, the send gate and the outcome of a batch, start-up
recovery, and the operator commands. Each of them goes through here, so each
move is made the same way (docs/design.md#one-ledger):

* the move is checked (:func:`syncd.domain.states.check_transition`);
* the reason is bounded once (:data:`REASON_CHARS`);
* the UPDATE is set-based and guarded in SQL by the state the caller read, and,
  for a record's read, by its stamp (an older read never overwrites a newer one,
  docs/design.md#the-newest-read-wins);
* the audit rows are written with one ``INSERT ... SELECT`` (or one executemany
  where each lead has its own reason);
* the write-back queue is filled in the same transaction;
* a lead that was not where the caller said raises :class:`LedgerConflict`.

A test (``tests/unit/test_ledger_fitness.py``) fails when any other module
writes ``leads.state`` or a transition row. Every function takes the caller's
:class:`Session` and never commits: the caller owns the transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.orm import Lead, LeadTransition
from syncd.domain.outcome import ERROR_CODE_CHARS, ERROR_MESSAGE_CHARS, REASON_CHARS, bounded
from syncd.domain.page_plan import LeadChange, NewLead, RecordChange, StaleRead
from syncd.domain.states import REEVALUATED_ON_CHANGE, LeadState, check_transition

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
_CHUNK = 900  # stays under every backend's bound-parameter limit
_HELD = LeadState.HELD.value
_REEVALUATED = sorted(state.value for state in REEVALUATED_ON_CHANGE)
# Constants rendered inline: an expanding IN cannot be used with executemany.
_NOT_YET_CLAIMED = _LEADS.c.state.in_([literal_column(f"'{state}'") for state in _REEVALUATED])
#: A read applies only when it is not older than the read already applied.
#: A read without a stamp (none can be read) is not ordered: it applies, and keeps the stamp.
_READ_STAMP = func.coalesce(
    bindparam("b_stamp", type_=_LEADS.c.record_stamp.type), _LEADS.c.record_stamp
)
_NOT_OLDER = or_(_LEADS.c.record_stamp.is_(None), _LEADS.c.record_stamp <= _READ_STAMP)

DELETED_NOTE = "record deleted in Salesforce"
#: Leads a deletion moves to ``skipped``: not claimed by delivery, not skipped already.
#: A ``held`` lead is never claimed, but ``syncd release`` would queue it: it stops too.
#: A lead in any other state keeps its state and gets the deletion stored on it, so the
#: send gate skips it should it come back to ``queued`` (nothing was sent after all).
_STOPPABLE = (LeadState.QUEUED.value, LeadState.INVALID.value, LeadState.HELD.value)


class LedgerConflict(RuntimeError):
    """A lead was not in the state its caller read: a bug, never papered over."""


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _trail(
    session: Session,
    rows: Iterable[tuple[int, str | None, str, str]],
    now: datetime,
    batch_id: int | None = None,
) -> None:
    """Audit rows ``(lead_id, from, to, reason)``, each with its own reason (executemany)."""
    params = [
        {
            "lead_id": lead_id,
            "from_state": source,
            "to_state": target,
            "reason": bounded(reason, REASON_CHARS),
            "batch_id": batch_id,
            "at": now,
        }
        for lead_id, source, target, reason in rows
    ]
    if params:
        session.connection().execute(insert(_TRANSITIONS), params)


# --------------------------------------------------------------------------- new leads

#: The columns insert_new writes, in the order of its SQLite rows.
_NEW_LEAD_COLUMNS = (
    "sync_name",
    "salesforce_id",
    "agent_id",
    "state",
    "payload",
    "phone_e164",
    "record_cursor",
    "record_stamp",
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


def insert_new(session: Session, sync_name: str, leads: Sequence[NewLead], now: datetime) -> None:
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
    allowed: set[str] = set()
    for lead in leads:
        if lead.state not in allowed:
            check_transition(None, lead.state)
            allowed.add(lead.state)
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        # The page's transaction holds SQLite's write lock (BEGIN IMMEDIATE), and SQLite
        # gives a new row the largest rowid plus one: the new leads are exactly those
        # with an id above the largest one before the insert.
        before = session.execute(select(func.max(_LEADS.c.id))).scalar_one() or 0
        _insert_sqlite(session, dialect, sync_name, leads, now)
        added = _first_transitions(session, _LEADS.c.id > before, now)
        if added != len(leads):
            raise LedgerConflict(f"{len(leads)} leads inserted but {added} found above id {before}")
        writeback_store.enqueue_selected(session, sync_name, _LEADS.c.id > before, allowed, now)
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
            "record_stamp": lead.record_stamp,
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
    writeback_store.enqueue_selected(session, sync_name, new_ids, allowed, now)


def bind_processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    """What SQLAlchemy applies to a value bound to ``leads.<column>`` on this dialect."""
    column_type = _LEADS.c[column].type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def _insert_sqlite(
    session: Session, dialect: Dialect, sync_name: str, leads: Sequence[NewLead], now: datetime
) -> None:
    payload = bind_processor(dialect, "payload")
    cursor = bind_processor(dialect, "record_cursor")
    flag = bind_processor(dialect, "do_not_call")
    created = bind_processor(dialect, "created_at")(now)
    updated = bind_processor(dialect, "updated_at")(now)
    rows = [
        (
            sync_name,
            lead.salesforce_id,
            lead.agent_id,
            lead.state,
            payload(lead.payload),
            lead.phone_e164,
            cursor(lead.record_cursor),
            cursor(lead.record_stamp),
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

    The reason is the lead's note after "polled: new record" (for a held lead:
    that the guard held it). Returns how many transitions were inserted.
    """
    what = "polled: new record"
    note = _LEADS.c.note
    reason = case(
        (_LEADS.c.state == _HELD, literal(f"{what}: held by the blast-radius guard", String)),
        (or_(note.is_(None), note == ""), literal(what, String)),
        else_=func.substr(literal(f"{what}: ", String) + note, 1, REASON_CHARS),
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


# --------------------------------------------------------------------------- reads of records

_APPLY_READ = (
    update(_LEADS)
    .where(_LEADS.c.id == bindparam("b_id"), _NOT_YET_CLAIMED, _NOT_OLDER)
    .values(
        agent_id=bindparam("b_agent"),
        state=bindparam("b_state"),
        payload=bindparam("b_payload"),
        phone_e164=bindparam("b_phone"),
        record_cursor=bindparam("b_cursor"),
        record_stamp=_READ_STAMP,
        record_hash=bindparam("b_hash"),
        note=bindparam("b_note"),
        do_not_call=bindparam("b_dnc"),
        time_zone=bindparam("b_tz"),
        deleted_at=None,
        updated_at=bindparam("b_now"),
    )
)


def apply_reads(
    session: Session, changes: Sequence[LeadChange], now: datetime, *, actor: str = "polled"
) -> int:
    """Write changed records over leads not yet sent; returns how many rows changed.

    The ``state IN (queued, invalid, skipped, held)`` guard makes the update a
    no-op for a lead delivery claimed meanwhile, and the stamp guard for a lead a
    newer read reached first. A read that finds the record clears a stored deletion.
    """
    if not changes:
        return 0
    for change in changes:
        if change.state != change.from_state:
            check_transition(change.from_state, change.state)
    params = [
        {
            "b_id": change.lead_id,
            "b_agent": change.agent_id,
            "b_state": change.state,
            "b_payload": change.payload,
            "b_phone": change.phone_e164,
            "b_cursor": change.record_cursor,
            "b_stamp": change.record_stamp,
            "b_hash": change.record_hash,
            "b_note": change.note,
            "b_dnc": change.do_not_call,
            "b_tz": change.time_zone,
            "b_now": now,
        }
        for change in changes
    ]
    result = session.connection().execute(_APPLY_READ, params)
    moved = [change for change in changes if change.state != change.from_state]
    if moved:
        _trail(
            session,
            (
                (c.lead_id, c.from_state, c.state, _with_note(f"{actor}: record changed", c.note))
                for c in moved
            ),
            now,
        )
        writeback_store.enqueue_by_state(session, [(c.lead_id, c.state) for c in moved], now)
    return int(result.rowcount)


def _with_note(what: str, note: str | None) -> str:
    return f"{what}: {note}" if note else what


def _record_statement(with_payload: bool) -> Any:
    values: dict[str, Any] = {
        "record_cursor": bindparam("b_cursor"),
        "record_stamp": _READ_STAMP,
        "record_hash": bindparam("b_hash"),
        "do_not_call": bindparam("b_dnc"),
        "deleted_at": None,
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
        .where(
            _LEADS.c.id == bindparam("b_id"),
            _LEADS.c.state == bindparam("b_state"),
            _NOT_OLDER,
        )
        .values(values)
    )


_RECORD_ONLY = _record_statement(False)
_RECORD_AND_PAYLOAD = _record_statement(True)


def record_reads(session: Session, changes: Sequence[RecordChange], now: datetime) -> int:
    """Store changed records of leads that keep their state, with an audit-trail note each.

    For leads delivery already had and for discarded ones: the state does not
    change (nothing is sent again from here); the update is guarded by the state
    the caller saw and by the stamp. Returns how many rows changed.
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
                "b_stamp": change.record_stamp,
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
    _trail(session, ((c.lead_id, c.state, c.state, c.reason) for c in changes), now)
    return changed


_RESTAMP = (
    update(_LEADS)
    .where(
        _LEADS.c.id == bindparam("b_id"),
        or_(
            _LEADS.c.record_stamp.is_(None),
            _LEADS.c.record_stamp < bindparam("b_stamp", type_=_LEADS.c.record_stamp.type),
        ),
    )
    .values(record_stamp=bindparam("b_stamp", type_=_LEADS.c.record_stamp.type))
)


def restamp(session: Session, stamps: Sequence[tuple[int, datetime]]) -> None:
    """Move the stamp of leads read again unchanged but newer (an unmapped field changed).

    So that a read older than this one, committed later, is still recognised as older.
    """
    if stamps:
        session.connection().execute(
            _RESTAMP, [{"b_id": lead_id, "b_stamp": stamp} for lead_id, stamp in stamps]
        )


def note_stale(session: Session, stale: Sequence[StaleRead], now: datetime, actor: str) -> None:
    """Record that reads older than the lead's stored one were ignored (one note each)."""
    _trail(
        session,
        (
            (
                read.lead_id,
                read.state,
                read.state,
                f"{actor}: read ignored: stamped {read.read_stamp.isoformat()}, older than "
                f"the read already applied ({read.stored_stamp.isoformat()})",
            )
            for read in stale
        ),
        now,
    )


# --------------------------------------------------------------------------- deletions


def mark_deleted(
    session: Session,
    sync_name: str,
    deletions: Mapping[str, datetime],
    *,
    actor: str,
    now: datetime,
) -> int:
    """Store a deletion (Salesforce Id -> when) on every lead of these records; how many stopped.

    Whatever the lead's state:
    leads not claimed by delivery (``queued``, ``invalid``, ``held``) become
    ``skipped``; every lead gets ``deleted_at`` (so the send gate skips it if it
    ever comes back to ``queued``), its digest cleared (a record undeleted later
    is evaluated again, not taken for an unchanged re-read) and its stamp moved
    to the deletion's time (a read from before the deletion, committed later, is
    older and ignored). A lead that delivery has keeps its state, with a note.
    """
    if not deletions:
        return 0
    found: list[tuple[int, str, datetime]] = []
    for chunk in _chunks(list(deletions)):
        query = select(_LEADS.c.id, _LEADS.c.state, _LEADS.c.salesforce_id).where(
            _LEADS.c.sync_name == sync_name, _LEADS.c.salesforce_id.in_(list(chunk))
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        found += [
            (row.id, row.state, deletions[row.salesforce_id]) for row in session.execute(query)
        ]
    if not found:
        return 0
    target = LeadState.SKIPPED.value
    stopping = [(lead_id, state) for lead_id, state, _at in found if state in _STOPPABLE]
    for _lead_id, state in stopping:
        check_transition(state, target)
    stamp = bindparam("b_stamp", type_=_LEADS.c.record_stamp.type)
    statement = (
        update(_LEADS)
        .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.state == bindparam("b_state"))
        .values(
            state=bindparam("b_target"),
            note=case((_LEADS.c.state.in_(_STOPPABLE), DELETED_NOTE), else_=_LEADS.c.note),
            deleted_at=bindparam("b_deleted", type_=_LEADS.c.deleted_at.type),
            record_hash="",
            record_stamp=case(
                (or_(_LEADS.c.record_stamp.is_(None), _LEADS.c.record_stamp < stamp), stamp),
                else_=_LEADS.c.record_stamp,
            ),
            updated_at=bindparam("b_now", type_=_LEADS.c.updated_at.type),
        )
    )
    params = [
        {
            "b_id": lead_id,
            "b_state": state,
            "b_target": target if state in _STOPPABLE else state,
            "b_deleted": deleted_at,
            "b_stamp": deleted_at,
            "b_now": now,
        }
        for lead_id, state, deleted_at in found
    ]
    result = session.connection().execute(statement, params)
    if result.rowcount != len(params):
        raise LedgerConflict(f"{len(params) - result.rowcount} leads changed during a deletion")
    _trail(
        session,
        (
            (
                lead_id,
                state,
                target if state in _STOPPABLE else state,
                f"{actor}: {DELETED_NOTE}"
                + ("" if state in _STOPPABLE else f"; stored, never sent while {state}"),
            )
            for lead_id, state, _at in found
        ),
        now,
    )
    writeback_store.enqueue_moved(session, [lead_id for lead_id, _s in stopping], target, now)
    return len(stopping)


# --------------------------------------------------------------------------- moves


@functools.lru_cache(maxsize=64)
def _move_statement(value_names: tuple[str, ...], count_attempt: bool) -> Update:
    """``UPDATE leads ... WHERE id IN :ids AND state = :source``, built once per shape.

    Every value is a bound parameter (``v_<column>``) and the ids one expanding
    parameter: building the statement per batch with 100 literal ids cost more
    than the SQL itself (each id coerced and keyed for the statement cache).
    """
    values: dict[str, Any] = {
        "state": bindparam("target"),
        "updated_at": bindparam("now", type_=_LEADS.c.updated_at.type),
    }
    for name in value_names:
        values[name] = bindparam(f"v_{name}", type_=_LEADS.c[name].type)
    if count_attempt:
        values["attempts"] = _LEADS.c.attempts + 1
    return (
        update(_LEADS)
        .where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
        .where(_LEADS.c.state == bindparam("source"))
        .values(values)
    )


def _transitions_statement() -> Insert:
    """One audit row per moved lead, built by the database (``INSERT ... SELECT``)."""
    columns = _TRANSITIONS.c
    return insert(_TRANSITIONS).from_select(
        ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
        select(
            _LEADS.c.id,
            bindparam("t_from", type_=columns.from_state.type),
            bindparam("t_to", type_=columns.to_state.type),
            bindparam("t_reason", type_=columns.reason.type),
            bindparam("t_batch", type_=columns.batch_id.type),
            bindparam("t_at", type_=columns.at.type),
        )
        .where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(_LEADS.c.id),
    )


_MOVE_TRANSITIONS = _transitions_statement()


def move(
    session: Session,
    lead_ids: Sequence[int],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    batch_id: int | None = None,
    values: Mapping[str, Any] | None = None,
    count_attempt: bool = False,
) -> int:
    """Move every one of ``lead_ids`` from ``source`` to ``target``, or raise.

    One UPDATE guarded by ``source`` and one ``INSERT ... SELECT`` of the audit
    rows. A lead that was not in ``source`` raises :class:`LedgerConflict` (the
    caller read or locked them: it is a bug, and the transaction rolls back).
    """
    if not lead_ids:
        return 0
    goal = check_transition(source, target)
    start = LeadState(source)
    extra = dict(values or {})
    names = tuple(sorted(extra))
    ids = list(lead_ids)
    params: dict[str, Any] = {"ids": ids, "source": start.value, "target": goal.value, "now": now}
    params.update((f"v_{name}", extra[name]) for name in names)
    connection = session.connection()
    moved: int = connection.execute(_move_statement(names, count_attempt), params).rowcount
    if moved != len(ids):
        raise LedgerConflict(f"{len(ids) - moved} of {len(ids)} leads were not {start.value}")
    connection.execute(
        _MOVE_TRANSITIONS,
        {
            "ids": ids,
            "t_from": start.value,
            "t_to": goal.value,
            "t_reason": bounded(reason, REASON_CHARS),
            "t_batch": batch_id,
            "t_at": now,
        },
    )
    writeback_store.enqueue_moved(session, ids, goal.value, now)
    return moved


def move_where(
    session: Session,
    clauses: Sequence[ColumnElement[bool]],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> dict[int, str]:
    """Move the leads matching ``clauses`` that are in ``source`` now; id -> Salesforce Id.

    For moves that take whatever is there (operator commands, the guard): the
    UPDATE repeats the state, RETURNING says exactly which leads moved, and only
    those get an audit row (``INSERT ... SELECT``, naming each lead's batch) and
    a write-back. ``values`` may hold SQL expressions (say, ``coalesce``).
    """
    goal = check_transition(source, target)
    start = LeadState(source)
    result = session.execute(
        update(Lead)
        .where(*clauses, Lead.state == start.value)
        .values({"state": goal.value, "updated_at": now, **(values or {})})
        .returning(Lead.id, Lead.salesforce_id)
        .execution_options(synchronize_session=False)
    )
    moved = dict(sorted((lead_id, sf_id) for lead_id, sf_id in result))
    ids = list(moved)
    for chunk in _chunks(ids):
        session.connection().execute(
            _WHERE_TRANSITIONS,
            {
                "ids": list(chunk),
                "t_from": start.value,
                "t_to": goal.value,
                "t_reason": bounded(reason, REASON_CHARS),
                "t_at": now,
            },
        )
    if ids:
        writeback_store.enqueue_moved(session, ids, goal.value, now)
    return moved


def _where_transitions_statement() -> Insert:
    """Audit rows of leads moved where they were, each naming the lead's current batch."""
    columns = _TRANSITIONS.c
    return insert(_TRANSITIONS).from_select(
        ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
        select(
            _LEADS.c.id,
            bindparam("t_from", type_=columns.from_state.type),
            bindparam("t_to", type_=columns.to_state.type),
            bindparam("t_reason", type_=columns.reason.type),
            _LEADS.c.batch_id,
            bindparam("t_at", type_=columns.at.type),
        )
        .where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(_LEADS.c.id),
    )


_WHERE_TRANSITIONS = _where_transitions_statement()


def move_by_salesforce_id(
    session: Session,
    sync_name: str,
    salesforce_ids: Sequence[str],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> list[int]:
    """:func:`move_where` for the named records of one sync (in chunks); the ids moved."""
    moved: list[int] = []
    for chunk in _chunks(list(salesforce_ids)):
        moved += move_where(
            session,
            [Lead.sync_name == sync_name, Lead.salesforce_id.in_(list(chunk))],
            source=source,
            target=target,
            reason=reason,
            now=now,
            values=values,
        )
    return sorted(moved)


@dataclass(frozen=True)
class Step:
    """One lead's own move (its own reason and values), for :func:`move_each`."""

    lead_id: int
    source: str
    target: str
    reason: str
    values: Mapping[str, Any]


def move_each(
    session: Session,
    steps: Sequence[Step],
    now: datetime,
    *,
    batch_id: int | None = None,
    reset_attempts: bool = False,
) -> None:
    """Moves whose leads each carry their own reason and values, or raise.

    One executemany UPDATE per shape (the same value columns), guarded by each
    lead's source state; one executemany INSERT of the audit rows. A lead not in
    its source state raises :class:`LedgerConflict`. ``reset_attempts`` starts
    the attempts of leads moved to ``queued`` afresh (a re-check sends again).
    """
    if not steps:
        return
    for step in steps:
        check_transition(step.source, step.target)
    shapes: dict[tuple[tuple[str, ...], bool], list[Step]] = {}
    for step in steps:
        queued = reset_attempts and step.target == LeadState.QUEUED.value
        shapes.setdefault((tuple(sorted(step.values)), queued), []).append(step)
    connection = session.connection()
    for (names, queued), group in shapes.items():
        result = connection.execute(
            _each_statement(names, queued),
            [
                {
                    "b_id": s.lead_id,
                    "b_source": s.source,
                    "b_target": s.target,
                    "b_now": now,
                    **{f"v_{name}": s.values[name] for name in names},
                }
                for s in group
            ],
        )
        if result.rowcount != len(group):
            raise LedgerConflict(f"{len(group) - result.rowcount} leads left their state")
    _trail(session, ((s.lead_id, s.source, s.target, s.reason) for s in steps), now, batch_id)
    writeback_store.enqueue_by_state(session, [(s.lead_id, s.target) for s in steps], now)


@functools.lru_cache(maxsize=64)
def _each_statement(names: tuple[str, ...], reset_attempts: bool) -> Update:
    values: dict[str, Any] = {
        "state": bindparam("b_target"),
        "updated_at": bindparam("b_now", type_=_LEADS.c.updated_at.type),
    }
    for name in names:
        values[name] = bindparam(f"v_{name}", type_=_LEADS.c[name].type)
    if reset_attempts:
        values.update(attempts=0, next_attempt_at=None, error_code=None, error_message=None)
    return (
        update(_LEADS)
        .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.state == bindparam("b_source"))
        .values(values)
    )


def reject(
    session: Session,
    rejections: Sequence[tuple[int, str | None, str | None]],
    *,
    reason: str,
    batch_id: int,
    now: datetime,
    simz_batch_id: str | None = None,
) -> int:
    """``sending`` -> ``rejected`` keeping each lead's own code and message (executemany)."""
    move_each(
        session,
        [
            Step(
                lead_id,
                LeadState.SENDING.value,
                LeadState.REJECTED.value,
                reason,
                {
                    "error_code": bounded(code or None, ERROR_CODE_CHARS),
                    "error_message": bounded(message, ERROR_MESSAGE_CHARS),
                    "simz_batch_id": simz_batch_id,
                },
            )
            for lead_id, code, message in rejections
        ],
        now,
        batch_id=batch_id,
    )
    return len(rejections)


def note(session: Session, notes: Sequence[tuple[int, str, str]], now: datetime) -> None:
    """Audit notes ``(lead_id, state, reason)`` on leads that keep their state."""
    _trail(session, ((lead_id, state, state, reason) for lead_id, state, reason in notes), now)


#: Leads per UPDATE when marking many leads uncertain (bounded statement size).
_RECOVERY_CHUNK = 5000


def mark_uncertain(
    session: Session, rows: Sequence[tuple[int, int | None]], reason: str, now: datetime
) -> None:
    """``sending`` leads ``(id, batch_id)`` that may have been posted become ``uncertain``."""
    check_transition(LeadState.SENDING, LeadState.UNCERTAIN)
    target = LeadState.UNCERTAIN.value
    for start in range(0, len(rows), _RECOVERY_CHUNK):
        chunk = [lead_id for lead_id, _batch in rows[start : start + _RECOVERY_CHUNK]]
        result = session.execute(
            update(Lead)
            .where(Lead.id.in_(chunk), Lead.state == LeadState.SENDING.value)
            .values(state=target, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != len(chunk):  # type: ignore[attr-defined]
            raise LedgerConflict("leads left sending during recovery")
        writeback_store.enqueue_moved(session, chunk, target, now)
    if rows:
        params = [
            {
                "lead_id": lead_id,
                "from_state": LeadState.SENDING.value,
                "to_state": target,
                "reason": bounded(reason, REASON_CHARS),
                "batch_id": batch_id,
                "at": now,
            }
            for lead_id, batch_id in rows
        ]
        session.connection().execute(insert(_TRANSITIONS), params)

"""Reads of records: a changed record applied, an older read ignored, a deletion stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.ledger.common import (
    LEADS,
    LedgerConflict,
    chunks,
    trail,
)
from syncd.domain.page_plan import LeadChange, RecordChange, StaleRead
from syncd.domain.states import REEVALUATED_ON_CHANGE, LeadState, check_transition

_REEVALUATED = sorted(state.value for state in REEVALUATED_ON_CHANGE)
# Constants rendered inline: an expanding IN cannot be used with executemany.
_NOT_YET_CLAIMED = LEADS.c.state.in_([literal_column(f"'{state}'") for state in _REEVALUATED])
#: A read applies only when it is not older than the read already applied.
#: A read without a stamp (none can be read) is not ordered: it applies, and keeps the stamp.
_READ_STAMP = func.coalesce(
    bindparam("b_stamp", type_=LEADS.c.record_stamp.type), LEADS.c.record_stamp
)
_NOT_OLDER = or_(LEADS.c.record_stamp.is_(None), LEADS.c.record_stamp <= _READ_STAMP)

DELETED_NOTE = "record deleted in Salesforce"
#: Leads a deletion moves to ``skipped``: not claimed by delivery, not skipped already.
#: A ``held`` lead is never claimed, but ``syncd release`` would queue it: it stops too.
#: A lead in any other state keeps its state and gets the deletion stored on it, so the
#: send gate skips it should it come back to ``queued`` (nothing was sent after all).
_STOPPABLE = (LeadState.QUEUED.value, LeadState.INVALID.value, LeadState.HELD.value)


# --------------------------------------------------------------------------- reads of records

_APPLY_READ = (
    update(LEADS)
    .where(LEADS.c.id == bindparam("b_id"), _NOT_YET_CLAIMED, _NOT_OLDER)
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
        region=bindparam("b_region"),
        deleted_at=None,
        updated_at=bindparam("b_now"),
        consent=bindparam("b_consent"),
        # Speed to lead: the first time the lead is queued, kept from then on.
        queued_at=func.coalesce(
            LEADS.c.queued_at, bindparam("b_queued", type_=LEADS.c.queued_at.type)
        ),
    )
)
_QUEUED = LeadState.QUEUED.value


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
            "b_region": change.region,
            "b_now": now,
            "b_consent": change.consent,
            "b_queued": now if change.state == _QUEUED else None,
        }
        for change in changes
    ]
    result = session.connection().execute(_APPLY_READ, params)
    moved = [change for change in changes if change.state != change.from_state]
    if moved:
        trail(
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
            region=bindparam("b_region"),
            consent=bindparam("b_consent"),
        )
    return (
        update(LEADS)
        .where(
            LEADS.c.id == bindparam("b_id"),
            LEADS.c.state == bindparam("b_state"),
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
                        "b_region": change.region,
                        "b_consent": change.consent,
                    }
                    if with_payload
                    else {}
                ),
            }
            for change in group
        ]
        statement = _RECORD_AND_PAYLOAD if with_payload else _RECORD_ONLY
        changed += int(session.connection().execute(statement, params).rowcount)
    trail(session, ((c.lead_id, c.state, c.state, c.reason) for c in changes), now)
    return changed


_RESTAMP = (
    update(LEADS)
    .where(
        LEADS.c.id == bindparam("b_id"),
        or_(
            LEADS.c.record_stamp.is_(None),
            LEADS.c.record_stamp < bindparam("b_stamp", type_=LEADS.c.record_stamp.type),
        ),
    )
    .values(record_stamp=bindparam("b_stamp", type_=LEADS.c.record_stamp.type))
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
    trail(
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
    found = _deleted_leads(session, sync_name, deletions)
    if not found:
        return 0
    target = LeadState.SKIPPED.value
    stopping = [lead_id for lead_id, state, _at in found if state in _STOPPABLE]
    for _lead_id, state, _at in found:
        if state in _STOPPABLE:
            check_transition(state, target)  # a lead delivery has keeps its state
    moves = [
        (lead_id, state, target if state in _STOPPABLE else state, at)
        for lead_id, state, at in found
    ]
    params = [
        {
            "b_id": lead_id,
            "b_state": state,
            "b_target": to,
            "b_deleted": deleted_at,
            "b_stamp": deleted_at,
            "b_now": now,
        }
        for lead_id, state, to, deleted_at in moves
    ]
    result = session.connection().execute(_MARK_DELETED, params)
    if result.rowcount != len(params):
        raise LedgerConflict(f"{len(params) - result.rowcount} leads changed during a deletion")
    trail(
        session,
        (
            (
                lead_id,
                state,
                to,
                f"{actor}: {DELETED_NOTE}"
                + ("" if state in _STOPPABLE else f"; stored, never sent while {state}"),
            )
            for lead_id, state, to, _at in moves
        ),
        now,
    )
    writeback_store.enqueue_moved(session, stopping, target, now)
    return len(stopping)


def _deleted_leads(
    session: Session, sync_name: str, deletions: Mapping[str, datetime]
) -> list[tuple[int, str, datetime]]:
    """(lead id, state, deleted at) of every lead of these records, locked on PostgreSQL."""
    found: list[tuple[int, str, datetime]] = []
    for chunk in chunks(list(deletions)):
        query = select(LEADS.c.id, LEADS.c.state, LEADS.c.salesforce_id).where(
            LEADS.c.sync_name == sync_name, LEADS.c.salesforce_id.in_(list(chunk))
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        found += [
            (row.id, row.state, deletions[row.salesforce_id]) for row in session.execute(query)
        ]
    return found


_DELETION_STAMP = bindparam("b_stamp", type_=LEADS.c.record_stamp.type)
#: One lead's deletion, guarded by the state it was read in: a stoppable lead becomes
#: skipped with the deletion note; every lead gets deleted_at, a cleared digest and a
#: stamp no older than the deletion.
_MARK_DELETED = (
    update(LEADS)
    .where(LEADS.c.id == bindparam("b_id"), LEADS.c.state == bindparam("b_state"))
    .values(
        state=bindparam("b_target"),
        note=case((LEADS.c.state.in_(_STOPPABLE), DELETED_NOTE), else_=LEADS.c.note),
        deleted_at=bindparam("b_deleted", type_=LEADS.c.deleted_at.type),
        record_hash="",
        record_stamp=case(
            (
                or_(LEADS.c.record_stamp.is_(None), LEADS.c.record_stamp < _DELETION_STAMP),
                _DELETION_STAMP,
            ),
            else_=LEADS.c.record_stamp,
        ),
        updated_at=bindparam("b_now", type_=LEADS.c.updated_at.type),
    )
)

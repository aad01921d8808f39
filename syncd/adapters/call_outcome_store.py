"""The SQL of processing stored webhook events into call outcomes (docs/call-outcomes.md).

``call_events`` holds every accepted POST raw, status ``new`` until processed;
processing claims them in id order (on PostgreSQL ``FOR UPDATE SKIP LOCKED``,
so two processors never take the same event) and, in the same transaction,
writes what each became:

* ``matched``: one ``call_outcomes`` row per (lead, call key), inserted with
  ``ON CONFLICT DO NOTHING``: a duplicate or out-of-order hook of a call
  already stored adds no second row, and the first one read is kept as it is;
* ``unmatched``: no genuine correlation value, or no such lead;
* ``unreadable``: not JSON, or the paths found neither outcome nor disposition.

The event keeps ``processed_at``, the lead (when known) and the reason in
``detail``. Nothing here commits: the caller owns the transaction, so a crash
leaves its events ``new`` and they are processed again, with the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from syncd.adapters import ledger
from syncd.adapters.orm import CallEvent, CallOutcome, Lead
from syncd.domain.call_outcome import CallReading
from syncd.domain.states import LeadState

EVENTS: Table = CallEvent.__table__  # type: ignore[assignment]
OUTCOMES: Table = CallOutcome.__table__  # type: ignore[assignment]
LEADS: Table = Lead.__table__  # type: ignore[assignment]

NEW = "new"
MATCHED = "matched"
UNMATCHED = "unmatched"
UNREADABLE = "unreadable"
#: What an event may become (``syncd_call_events_processed_total``'s ``status``).
PROCESSED_STATUSES = (MATCHED, UNMATCHED, UNREADABLE)
#: The write-back of an outcome: queued for the sync's call_writeback, or none.
WRITEBACK_PENDING = "pending"
WRITEBACK_NONE = "none"
#: The states of a lead that is still to be sent: an opt-out cancels them.
PENDING_STATES = (LeadState.QUEUED, LeadState.HELD)
DETAIL_CHARS = 2_000


@dataclass(frozen=True)
class NewEvent:
    """A stored webhook POST not processed yet."""

    id: int
    digest: str
    body: str
    received_at: datetime


@dataclass(frozen=True)
class CalledLead:
    """The lead a genuine correlation value names, as the database has it."""

    id: int
    sync_name: str
    salesforce_id: str
    phone_e164: str | None
    #: When SimZ's accepting answer was recorded (speed to lead), if it was.
    accepted_at: datetime | None = None


def claim_new(session: Session, limit: int) -> list[NewEvent]:
    """Up to ``limit`` ``new`` events, oldest first, locked until the caller commits.

    PostgreSQL skips rows another transaction has locked; SQLite has one writer.
    """
    query = (
        select(EVENTS.c.id, EVENTS.c.digest, EVENTS.c.body, EVENTS.c.received_at)
        .where(EVENTS.c.status == NEW)
        .order_by(EVENTS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [NewEvent(*row) for row in session.connection().execute(query)]


def lead_named(session: Session, lead_id: int, salesforce_id: str) -> CalledLead | None:
    """The lead with this id, if it is the record the value names; else None."""
    row = (
        session.connection()
        .execute(
            select(
                LEADS.c.id,
                LEADS.c.sync_name,
                LEADS.c.salesforce_id,
                LEADS.c.phone_e164,
                LEADS.c.accepted_at,
            ).where(LEADS.c.id == lead_id, LEADS.c.salesforce_id == salesforce_id)
        )
        .first()
    )
    return CalledLead(*row) if row is not None else None


def phones_of(session: Session, lead_ids: Sequence[int]) -> list[str]:
    """The numbers of these leads (those that have one)."""
    if not lead_ids:
        return []
    rows = session.connection().execute(
        select(LEADS.c.phone_e164).where(
            LEADS.c.id.in_(list(lead_ids)), LEADS.c.phone_e164.is_not(None)
        )
    )
    return [phone for (phone,) in rows]


def add_outcome(
    session: Session,
    event: NewEvent,
    lead: CalledLead,
    reading: CallReading,
    *,
    writeback: bool,
) -> bool:
    """Insert the call's outcome unless the lead has one for this call; True if inserted."""
    values = {
        "lead_id": lead.id,
        "event_id": event.id,
        "call_key": reading.call_key,
        "sync_name": lead.sync_name,
        "salesforce_id": lead.salesforce_id,
        "outcome": reading.outcome,
        "disposition": reading.disposition,
        "raw_disposition": reading.raw_disposition,
        "duration_seconds": reading.duration_seconds,
        "started_at": reading.started_at,
        "ended_at": reading.ended_at,
        "recording_url": reading.recording_url,
        "opt_out": reading.opt_out,
        "received_at": event.received_at,
        "writeback_status": WRITEBACK_PENDING if writeback else WRITEBACK_NONE,
        "attempts": 0,
    }
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (postgresql_insert if postgres else sqlite_insert)(OUTCOMES)
    inserted = session.connection().execute(
        statement.values(values)
        .on_conflict_do_nothing(index_elements=["lead_id", "call_key"])
        .returning(OUTCOMES.c.id)
    )
    return inserted.first() is not None


def note_first_call(session: Session, lead_id: int, received_at: datetime) -> bool:
    """``leads.first_call_at`` = when the lead's first call outcome was received, once;
    whether this call set it.

    A direct UPDATE of that one column: it is a speed-to-lead moment, not a
    change of the lead's state, so it does not go through the ledger.
    """
    result = session.connection().execute(
        update(LEADS)
        .where(LEADS.c.id == lead_id, LEADS.c.first_call_at.is_(None))
        .values(first_call_at=received_at)
    )
    return bool(result.rowcount)


def cancel_pending(session: Session, phone: str, reason: str, now: datetime) -> dict[int, str]:
    """Skip every lead of ``phone`` still to be sent, in every sync and agent (the ledger).

    ``queued`` (waiting for calling hours too) and ``held`` leads move to
    ``skipped`` with ``reason``; a lead already ``sending`` is left to the send
    gate, which read the list under the number's lock. id -> Salesforce Id.
    """
    moved: dict[int, str] = {}
    for state in PENDING_STATES:
        moved.update(
            ledger.move_where(
                session,
                [Lead.phone_e164 == phone],
                source=state,
                target=LeadState.SKIPPED,
                reason=reason,
                now=now,
                values={"note": reason, "next_attempt_at": None},
            )
        )
    return moved


def mark(
    session: Session,
    event_id: int,
    status: str,
    *,
    now: datetime,
    lead_id: int | None = None,
    detail: str | None = None,
) -> None:
    """Close an event: what it became, when, for which lead, and why."""
    if status not in PROCESSED_STATUSES:
        raise ValueError(f"not a processed status: {status!r}")
    session.connection().execute(
        update(EVENTS)
        .where(EVENTS.c.id == event_id)
        .values(
            status=status,
            processed_at=now,
            lead_id=lead_id,
            detail=detail[:DETAIL_CHARS] if detail else None,
        )
    )

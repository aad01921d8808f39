"""The reads of call outcomes for the operator: the gauges, ``syncd status``, ``explain``.

Only reads, in the caller's session. The backlog of stored but unprocessed
webhooks is found through ``ix_call_events_status`` (status, id): counting
``new`` rows and reading the first of them stays cheap however many events
were processed. The pending call write-backs go through
``ix_call_outcomes_writeback`` (writeback_status first).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd.adapters.call_events import STATUSES
from syncd.adapters.orm import CallEvent, CallOutcome, Lead

#: A call outcome still to be written back: queued, or claimed and in doubt.
WRITEBACK_WAITING = ("pending", "sending")
#: Every write-back status of a call outcome, in the order ``status`` shows them.
WRITEBACK_STATUSES = ("pending", "sending", "done", "failed", "none")
#: Ids per ``IN (...)``, as :mod:`syncd.adapters.decision_queries` reads them.
CHUNK = 500


@dataclass(frozen=True)
class PendingEvents:
    """Stored webhooks not processed yet, and when the oldest of them was received."""

    count: int
    oldest_received_at: datetime | None


@dataclass(frozen=True)
class LeadCall:
    """One call outcome of a lead, as ``explain`` and ``audit export`` show it."""

    lead_id: int
    sync: str
    salesforce_id: str
    event_id: int
    call_key: str
    outcome: str | None
    disposition: str | None
    raw_disposition: str | None
    duration_seconds: int | None
    started_at: datetime | None
    received_at: datetime
    opt_out: bool
    writeback_status: str
    task_id: str | None
    last_error: str | None


def pending_events(session: Session) -> PendingEvents:
    """How many events are ``new``, and the receipt time of the first stored of them."""
    new = CallEvent.status == "new"
    count = session.execute(select(func.count()).select_from(CallEvent).where(new)).scalar_one()
    oldest = session.execute(
        select(CallEvent.received_at).where(new).order_by(CallEvent.id).limit(1)
    ).scalar_one_or_none()
    return PendingEvents(int(count), oldest)


def events_by_status(session: Session) -> dict[str, int]:
    """Every event status (``new``, ``matched``, ``unmatched``, ``unreadable``) -> its count."""
    counts = dict.fromkeys(STATUSES, 0)
    query = select(CallEvent.status, func.count()).group_by(CallEvent.status)
    for status, count in session.execute(query):
        counts[status] = int(count)
    return counts


def writebacks_waiting(session: Session) -> dict[str, int]:
    """Sync -> its call outcomes still to be written back (``pending`` or ``sending``)."""
    query = (
        select(CallOutcome.sync_name, func.count())
        .where(CallOutcome.writeback_status.in_(WRITEBACK_WAITING))
        .group_by(CallOutcome.sync_name)
    )
    return {name: int(count) for name, count in session.execute(query)}


def writebacks_by_status(session: Session) -> dict[tuple[str, str], int]:
    """(sync, write-back status) -> how many of the sync's call outcomes have it."""
    query = select(CallOutcome.sync_name, CallOutcome.writeback_status, func.count()).group_by(
        CallOutcome.sync_name, CallOutcome.writeback_status
    )
    return {(name, status): int(count) for name, status, count in session.execute(query)}


def calls_of_leads(session: Session, lead_ids: Collection[int]) -> list[LeadCall]:
    """The call outcomes of the leads, in the order their hooks arrived."""
    rows: list[LeadCall] = []
    ordered = sorted(set(lead_ids))
    for start in range(0, len(ordered), CHUNK):
        chunk: Sequence[int] = ordered[start : start + CHUNK]
        query = select(CallOutcome).where(CallOutcome.lead_id.in_(chunk))
        rows += [_lead_call(row) for row in session.scalars(query)]
    return sorted(rows, key=lambda call: (call.received_at, call.event_id))


def calls_of_number(session: Session, phone_e164: str) -> list[LeadCall]:
    """The call outcomes of every lead with this number, in every sync."""
    lead_ids = session.scalars(select(Lead.id).where(Lead.phone_e164 == phone_e164))
    return calls_of_leads(session, list(lead_ids))


def _lead_call(row: CallOutcome) -> LeadCall:
    return LeadCall(
        lead_id=row.lead_id,
        sync=row.sync_name,
        salesforce_id=row.salesforce_id,
        event_id=row.event_id,
        call_key=row.call_key,
        outcome=row.outcome,
        disposition=row.disposition,
        raw_disposition=row.raw_disposition,
        duration_seconds=row.duration_seconds,
        started_at=row.started_at,
        received_at=row.received_at,
        opt_out=bool(row.opt_out),
        writeback_status=row.writeback_status,
        task_id=row.task_id,
        last_error=row.last_error,
    )

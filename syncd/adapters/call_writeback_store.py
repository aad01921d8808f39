"""The call write-back queue's SQL: claim due call outcomes, record what Salesforce did.

A ``call_outcomes`` row whose sync writes calls back starts ``pending``. A
pass claims the due rows (``pending`` or ``sending``, ``next_attempt_at``
passed; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite's ``BEGIN
IMMEDIATE`` serialises the writers), marks them ``sending`` with
``next_attempt_at`` a while ahead, and the caller commits that **before** the
call to Salesforce. A crash after the commit leaves the row ``sending``: in
doubt (the Task may exist), due again once ``next_attempt_at`` passes, and
looked up before it is written again. The result ends the row ``done`` (with
the Task's Id), ``pending`` again with backoff, ``sending`` (still in doubt,
with backoff) or ``failed`` with Salesforce's error.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from syncd.adapters.orm import CallOutcome
from syncd.domain.call_writeback import IN_DOUBT, Call
from syncd.domain.writeback import DONE, FAILED, RETRY

_OUTCOMES: Table = CallOutcome.__table__  # type: ignore[assignment]

PENDING = "pending"
SENDING = "sending"
#: Records per sObject Collections call (Salesforce's limit).
BATCH_LIMIT = 200
#: The statuses a pass sends (``sending``: in doubt, looked up first).
DUE_STATUSES = (PENDING, SENDING)


@dataclass(frozen=True)
class DueCall:
    """A claimed call outcome: its row, and whether it was in doubt when claimed."""

    id: int
    lead_id: int
    attempts: int
    in_doubt: bool
    call: Call


_C = _OUTCOMES.c
_IS_DUE = (
    _C.sync_name == bindparam("sync"),
    _C.writeback_status.in_(DUE_STATUSES),
    or_(
        _C.next_attempt_at.is_(None),
        _C.next_attempt_at <= bindparam("now", type_=_C.next_attempt_at.type),
    ),
)
_ANY_DUE = select(_C.id).where(*_IS_DUE).limit(1)
_DUE = (
    select(
        _C.id,
        _C.lead_id,
        _C.attempts,
        _C.writeback_status,
        _C.call_key,
        _C.salesforce_id,
        _C.outcome,
        _C.disposition,
        _C.raw_disposition,
        _C.duration_seconds,
        _C.started_at,
        _C.ended_at,
        _C.recording_url,
        _C.received_at,
    )
    .where(*_IS_DUE)
    .order_by(_C.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


def claim(
    session: Session, sync_name: str, now: datetime, hold_until: datetime, limit: int = BATCH_LIMIT
) -> list[DueCall]:
    """The oldest due call outcomes of a sync, now ``sending`` until ``hold_until``.

    The caller commits before it calls Salesforce, so that a crash leaves the
    rows ``sending`` (in doubt) rather than ``pending`` (never sent).
    """
    connection = session.connection()
    rows = connection.execute(_DUE, {"sync": sync_name, "now": now, "limit": limit}).all()
    if not rows:
        return []
    connection.execute(
        update(_OUTCOMES)
        .where(_C.id.in_([row.id for row in rows]))
        .values(writeback_status=SENDING, next_attempt_at=hold_until)
    )
    return [
        DueCall(
            row.id,
            row.lead_id,
            row.attempts,
            row.writeback_status == SENDING,
            Call(
                row.call_key,
                row.salesforce_id,
                row.outcome,
                row.disposition,
                row.raw_disposition,
                row.duration_seconds,
                row.started_at,
                row.ended_at,
                row.recording_url,
                row.received_at,
            ),
        )
        for row in rows
    ]


def any_due(session: Session, sync_name: str, now: datetime) -> bool:
    """Whether a call outcome of the sync is due now (without claiming it)."""
    found = session.connection().execute(_ANY_DUE, {"sync": sync_name, "now": now})
    return found.first() is not None


@dataclass(frozen=True)
class CallResult:
    """What one try did for one call: done, retry, in_doubt (at ``retry_at``) or failed."""

    row: DueCall
    outcome: str
    error: str | None = None
    task_id: str | None = None
    retry_at: datetime | None = None


_STATUS = {DONE: DONE, RETRY: PENDING, IN_DOUBT: SENDING, FAILED: FAILED}
_RECORD = (
    update(_OUTCOMES)
    .where(_C.id == bindparam("r_id"), _C.writeback_status == SENDING)
    .values(
        writeback_status=bindparam("r_status"),
        attempts=_C.attempts + 1,
        next_attempt_at=bindparam("r_next", type_=_C.next_attempt_at.type),
        last_error=bindparam("r_error"),
        task_id=func.coalesce(bindparam("r_task", type_=_C.task_id.type), _C.task_id),
        written_at=bindparam("r_written", type_=_C.written_at.type),
    )
)


def record(session: Session, results: Sequence[CallResult], now: datetime) -> int:
    """Store the outcome of one try of each call; returns how many rows it settled.

    Only rows still ``sending`` change (an operator may have moved one meanwhile).
    """
    if not results:
        return 0
    params = [
        {
            "r_id": r.row.id,
            "r_status": _STATUS[r.outcome],
            "r_next": r.retry_at if r.outcome in (RETRY, IN_DOUBT) else None,
            "r_error": r.error[:2000] if r.error else None,
            "r_task": r.task_id,
            "r_written": now if r.outcome == DONE else None,
        }
        for r in results
    ]
    result = session.connection().execute(_RECORD, params)
    return int(result.rowcount)


def counts(session: Session, sync_name: str) -> dict[str, int]:
    """Write-back status -> number of the sync's call outcomes."""
    rows = session.execute(
        select(CallOutcome.writeback_status, func.count())
        .where(CallOutcome.sync_name == sync_name)
        .group_by(CallOutcome.writeback_status)
    )
    return {status: int(count) for status, count in rows}

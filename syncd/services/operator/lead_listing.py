"""``leads``: what happened to a lead, its audit trail and write-backs, from the database alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_queries as q
from syncd.adapters import writeback_store
from syncd.adapters.orm import (
    Batch,
    Lead,
    LeadTransition,
    WritebackAttempt,
)
from syncd.domain.states import LeadState


@dataclass(frozen=True)
class TransitionView:
    at: datetime
    from_state: str | None
    to_state: str
    reason: str
    batch_id: int | None

    @classmethod
    def of(cls, row: LeadTransition) -> TransitionView:
        return cls(row.at, row.from_state, row.to_state, row.reason, row.batch_id)


@dataclass(frozen=True)
class WritebackAttemptView:
    """One try at writing the lead's outcome to its Salesforce record."""

    at: datetime
    state: str
    outcome: str
    error: str | None

    @classmethod
    def of(cls, row: WritebackAttempt) -> WritebackAttemptView:
        return cls(row.at, row.state, row.outcome, row.error)


@dataclass(frozen=True)
class LeadView:
    """One lead as an operator sees it. ``payload`` (personal data) only on request."""

    id: int
    salesforce_id: str
    sync: str
    agent: str | None
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    batch_id: int | None
    simz_batch_id: str | None
    note: str | None
    error_code: str | None
    error_message: str | None
    history: list[TransitionView] | None = None
    payload: dict[str, Any] | None = None
    waiting_for: str | None = None
    writeback: list[WritebackAttemptView] | None = None
    writeback_status: str | None = None
    #: Requests to SimZ that carried the lead (``attempts`` counts only the retryable
    #: failures, against ``simz.max_attempts``).
    sends: int = 0

    @classmethod
    def of(
        cls,
        lead: Lead,
        history: list[TransitionView] | None,
        with_payload: bool,
        writeback: list[WritebackAttemptView] | None = None,
        writeback_status: str | None = None,
        sends: int = 0,
    ) -> LeadView:
        return cls(
            id=lead.id,
            salesforce_id=lead.salesforce_id,
            sync=lead.sync_name,
            agent=lead.agent_id,
            state=lead.state,
            attempts=lead.attempts,
            next_attempt_at=lead.next_attempt_at,
            created_at=lead.created_at,
            updated_at=lead.updated_at,
            sent_at=lead.sent_at,
            batch_id=lead.batch_id,
            simz_batch_id=lead.simz_batch_id,
            note=lead.note,
            error_code=lead.error_code,
            error_message=lead.error_message,
            history=history,
            payload=dict(lead.payload) if with_payload else None,
            waiting_for=lead.waiting_for if lead.state == LeadState.QUEUED.value else None,
            writeback=writeback,
            writeback_status=writeback_status,
            sends=sends,
        )


def list_leads(
    session_factory: sessionmaker[Session],
    *,
    state: Iterable[str] | str | None = None,
    sync: str | None = None,
    salesforce_ids: Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    history: bool = False,
    payload: bool = False,
) -> list[LeadView]:
    """Leads matching every given filter, most recently changed first.

    ``since``/``until`` bound the time of the lead's last change (``updated_at``,
    until exclusive). ``history`` adds each lead's transitions, oldest first;
    ``payload`` adds the body sent to SimZ, which holds personal data.
    """
    states = [state] if isinstance(state, str) else (list(state) if state is not None else None)
    for name in states or ():
        LeadState(name)  # ValueError on an unknown state
    if limit < 1:
        raise ValueError("limit must be at least 1")
    clauses = q.lead_filter(
        sync=sync,
        states=states,
        salesforce_ids=list(salesforce_ids) if salesforce_ids is not None else None,
        since=since,
        until=until,
    )
    with session_factory() as session:
        leads = q.find_leads(session, clauses, limit)
        lead_ids = [lead.id for lead in leads]
        trails = q.transitions_of(session, lead_ids) if history else {}
        tries = writeback_store.attempts_of(session, lead_ids) if history else {}
        rows = writeback_store.writebacks_of(session, lead_ids) if history else {}
        sends = sends_of(session, lead_ids)
        return [
            LeadView.of(
                lead,
                [TransitionView.of(t) for t in trails[lead.id]] if history else None,
                payload,
                [WritebackAttemptView.of(a) for a in tries[lead.id]] if history else None,
                _writeback_line(rows.get(lead.id), len(tries.get(lead.id, []))),
                sends.get(lead.id, 0),
            )
            for lead in leads
        ]


def sends_of(session: Session, lead_ids: list[int]) -> dict[int, int]:
    """How many requests carried each lead: its batches that were POSTed.

    A batch claimed ahead and never released (``posted_at`` empty) or closed
    ``abandoned`` (nothing sent) does not count.
    """
    found: dict[int, int] = {}
    for start in range(0, len(lead_ids), 900):
        chunk = lead_ids[start : start + 900]
        query = (
            select(LeadTransition.lead_id, func.count(distinct(LeadTransition.batch_id)))
            .join(Batch, Batch.id == LeadTransition.batch_id)
            .where(
                LeadTransition.lead_id.in_(chunk),
                Batch.posted_at.is_not(None),
                or_(Batch.outcome.is_(None), Batch.outcome != "abandoned"),
            )
            .group_by(LeadTransition.lead_id)
        )
        found.update({lead_id: int(n) for lead_id, n in session.execute(query)})
    return found


def _writeback_line(row: Any, tried: int) -> str | None:
    """The lead's write-back row in a few words, e.g. ``done (accepted, 1 attempt)``.

    The row's attempts are those of its current outcome; ``tried`` counts every
    attempt listed below it (an earlier outcome's too), said when they differ.
    """
    if row is None:
        return None
    line = f"{row.status} ({row.state}, {row.attempts} attempt{'s' if row.attempts != 1 else ''}"
    if tried > row.attempts:
        line += f" for this outcome; {tried} in all"
    return line + ")"

"""The read and write queries behind the operator commands and the state metrics.

Everything here is set-based (grouped COUNTs, one UPDATE per state): the
operator commands and the metrics refresh must stay cheap on a table of
millions of leads, and must never load every lead into memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.orm import (
    Batch,
    Lead,
    LeadTransition,
    Lease,
    Pause,
    PollRun,
    Replica,
    SyncState,
)
from syncd.domain.calling_hours import WAITING_FOR as CALLING_HOURS
from syncd.domain.states import LeadState


@dataclass(frozen=True)
class AgentBacklog:
    """Queued leads of one (sync, agent): how many are due now and how many wait."""

    sync: str
    agent: str | None
    queued: int
    due: int
    sending: int


def count_by_state(session: Session) -> dict[tuple[str, str], int]:
    """(sync, state) -> number of leads."""
    rows = session.execute(
        select(Lead.sync_name, Lead.state, func.count()).group_by(Lead.sync_name, Lead.state)
    )
    return {(sync, state): int(count) for sync, state, count in rows}


def backlog_by_agent(session: Session, now: datetime) -> list[AgentBacklog]:
    """Queued (due and waiting) and sending leads per (sync, agent)."""
    is_queued = Lead.state == LeadState.QUEUED.value
    due = and_(is_queued, or_(Lead.next_attempt_at.is_(None), Lead.next_attempt_at <= now))
    rows = session.execute(
        select(
            Lead.sync_name,
            Lead.agent_id,
            func.sum(case((is_queued, 1), else_=0)),
            func.sum(case((due, 1), else_=0)),
            func.sum(case((Lead.state == LeadState.SENDING.value, 1), else_=0)),
        )
        .where(Lead.state.in_([LeadState.QUEUED.value, LeadState.SENDING.value]))
        .group_by(Lead.sync_name, Lead.agent_id)
    )
    return [
        AgentBacklog(sync, agent, int(queued or 0), int(due_now or 0), int(sending or 0))
        for sync, agent, queued, due_now, sending in rows
    ]


def oldest_queued(session: Session) -> dict[tuple[str, str | None], datetime]:
    """(sync, agent) -> when its oldest queued lead was first recorded."""
    rows = session.execute(
        select(Lead.sync_name, Lead.agent_id, func.min(Lead.created_at))
        .where(Lead.state == LeadState.QUEUED.value)
        .group_by(Lead.sync_name, Lead.agent_id)
    )
    return {(sync, agent): first for sync, agent, first in rows if first is not None}


def sync_states(session: Session) -> dict[str, SyncState]:
    return {row.sync_name: row for row in session.scalars(select(SyncState))}


def latest_poll_runs(session: Session) -> dict[str, PollRun]:
    """The most recent poll run of every sync."""
    newest = select(func.max(PollRun.id)).group_by(PollRun.sync_name)
    return {
        run.sync_name: run for run in session.scalars(select(PollRun).where(PollRun.id.in_(newest)))
    }


def last_ok_polls(session: Session) -> dict[str, datetime]:
    """When each sync's last successful poll finished (from the poll history)."""
    rows = session.execute(
        select(PollRun.sync_name, func.max(PollRun.finished_at))
        .where(PollRun.status == "ok")
        .group_by(PollRun.sync_name)
    )
    return {sync: at for sync, at in rows if at is not None}


def latest_batches(session: Session) -> dict[tuple[str, str], Batch]:
    """The most recent batch of every (sync, agent)."""
    newest = select(func.max(Batch.id)).group_by(Batch.sync_name, Batch.agent_id)
    return {
        (batch.sync_name, batch.agent_id): batch
        for batch in session.scalars(select(Batch).where(Batch.id.in_(newest)))
    }


def all_pauses(session: Session) -> list[Pause]:
    return list(session.scalars(select(Pause).order_by(Pause.scope, Pause.key)))


def sync_leases(session: Session, prefix: str = "sync:") -> dict[str, Lease]:
    """Sync name -> its lease row (who leads it; several replicas share the database)."""
    rows = session.scalars(select(Lease).where(Lease.name.startswith(prefix)))
    return {row.name[len(prefix) :]: row for row in rows}


def all_replicas(session: Session) -> list[Replica]:
    return list(session.scalars(select(Replica).order_by(Replica.started_at, Replica.id)))


def lead_filter(
    *,
    sync: str | None = None,
    states: Iterable[str] | None = None,
    salesforce_ids: Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE clauses selecting leads; ``since``/``until`` bound ``updated_at``."""
    clauses: list[ColumnElement[bool]] = []
    if sync is not None:
        clauses.append(Lead.sync_name == sync)
    if states is not None:
        clauses.append(Lead.state.in_(list(states)))
    if salesforce_ids is not None:
        clauses.append(Lead.salesforce_id.in_(list(salesforce_ids)))
    if since is not None:
        clauses.append(Lead.updated_at >= since)
    if until is not None:
        clauses.append(Lead.updated_at < until)
    return clauses


def find_leads(session: Session, clauses: Sequence[ColumnElement[bool]], limit: int) -> list[Lead]:
    """Matching leads, most recently changed first."""
    query = select(Lead).where(*clauses).order_by(Lead.updated_at.desc(), Lead.id.desc())
    return list(session.scalars(query.limit(limit)))


def transitions_of(session: Session, lead_ids: Sequence[int]) -> dict[int, list[LeadTransition]]:
    """The audit trail of each lead, oldest first."""
    trail: dict[int, list[LeadTransition]] = {lead_id: [] for lead_id in lead_ids}
    for start in range(0, len(lead_ids), 500):
        chunk = lead_ids[start : start + 500]
        query = (
            select(LeadTransition)
            .where(LeadTransition.lead_id.in_(chunk))
            .order_by(LeadTransition.lead_id, LeadTransition.id)
        )
        for row in session.scalars(query):
            trail[row.lead_id].append(row)
    return trail


def count_matching(
    session: Session, clauses: Sequence[ColumnElement[bool]]
) -> dict[tuple[str, str], int]:
    """(sync, state) -> number of leads matching ``clauses``."""
    rows = session.execute(
        select(Lead.sync_name, Lead.state, func.count())
        .where(*clauses)
        .group_by(Lead.sync_name, Lead.state)
    )
    return {(sync, state): int(count) for sync, state, count in rows}


def states_of_ids(
    session: Session, salesforce_ids: Sequence[str], sync: str | None
) -> list[tuple[str, str, str]]:
    """(salesforce_id, sync, state) for every lead with one of these Ids."""
    query = select(Lead.salesforce_id, Lead.sync_name, Lead.state).where(
        Lead.salesforce_id.in_(list(salesforce_ids))
    )
    if sync is not None:
        query = query.where(Lead.sync_name == sync)
    return [(sf_id, name, state) for sf_id, name, state in session.execute(query)]


def move_to_queued(
    session: Session,
    clauses: Sequence[ColumnElement[bool]],
    from_state: str,
    *,
    reason: str,
    at: datetime,
) -> int:
    """Move matching leads in ``from_state`` back to ``queued`` and record each move.

    The UPDATE repeats the state condition, so a lead whose state changed since
    it was counted is left alone; RETURNING tells exactly which leads moved, and
    only those get a transition row.
    """
    moved = session.execute(
        update(Lead)
        .where(*clauses, Lead.state == from_state)
        .values(
            state=LeadState.QUEUED.value,
            attempts=0,
            next_attempt_at=None,
            error_code=None,
            error_message=None,
            updated_at=at,
        )
        .returning(Lead.id)
        .execution_options(synchronize_session=False)
    )
    ids = [row[0] for row in moved]
    if ids:
        session.execute(
            insert(LeadTransition),
            [
                {
                    "lead_id": lead_id,
                    "from_state": from_state,
                    "to_state": LeadState.QUEUED.value,
                    "reason": reason,
                    "batch_id": None,
                    "at": at,
                }
                for lead_id in ids
            ],
        )
    return len(ids)


def move_state(
    session: Session,
    clauses: Sequence[ColumnElement[bool]],
    from_state: str,
    to_state: str,
    *,
    reason: str,
    at: datetime,
    note: str | None = None,
) -> int:
    """Move matching leads from ``from_state`` to ``to_state`` and record each move.

    As :func:`move_to_queued`: the UPDATE repeats the state condition and only
    the leads RETURNING names get a transition row.
    """
    values: dict[str, object] = {"state": to_state, "updated_at": at}
    if note is not None:
        values["note"] = note
    if to_state == LeadState.QUEUED.value:
        values["next_attempt_at"] = None
    moved = session.execute(
        update(Lead)
        .where(*clauses, Lead.state == from_state)
        .values(values)
        .returning(Lead.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(row[0] for row in moved)
    if ids:
        session.execute(
            insert(LeadTransition),
            [
                {
                    "lead_id": lead_id,
                    "from_state": from_state,
                    "to_state": to_state,
                    "reason": reason[:500],
                    "batch_id": None,
                    "at": at,
                }
                for lead_id in ids
            ],
        )
        writeback_store.enqueue_moved(session, ids, to_state, at)
    return len(ids)


def waiting_for_calling_hours(session: Session, now: datetime) -> dict[str, int]:
    """Sync -> queued leads that wait for their calling hours to open."""
    rows = session.execute(
        select(Lead.sync_name, func.count())
        .where(
            Lead.state == LeadState.QUEUED.value,
            Lead.waiting_for == CALLING_HOURS,
            Lead.next_attempt_at > now,
        )
        .group_by(Lead.sync_name)
    )
    return {sync: int(count) for sync, count in rows}

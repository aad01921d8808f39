"""The read and write queries behind the operator commands and the state metrics.

Everything here is set-based (grouped COUNTs, one UPDATE per state): the
operator commands and the metrics refresh must stay cheap on a table of
millions of leads, and must never load every lead into memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from syncd.adapters import ledger
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

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]


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
    """Sync name -> its cursor row; the suppression sources' cursors (``suppression:<name>``,
    never a sync name: those have no colon) are left out."""
    rows = session.scalars(select(SyncState).where(~SyncState.sync_name.contains(":")))
    return {row.sync_name: row for row in rows}


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


def resolve_uncertain(
    session: Session,
    sync: str,
    salesforce_ids: Sequence[str],
    *,
    reason: str,
    at: datetime,
) -> list[str]:
    """Mark the named ``uncertain`` leads of ``sync`` ``accepted``, with their audit trail and
    write-back; returns the Salesforce Ids that moved, in the order given.

    For ``syncd resolve``: SimZ confirmed it has these leads, so they must never
    be sent again. The UPDATE repeats ``state = 'uncertain'``, so a lead that is
    in any other state (or changed since the operator looked) is left alone, and
    RETURNING names exactly the leads that moved. ``sent_at`` is kept, or set to
    ``at`` when the lead has none, so the duplicate-phone window counts from
    there. The error of the lost answer is cleared: an accepted lead has none,
    and write-back must not report one. Each moved lead gets one
    ``uncertain -> accepted`` transition naming its batch, and a write-back row
    when its sync writes ``accepted`` back, through :func:`syncd.adapters.ledger.move_where`.
    Set-based (one statement of each kind, whatever the number of leads); runs in
    the caller's transaction.
    """
    ids = list(dict.fromkeys(salesforce_ids))
    if not ids:
        return []
    moved = ledger.move_where(
        session,
        [Lead.sync_name == sync, Lead.salesforce_id.in_(ids)],
        source=LeadState.UNCERTAIN,
        target=LeadState.ACCEPTED,
        reason=reason,
        now=at,
        values={
            "sent_at": func.coalesce(Lead.sent_at, literal(at, _LEADS.c.sent_at.type)),
            "next_attempt_at": None,
            "error_code": None,
            "error_message": None,
        },
    )
    done = set(moved.values())
    return [sf_id for sf_id in ids if sf_id in done]


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

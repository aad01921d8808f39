"""SQLAlchemy access for streaming: the stored replay id, and leads whose record was deleted.

Every function takes the caller's :class:`Session`; the caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from syncd.adapters.orm import Lead, LeadTransition, StreamState
from syncd.domain.states import LeadState, check_transition

DELETED_NOTE = "record deleted in Salesforce"
#: Leads a DELETE event may still stop: not claimed by delivery, not skipped already. A
#: ``held`` lead is never claimed, but ``syncd release`` would queue it: it stops too.
_STOPPABLE = (LeadState.QUEUED.value, LeadState.INVALID.value, LeadState.HELD.value)


@dataclass(frozen=True)
class StreamPosition:
    """Where a sync's subscription resumes, and how it got there."""

    topic: str
    replay_id: bytes | None
    replay_at: datetime | None
    last_event_at: datetime | None
    replay_resets: int
    updated_at: datetime


def get_position(session: Session, sync_name: str) -> StreamPosition | None:
    row = session.get(StreamState, sync_name)
    if row is None:
        return None
    return StreamPosition(
        row.topic,
        row.replay_id,
        row.replay_at,
        row.last_event_at,
        row.replay_resets,
        row.updated_at,
    )


def all_positions(session: Session) -> dict[str, StreamPosition]:
    names = session.scalars(select(StreamState.sync_name)).all()
    found = {name: get_position(session, name) for name in names}
    return {name: position for name, position in found.items() if position is not None}


def _row(session: Session, sync_name: str, topic: str, now: datetime) -> StreamState:
    row = session.get(StreamState, sync_name, with_for_update=True)
    if row is None:
        row = StreamState(sync_name=sync_name, topic=topic, replay_resets=0, updated_at=now)
        session.add(row)
    return row


def save_replay(
    session: Session,
    sync_name: str,
    topic: str,
    replay_id: bytes,
    replay_at: datetime | None,
    now: datetime,
    *,
    event: bool,
) -> None:
    """Store ``replay_id`` as the resume point (``event``: after events, not a keepalive)."""
    row = _row(session, sync_name, topic, now)
    row.topic = topic
    row.replay_id = replay_id
    row.replay_at = replay_at or now
    if event:
        row.last_event_at = now
    row.updated_at = now


def forget_replay(session: Session, sync_name: str, topic: str, now: datetime) -> None:
    """The stored replay id was refused: drop it and count the reset."""
    row = _row(session, sync_name, topic, now)
    row.topic = topic
    row.replay_id = None
    row.replay_resets = (row.replay_resets or 0) + 1
    row.updated_at = now


def skip_deleted(
    session: Session, sync_name: str, salesforce_ids: Sequence[str], now: datetime
) -> int:
    """Leads of deleted records not yet claimed by delivery become ``skipped``; how many.

    Their digest is cleared, so if the record comes back (undelete) the next
    read evaluates it again instead of taking it for an unchanged re-read.
    A lead delivery has claimed already is left alone (it may be on the wire).
    """
    if not salesforce_ids:
        return 0
    target = LeadState.SKIPPED.value
    rows = session.execute(
        select(Lead.id, Lead.state).where(
            Lead.sync_name == sync_name,
            Lead.salesforce_id.in_(list(salesforce_ids)),
            Lead.state.in_(_STOPPABLE),
        )
    ).all()
    moved = []
    for lead_id, state in rows:
        check_transition(state, target)
        result = session.execute(
            update(Lead)
            .where(Lead.id == lead_id, Lead.state.in_(_STOPPABLE))
            .values(state=target, note=DELETED_NOTE, record_hash="", updated_at=now)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            moved.append((lead_id, state))
    if moved:
        session.execute(
            insert(LeadTransition),
            [
                {
                    "lead_id": lead_id,
                    "from_state": state,
                    "to_state": target,
                    "reason": f"stream: {DELETED_NOTE}",
                    "batch_id": None,
                    "at": now,
                }
                for lead_id, state in moved
            ],
        )
    return len(moved)

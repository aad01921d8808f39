"""SQLAlchemy access for streaming: the stored replay id of each streamed sync.

Deletions are stored on leads by :func:`syncd.adapters.ledger.mark_deleted`.

Every function takes the caller's :class:`Session`; the caller owns the
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.adapters.orm import StreamState


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

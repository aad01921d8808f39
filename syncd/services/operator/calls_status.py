"""``status``'s calls: the stored webhooks by status, the oldest still to process, and each
sync's call write-backs by status (docs/call-outcomes.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_queries
from syncd.config import Config


@dataclass(frozen=True)
class CallWritebackView:
    """One sync's call outcomes by write-back status; ``mode`` is None without
    ``call_writeback`` (its outcomes are ``none``)."""

    sync: str
    mode: str | None
    pending: int
    sending: int
    done: int
    failed: int
    none: int


@dataclass(frozen=True)
class CallsView:
    """The webhook events by status, the oldest ``new`` one, and the syncs' write-backs."""

    events: dict[str, int]
    oldest_pending_at: datetime | None
    oldest_pending_seconds: float | None
    writebacks: list[CallWritebackView]


def calls_view(
    session_factory: sessionmaker[Session], config: Config, at: datetime
) -> CallsView | None:
    """The calls section; None when webhooks are off and no event was ever stored."""
    with session_factory() as session:
        events = call_queries.events_by_status(session)
        pending = call_queries.pending_events(session)
        by_status = call_queries.writebacks_by_status(session)
    if config.simz.webhook is None and not any(events.values()):
        return None
    modes = {s.name: s.call_writeback.mode for s in config.syncs if s.call_writeback is not None}
    names = list(modes) + sorted({name for name, _ in by_status} - set(modes))
    first = pending.oldest_received_at
    return CallsView(
        events=events,
        oldest_pending_at=first,
        oldest_pending_seconds=None if first is None else max(0.0, (at - first).total_seconds()),
        writebacks=[
            CallWritebackView(
                name,
                modes.get(name),
                *(by_status.get((name, status), 0) for status in call_queries.WRITEBACK_STATUSES),
            )
            for name in names
        ],
    )

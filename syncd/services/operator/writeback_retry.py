"""``writeback retry`` and ``writeback resync``: queue write-backs again, with an audit row.

``retry`` puts a sync's failed write-backs back to pending; ``resync`` queues
the current outcome of leads that have none queued (sent before write-back was
turned on) or of every lead that changed state since a time. Both only change
the database; the daemon sends the rows. Each writes one ``operator_actions``
row (actor, reason, what moved), as ``pause`` and ``resume`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, writeback_store
from syncd.adapters.orm import utcnow
from syncd.services.operator.common import log

RETRY_ACTION = "writeback-retry"
RESYNC_ACTION = "writeback-resync"
RETRY_REASON = "operator writeback retry"
RESYNC_REASON = "operator writeback resync"
#: Leads queued per transaction by ``resync`` (short transactions beside a running daemon).
RESYNC_CHUNK = 500


def failed_writebacks(session_factory: sessionmaker[Session], sync: str) -> int:
    """How many write-backs of ``sync`` have failed (what ``writeback retry`` would move)."""
    with session_factory() as session:
        return writeback_store.count_failed(session, sync)


def _audit(
    session: Session, *, at: datetime, actor: str, action: str, sync: str, reason: str, detail: str
) -> None:
    operator_pauses.record_action(
        session,
        at=at,
        actor=actor.strip() or "unknown",
        action=action,
        scope=operator_pauses.OPERATOR_SYNC,
        name=sync,
        reason=reason,
        detail=detail,
    )


def retry_writebacks(
    session_factory: sessionmaker[Session],
    sync: str,
    *,
    actor: str,
    reason: str = RETRY_REASON,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Move ``sync``'s failed write-backs back to pending, due now; returns how many.

    The move and its audit row commit together.
    """
    reason = reason.strip() or RETRY_REASON
    at = now()
    with session_factory.begin() as session:
        moved = writeback_store.retry_failed(session, sync, at)
        _audit(
            session,
            at=at,
            actor=actor,
            action=RETRY_ACTION,
            sync=sync,
            reason=reason,
            detail=f"{moved} failed write-back(s) back to pending",
        )
    log.warning("write-backs retried", sync=sync, rows=moved, actor=actor, reason=reason)
    return moved


def writes_back(session_factory: sessionmaker[Session], sync: str) -> bool:
    """Whether ``sync`` has write-back on in this configuration."""
    with session_factory() as session:
        return bool(writeback_store.written_states(session, sync))


def resync_candidates(
    session_factory: sessionmaker[Session], sync: str, since: datetime | None
) -> list[int]:
    """The leads ``resync`` would queue (see :func:`writeback_store.resync_candidates`)."""
    with session_factory() as session:
        return writeback_store.resync_candidates(session, sync, since)


def resync_writebacks(
    session_factory: sessionmaker[Session],
    sync: str,
    lead_ids: Sequence[int],
    *,
    actor: str,
    since: datetime | None = None,
    reason: str = RESYNC_REASON,
    progress: Callable[[int, int], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Queue the current outcome of ``lead_ids`` for write-back, :data:`RESYNC_CHUNK` a
    transaction; ``progress(done, total)`` after each. The audit row commits with the last."""
    reason = reason.strip() or RESYNC_REASON
    queued = 0
    chunks = [lead_ids[i : i + RESYNC_CHUNK] for i in range(0, len(lead_ids), RESYNC_CHUNK)]
    for number, chunk in enumerate(chunks, start=1):
        at = now()
        with session_factory.begin() as session:
            queued += writeback_store.enqueue_leads(session, sync, chunk, at)
            if number == len(chunks):
                scope = f"changed since {since.isoformat()}" if since else "never queued"
                _audit(
                    session,
                    at=at,
                    actor=actor,
                    action=RESYNC_ACTION,
                    sync=sync,
                    reason=reason,
                    detail=f"{queued} lead outcome(s) queued for write-back ({scope})",
                )
        if progress is not None:
            progress(min(number * RESYNC_CHUNK, len(lead_ids)), len(lead_ids))
    log.warning("write-backs resynced", sync=sync, rows=queued, actor=actor, reason=reason)
    return queued

"""``writeback retry``: failed write-backs back to pending, for the daemon to send again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import writeback_store
from syncd.adapters.orm import utcnow
from syncd.services.operator.common import log


def failed_writebacks(session_factory: sessionmaker[Session], sync: str) -> int:
    """How many write-backs of ``sync`` have failed (what ``writeback retry`` would move)."""
    with session_factory() as session:
        return writeback_store.count_failed(session, sync)


def retry_writebacks(
    session_factory: sessionmaker[Session],
    sync: str,
    *,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Move ``sync``'s failed write-backs back to pending, due now; returns how many."""
    with session_factory.begin() as session:
        moved = writeback_store.retry_failed(session, sync, now())
    log.info("write-backs retried", sync=sync, rows=moved, actor=actor)
    return moved

"""The audit row of an operator's run over a sync (backfill, reconcile), in its own transaction.

Written before the run's first write, so a run that is killed part way is
listed in ``operator_actions`` too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses


def audit_sync_run(
    session_factory: sessionmaker[Session],
    *,
    at: datetime,
    actor: str,
    action: str,
    sync_name: str,
    reason: str,
    detail: str | None,
) -> None:
    """One ``operator_actions`` row for ``action`` over ``sync_name``, committed now."""
    with session_factory.begin() as session:
        operator_pauses.record_action(
            session,
            at=at,
            actor=actor,
            action=action,
            scope=operator_pauses.OPERATOR_SYNC,
            name=sync_name,
            reason=reason,
            detail=detail,
        )

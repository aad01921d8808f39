"""Operator pauses of delivery (``syncd pause``/``resume``) and the operators' audit trail.

A pause names a sync or an agent and has no expiry: only ``syncd resume``
lifts it. It lives in ``operator_pauses``, apart from the SimZ-driven pauses
in ``pauses`` that a successful SimZ answer clears, so no answer from SimZ can
ever lift what an operator set. Delivery reads it inside each claim's
transaction, so every replica honours a pause at its next claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, delete, insert, or_, select
from sqlalchemy.orm import Session

from syncd.adapters.orm import OperatorAction, OperatorPause

OPERATOR_SYNC = "sync"
OPERATOR_AGENT = "agent"
SCOPES = (OPERATOR_SYNC, OPERATOR_AGENT)

_PAUSES: Table = OperatorPause.__table__  # type: ignore[assignment]
_ACTIONS: Table = OperatorAction.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Pause:
    """One operator pause: what it stops, why, who set it and when."""

    scope: str
    name: str
    reason: str
    paused_by: str
    paused_at: datetime


_COLUMNS = (
    _PAUSES.c.scope,
    _PAUSES.c.name,
    _PAUSES.c.reason,
    _PAUSES.c.paused_by,
    _PAUSES.c.paused_at,
)


_PAUSES_OF = select(*_COLUMNS).where(
    or_(
        (_PAUSES.c.scope == OPERATOR_SYNC) & (_PAUSES.c.name == bindparam("sync")),
        (_PAUSES.c.scope == OPERATOR_AGENT) & (_PAUSES.c.name == bindparam("agent")),
    )
)


def pauses_of(session: Session, sync_name: str, agent_id: str) -> list[Pause]:
    """The operator pauses that stop delivery of ``sync_name`` to ``agent_id`` now."""
    rows = session.connection().execute(_PAUSES_OF, {"sync": sync_name, "agent": agent_id})
    return [Pause(*row) for row in rows]


def all_pauses(session: Session) -> list[Pause]:
    """Every operator pause, oldest first."""
    rows = session.connection().execute(
        select(*_COLUMNS).order_by(_PAUSES.c.paused_at, _PAUSES.c.scope, _PAUSES.c.name)
    )
    return [Pause(*row) for row in rows]


def find(session: Session, scope: str, name: str) -> Pause | None:
    """The pause of this scope and name, if set."""
    row = (
        session.connection()
        .execute(select(*_COLUMNS).where(_PAUSES.c.scope == scope, _PAUSES.c.name == name))
        .first()
    )
    return Pause(*row) if row is not None else None


def add(session: Session, pause: Pause) -> None:
    """Insert the pause; the caller has checked that it does not exist yet."""
    session.connection().execute(
        insert(_PAUSES).values(
            scope=pause.scope,
            name=pause.name,
            reason=pause.reason[:500],
            paused_by=pause.paused_by[:255],
            paused_at=pause.paused_at,
        )
    )


def remove(session: Session, scope: str, name: str) -> int:
    """Delete the pause; how many rows went (0 or 1)."""
    result = session.connection().execute(
        delete(_PAUSES).where(_PAUSES.c.scope == scope, _PAUSES.c.name == name)
    )
    removed: int = result.rowcount
    return removed


def record_action(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    scope: str,
    name: str,
    reason: str,
    detail: str | None = None,
) -> None:
    """One row of the operators' audit trail."""
    session.connection().execute(
        insert(_ACTIONS).values(
            at=at,
            actor=actor[:255],
            action=action,
            scope=scope,
            name=name[:255],
            reason=reason[:500],
            detail=detail,
        )
    )

"""Pause and resume delivery at runtime (``syncd pause``, ``syncd resume``).

A pause stops the *sending* of one sync (every agent) or of one agent (in
every sync) until it is resumed; polling goes on and new leads wait in the
queue. It is a row in the database, read by every replica at each claim, so
it takes effect at the next batch without a restart. A batch already claimed
when the pause is committed (at most one per sync, claimed while the one
before it was in flight) is still sent. Each pause and resume is written to
``operator_actions`` with who did it and why, and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses
from syncd.adapters.operator_pauses import SCOPES, Pause
from syncd.adapters.orm import utcnow
from syncd.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PauseOutcome:
    """``pause`` is the pause now in force; ``created`` is False if it was already there."""

    pause: Pause
    created: bool


def _check(scope: str, name: str, reason: str, actor: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not name.strip():
        raise ValueError(f"the {scope} name is empty")
    if not reason.strip():
        raise ValueError("a reason is required")
    if not actor.strip():
        raise ValueError("who pauses (actor) is required")


def pause(
    session_factory: sessionmaker[Session],
    *,
    scope: str,
    name: str,
    reason: str,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> PauseOutcome:
    """Stop delivery of a sync or an agent until :func:`resume`; idempotent.

    Pausing what is already paused changes nothing (the first reason stays) and
    returns the pause in force with ``created=False``.
    """
    _check(scope, name, reason, actor)
    at = now()
    pause = Pause(scope, name, reason.strip()[:500], actor.strip()[:255], at)
    try:
        with session_factory.begin() as session:
            existing = operator_pauses.find(session, scope, name)
            if existing is not None:
                return PauseOutcome(existing, created=False)
            operator_pauses.add(session, pause)
            operator_pauses.record_action(
                session,
                at=at,
                actor=pause.paused_by,
                action="pause",
                scope=scope,
                name=name,
                reason=pause.reason,
            )
    except IntegrityError:
        # Another operator's pause of the same target committed between our read
        # and our insert: theirs is in force, ours was rolled back whole.
        with session_factory.begin() as session:
            existing = operator_pauses.find(session, scope, name)
        if existing is None:
            raise
        return PauseOutcome(existing, created=False)
    log.warning(
        "delivery paused by an operator",
        scope=scope,
        name=name,
        reason=pause.reason,
        actor=pause.paused_by,
    )
    return PauseOutcome(pause, created=True)


def resume(
    session_factory: sessionmaker[Session],
    *,
    scope: str,
    name: str,
    reason: str,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> Pause | None:
    """Lift the operator pause of a sync or an agent; the lifted pause, or None if none was set."""
    _check(scope, name, reason, actor)
    at = now()
    with session_factory.begin() as session:
        existing = operator_pauses.find(session, scope, name)
        if existing is None:
            return None
        operator_pauses.remove(session, scope, name)
        operator_pauses.record_action(
            session,
            at=at,
            actor=actor.strip(),
            action="resume",
            scope=scope,
            name=name,
            reason=reason.strip(),
            detail=f"paused by {existing.paused_by} at {existing.paused_at.isoformat()}: "
            f"{existing.reason}",
        )
    log.warning(
        "delivery resumed by an operator",
        scope=scope,
        name=name,
        reason=reason.strip(),
        actor=actor.strip(),
        paused_by=existing.paused_by,
    )
    return existing


def all_pauses(session_factory: sessionmaker[Session]) -> list[Pause]:
    """Every operator pause in force."""
    with session_factory() as session:
        return operator_pauses.all_pauses(session)

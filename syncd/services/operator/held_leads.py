"""``release`` and ``discard``: settle the leads the blast-radius guard held, in the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger
from syncd.adapters import operator_queries as q
from syncd.adapters.orm import utcnow
from syncd.domain.states import LeadState
from syncd.services.operator.common import HELD, log

RELEASE_REASON = "operator release"
DISCARD_REASON = "operator discard"
DISCARD_NOTE = "discarded by an operator after the blast-radius guard held it"


@dataclass(frozen=True)
class HeldResult:
    sync: str
    leads: int
    reason: str
    actor: str
    at: datetime


def count_held(session_factory: sessionmaker[Session], sync: str) -> int:
    """How many leads of ``sync`` the blast-radius guard holds now."""
    with session_factory() as session:
        counts = q.count_matching(session, q.lead_filter(sync=sync, states=[HELD]))
    return sum(counts.values())


def _settle_held(
    session_factory: sessionmaker[Session],
    sync: str,
    target: LeadState,
    reason: str,
    actor: str,
    now: Callable[[], datetime],
    note: str | None,
) -> HeldResult:
    trail = f"{reason} (by {actor or 'unknown'})"
    at = now()
    values: dict[str, object] = {}
    if target is LeadState.QUEUED:
        values["next_attempt_at"] = None
    else:
        values.update(note=note, discarded_at=at)  # final: docs/design.md#decisions-stick
    with session_factory.begin() as session:
        moved = ledger.move_where(
            session,
            q.lead_filter(sync=sync),
            source=HELD,
            target=target,
            reason=trail,
            now=at,
            values=values,
        )
    return HeldResult(sync, len(moved), reason, actor, at)


def release(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    actor: str,
    reason: str = RELEASE_REASON,
    now: Callable[[], datetime] = utcnow,
) -> HeldResult:
    """Move every held lead of ``sync`` to ``queued``, in one transaction, so it is delivered.

    The UPDATE repeats ``state = 'held'``: run twice (or after a crash), it
    moves only what is still held, so no lead is queued, nor sent, twice.
    """
    reason = (reason or RELEASE_REASON).strip() or RELEASE_REASON
    result = _settle_held(session_factory, sync, LeadState.QUEUED, reason, actor, now, None)
    log.warning("held leads released", sync=sync, leads=result.leads, actor=actor, reason=reason)
    return result


def discard(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    actor: str,
    reason: str = DISCARD_REASON,
    now: Callable[[], datetime] = utcnow,
) -> HeldResult:
    """Move every held lead of ``sync`` to ``skipped``, in one transaction: never sent.

    The discard is final: a later change of the record is stored on the lead but
    never makes it sendable again (docs/design.md#decisions-stick).
    """
    reason = (reason or DISCARD_REASON).strip() or DISCARD_REASON
    result = _settle_held(
        session_factory, sync, LeadState.SKIPPED, reason, actor, now, DISCARD_NOTE
    )
    log.warning("held leads discarded", sync=sync, leads=result.leads, actor=actor, reason=reason)
    return result

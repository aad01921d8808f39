"""``leads --state held --by agent|age|source``: the held leads in groups, to decide
whether to release or discard them, from the database alone.

``agent`` groups by the SimZ agent a lead would go to; ``age`` by how long ago
it was held (under an hour, under a day, under a week, older); ``source`` by
what held it, the audit trail's reason (a poll over its limit, a backfill, a
stream intake, a restore).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Lead, LeadTransition, utcnow
from syncd.services.operator.common import HELD

BREAKDOWNS = ("agent", "age", "source")
#: The age groups: (upper bound, label), youngest first.
AGE_GROUPS = (
    (timedelta(hours=1), "held under 1 hour ago"),
    (timedelta(days=1), "held 1 to 24 hours ago"),
    (timedelta(days=7), "held 1 to 7 days ago"),
)
OLDER = "held over 7 days ago"


@dataclass(frozen=True)
class HeldGroup:
    """Held leads sharing an agent, an age or a source."""

    key: str
    leads: int
    first_held_at: datetime
    last_held_at: datetime


def _age(held_at: datetime, now: datetime) -> str:
    for bound, label in AGE_GROUPS:
        if now - held_at < bound:
            return label
    return OLDER


def held_groups(
    session_factory: sessionmaker[Session],
    by: str,
    *,
    sync: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[HeldGroup]:
    """The held leads (of ``sync``) grouped ``by`` agent, age or source, largest first."""
    if by not in BREAKDOWNS:
        raise ValueError(f"--by must be one of {', '.join(BREAKDOWNS)}")
    last_held = (
        select(LeadTransition.lead_id, func.max(LeadTransition.id).label("tid"))
        .where(LeadTransition.to_state == HELD)
        .group_by(LeadTransition.lead_id)
        .subquery()
    )
    query = (
        select(Lead.agent_id, LeadTransition.at, LeadTransition.reason, Lead.updated_at)
        .join(last_held, last_held.c.lead_id == Lead.id, isouter=True)
        .join(LeadTransition, LeadTransition.id == last_held.c.tid, isouter=True)
        .where(Lead.state == HELD)
    )
    if sync is not None:
        query = query.where(Lead.sync_name == sync)
    at = now()
    groups: dict[str, list[datetime]] = {}
    with session_factory() as session:
        for agent, held_at, reason, updated in session.execute(query):
            when = held_at or updated
            key = {
                "agent": agent or "(no agent)",
                "age": _age(when, at),
                "source": reason or "(no audit entry)",
            }[by]
            groups.setdefault(key, []).append(when)
    found = [HeldGroup(k, len(v), min(v), max(v)) for k, v in groups.items()]
    return sorted(found, key=lambda g: (-g.leads, g.key))

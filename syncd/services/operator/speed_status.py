"""``status``'s speed to lead: p50/p95 of every stage over the last hour, per sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from syncd.adapters import speed_queries
from syncd.domain.speed_to_lead import STAGE_NAMES, summarise

#: The window ``status`` summarises.
SPEED_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class StageView:
    """One stage of one sync over the last hour: leads counted, p50 and p95 in seconds."""

    stage: str
    leads: int
    p50: float | None
    p95: float | None


def speed_by_sync(session: Session, at: datetime) -> dict[str, list[StageView]]:
    """Sync -> its stages (every stage, in order) over the hour before ``at``.

    Leads without both moments of a stage (stored before the moments were
    kept, or not that far yet) are left out of it.
    """
    since = at - SPEED_WINDOW
    found = speed_queries.recent_timelines(session, since)
    return {
        name: [
            StageView(s.stage, s.count, _rounded(s.p50), _rounded(s.p95))
            for s in summarise(timelines, since)
        ]
        for name, timelines in found.items()
    }


def no_speed() -> list[StageView]:
    """Every stage with no lead in the window."""
    return [StageView(name, 0, None, None) for name in STAGE_NAMES]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

"""Reads of the speed-to-lead moments kept on leads (``syncd status``, ``explain``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from syncd.adapters.orm import Lead
from syncd.domain.speed_to_lead import Timeline

LEADS: Table = Lead.__table__  # type: ignore[assignment]
#: The most leads ``status`` reads for its percentiles: the newest first.
RECENT_LIMIT = 50_000

_C = LEADS.c
_MOMENTS = (_C.record_created_at, _C.read_at, _C.queued_at, _C.sent_at, _C.accepted_at)


def timeline_of(row: object) -> Timeline:
    """A lead row's moments (the columns named as in :func:`recent_timelines`)."""
    return Timeline(
        created=getattr(row, "record_created_at", None),
        read=getattr(row, "read_at", None),
        queued=getattr(row, "queued_at", None),
        sent=getattr(row, "sent_at", None),
        accepted=getattr(row, "accepted_at", None),
        first_call=getattr(row, "first_call_at", None),
    )


def recent_timelines(
    session: Session, since: datetime, limit: int = RECENT_LIMIT
) -> dict[str, list[Timeline]]:
    """Sync -> the timelines of leads with a moment at or after ``since`` (newest first).

    Bounded: at most ``limit`` leads in all, read backwards by id (the newest
    leads first), so a busy hour costs one bounded read.
    """
    ends = (*_MOMENTS[1:], _C.first_call_at)
    query = (
        select(_C.sync_name, *_MOMENTS, _C.first_call_at)
        .where(or_(*(moment >= since for moment in ends)))
        .order_by(_C.id.desc())
        .limit(limit)
    )
    found: dict[str, list[Timeline]] = {}
    for row in session.execute(query):
        found.setdefault(row.sync_name, []).append(timeline_of(row))
    return found

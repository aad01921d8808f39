"""Speed to lead: the stages of a lead's way from its record's creation to a call (pure).

Each lead keeps the moment of every step (``leads.record_created_at``, ``read_at``,
``queued_at``, ``sent_at``, ``accepted_at``, ``first_call_at``). A *stage* is the
interval between two consecutive moments, so the stages of one lead add up:

* ``read``       record created (its CreatedDate) -> read by syncd;
* ``queued``     read -> first queued;
* ``sent``       queued -> the request carrying it started;
* ``accepted``   sent -> SimZ's accepting answer recorded;
* ``first_call`` accepted -> the first call outcome received (webhooks on);
* ``total``      record created -> accepted: ``read + queued + sent + accepted``.

CreatedDate comes from Salesforce's clock, the other moments from syncd's: an
interval that comes out negative is clock skew, clamped to 0 and counted
(:attr:`StageTime.skewed`). A stage with either moment unknown (a lead stored
before the moments were kept, a record read without CreatedDate) has no value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

#: The consecutive stages, in order, each (name, start moment, end moment).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("read", "created", "read"),
    ("queued", "read", "queued"),
    ("sent", "queued", "sent"),
    ("accepted", "sent", "accepted"),
    ("first_call", "accepted", "first_call"),
)
#: Created -> accepted: the sum of the first four stages.
TOTAL = ("total", "created", "accepted")
#: Every stage name, in order, ``total`` last.
STAGE_NAMES: tuple[str, ...] = (*(name for name, _s, _e in STAGES), TOTAL[0])
#: The moments of a timeline, in order.
MOMENTS: tuple[str, ...] = ("created", "read", "queued", "sent", "accepted", "first_call")


@dataclass(frozen=True)
class Timeline:
    """The moments of one lead (None: not reached, or not kept when it happened)."""

    created: datetime | None = None
    read: datetime | None = None
    queued: datetime | None = None
    sent: datetime | None = None
    accepted: datetime | None = None
    first_call: datetime | None = None

    def at(self, moment: str) -> datetime | None:
        value: datetime | None = getattr(self, moment)
        return value


@dataclass(frozen=True)
class StageTime:
    """One stage of one lead: seconds (clamped at 0) and whether the clocks disagreed."""

    stage: str
    seconds: float
    skewed: bool = False


def interval(stage: str, start: datetime | None, end: datetime | None) -> StageTime | None:
    """The stage from ``start`` to ``end``, or None when either is unknown."""
    if start is None or end is None:
        return None
    seconds = (end - start).total_seconds()
    if seconds < 0:
        return StageTime(stage, 0.0, skewed=True)
    return StageTime(stage, seconds)


def stage_times(timeline: Timeline, names: Iterable[str] = STAGE_NAMES) -> list[StageTime]:
    """The stages of ``names`` that ``timeline`` has both moments of, in stage order."""
    wanted = set(names)
    found: list[StageTime] = []
    for name, start, end in (*STAGES, TOTAL):
        if name in wanted:
            value = interval(name, timeline.at(start), timeline.at(end))
            if value is not None:
                found.append(value)
    return found


@dataclass(frozen=True)
class Step:
    """One moment of a lead's timeline and the stage that ends there (None: the first,
    or a stage with a moment unknown)."""

    moment: str
    at: datetime | None
    stage: str | None
    seconds: float | None
    clock_skew: bool = False


def steps(timeline: Timeline) -> list[Step]:
    """Every moment of ``timeline`` in order, each with the seconds of the stage it ends."""
    ending = {end: (name, start) for name, start, end in STAGES}
    found: list[Step] = []
    for moment in MOMENTS:
        at = timeline.at(moment)
        name, start = ending.get(moment, (None, None))
        value = interval(name, timeline.at(start), at) if name and start else None
        found.append(
            Step(
                moment,
                at,
                name,
                value.seconds if value else None,
                value.skewed if value else False,
            )
        )
    return found


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


@dataclass(frozen=True)
class StageSummary:
    """One stage of one sync over a window: how many leads, p50 and p95 in seconds."""

    stage: str
    count: int
    p50: float | None
    p95: float | None


def summarise(
    timelines: Iterable[Timeline], since: datetime, names: Sequence[str] = STAGE_NAMES
) -> list[StageSummary]:
    """p50/p95 of every stage that ended at or after ``since`` (one per name, in order).

    A stage counts in the window when its end moment is in it; leads without
    both moments of a stage are left out of that stage.
    """
    ends = {name: end for name, _start, end in (*STAGES, TOTAL)}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for timeline in timelines:
        for value in stage_times(timeline, names):
            end = timeline.at(ends[value.stage])
            if end is not None and end >= since:
                seconds[value.stage].append(value.seconds)
    return [
        StageSummary(name, len(found), percentile(found, 0.5), percentile(found, 0.95))
        for name, found in seconds.items()
    ]

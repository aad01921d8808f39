"""Frequency caps: how often one number may be sent, across every agent and sync (pure).

A cap is ``count`` sends per rolling ``per`` (``rules.max_sends_per_number``,
and the per-24-hour caps of state calling rules). The sends counted are those
of the number in ``sending``, ``accepted`` or ``uncertain`` (each may have
reached SimZ), by the time their request started (``leads.sent_at``).
:func:`next_allowed` says whether one more send fits every cap now, and if
not, when the oldest send counted leaves the window that is full.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.domain.durations import format_duration


@dataclass(frozen=True)
class Cap:
    """At most ``count`` sends of one number per rolling ``per``; ``source`` says whose cap."""

    count: int
    per: timedelta
    source: str = "rules.max_sends_per_number"

    def __post_init__(self) -> None:
        if self.count < 1 or self.per <= timedelta(0):
            raise ValueError("a cap needs a count of at least 1 and a positive period")

    def describe(self) -> str:
        return f"{self.count} per {format_duration(self.per)} ({self.source})"


@dataclass(frozen=True)
class CapCheck:
    """The first cap that is full (None: one more send fits them all) and its counts."""

    full: Cap | None
    until: datetime | None
    counts: tuple[tuple[Cap, int], ...]


def longest(caps: Iterable[Cap]) -> timedelta:
    """The longest period among ``caps`` (how far back sends must be read); 0 for none."""
    return max((cap.per for cap in caps), default=timedelta(0))


def next_allowed(caps: Sequence[Cap], sends: Sequence[datetime], now: datetime) -> CapCheck:
    """Whether one more send at ``now`` fits every cap, given the number's ``sends``.

    When a cap is full, ``until`` is when its oldest counted send leaves the window
    (the latest such time over all full caps, so that the lead is not woken early).
    """
    ordered = sorted(sends)
    counts: list[tuple[Cap, int]] = []
    full: Cap | None = None
    until: datetime | None = None
    for cap in caps:
        inside = [sent for sent in ordered if sent > now - cap.per]
        counts.append((cap, len(inside)))
        if len(inside) >= cap.count:
            opens = inside[len(inside) - cap.count] + cap.per
            if until is None or opens > until:
                full, until = cap, opens
    return CapCheck(full, until, tuple(counts))

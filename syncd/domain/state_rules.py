"""The US profile of calling hours: the federal window and the states' own rules (pure).

``calling_hours.profile: us`` calls a lead only inside the TCPA's window
(08:00-21:00 in the called person's local time) and inside the rules of every
state the lead may be in: its area code's and, when the sync reads one, its
address state's. Several states: the strictest reading wins (windows
intersected, days off and holidays joined, every cap kept). Each state's rule
is plain values built by the configuration from the shipped data file and the
sync's overrides (``syncd/data/us_calling_rules.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from syncd.domain.calling_hours import LocalHours, Window, format_window
from syncd.domain.frequency import Cap
from syncd.domain.us_states import holiday_dates, state_code, state_for_number

#: 47 C.F.R. § 64.1200(c)(1) and 16 C.F.R. § 310.4(c): 8 a.m. to 9 p.m. local time.
FEDERAL_WINDOW: Window = (8 * 60, 21 * 60)
FEDERAL = LocalHours.every_day(FEDERAL_WINDOW)
#: The period of the states' per-number caps.
DAY = timedelta(hours=24)
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class StateRule:
    """One state's rule: a window or None (no calls) per weekday, Monday first; whether its
    public holidays are closed; a cap on calls per number per 24 hours; the law it cites."""

    state: str
    windows: tuple[Window | None, ...]
    holidays: bool = False
    max_per_24h: int | None = None
    source: str = ""
    checked: date | None = None

    def hours(self, years: tuple[int, ...]) -> LocalHours:
        """The rule as local hours, its holidays of ``years`` closed when it closes them."""
        closed = holiday_dates(self.state, years) if self.holidays else frozenset()
        return LocalHours(self.windows, closed)

    @property
    def cap(self) -> Cap | None:
        if self.max_per_24h is None:
            return None
        return Cap(self.max_per_24h, DAY, source=f"state {self.state}")

    def describe(self) -> str:
        """``FL 08:00-20:00, 3 per 24h (Fla. Stat. § 501.616(6))``: for logs and evidence."""
        text = f"{self.state} {self.hours_text()}"
        return f"{text} ({self.source})" if self.source else text

    def hours_text(self) -> str:
        """``08:00-20:00 mon-sat, sun closed, holidays closed, 3 per 24h``."""
        parts = [_week_text(self.windows)]
        if self.holidays:
            parts.append("holidays closed")
        if self.max_per_24h is not None:
            parts.append(f"{self.max_per_24h} per 24h")
        return ", ".join(parts)


def _week_text(windows: tuple[Window | None, ...]) -> str:
    """The windows grouped by runs of weekdays: ``08:00-20:00 mon-sat, sun closed``."""
    runs: list[tuple[int, int, Window | None]] = []
    for day, window in enumerate(windows):
        if runs and runs[-1][2] == window:
            runs[-1] = (runs[-1][0], day, window)
        else:
            runs.append((day, day, window))
    if len(runs) == 1:
        return format_window(runs[0][2])
    texts = []
    for first, last, window in runs:
        days = _DAY_NAMES[first] if first == last else f"{_DAY_NAMES[first]}-{_DAY_NAMES[last]}"
        texts.append(f"{days} {format_window(window)}")
    return ", ".join(texts)


@dataclass(frozen=True)
class LeadStates:
    """The states a lead may be in and how they were found (``area code``, ``field``,
    ``area code+field``; None when none was)."""

    states: tuple[str, ...]
    source: str | None


def lead_states(phone: str | None, region: str | None) -> LeadStates:
    """The lead's states: its number's area code's and its record's state field's, both kept.

    A state field that names no state is ignored; a toll-free or foreign number
    has no state (the federal window alone applies).
    """
    by_phone = state_for_number(phone) if phone else None
    by_field = state_code(region)
    found = tuple(sorted({s for s in (by_phone, by_field) if s is not None}))
    if by_phone and by_field:
        return LeadStates(found, "area code+field")
    if by_phone:
        return LeadStates(found, "area code")
    if by_field:
        return LeadStates(found, "field")
    return LeadStates((), None)


def strictest(
    base: LocalHours, states: Iterable[str], rules: Mapping[str, StateRule], year: int
) -> tuple[LocalHours, tuple[Cap, ...]]:
    """``base`` narrowed by the rule of every state listed, and their caps.

    Holidays of the year before, of and after ``year`` (the current one) are
    closed, which covers every local date a look a week ahead can reach.
    """
    years = (year - 1, year, year + 1)
    hours = base
    caps: list[Cap] = []
    for state in states:
        rule = rules.get(state)
        if rule is None:
            continue
        hours = hours.narrowed(rule.hours(years))
        if rule.cap is not None:
            caps.append(rule.cap)
    return hours, tuple(caps)

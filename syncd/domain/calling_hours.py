"""Calling hours: may a lead be called now, and if not, when (pure, no I/O).

A window (``08:00-21:00``, start inclusive, end exclusive, start before end:
no overnight windows) on a set of weekdays, read on the wall clock of the
lead's time zone. Rules that differ by weekday or close whole dates (the US
states' quiet days and holidays, :mod:`syncd.domain.state_rules`) are a
:class:`LocalHours`: one window or none per weekday, and closed local dates.
A lead with several candidate zones (a number that phonenumbers places in
more than one zone) is callable only when it is inside the window in *every*
one of them: the strictest reading.

A zone phonenumbers does not know for the number (``Etc/Unknown``) is replaced
by every zone of the number's country; if even those are unknown, or the
zones never share an open window within a week, :func:`next_opening` says
``None`` and the caller must not call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

UNKNOWN_ZONE = "Etc/Unknown"
#: ``leads.waiting_for`` of a queued lead that waits for its calling hours to open.
WAITING_FOR = "calling_hours"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
#: How far ahead :func:`next_opening` looks before it gives up.
HORIZON = timedelta(days=8)
#: A daily window: minutes after local midnight, start inclusive, end exclusive.
Window = tuple[int, int]


@dataclass(frozen=True)
class CallingHours:
    """A daily window ``[start, end)`` in minutes after local midnight, on some weekdays."""

    start_minute: int
    end_minute: int
    days: frozenset[int]  # 0 = Monday

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= 24 * 60:
            raise ValueError("the window must start before it ends, within one day")
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("at least one weekday is needed")

    @property
    def local(self) -> LocalHours:
        """The same hours as one window or none per weekday."""
        window = (self.start_minute, self.end_minute)
        return LocalHours(tuple(window if day in self.days else None for day in range(7)))


@dataclass(frozen=True)
class LocalHours:
    """Per local weekday (Monday first) its window, or None when no call may be made that
    day; and local dates on which no call may be made at all (holidays)."""

    windows: tuple[Window | None, ...]
    closed_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if len(self.windows) != 7:
            raise ValueError("one window (or None) per weekday is needed")
        for window in self.windows:
            if window is not None and not 0 <= window[0] < window[1] <= 24 * 60:
                raise ValueError("a window must start before it ends, within one day")

    @classmethod
    def every_day(cls, window: Window) -> LocalHours:
        return cls((window,) * 7)

    def window_on(self, day: date) -> Window | None:
        """The window of a local date: None on a closed weekday or a closed date."""
        if day in self.closed_dates:
            return None
        return self.windows[day.weekday()]

    def narrowed(self, other: LocalHours) -> LocalHours:
        """Open only when both are: each weekday's windows intersected, closed dates joined."""
        windows = tuple(_intersect(a, b) for a, b in zip(self.windows, other.windows, strict=True))
        return LocalHours(windows, self.closed_dates | other.closed_dates)


def _intersect(a: Window | None, b: Window | None) -> Window | None:
    if a is None or b is None:
        return None
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return (start, end) if start < end else None


def format_window(window: Window | None) -> str:
    """``(480, 1260)`` -> ``"08:00-21:00"``; None -> ``"closed"``."""
    if window is None:
        return "closed"
    (h1, m1), (h2, m2) = divmod(window[0], 60), divmod(window[1], 60)
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


def parse_window(text: str) -> tuple[int, int]:
    """``"08:00-21:00"`` -> (480, 1260); ``24:00`` is allowed as an end only."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window like 08:00-21:00")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or h1 > 23 or end > 24 * 60:
        raise ValueError(f"{text!r} has an impossible time of day")
    if start >= end:
        raise ValueError(
            f"{text!r}: the window must start before it ends (overnight windows are not allowed)"
        )
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon-sun"``, ``"mon,wed,fri"`` or ``"mon-fri,sun"`` -> weekday numbers."""
    days: set[int] = set()
    for part in text.lower().split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        if first not in DAY_NAMES or (dash and last not in DAY_NAMES):
            raise ValueError(f"{part!r} is not a day or a range of days like mon-fri")
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if last else a
        if b < a:
            raise ValueError(f"{part!r}: a range of days runs forward (mon-fri, not fri-mon)")
        days.update(range(a, b + 1))
    return frozenset(days)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65536)
def zones_for_number(e164: str) -> tuple[str, ...]:
    """The zones phonenumbers places ``e164`` in; those of its country if it does not know."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    found = tuple(z for z in phone_timezones.time_zones_for_number(number) if z != UNKNOWN_ZONE)
    if not found:
        country = phone_timezones.time_zones_for_geographical_number(number)
        found = tuple(z for z in country if z != UNKNOWN_ZONE)
    return tuple(z for z in found if zone(z) is not None)


def _week(hours: CallingHours | LocalHours) -> LocalHours:
    return hours.local if isinstance(hours, CallingHours) else hours


def _open_in(tz: ZoneInfo, hours: LocalHours, at: datetime) -> bool:
    local = at.astimezone(tz)
    window = hours.window_on(local.date())
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return window is not None and window[0] * 60 <= seconds < window[1] * 60


def _next_opening_in(tz: ZoneInfo, hours: LocalHours, at: datetime) -> datetime | None:
    """The earliest instant at or after ``at`` when ``tz``'s wall clock is inside the window."""
    if _open_in(tz, hours, at):
        return at
    today = at.astimezone(tz).date()
    for offset in range(HORIZON.days):
        day = today + timedelta(days=offset)
        window = hours.window_on(day)
        if window is None:
            continue
        # An opening inside a DST gap lands later on the wall clock: still inside
        # the window unless the window is shorter than the gap, then that day is skipped.
        start = time(window[0] // 60, window[0] % 60)
        candidate = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
        if candidate >= at and _open_in(tz, hours, candidate):
            return candidate
    return None


def _zones(names: Iterable[str]) -> list[ZoneInfo]:
    return [tz for tz in (zone(name) for name in names) if tz is not None]


def callable_now(zones: Sequence[str], hours: CallingHours | LocalHours, at: datetime) -> bool:
    """True when ``at`` is inside the window in every zone (no known zone: False)."""
    known = _zones(zones)
    week = _week(hours)
    return bool(known) and all(_open_in(tz, week, at) for tz in known)


def next_opening(
    zones: Sequence[str], hours: CallingHours | LocalHours, at: datetime
) -> datetime | None:
    """The earliest instant at or after ``at`` that is inside the window in every zone.

    ``at`` itself when callable now; None when no zone is known or the zones
    share no open moment within :data:`HORIZON`. Closed weekdays and closed
    dates (holidays) of :class:`LocalHours` are skipped on each zone's calendar.
    """
    known = _zones(zones)
    if not known:
        return None
    week = _week(hours)
    current = at.astimezone(UTC)
    limit = current + HORIZON
    while current <= limit:
        closed = [tz for tz in known if not _open_in(tz, week, current)]
        if not closed:
            return current
        openings = [_next_opening_in(tz, week, current) for tz in closed]
        if any(opening is None for opening in openings):
            return None
        current = max(opening for opening in openings if opening is not None)
    return None

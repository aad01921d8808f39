"""Calling hours: may a lead be called now, and if not, when (pure, no I/O).

A window (``08:00-21:00``, start inclusive, end exclusive, start before end:
no overnight windows) on a set of weekdays, read on the wall clock of the
lead's time zone. A lead with several candidate zones (a number that
phonenumbers places in more than one zone) is callable only when it is inside
the window in *every* one of them: the strictest reading.

A zone phonenumbers does not know for the number (``Etc/Unknown``) is replaced
by every zone of the number's country; if even those are unknown, or the
zones never share an open window within a week, :func:`next_opening` says
``None`` and the caller must not call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
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


def _open_in(tz: ZoneInfo, hours: CallingHours, at: datetime) -> bool:
    local = at.astimezone(tz)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return (
        local.weekday() in hours.days and hours.start_minute * 60 <= seconds < hours.end_minute * 60
    )


def _next_opening_in(tz: ZoneInfo, hours: CallingHours, at: datetime) -> datetime | None:
    """The earliest instant at or after ``at`` when ``tz``'s wall clock is inside the window."""
    if _open_in(tz, hours, at):
        return at
    today = at.astimezone(tz).date()
    start = time(hours.start_minute // 60, hours.start_minute % 60)
    for offset in range(8):
        day = today + timedelta(days=offset)
        if day.weekday() not in hours.days:
            continue
        # An opening inside a DST gap lands later on the wall clock: still inside
        # the window unless the window is shorter than the gap, then that day is skipped.
        candidate = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
        if candidate >= at and _open_in(tz, hours, candidate):
            return candidate
    return None


def _zones(names: Iterable[str]) -> list[ZoneInfo]:
    return [tz for tz in (zone(name) for name in names) if tz is not None]


def callable_now(zones: Sequence[str], hours: CallingHours, at: datetime) -> bool:
    """True when ``at`` is inside the window in every zone (no known zone: False)."""
    known = _zones(zones)
    return bool(known) and all(_open_in(tz, hours, at) for tz in known)


def next_opening(zones: Sequence[str], hours: CallingHours, at: datetime) -> datetime | None:
    """The earliest instant at or after ``at`` that is inside the window in every zone.

    ``at`` itself when callable now; None when no zone is known or the zones
    share no open moment within :data:`HORIZON`.
    """
    known = _zones(zones)
    if not known:
        return None
    current = at.astimezone(UTC)
    limit = current + HORIZON
    while current <= limit:
        closed = [tz for tz in known if not _open_in(tz, hours, current)]
        if not closed:
            return current
        openings = [_next_opening_in(tz, hours, current) for tz in closed]
        if any(opening is None for opening in openings):
            return None
        current = max(opening for opening in openings if opening is not None)
    return None

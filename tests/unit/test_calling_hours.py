"""The calling-hours arithmetic: windows, days, DST, several zones, unknown zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.calling_hours import (
    CallingHours,
    callable_now,
    next_opening,
    parse_days,
    parse_window,
    zones_for_number,
)

NY = "America/New_York"
LA = "America/Los_Angeles"
HONOLULU = "Pacific/Honolulu"
EVERY_DAY = frozenset(range(7))


def hours(window: str = "08:00-21:00", days: str = "mon-sun") -> CallingHours:
    start, end = parse_window(window)
    return CallingHours(start, end, parse_days(days))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


class TestParsing:
    def test_window(self) -> None:
        """A window is start and end in minutes after midnight; 24:00 may end it."""
        assert parse_window("08:00-21:00") == (480, 1260)
        assert parse_window(" 9:30 - 24:00 ") == (570, 1440)

    @pytest.mark.parametrize(
        "bad", ["21:00-08:00", "08:00-08:00", "8-21", "25:00-26:00", "08:61-09:00", "24:00-24:00"]
    )
    def test_bad_windows_are_refused(self, bad: str) -> None:
        """Overnight, empty and impossible windows are errors, not silently odd hours."""
        with pytest.raises(ValueError):
            parse_window(bad)

    def test_days(self) -> None:
        """Ranges and lists of days, Monday = 0."""
        assert parse_days("mon-sun") == EVERY_DAY
        assert parse_days("mon-fri") == frozenset(range(5))
        assert parse_days("mon,wed,fri") == frozenset({0, 2, 4})
        assert parse_days("mon-fri,sun") == frozenset({0, 1, 2, 3, 4, 6})
        assert parse_days("SAT") == frozenset({5})

    @pytest.mark.parametrize("bad", ["fri-mon", "monday", "", "mon-", "mon,,tue"])
    def test_bad_days_are_refused(self, bad: str) -> None:
        with pytest.raises(ValueError):
            parse_days(bad)


class TestOneZone:
    def test_inside_and_outside(self) -> None:
        """New York in January is UTC-5: 08:00 local is 13:00 UTC; 21:00 is closed."""
        h = hours()
        assert not callable_now([NY], h, utc(2026, 1, 6, 12, 59, 59))
        assert callable_now([NY], h, utc(2026, 1, 6, 13, 0))
        assert callable_now([NY], h, utc(2026, 1, 7, 1, 59, 59))  # 20:59:59 local
        assert not callable_now([NY], h, utc(2026, 1, 7, 2, 0))  # 21:00 local: end exclusive

    def test_next_opening_is_now_when_open(self) -> None:
        at = utc(2026, 1, 6, 15, 0)
        assert next_opening([NY], hours(), at) == at

    def test_next_opening_later_today_and_tomorrow(self) -> None:
        """Before the window: today's opening; after it: tomorrow's."""
        h = hours()
        assert next_opening([NY], h, utc(2026, 1, 6, 10, 0)) == utc(2026, 1, 6, 13, 0)
        assert next_opening([NY], h, utc(2026, 1, 7, 3, 0)) == utc(2026, 1, 7, 13, 0)

    def test_days_skip_the_weekend(self) -> None:
        """Friday 22:00 New York with mon-fri: next opening is Monday 08:00."""
        friday_night = utc(2026, 1, 10, 3, 0)  # Fri 9 Jan 22:00 local
        assert next_opening([NY], hours(days="mon-fri"), friday_night) == utc(2026, 1, 12, 13, 0)
        saturday_noon = utc(2026, 1, 10, 17, 0)
        assert not callable_now([NY], hours(days="mon-fri"), saturday_noon)

    def test_weekday_is_the_local_one(self) -> None:
        """Monday 02:00 UTC is still Sunday evening in New York: a mon-fri window is closed."""
        h = hours(window="08:00-24:00", days="mon-fri")
        assert not callable_now([NY], h, utc(2026, 1, 12, 2, 0))  # Sun 21:00 local
        assert callable_now([NY], h, utc(2026, 1, 12, 13, 0))

    def test_spring_forward(self) -> None:
        """On 8 March 2026 New York moves to UTC-4: 08:00 local is 12:00 UTC, not 13:00."""
        h = hours()
        assert next_opening([NY], h, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 12, 0)
        assert callable_now([NY], h, utc(2026, 3, 8, 12, 0))
        # The day before, still UTC-5.
        assert next_opening([NY], h, utc(2026, 3, 7, 5, 0)) == utc(2026, 3, 7, 13, 0)

    def test_fall_back(self) -> None:
        """On 1 November 2026 New York returns to UTC-5: 21:00 local is 02:00 UTC next day."""
        h = hours()
        assert callable_now([NY], h, utc(2026, 11, 2, 1, 30))  # 20:30 EST
        assert not callable_now([NY], h, utc(2026, 11, 2, 2, 0))
        assert next_opening([NY], h, utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 1, 13, 0)

    def test_opening_inside_a_dst_gap_is_late_never_early(self) -> None:
        """A window opening at 02:30 on the spring-forward day opens at 03:30 local (07:30 UTC)."""
        h = hours(window="02:30-05:00")
        found = next_opening([NY], h, utc(2026, 3, 8, 5, 0))
        assert found is not None and callable_now([NY], h, found)
        assert found >= utc(2026, 3, 8, 7, 0)  # 03:00 EDT: nothing before the jump


class TestSeveralZones:
    def test_strictest_reading(self) -> None:
        """Callable only inside the window in every zone: New York and Los Angeles."""
        h = hours()
        at = utc(2026, 1, 6, 14, 0)  # 09:00 NY, 06:00 LA
        assert callable_now([NY], h, at)
        assert not callable_now([NY, LA], h, at)
        assert next_opening([NY, LA], h, at) == utc(2026, 1, 6, 16, 0)  # 08:00 LA

    def test_window_closes_in_the_earliest_zone(self) -> None:
        """At 21:30 New York (18:30 LA) a lead in both zones waits for New York's morning."""
        h = hours()
        at = utc(2026, 1, 7, 2, 30)
        assert next_opening([NY, LA], h, at) == utc(2026, 1, 7, 16, 0)

    def test_no_common_window(self) -> None:
        """Zones too far apart for a short window never share an opening: None, never call."""
        h = hours(window="08:00-10:00")
        assert next_opening([NY, "Asia/Tokyo"], h, utc(2026, 1, 6, 0, 0)) is None
        assert not callable_now([NY, "Asia/Tokyo"], h, utc(2026, 1, 6, 13, 30))

    def test_no_known_zone(self) -> None:
        """No zone (or only unknown names): never callable, no opening."""
        assert next_opening([], hours(), utc(2026, 1, 6, 15, 0)) is None
        assert not callable_now(["Not/AZone"], hours(), utc(2026, 1, 6, 15, 0))

    @pytest.mark.parametrize("minutes", [0, 7, 61, 600, 1439, 3000, 9000])
    def test_next_opening_is_callable_and_nothing_earlier(self, minutes: int) -> None:
        """The opening found is inside the window, and every earlier minute is not."""
        h = hours(window="09:00-17:00", days="mon-fri")
        zones = [NY, LA, HONOLULU]
        start = utc(2026, 3, 6, 0, 0) + timedelta(minutes=minutes)
        found = next_opening(zones, h, start)
        assert found is not None and callable_now(zones, h, found)
        probe = start
        while probe < found:
            assert not callable_now(zones, h, probe)
            probe += timedelta(minutes=15)


class TestZonesOfNumbers:
    def test_one_zone(self) -> None:
        assert zones_for_number("+12125551234") == (NY,)
        assert zones_for_number("+14155550100") == (LA,)

    def test_unknown_prefix_takes_the_countrys_zones(self) -> None:
        """A number phonenumbers cannot place gets every zone of its country: the strictest."""
        zones = zones_for_number("+15551234567")
        assert NY in zones and HONOLULU in zones and len(zones) > 5

    def test_garbage_has_no_zone(self) -> None:
        assert zones_for_number("not a number") == ()

"""Frequency caps per number (syncd.domain.frequency), from plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.frequency import Cap, CapCheck, longest, next_allowed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
WEEK = timedelta(days=7)


def ago(*hours: float) -> list[datetime]:
    return [NOW - timedelta(hours=h) for h in hours]


class TestCap:
    @pytest.mark.parametrize(("count", "per"), [(0, DAY), (-1, DAY), (1, timedelta(0))])
    def test_a_cap_needs_a_count_and_a_period(self, count: int, per: timedelta) -> None:
        with pytest.raises(ValueError, match="count of at least 1"):
            Cap(count, per)

    def test_describe_names_its_source(self) -> None:
        assert Cap(3, DAY).describe() == "3 per 1d (rules.max_sends_per_number)"
        assert (
            Cap(8, WEEK, "calling_hours: Florida").describe() == "8 per 7d (calling_hours: Florida)"
        )


class TestLongest:
    def test_no_caps_reach_nowhere(self) -> None:
        assert longest([]) == timedelta(0)

    def test_the_longest_period(self) -> None:
        assert longest([Cap(3, DAY), Cap(10, WEEK), Cap(1, timedelta(hours=1))]) == WEEK


class TestNextAllowed:
    def test_no_caps_always_fit(self) -> None:
        assert next_allowed([], ago(1, 2, 3), NOW) == CapCheck(None, None, ())

    def test_room_left_reports_the_counts(self) -> None:
        cap = Cap(3, DAY)
        assert next_allowed([cap], ago(1, 30), NOW) == CapCheck(None, None, ((cap, 1),))

    def test_a_full_cap_opens_when_its_oldest_counted_send_leaves(self) -> None:
        cap = Cap(2, DAY)
        check = next_allowed([cap], ago(20, 1, 30), NOW)
        assert (check.full, check.until) == (cap, NOW - timedelta(hours=20) + DAY)
        assert check.counts == ((cap, 2),)

    def test_over_full_opens_when_enough_sends_have_left(self) -> None:
        """Three sends against a cap of two: room again once two of them have left."""
        cap = Cap(2, DAY)
        check = next_allowed([cap], ago(1, 5, 10), NOW)
        assert check.until == NOW - timedelta(hours=5) + DAY

    def test_a_send_exactly_one_period_ago_has_left(self) -> None:
        assert next_allowed([Cap(1, DAY)], ago(24), NOW).full is None

    def test_the_latest_opening_of_several_full_caps_wins(self) -> None:
        day, week = Cap(1, DAY), Cap(2, WEEK)
        check = next_allowed([day, week], ago(2, 100), NOW)
        assert check.full == week
        assert check.until == NOW - timedelta(hours=100) + WEEK
        assert check.counts == ((day, 1), (week, 2))

    def test_an_earlier_opening_does_not_replace_a_later_one(self) -> None:
        week, day = Cap(2, WEEK), Cap(1, DAY)
        check = next_allowed([week, day], ago(2, 100), NOW)
        assert (check.full, check.until) == (week, NOW - timedelta(hours=100) + WEEK)

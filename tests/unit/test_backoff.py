"""Backoff delays and Retry-After parsing with a chosen random source and clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.backoff import BackoffPolicy, exponential, full_jitter, parse_retry_after

POLICY = BackoffPolicy(timedelta(seconds=5), timedelta(minutes=1), 2.0)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class TestExponential:
    def test_grows_then_caps(self) -> None:
        """The cap doubles per failure and stops at the maximum."""
        assert [exponential(n, POLICY).total_seconds() for n in range(1, 7)] == [
            5,
            10,
            20,
            40,
            60,
            60,
        ]

    def test_huge_failure_count(self) -> None:
        """A very large failure count neither overflows nor exceeds the maximum."""
        assert exponential(10_000, POLICY) == timedelta(minutes=1)


class TestFullJitter:
    @pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
    def test_uniform_below_cap(self, draw: float) -> None:
        """The delay is the random draw times the exponential cap."""
        assert full_jitter(3, POLICY, lambda: draw) == timedelta(seconds=20) * draw


class TestRetryAfter:
    def test_seconds(self) -> None:
        """delta-seconds are read as seconds."""
        assert parse_retry_after("7", NOW) == timedelta(seconds=7)

    def test_http_date(self) -> None:
        """An HTTP date is read relative to now."""
        assert parse_retry_after("Fri, 02 Jan 2026 03:05:05 GMT", NOW) == timedelta(seconds=60)

    def test_past_date_is_zero(self) -> None:
        """A date already passed asks for no wait."""
        assert parse_retry_after("Thu, 01 Jan 2026 00:00:00 GMT", NOW) == timedelta(0)

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"])
    def test_unreadable(self, value: str | None) -> None:
        """Absent or unreadable values give None, so the caller backs off itself."""
        assert parse_retry_after(value, NOW) is None

    def test_capped(self) -> None:
        """An absurd value is capped."""
        assert parse_retry_after("99999999", NOW, maximum=timedelta(hours=1)) == timedelta(hours=1)

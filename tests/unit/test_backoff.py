"""Backoff delays and Retry-After parsing with a chosen random source and clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.backoff import (
    BackoffPolicy,
    capped_exponential,
    equal_jitter,
    exponential,
    full_jitter,
    parse_retry_after,
)

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


class TestCappedExponential:
    def test_doubles_from_the_base_then_caps(self) -> None:
        """Seconds, no jitter: base, base*2, ... until the cap, then the cap."""
        assert [capped_exponential(n, 0.5, 8.0) for n in range(1, 8)] == [
            0.5,
            1.0,
            2.0,
            4.0,
            8.0,
            8.0,
            8.0,
        ]

    def test_multiplier_and_a_base_above_the_cap(self) -> None:
        assert capped_exponential(3, 1.0, 100.0, multiplier=3.0) == 9.0
        assert capped_exponential(1, 10.0, 5.0) == 5.0
        assert capped_exponential(0, 1.0, 5.0) == 1.0

    def test_huge_attempt(self) -> None:
        """A very large attempt number neither overflows nor exceeds the cap."""
        assert capped_exponential(10_000, 1.0, 60.0) == 60.0

    def test_agrees_with_the_policy_form(self) -> None:
        assert [capped_exponential(n, 5.0, 60.0) for n in range(1, 7)] == [
            exponential(n, POLICY).total_seconds() for n in range(1, 7)
        ]


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


class TestHostileRetryAfter:
    @pytest.mark.parametrize(
        "value",
        ["99999999999999", "9" * 4301, "9" * 100_000, "0" * 50 + "7" * 30],
        ids=["14-digits", "4301-digits", "100k-digits", "leading-zeros"],
    )
    def test_huge_number_is_capped_not_raised(self, value: str) -> None:
        """A number too large for a timedelta (or for int()) is capped, never raised."""
        assert parse_retry_after(value, NOW, maximum=timedelta(hours=1)) == timedelta(hours=1)
        assert parse_retry_after(value, NOW) == timedelta(days=365)

    @pytest.mark.parametrize(
        "value", ["²", "٣", "1²", "\uff11\uff10", "-5", "+5", "5.5", "1e3", "0x10"]
    )
    def test_non_ascii_or_signed_digits_are_garbage(self, value: str) -> None:
        """Only ASCII digits are seconds; anything else that is not a date is absent."""
        assert parse_retry_after(value, NOW) is None

    def test_leading_zeros(self) -> None:
        """Leading zeros are still plain seconds."""
        assert parse_retry_after("0007", NOW) == timedelta(seconds=7)

    def test_far_future_date_is_capped(self) -> None:
        """An HTTP date in year 9999 is capped like a huge number."""
        value = "Fri, 31 Dec 9999 23:59:59 GMT"
        assert parse_retry_after(value, NOW, maximum=timedelta(hours=1)) == timedelta(hours=1)


class TestEqualJitter:
    def test_half_fixed_half_drawn(self) -> None:
        """equal_jitter lies in [cap/2, cap): never at once, never past the cap."""
        policy = BackoffPolicy(timedelta(seconds=2), timedelta(minutes=5))
        assert equal_jitter(3, policy, lambda: 0.0) == timedelta(seconds=4)
        assert equal_jitter(3, policy, lambda: 0.999) < timedelta(seconds=8)
        assert equal_jitter(30, policy, lambda: 0.5) == timedelta(minutes=5) * 0.75

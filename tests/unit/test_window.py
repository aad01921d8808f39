"""Unit tests for syncd.domain.window: planning a poll window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.domain.window import CursorPolicy, PollWindow, plan_window

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
LOOKBACK = timedelta(minutes=10)
LAG = timedelta(seconds=15)


class TestPlanWindow:
    def test_first_poll_starts_at_start_at(self) -> None:
        """Without a watermark the window starts at start_at and ends lag before now."""
        window = plan_window(
            start_at=T0, watermark=None, lookback=LOOKBACK, lag=LAG, now=T0 + timedelta(hours=1)
        )
        assert window == PollWindow(T0, T0 + timedelta(minutes=59, seconds=45))

    def test_lookback_behind_watermark(self) -> None:
        """The window starts a lookback behind the watermark."""
        wm = T0 + timedelta(hours=2)
        window = plan_window(
            start_at=T0, watermark=wm, lookback=LOOKBACK, lag=LAG, now=wm + timedelta(minutes=5)
        )
        assert window is not None and window.start == wm - LOOKBACK

    def test_never_before_start_at(self) -> None:
        """The lookback never reaches back before start_at."""
        wm = T0 + timedelta(minutes=1)
        window = plan_window(
            start_at=T0, watermark=wm, lookback=LOOKBACK, lag=LAG, now=T0 + timedelta(hours=1)
        )
        assert window is not None and window.start == T0

    def test_nothing_to_do(self) -> None:
        """When now - lag is not after from there is no window."""
        assert plan_window(start_at=T0, watermark=None, lookback=LOOKBACK, lag=LAG, now=T0) is None
        assert (
            plan_window(start_at=T0, watermark=None, lookback=LOOKBACK, lag=LAG, now=T0 + LAG)
            is None
        )

    def test_whole_seconds(self) -> None:
        """Both ends are rounded down to whole seconds, so the start never skips a record."""
        wm = T0 + timedelta(hours=1, milliseconds=750)
        window = plan_window(
            start_at=T0,
            watermark=wm,
            lookback=timedelta(0),
            lag=LAG,
            now=wm + timedelta(minutes=1, microseconds=999),
        )
        assert window is not None
        assert window.start == T0 + timedelta(hours=1)
        assert window.start <= wm
        assert window.end.microsecond == 0


class TestCursorPolicy:
    POLICY = CursorPolicy("SystemModstamp", "now", LOOKBACK, LAG)

    def test_window_is_plan_window(self) -> None:
        now = T0 + timedelta(hours=1)
        assert self.POLICY.window(T0, None, now) == plan_window(
            start_at=T0, watermark=None, lookback=LOOKBACK, lag=LAG, now=now
        )

    def test_resume_from_the_watermark_less_lookback(self) -> None:
        watermark = T0 + timedelta(hours=2)
        assert self.POLICY.resume_from(T0, watermark, T0) == watermark - LOOKBACK
        assert self.POLICY.resume_from(watermark, watermark, T0) == watermark

    def test_resume_from_now_less_lag_before_the_first_page(self) -> None:
        now = T0 + timedelta(hours=1)
        assert self.POLICY.resume_from(T0, None, now) == now - LAG
        assert self.POLICY.resume_from(None, None, now) == now - LAG

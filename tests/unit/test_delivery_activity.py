"""Write-back gives way to delivery: the activity marker and the pacing rule.

Threads and events only; the writer against a real database and emulator is in
tests/integration/test_writeback.py (TestGivesWayToDelivery).
"""

from __future__ import annotations

import threading
import time

import pytest

from syncd.services.delivery_activity import SHARE, DeliveryActivity, GiveWay, pause_after
from tests.clock import MonotonicClock


class TestActivity:
    def test_idle_until_a_pass_sends_and_again_after_the_last_one(self) -> None:
        clock = MonotonicClock(100.0)
        activity = DeliveryActivity(clock)
        assert activity.busy_for() is None
        with activity.sending():
            clock.at += 3
            with activity.sending():
                clock.at += 2
                assert activity.busy_for() == 5
            assert activity.busy_for() == 5, "busy since the first pass began"
        assert activity.busy_for() is None

    def test_a_pass_that_raises_still_ends(self) -> None:
        activity = DeliveryActivity()
        with pytest.raises(RuntimeError), activity.sending():
            raise RuntimeError("the pass failed")
        assert activity.busy_for() is None
        assert activity.wait_idle(0)

    def test_wait_idle_returns_when_the_pass_ends(self) -> None:
        activity = DeliveryActivity()
        entered, release = threading.Event(), threading.Event()

        def deliver() -> None:
            with activity.sending():
                entered.set()
                release.wait(10)

        thread = threading.Thread(target=deliver)
        thread.start()
        entered.wait(10)
        assert activity.wait_idle(0.05) is False, "still sending: the wait times out"
        release.set()
        assert activity.wait_idle(10) is True
        thread.join(10)

    def test_wait_idle_gives_up_on_stop(self) -> None:
        activity = DeliveryActivity()
        stop = threading.Event()
        stop.set()
        with activity.sending():
            assert activity.wait_idle(60, stop) is False


class TestGiveWay:
    def test_pause_after_keeps_write_back_to_its_share(self) -> None:
        assert pause_after(0.1) == pytest.approx(0.1 * (1 - SHARE) / SHARE)
        assert pause_after(0.2, share=0.5) == pytest.approx(0.2)
        assert pause_after(-1.0) == 0.0

    def test_share_must_be_a_fraction(self) -> None:
        with pytest.raises(ValueError):
            GiveWay(DeliveryActivity(), share=0)
        with pytest.raises(ValueError):
            GiveWay(DeliveryActivity(), share=1.5)

    def test_no_wait_when_nothing_is_delivering(self) -> None:
        way = GiveWay(DeliveryActivity())
        way.record_call(5.0)
        way.before_call()
        assert way.waited == 0.0

    def test_waits_for_a_working_pass_within_the_limit(self) -> None:
        """A pass using the CPU (here: a full core, faked) holds write-back until it ends."""
        activity = DeliveryActivity()
        way = GiveWay(activity, limit=30, cpu=time.monotonic, probe=0.05)
        returned = threading.Event()
        with activity.sending():
            thread = threading.Thread(target=lambda: (way.before_call(), returned.set()))
            thread.start()
            assert not returned.wait(0.2), "gave way while delivery was sending"
        assert returned.wait(10)
        thread.join(10)
        assert way.waited > 0

    def test_a_waiting_pass_does_not_hold_write_back(self) -> None:
        """A pass that waits for SimZ (the process's CPU does not move) lets it go after a look."""
        activity = DeliveryActivity()
        way = GiveWay(activity, limit=30, cpu=lambda: 7.0, probe=0.05)
        with activity.sending():
            way.before_call()
            assert activity.busy_for() is not None
        assert 0.05 <= way.waited < 30

    def test_past_the_limit_it_goes_on_paced(self) -> None:
        """A pass longer than the limit does not starve write-back: it goes after a pause."""
        activity = DeliveryActivity()
        way = GiveWay(activity, limit=0.05, share=0.5, cpu=time.monotonic)
        way.record_call(0.1)
        with activity.sending():
            way.before_call()  # waits out the limit, then pauses as long as the last call
            assert activity.busy_for() is not None
        assert way.waited >= 0.05 + 0.1

    def test_stop_ends_the_wait(self) -> None:
        activity = DeliveryActivity()
        way = GiveWay(activity, limit=60)
        stop = threading.Event()
        stop.set()
        with activity.sending():
            way.before_call(stop)
        assert way.waited < 60

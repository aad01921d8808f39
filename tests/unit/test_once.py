"""``syncd once``'s overlap of one poll and the delivery passes (pure: fake poll and passes)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from syncd.services.deliver import DeliveryResult
from syncd.services.once import poll_and_deliver
from syncd.services.poll import PollResult


def poll_result() -> PollResult:
    return PollResult(sync="web", status="ok", window_to=datetime(2026, 1, 5, tzinfo=UTC))


class Passes:
    """Delivery passes that record whether the poll had finished when each started."""

    def __init__(self, finished: threading.Event, results: list[DeliveryResult]) -> None:
        self.finished = finished
        self.results = results
        self.started_after_poll: list[bool] = []

    def __call__(self) -> DeliveryResult:
        self.started_after_poll.append(self.finished.is_set())
        if self.results:
            return self.results.pop(0)
        return DeliveryResult(sync="web")


def test_passes_run_during_the_poll_and_once_after_it() -> None:
    finished = threading.Event()
    release = threading.Event()

    def poll() -> PollResult:
        release.wait(5)
        finished.set()
        return poll_result()

    passes = Passes(finished, [DeliveryResult(sync="web", batches=2, accepted=20)])
    timer = threading.Timer(0.2, release.set)
    timer.start()
    polled, delivered = poll_and_deliver("web", poll, passes, idle_wait=0.01)
    assert polled.status == "ok"
    assert delivered.batches == 2 and delivered.accepted == 20
    assert len(passes.started_after_poll) > 2  # passes went on while the poll ran
    assert passes.started_after_poll[0] is False
    assert passes.started_after_poll[-1] is True  # the last pass began after the poll ended
    assert passes.started_after_poll.count(True) == 1


def test_sums_the_passes_and_keeps_each_error_once() -> None:
    finished = threading.Event()

    def poll() -> PollResult:
        time.sleep(0.05)
        finished.set()
        return poll_result()

    results = [
        DeliveryResult(sync="web", batches=1, accepted=8, rejected=2),
        DeliveryResult(sync="web", batches=1, uncertain=10, errors=["SimZ: 500"]),
        DeliveryResult(sync="web", paused=True, errors=["SimZ: 500"]),
    ]
    _polled, delivered = poll_and_deliver("web", poll, Passes(finished, results), idle_wait=0.01)
    assert (delivered.batches, delivered.accepted, delivered.rejected) == (2, 8, 2)
    assert delivered.uncertain == 10 and delivered.paused
    assert delivered.errors == ["SimZ: 500"]


def test_a_failing_pass_waits_for_the_poll_instead_of_retrying_at_once() -> None:
    finished = threading.Event()
    release = threading.Event()

    def poll() -> PollResult:
        release.wait(5)
        finished.set()
        return poll_result()

    failing = DeliveryResult(sync="web", errors=["SimZ unreachable"])
    passes = Passes(finished, [failing])
    timer = threading.Timer(0.3, release.set)
    timer.start()
    poll_and_deliver("web", poll, passes, idle_wait=0.001)
    # One pass failed during the poll, the next came only after the poll had ended.
    assert passes.started_after_poll == [False, True]


def test_a_poll_error_is_raised_after_the_last_pass() -> None:
    finished = threading.Event()

    def poll() -> PollResult:
        finished.set()
        raise RuntimeError("poll broke")

    passes = Passes(finished, [])
    with pytest.raises(RuntimeError, match="poll broke"):
        poll_and_deliver("web", poll, passes, idle_wait=0.01)
    assert passes.started_after_poll[-1] is True


def test_a_delivery_error_waits_for_the_poll_to_end() -> None:
    ended = threading.Event()

    def poll() -> PollResult:
        time.sleep(0.1)
        ended.set()
        return poll_result()

    def deliver() -> DeliveryResult:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        poll_and_deliver("web", poll, deliver)
    assert ended.is_set()  # the poll thread was joined before the error went up

"""Delivery wake-up: queued leads start a delivery at once instead of at the next tick."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import SyncConfig
from syncd.entrypoints.scheduler import JobScheduler, PollTracker, sync_poll_trigger
from tests.e2e.harness import wait_until


def make_sync(**overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "web",
        "agent": "agt_1",
        "mapping": {"phoneNumber": "Phone"},
        "schedule": {"every": "1h"},
        "delivery": {"every": "1h", "linger": "10ms"},
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


@dataclass
class PollResult:
    status: str = "ok"
    queued: int = 0


class Jobs:
    """Fake poll and deliver jobs; the deliver job can be held on its first call."""

    def __init__(self, queued: int = 0) -> None:
        self.polls = 0
        self.delivers = 0
        self.queued = queued
        self.hold = threading.Event()
        self.held = threading.Event()
        self.hold.set()

    def poll(self, sync: SyncConfig, stop: threading.Event) -> PollResult:
        self.polls += 1
        return PollResult(queued=self.queued)

    def deliver(self, sync: SyncConfig, stop: threading.Event) -> None:
        self.delivers += 1
        self.held.set()
        self.hold.wait(30)


def scheduler(jobs: Jobs, sync: SyncConfig) -> JobScheduler:
    stop = threading.Event()
    return JobScheduler([sync], poll=jobs.poll, deliver=jobs.deliver, stop=stop)


class TestWake:
    def test_wake_delivers_before_the_tick(self) -> None:
        """With an hourly tick, a wake-up makes the delivery run again now."""
        jobs = Jobs()
        sched = scheduler(jobs, make_sync())
        sched.start()
        try:
            wait_until(lambda: jobs.delivers == 1, "the first delivery at start")
            sched.wake("web")
            wait_until(lambda: jobs.delivers == 2, "the woken delivery")
        finally:
            sched.shutdown(5)

    def test_wake_during_a_delivery_runs_it_again(self) -> None:
        """Leads queued while a delivery runs are delivered right after it, not at the tick."""
        jobs = Jobs()
        jobs.hold.clear()
        sched = scheduler(jobs, make_sync())
        sched.start()
        try:
            wait_until(jobs.held.is_set, "a delivery in progress")
            sched.wake("web")
            jobs.hold.set()
            wait_until(lambda: jobs.delivers >= 2, "the delivery going round again")
        finally:
            sched.shutdown(5)

    def test_poll_that_queued_leads_wakes_delivery(self) -> None:
        """A poll that queued leads wakes the delivery (no wait for the tick)."""
        jobs = Jobs(queued=3)
        sched = scheduler(jobs, make_sync())
        sched.start()
        try:
            wait_until(lambda: jobs.polls == 1, "the first poll")
            wait_until(lambda: jobs.delivers >= 2, "the delivery woken by the poll")
        finally:
            sched.shutdown(5)

    def test_no_wake_without_leads(self) -> None:
        """A poll that queued nothing does not wake the delivery."""
        jobs = Jobs(queued=0)
        sched = scheduler(jobs, make_sync())
        sched.start()
        try:
            wait_until(lambda: jobs.polls == 1 and jobs.delivers == 1, "the first runs")
            sched.run_poll(make_sync())
            assert jobs.polls == 2
            assert not sched._woken
        finally:
            sched.shutdown(5)


class TestStreamSchedule:
    def test_streamed_sync_polls_at_reconcile_every(self) -> None:
        """In stream mode the poll job runs every reconcile_every, not on the schedule."""
        sync = make_sync(source={"mode": "stream", "reconcile_every": "7m"})
        trigger = sync_poll_trigger(sync)
        assert isinstance(trigger, IntervalTrigger)
        assert trigger.interval == timedelta(minutes=7)

    def test_staleness_uses_the_reconcile_interval(self) -> None:
        """Readiness allows three reconcile intervals for a streamed sync's poll."""
        sync = make_sync(source={"mode": "stream", "reconcile_every": "10m"})
        tracker = PollTracker([sync])
        assert tracker.stale(tracker.started_at + timedelta(minutes=29)) == {}
        assert "web" in tracker.stale(tracker.started_at + timedelta(minutes=31))

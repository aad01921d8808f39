"""The calls job: stored call-outcome webhooks processed at the tick and at once when woken."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from syncd.config import SyncConfig
from syncd.entrypoints.scheduler import CALLS_JOB, JobScheduler
from tests.e2e.harness import wait_until


def make_sync() -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "web",
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone"},
            "schedule": {"every": "1h"},
            "delivery": {"every": "1h"},
        }
    )


class Calls:
    """A fake calls job; it can be held on its first run."""

    def __init__(self) -> None:
        self.runs = 0
        self.hold = threading.Event()
        self.held = threading.Event()
        self.hold.set()

    def __call__(self, stop: threading.Event) -> None:
        self.runs += 1
        self.held.set()
        self.hold.wait(30)


def nothing(*_args: Any) -> None:
    return None


def scheduler(calls: Calls | None) -> JobScheduler:
    return JobScheduler(
        [make_sync()],
        poll=nothing,
        deliver=nothing,
        calls=calls,
        stop=threading.Event(),
        calls_every=timedelta(hours=1),
    )


def test_the_job_exists_only_with_a_calls_callable() -> None:
    assert CALLS_JOB in scheduler(Calls()).job_ids()
    without = scheduler(None)
    assert CALLS_JOB not in without.job_ids()
    without.wake_calls()  # nothing to wake: no error


def test_wake_calls_processes_before_the_tick() -> None:
    """With an hourly tick, a wake-up makes the job run again now."""
    calls = Calls()
    sched = scheduler(calls)
    sched.start()
    try:
        wait_until(lambda: calls.runs == 1, "the first run at start")
        sched.wake_calls()
        wait_until(lambda: calls.runs == 2, "the woken run")
    finally:
        sched.shutdown(5)


def test_a_wake_during_a_run_starts_another_run() -> None:
    """An event stored while the job runs is processed by a run that starts now, not at
    the tick (the processor itself runs one pass at a time)."""
    calls = Calls()
    calls.hold.clear()
    sched = scheduler(calls)
    sched.start()
    try:
        assert calls.held.wait(10)
        sched.wake_calls()
        wait_until(lambda: calls.runs == 2, "the run started by the wake-up")
        calls.hold.set()
    finally:
        sched.shutdown(5)

"""The daemon's scheduler with fake jobs: what runs when, log context, errors, shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import SyncConfig
from syncd.config.models import ScheduleConfig
from syncd.config.suppression import SuppressionSourceConfig
from syncd.entrypoints.scheduler import JobScheduler, PollTracker, misfire_grace, poll_trigger
from tests.clock import Clock

WAIT = 30.0  # generous: a deadline for conditions, never a timing assertion


def make_sync(name: str = "web", every: str = "1h", enabled: bool = True) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "agent": "agt_1",
            "enabled": enabled,
            "mapping": {"phoneNumber": "Phone"},
            "schedule": {"every": every},
            "delivery": {"every": every},
        }
    )


@dataclass
class Result:
    status: str


class Recorder:
    """Fake poll/deliver/refresh jobs that remember each call and its log context."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.poll_status = "ok"
        self.poll_error: Exception | None = None

    def _note(self, kind: str, sync: str) -> None:
        with self.cond:
            self.calls.append((kind, sync, dict(structlog.contextvars.get_contextvars())))
            self.cond.notify_all()

    def poll(self, sync: SyncConfig, stop: threading.Event) -> Result:
        self._note("poll", sync.name)
        if self.poll_error is not None:
            raise self.poll_error
        return Result(self.poll_status)

    def deliver(self, sync: SyncConfig, stop: threading.Event) -> None:
        self._note("deliver", sync.name)

    def refresh(self) -> None:
        self._note("metrics", "")

    def wait_for(self, kind: str, sync: str, count: int = 1) -> None:
        with self.cond:
            done = self.cond.wait_for(
                lambda: sum(1 for k, s, _ in self.calls if (k, s) == (kind, sync)) >= count,
                timeout=WAIT,
            )
        assert done, f"{kind} {sync} ran fewer than {count} times: {self.calls}"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def started(recorder: Recorder) -> Iterator[JobScheduler]:
    scheduler = JobScheduler(
        [make_sync("web"), make_sync("partner"), make_sync("old", enabled=False)],
        poll=recorder.poll,
        deliver=recorder.deliver,
        refresh=recorder.refresh,
        stop=threading.Event(),
    )
    scheduler.start()
    yield scheduler
    scheduler.shutdown(5)


class TestJobs:
    def test_one_poll_and_one_deliver_job_per_enabled_sync(self, recorder: Recorder) -> None:
        """Each enabled sync gets a poll and a deliver job, plus one metrics job; disabled none."""
        scheduler = JobScheduler(
            [make_sync("web"), make_sync("old", enabled=False)],
            poll=recorder.poll,
            deliver=recorder.deliver,
            refresh=recorder.refresh,
            stop=threading.Event(),
        )
        assert scheduler.job_ids() == ["deliver:web", "metrics", "poll:web"]

    def test_a_write_back_job_only_for_syncs_that_write_back(self, recorder: Recorder) -> None:
        """A sync with a writeback section gets a writeback job; it runs with its own context."""
        writing = SyncConfig.model_validate(
            {
                **make_sync("crm").model_dump(mode="json", exclude_none=True),
                "writeback": {"fields": {"status": "SimZ_Status__c"}},
            }
        )

        def writeback(sync: SyncConfig, stop: threading.Event) -> None:
            recorder._note("writeback", sync.name)

        scheduler = JobScheduler(
            [make_sync("web"), writing],
            poll=recorder.poll,
            deliver=recorder.deliver,
            writeback=writeback,
            stop=threading.Event(),
        )
        assert scheduler.job_ids() == [
            "deliver:crm",
            "deliver:web",
            "poll:crm",
            "poll:web",
            "writeback:crm",
        ]
        scheduler.start()
        try:
            recorder.wait_for("writeback", "crm")
        finally:
            scheduler.shutdown(5)
        [context] = [c for kind, _s, c in recorder.calls if kind == "writeback"][:1]
        assert context["job"] == "writeback" and context["sync"] == "crm"

    def test_a_reconcile_job_only_for_syncs_that_reconcile(self, recorder: Recorder) -> None:
        """A sync with a reconcile section gets a job at its interval, first a minute after
        start; it runs with its own log context, and leads it queued wake delivery."""
        sweeping = SyncConfig.model_validate(
            {
                **make_sync("crm").model_dump(mode="json", exclude_none=True),
                "reconcile": {"every": "24h"},
            }
        )
        calls: list[tuple[str, dict[str, Any]]] = []

        @dataclass
        class Intake:
            queued: int = 2

        @dataclass
        class Swept:
            intake: Intake

        def reconcile(sync: SyncConfig, stop: threading.Event) -> Swept:
            calls.append((sync.name, dict(structlog.contextvars.get_contextvars())))
            return Swept(Intake())

        clock = Clock()
        scheduler = JobScheduler(
            [make_sync("web"), sweeping],
            poll=recorder.poll,
            deliver=recorder.deliver,
            reconcile=reconcile,
            stop=threading.Event(),
            now=clock,
        )
        assert "reconcile:crm" in scheduler.job_ids()
        assert not any(job.startswith("reconcile:web") for job in scheduler.job_ids())
        job = scheduler._scheduler.get_job("reconcile:crm")
        assert job.next_run_time == clock() + timedelta(minutes=1)
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(hours=24)
        scheduler.run_reconcile(sweeping)
        [(name, context)] = calls
        assert name == "crm" and context["job"] == "reconcile" and context["sync"] == "crm"
        assert "crm" in scheduler._woken

    def test_a_read_job_per_suppression_source(self, recorder: Recorder) -> None:
        """Each suppression source gets its job, run at start with the source in its context."""
        source = SuppressionSourceConfig.model_validate(
            {"name": "dnc", "where": "DoNotCall = true", "phone_fields": ["Phone"]}
        )

        def read(source: SuppressionSourceConfig, stop: threading.Event) -> None:
            recorder._note("suppression", source.name)

        scheduler = JobScheduler(
            [make_sync("web")],
            poll=recorder.poll,
            deliver=recorder.deliver,
            suppression=read,
            sources=[source],
            stop=threading.Event(),
        )
        assert scheduler.job_ids() == ["deliver:web", "poll:web", "suppression:dnc"]
        scheduler.start()
        try:
            recorder.wait_for("suppression", "dnc")
        finally:
            scheduler.shutdown(5)
        [context] = [c for kind, _s, c in recorder.calls if kind == "suppression"][:1]
        assert context["job"] == "suppression" and context["source"] == "dnc"

    def test_first_runs_happen_at_start(self, started: JobScheduler, recorder: Recorder) -> None:
        """With hourly schedules, the first poll, delivery and metrics refresh still run at once."""
        for sync in ("web", "partner"):
            recorder.wait_for("poll", sync)
            recorder.wait_for("deliver", sync)
        recorder.wait_for("metrics", "")
        assert all(sync != "old" for _, sync, _ in recorder.calls)

    def test_job_defaults(self, started: JobScheduler) -> None:
        """Jobs never overlap themselves and missed runs coalesce into one."""
        for job in started._scheduler.get_jobs():
            assert job.max_instances == 1
            assert job.coalesce is True
            assert job.misfire_grace_time >= 1

    def test_interval_and_cron_triggers(self) -> None:
        """`every` becomes an interval trigger and `cron` a crontab trigger in its time zone."""
        assert isinstance(
            poll_trigger(ScheduleConfig(every=timedelta(seconds=30))), IntervalTrigger
        )
        cron = poll_trigger(ScheduleConfig(cron="*/5 8-18 * * mon-fri", timezone="Europe/Paris"))
        assert isinstance(cron, CronTrigger)
        assert str(cron.timezone) == "Europe/Paris"

    def test_misfire_grace_bounds(self) -> None:
        """A late run may start up to one interval late, within 1 s and 5 min."""
        assert misfire_grace(timedelta(milliseconds=10)) == 1
        assert misfire_grace(timedelta(seconds=60)) == 60
        assert misfire_grace(timedelta(hours=1)) == 300


class TestLogContext:
    def test_each_run_binds_its_own_context(
        self, started: JobScheduler, recorder: Recorder
    ) -> None:
        """Every job run sees only its own sync, job kind and a fresh run id."""
        recorder.wait_for("poll", "web")
        recorder.wait_for("deliver", "web")
        recorder.wait_for("metrics", "")
        contexts = {(kind, sync): ctx for kind, sync, ctx in recorder.calls}
        assert contexts[("poll", "web")]["sync"] == "web"
        assert contexts[("poll", "web")]["job"] == "poll"
        assert contexts[("deliver", "web")]["job"] == "deliver"
        assert "sync" not in contexts[("metrics", "")]
        run_ids = [ctx["run_id"] for _, _, ctx in recorder.calls]
        assert len(set(run_ids)) == len(run_ids)

    def test_context_does_not_leak_between_runs(self, recorder: Recorder) -> None:
        """A run does not inherit keys bound by the previous run on the same thread."""
        scheduler = JobScheduler(
            [make_sync("web")], poll=recorder.poll, deliver=recorder.deliver, stop=threading.Event()
        )
        structlog.contextvars.bind_contextvars(agent="leftover")
        scheduler.run_poll(make_sync("web"))
        _, _, ctx = recorder.calls[-1]
        assert "agent" not in ctx
        assert structlog.contextvars.get_contextvars() == {}


class TestErrors:
    def test_failing_job_does_not_stop_the_daemon(self, recorder: Recorder) -> None:
        """A poll that raises is logged and runs again at its next fire time; others go on."""
        recorder.poll_error = RuntimeError("salesforce exploded")
        scheduler = JobScheduler(
            [make_sync("web", every="1s")],
            poll=recorder.poll,
            deliver=recorder.deliver,
            stop=threading.Event(),
        )
        scheduler.start()
        try:
            recorder.wait_for("poll", "web", count=2)
            recorder.wait_for("deliver", "web", count=2)
        finally:
            scheduler.shutdown(5)
        assert scheduler.tracker.snapshot()["web"].last_status == "error"
        assert scheduler.tracker.snapshot()["web"].last_ok is None

    def test_poll_status_is_tracked(self, recorder: Recorder) -> None:
        """The status a poll returns is what readiness sees; only "ok" counts as success."""
        clock = Clock()
        scheduler = JobScheduler(
            [make_sync("web")],
            poll=recorder.poll,
            deliver=recorder.deliver,
            stop=threading.Event(),
            now=clock,
        )
        recorder.poll_status = "paused"
        scheduler.run_poll(make_sync("web"))
        assert scheduler.tracker.snapshot()["web"].last_ok is None
        recorder.poll_status = "ok"
        clock.advance(timedelta(seconds=5))
        scheduler.run_poll(make_sync("web"))
        assert scheduler.tracker.snapshot()["web"].last_ok == clock.at


class TestShutdown:
    def test_stop_reaches_running_job_and_shutdown_is_clean(self) -> None:
        """Shutdown sets the shared stop event; a job that honours it ends and the stop is clean."""
        entered = threading.Event()
        saw_stop: list[bool] = []

        def deliver(sync: SyncConfig, stop: threading.Event) -> None:
            entered.set()
            saw_stop.append(stop.wait(WAIT))  # a delivery that stops claiming when told

        scheduler = JobScheduler(
            [make_sync("web")],
            poll=lambda s, e: Result("ok"),
            deliver=deliver,
            stop=threading.Event(),
        )
        scheduler.start()
        assert entered.wait(WAIT)
        report = scheduler.shutdown(WAIT)
        assert report.clean
        assert report.still_running == []
        assert saw_stop == [True]

    def test_grace_runs_out_on_a_stuck_job(self) -> None:
        """A job that ignores stop is reported as still running once the grace period is over."""
        entered = threading.Event()
        release = threading.Event()

        def deliver(sync: SyncConfig, stop: threading.Event) -> None:
            entered.set()
            release.wait(WAIT)  # a POST stuck on the network

        scheduler = JobScheduler(
            [make_sync("web")],
            poll=lambda s, e: Result("ok"),
            deliver=deliver,
            stop=threading.Event(),
        )
        scheduler.start()
        try:
            assert entered.wait(WAIT)
            report = scheduler.shutdown(0.2)
            assert not report.clean
            assert report.still_running == ["deliver:web"]
        finally:
            release.set()
        assert scheduler.running.wait_idle(WAIT) == []

    def test_no_new_runs_after_stop(self, recorder: Recorder) -> None:
        """Once stop is set, a job that fires late does nothing."""
        stop = threading.Event()
        scheduler = JobScheduler(
            [make_sync("web")], poll=recorder.poll, deliver=recorder.deliver, stop=stop
        )
        stop.set()
        scheduler.run_poll(make_sync("web"))
        scheduler.run_deliver(make_sync("web"))
        assert recorder.calls == []


class TestPollTracker:
    def test_fresh_start_is_ready_for_three_intervals(self) -> None:
        """A sync with no poll yet is healthy for three intervals after start-up, then stale."""
        clock = Clock()
        tracker = PollTracker([make_sync("web", every="60s")], clock)
        clock.advance(timedelta(seconds=180))
        assert tracker.stale(clock()) == {}
        clock.advance(timedelta(seconds=1))
        assert "no successful poll since start-up" in tracker.stale(clock())["web"]

    def test_stale_three_intervals_after_last_success(self) -> None:
        """A sync is stale once its last successful poll is older than three intervals."""
        clock = Clock()
        tracker = PollTracker([make_sync("web", every="60s")], clock)
        clock.advance(timedelta(seconds=100))
        tracker.record("web", "ok", clock())
        clock.advance(timedelta(seconds=170))
        assert tracker.stale(clock()) == {}
        tracker.record("web", "error", clock())
        clock.advance(timedelta(seconds=11))
        problem = tracker.stale(clock())["web"]
        assert "last successful poll 181s ago" in problem
        assert "error" in problem

    def test_cron_uses_its_nominal_interval(self) -> None:
        """A cron schedule is judged by the gap between its fire times."""
        clock = Clock()
        sync = SyncConfig.model_validate(
            {
                "name": "cron",
                "agent": "agt_1",
                "mapping": {"phoneNumber": "Phone"},
                "schedule": {"cron": "*/5 * * * *"},
            }
        )
        tracker = PollTracker([sync], clock)
        clock.advance(timedelta(minutes=14))
        assert tracker.stale(clock()) == {}
        clock.advance(timedelta(minutes=2))
        assert "cron" in tracker.stale(clock())

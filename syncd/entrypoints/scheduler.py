"""The daemon's clock: a poll, a deliver and (optionally) a write-back, a call write-back
and a reconcile job per enabled sync, a read job per suppression source, and (with
``simz.webhook``) the processing of stored call-outcome webhooks.

Why a ``BackgroundScheduler`` and not the ``BlockingScheduler``: Python runs
signal handlers on the main thread only, between bytecodes. With the blocking
scheduler the main thread *is* the scheduler loop, so a graceful shutdown would
have to happen inside the signal handler (re-entrant, and a second signal would
land in the middle of it). Here the scheduler lives in its own thread; the main
thread only waits on the shared ``stop`` event, which the signal handler sets and
nothing else. The main thread then runs the shutdown in plain code, with a
deadline: :meth:`JobScheduler.shutdown` stops firing jobs, and waits for the
jobs already running (which see ``stop`` and stop claiming or paging) until the
grace period is over, and reports what is still running if it ran out.

Jobs are plain callables injected by the caller (see :mod:`syncd.bootstrap`), so
this module knows nothing of Salesforce, SimZ or the database and is unit
tested with fakes. Every job:

* returns at once when ``stop`` is set (a late fire during shutdown does nothing);
* clears and binds its own log context -- contextvars do not follow work into
  the executor's threads -- ``sync``, ``job`` (poll, deliver, writeback,
  call_writeback, reconcile, metrics, calls), ``run_id``;
* catches every exception and logs it: a failing job never kills the daemon,
  it simply runs again at its next fire time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config.models import ScheduleConfig, SyncConfig
from syncd.config.suppression import SuppressionSourceConfig
from syncd.logs import bind_context, get_logger

log = get_logger("syncd.scheduler")

#: How often the outbox gauges (leads by state, backlog, uncertain) are refreshed.
STATE_METRICS_EVERY = timedelta(seconds=15)
#: The first reconciliation sweep after start-up (or ``reconcile.every``, if shorter).
RECONCILE_FIRST_AFTER = timedelta(minutes=1)

#: A poll: given the sync and the shared stop event, returns something with ``status``.
PollJob = Callable[[SyncConfig, threading.Event], Any]
#: A delivery pass for one sync.
DeliverJob = Callable[[SyncConfig, threading.Event], Any]
#: A write-back pass for one sync (only syncs with a writeback section get the job).
WritebackJob = Callable[[SyncConfig, threading.Event], Any]
#: A call write-back pass for one sync (only syncs with a call_writeback section get the job).
CallWritebackJob = Callable[[SyncConfig, threading.Event], Any]
#: A reconciliation sweep of one sync (only syncs with a reconcile section get the job).
ReconcileJob = Callable[[SyncConfig, threading.Event], Any]
#: Refresh the gauges that are read from the database.
RefreshJob = Callable[[], Any]
#: A read of one suppression source.
SuppressionJob = Callable[[SuppressionSourceConfig, threading.Event], Any]
#: Process the stored call-outcome webhooks (only with ``simz.webhook``).
CallsJob = Callable[[threading.Event], Any]
#: How often stored call-outcome webhooks are processed (besides :meth:`JobScheduler.wake_calls`).
CALLS_EVERY = timedelta(seconds=2)
CALLS_JOB = "calls"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def poll_trigger(schedule: ScheduleConfig) -> BaseTrigger:
    """The APScheduler trigger for a sync's ``schedule`` (interval or crontab)."""
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    assert schedule.every is not None
    return IntervalTrigger(seconds=schedule.every.total_seconds(), timezone=UTC)


def sync_poll_trigger(sync: SyncConfig) -> BaseTrigger:
    """The poll trigger of ``sync``: its schedule, or ``reconcile_every`` in stream mode."""
    if sync.streamed:
        return IntervalTrigger(seconds=sync.poll_interval.total_seconds(), timezone=UTC)
    return poll_trigger(sync.schedule)


def misfire_grace(interval: timedelta) -> int:
    """Seconds a late fire may still run: one interval, at least 1 s, at most 5 min.

    With ``coalesce`` a run that is later than this is skipped (and logged as a
    misfire); the next one comes at the next fire time anyway.
    """
    return max(1, min(300, int(interval.total_seconds())))


@dataclass
class PollRecord:
    """What the daemon knows about one sync's polls since it started."""

    last_ok: datetime | None = None
    last_status: str | None = None
    last_at: datetime | None = None


class PollTracker:
    """Thread-safe record of each sync's last poll outcome, read by ``/readyz``."""

    def __init__(self, syncs: list[SyncConfig], now: Callable[[], datetime] = _utcnow) -> None:
        self.started_at = now()
        self._syncs = {sync.name: sync for sync in syncs}
        self._records: dict[str, PollRecord] = {sync.name: PollRecord() for sync in syncs}
        self._lock = threading.Lock()

    def record(self, sync: str, status: str, at: datetime) -> None:
        with self._lock:
            entry = self._records.setdefault(sync, PollRecord())
            entry.last_status = status
            entry.last_at = at
            # "standby": another replica leads this sync, so it is not stale here.
            if status in ("ok", "standby"):
                entry.last_ok = at

    def snapshot(self) -> dict[str, PollRecord]:
        with self._lock:
            return {
                name: PollRecord(r.last_ok, r.last_status, r.last_at)
                for name, r in self._records.items()
            }

    def stale(self, now: datetime) -> dict[str, str]:
        """Syncs whose polling is not healthy, with why.

        A sync is healthy while its last successful poll is less than three poll
        intervals old. A sync that has not succeeded since start-up gets the same
        three intervals counted from start-up (the first poll runs at once, so a
        healthy sync is ready within its first interval), and is not ready after.
        """
        problems: dict[str, str] = {}
        snapshot = self.snapshot()
        for name, sync in self._syncs.items():
            allowed = 3 * sync.poll_interval
            entry = snapshot.get(name, PollRecord())
            since = entry.last_ok or self.started_at
            age = now - since
            if age <= allowed:
                continue
            what = (
                f"last successful poll {int(age.total_seconds())}s ago"
                if entry.last_ok
                else f"no successful poll since start-up {int(age.total_seconds())}s ago"
            )
            status = f" (last poll: {entry.last_status})" if entry.last_status else ""
            problems[name] = f"{what}, allowed {int(allowed.total_seconds())}s{status}"
        return problems


class RunningJobs:
    """Counts the jobs that are running, so shutdown can wait for them with a deadline.

    ``ThreadPoolExecutor.shutdown(wait=True)`` has no timeout; this does.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: Counter[str] = Counter()

    @contextmanager
    def track(self, job_id: str) -> Iterator[None]:
        with self._cond:
            self._running[job_id] += 1
        try:
            yield
        finally:
            with self._cond:
                self._running[job_id] -= 1
                if self._running[job_id] <= 0:
                    del self._running[job_id]
                self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return sorted(self._running)

    def wait_idle(self, timeout: float) -> list[str]:
        """Wait until nothing runs or ``timeout`` seconds pass; return what still runs."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return sorted(self._running)


@dataclass
class ShutdownReport:
    """How the scheduler stopped: ``clean`` when every running job finished in time."""

    clean: bool
    still_running: list[str] = field(default_factory=list)


class JobScheduler:
    """APScheduler 3 ``BackgroundScheduler`` with syncd's jobs, listeners and shutdown."""

    def __init__(
        self,
        syncs: list[SyncConfig],
        *,
        poll: PollJob,
        deliver: DeliverJob,
        refresh: RefreshJob | None = None,
        writeback: WritebackJob | None = None,
        call_writeback: CallWritebackJob | None = None,
        reconcile: ReconcileJob | None = None,
        suppression: SuppressionJob | None = None,
        sources: list[SuppressionSourceConfig] | None = None,
        calls: CallsJob | None = None,
        stop: threading.Event,
        tracker: PollTracker | None = None,
        now: Callable[[], datetime] = _utcnow,
        refresh_every: timedelta = STATE_METRICS_EVERY,
        calls_every: timedelta = CALLS_EVERY,
    ) -> None:
        self.syncs = [sync for sync in syncs if sync.enabled]
        self.stop = stop
        self.tracker = tracker or PollTracker(self.syncs, now)
        self.running = RunningJobs()
        self._poll = poll
        self._deliver = deliver
        self._refresh = refresh
        self._writeback = writeback
        self._call_writeback = call_writeback
        self._reconcile = reconcile
        self._suppression = suppression
        self._sources = list(sources or []) if suppression is not None else []
        self._calls = calls
        self._calls_every = calls_every
        self._now = now
        # Delivery wake-ups (leads were queued): syncs woken while their delivery ran.
        self._woken: set[str] = set()
        self._wake_lock = threading.Lock()
        self._linger = {sync.name: sync.delivery.linger for sync in self.syncs}
        # APScheduler's own warnings (misfires, "maximum number of running instances")
        # are reported by our listeners instead, with the job's sync and kind.
        quiet = logging.getLogger("syncd.scheduler.apscheduler")
        quiet.setLevel(logging.ERROR)
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            logger=quiet,
            executors={
                "default": ThreadPoolExecutor(
                    max_workers=5 * len(self.syncs) + len(self._sources) + 2
                )
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
            daemon=True,
        )
        self._scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        self._scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._scheduler.add_listener(self._on_busy, EVENT_JOB_MAX_INSTANCES)
        self._add_jobs(refresh_every)

    # ------------------------------------------------------------------ jobs

    def _add_jobs(self, refresh_every: timedelta) -> None:
        first = self._now()
        for sync in self.syncs:
            self._scheduler.add_job(
                self.run_poll,
                sync_poll_trigger(sync),
                args=[sync],
                id=f"poll:{sync.name}",
                name=f"poll {sync.name}",
                next_run_time=first,
                misfire_grace_time=misfire_grace(sync.poll_interval),
            )
            tick = sync.delivery.every
            self._every(
                tick,
                self.run_deliver,
                [sync],
                f"deliver:{sync.name}",
                f"deliver {sync.name}",
                first,
            )
            if self._writeback is not None and sync.writeback is not None:
                self._every(
                    tick,
                    self.run_writeback,
                    [sync],
                    f"writeback:{sync.name}",
                    f"write back {sync.name}",
                    first,
                )
            if self._call_writeback is not None and sync.call_writeback is not None:
                self._every(
                    tick,
                    self.run_call_writeback,
                    [sync],
                    f"call-writeback:{sync.name}",
                    f"write calls back {sync.name}",
                    first,
                )
            if self._reconcile is not None and sync.reconcile is not None:
                every = sync.reconcile.every
                # Not at once: the first polls (and the leases) settle first.
                self._every(
                    every,
                    self.run_reconcile,
                    [sync],
                    f"reconcile:{sync.name}",
                    f"reconcile {sync.name}",
                    first + min(every, RECONCILE_FIRST_AFTER),
                )
        for source in self._sources:
            self._every(
                source.every,
                self.run_suppression,
                [source],
                source.key,
                f"read suppression source {source.name}",
                first,
            )
        if self._calls is not None:
            # A wake-up fires while a run ends (or still runs) instead of being
            # skipped; the processor runs one pass at a time, so the second waits.
            self._every(
                self._calls_every,
                self.run_calls,
                [],
                CALLS_JOB,
                "process call-outcome webhooks",
                first,
                max_instances=2,
            )
        if self._refresh is not None:
            self._every(
                refresh_every, self.run_refresh, [], "metrics", "refresh state metrics", first
            )

    def _every(
        self,
        every: timedelta,
        run: Callable[..., None],
        args: list[Any],
        job_id: str,
        name: str,
        first: datetime,
        max_instances: int = 1,
    ) -> None:
        """Add a job that runs ``run(*args)`` every ``every``, first at ``first``."""
        self._scheduler.add_job(
            run,
            IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
            args=args,
            id=job_id,
            name=name,
            next_run_time=first,
            misfire_grace_time=misfire_grace(every),
            max_instances=max_instances,
        )

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs())

    @contextmanager
    def _job(self, job_id: str, kind: str, sync: str | None) -> Iterator[bool]:
        """Bind a fresh log context and count the job as running; yield False when stopping."""
        if self.stop.is_set():
            yield False
            return
        context: dict[str, str] = {"job": kind, "run_id": uuid.uuid4().hex[:8]}
        if sync is not None:
            context["sync"] = sync
        bind_context(**context)
        try:
            with self.running.track(job_id):
                yield True
        finally:
            structlog.contextvars.clear_contextvars()

    def run_poll(self, sync: SyncConfig) -> None:
        """One poll of ``sync``; its outcome feeds readiness."""
        with self._job(f"poll:{sync.name}", "poll", sync.name) as go:
            if not go:
                return
            status = "error"
            try:
                result = self._poll(sync, self.stop)
                status = str(getattr(result, "status", "ok"))
                if getattr(result, "queued", 0):
                    self.wake(sync.name)
            except Exception:
                log.exception("poll job failed")
            finally:
                self.tracker.record(sync.name, status, self._now())

    def run_deliver(self, sync: SyncConfig) -> None:
        """Delivery passes of ``sync``: one, and another while wake-ups came during it."""
        with self._job(f"deliver:{sync.name}", "deliver", sync.name) as go:
            if not go:
                return
            while True:
                with self._wake_lock:
                    self._woken.discard(sync.name)
                try:
                    self._deliver(sync, self.stop)
                except Exception:
                    log.exception("deliver job failed")
                    return
                with self._wake_lock:
                    again = sync.name in self._woken
                if not again or self.stop.wait(self._linger[sync.name].total_seconds()):
                    return

    def wake(self, sync: str) -> None:
        """Leads of ``sync`` were queued: deliver within ``delivery.linger``, not at the tick.

        The fixed tick stays as the fallback; rate limits, pauses and the one POST
        in flight per sync are the delivery's own and unchanged. A wake-up while
        the delivery runs makes it go round once more when it is done.
        """
        if self.stop.is_set() or sync not in self._linger:
            return
        with self._wake_lock:
            self._woken.add(sync)
        job = self._scheduler.get_job(f"deliver:{sync}")
        if job is None:
            return
        at = self._now() + self._linger[sync]
        if job.next_run_time is None or job.next_run_time > at:
            with contextlib.suppress(LookupError):  # removed at shutdown meanwhile
                job.modify(next_run_time=at)

    def run_writeback(self, sync: SyncConfig) -> None:
        """One write-back pass of ``sync``."""
        with self._job(f"writeback:{sync.name}", "writeback", sync.name) as go:
            if not go or self._writeback is None:
                return
            try:
                self._writeback(sync, self.stop)
            except Exception:
                log.exception("write-back job failed")

    def run_call_writeback(self, sync: SyncConfig) -> None:
        """One call write-back pass of ``sync``."""
        with self._job(f"call-writeback:{sync.name}", "call_writeback", sync.name) as go:
            if not go or self._call_writeback is None:
                return
            try:
                self._call_writeback(sync, self.stop)
            except Exception:
                log.exception("call write-back job failed")

    def run_reconcile(self, sync: SyncConfig) -> None:
        """One reconciliation sweep of ``sync``."""
        with self._job(f"reconcile:{sync.name}", "reconcile", sync.name) as go:
            if not go or self._reconcile is None:
                return
            try:
                result = self._reconcile(sync, self.stop)
                intake = getattr(result, "intake", None)
                if getattr(intake, "queued", 0):
                    self.wake(sync.name)
            except Exception:
                log.exception("reconcile job failed")

    def run_suppression(self, source: SuppressionSourceConfig) -> None:
        """One read of a suppression source."""
        with self._job(source.key, "suppression", None) as go:
            if not go or self._suppression is None:
                return
            structlog.contextvars.bind_contextvars(source=source.name)
            try:
                self._suppression(source, self.stop)
            except Exception:
                log.exception("suppression source job failed")

    def run_calls(self) -> None:
        """Process the stored call-outcome webhooks."""
        with self._job(CALLS_JOB, "calls", None) as go:
            if not go or self._calls is None:
                return
            try:
                self._calls(self.stop)
            except Exception:
                log.exception("call events job failed")

    def wake_calls(self) -> None:
        """A call-outcome webhook was stored: process it now, not at the next tick.

        Safe from any thread (the receiver calls it after its commit). The job's
        next run is moved to now; it may start while a run is still going (two
        instances at most): the processor runs one pass at a time, so it starts
        its pass once the other ended, and reads what was stored meanwhile.
        """
        if self.stop.is_set() or self._calls is None:
            return
        job = self._scheduler.get_job(CALLS_JOB)
        if job is None:
            return
        with contextlib.suppress(LookupError):  # removed at shutdown meanwhile
            job.modify(next_run_time=self._now())

    def run_refresh(self) -> None:
        """Refresh the gauges read from the database."""
        with self._job("metrics", "metrics", None) as go:
            if not go or self._refresh is None:
                return
            try:
                self._refresh()
            except Exception:
                log.exception("state metrics refresh failed")

    # ------------------------------------------------------------------ listeners

    def _on_error(self, event: JobExecutionEvent) -> None:
        # Jobs catch their own exceptions; this only fires for one that escaped.
        log.error("job raised", job_id=event.job_id, error=repr(event.exception))

    def _on_missed(self, event: JobExecutionEvent) -> None:
        log.warning(
            "job run missed", job_id=event.job_id, scheduled=event.scheduled_run_time.isoformat()
        )

    def _on_busy(self, event: JobSubmissionEvent) -> None:
        # The previous run is still going (a long delivery); the next fire picks up.
        log.debug("job still running, fire skipped", job_id=event.job_id)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, grace: float) -> ShutdownReport:
        """Stop firing jobs, let running ones finish for up to ``grace`` seconds.

        Sets ``stop`` (so running polls stop paging and deliveries stop claiming),
        then waits. Never blocks longer than ``grace``: a job stuck in a network
        call is reported in ``still_running`` and left to the caller.
        """
        self.stop.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        left = self.running.wait_idle(grace)
        return ShutdownReport(clean=not left, still_running=left)

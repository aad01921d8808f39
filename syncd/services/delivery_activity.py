"""Delivery goes first: write-back gives way while this process is delivering.

Write-back and delivery share one process, so they share its CPU (Python runs
one thread at a time) and, on SQLite, the database's single writer. Writing
a lead back costs about as much CPU as delivering it, so a writer sending
alongside a pass with a backlog slowed that pass by 13 to 26 %
(``benchmarks/bench_writeback.py``). Outcomes in Salesforce can wait a few
seconds; a lead's call should not. So:

* while no delivery pass of this process is sending, write-back sends freely;
* while one is, write-back watches the process's CPU for :data:`PROBE`: below
  :data:`CPU_BOUND` the pass is waiting (for SimZ, or for its rate limit, as
  it mostly does in production), and write-back sends; otherwise it watches
  again, until the pass ends;
* once one has been sending for :data:`YIELD_LIMIT` without a break (a long
  backlog) and the CPU stays busy, write-back sends again, one call at a time,
  each followed by a wait of ``(1 - SHARE) / SHARE`` times as long as the call
  took. It then takes at most a :data:`SHARE` of the time while delivery stays
  busy, and the records are still updated during a long burst.

Nothing is lost while write-back waits: its rows are in the durable queue
(:mod:`syncd.adapters.writeback_store`), and it catches up when the pass ends.
A delivery pass marks itself with :meth:`DeliveryActivity.sending`; one
activity per process (:data:`PROCESS`), since what is shared is the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Seconds of continuous delivery after which write-back sends again (paced).
YIELD_LIMIT = 30.0
#: Seconds the writer watches a sending pass before deciding.
PROBE = 0.5
#: Process CPU (in cores) below which a sending pass is waiting, not working (for
#: SimZ, or its rate limit): write-back's CPU then costs delivery nothing.
CPU_BOUND = 0.5
#: Write-back's share of the time while delivery stays busy past the limit.
SHARE = 0.1
#: How often a waiting writer looks at its stop event (seconds).
_STOP_POLL = 0.25


class DeliveryActivity:
    """How many delivery passes of this process are sending, and since when. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._changed = threading.Condition()
        self._active = 0
        self._busy_since: float | None = None

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Mark a delivery pass as sending for the ``with`` block."""
        with self._changed:
            if self._active == 0:
                self._busy_since = self.clock()
            self._active += 1
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1
                if self._active == 0:
                    self._busy_since = None
                    self._changed.notify_all()

    def busy_for(self) -> float | None:
        """Seconds delivery has been sending without a break; None when it is not."""
        with self._changed:
            if self._busy_since is None:
                return None
            return max(0.0, self.clock() - self._busy_since)

    def wait_idle(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until no delivery pass is sending; False after ``timeout`` or on ``stop``."""
        deadline = self.clock() + timeout
        with self._changed:
            while self._active:
                left = deadline - self.clock()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._changed.wait(min(left, _STOP_POLL))
        return True


def pause_after(call_seconds: float, share: float = SHARE) -> float:
    """How long write-back waits after a call it made while delivery stayed busy."""
    return max(0.0, call_seconds) * (1 - share) / share


class GiveWay:
    """One writer's manners: call :meth:`before_call` before each write-back call.

    :meth:`record_call` tells it how long the last call took, for the pacing
    past ``limit``. The seconds it waited are added to ``waited``. ``cpu`` is
    the process's CPU clock (seconds), read to tell a pass that works from one
    that waits.
    """

    def __init__(
        self,
        activity: DeliveryActivity,
        *,
        limit: float = YIELD_LIMIT,
        share: float = SHARE,
        cpu: Callable[[], float] = time.process_time,
        probe: float = PROBE,
        cpu_bound: float = CPU_BOUND,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.activity = activity
        self.limit = limit
        self.share = share
        self.cpu = cpu
        self.probe = probe
        self.cpu_bound = cpu_bound
        self.last_call = 0.0
        self.waited = 0.0

    def before_call(self, stop: threading.Event | None = None) -> None:
        """Return when write-back may make its next call (or ``stop`` is set)."""
        if self.activity.busy_for() is None:
            return
        started = self.activity.clock()
        try:
            while True:
                busy = self.activity.busy_for()
                if busy is None or _stopped(stop):
                    return
                if busy >= self.limit:
                    break
                if self._pass_ends_or_cpu_is_free(min(self.probe, self.limit - busy), stop):
                    return
            self.activity.wait_idle(pause_after(self.last_call, self.share), stop)
        finally:
            self.waited += self.activity.clock() - started

    def _pass_ends_or_cpu_is_free(self, seconds: float, stop: threading.Event | None) -> bool:
        """Wait ``seconds`` for the pass to end; else, whether the process used little CPU."""
        cpu, wall = self.cpu(), self.activity.clock()
        if self.activity.wait_idle(seconds, stop) or _stopped(stop):
            return True
        elapsed = self.activity.clock() - wall
        return elapsed > 0 and (self.cpu() - cpu) / elapsed < self.cpu_bound

    def record_call(self, seconds: float) -> None:
        self.last_call = seconds


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


#: This process's delivery activity (the deliver job marks it, writers give way to it).
PROCESS = DeliveryActivity()

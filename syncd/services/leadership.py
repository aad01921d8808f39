"""Which replica runs each sync: one lease per sync, renewed in the background.

Several ``syncd run`` processes may share one PostgreSQL database. For each
enabled sync, exactly one of them -- the holder of the lease ``sync:<name>``
(:mod:`syncd.adapters.leases`) -- runs its poll and its delivery; the others
skip those jobs at once and keep trying to take the lease over.

Timing, with ``ttl`` the lease's time to live (``daemon.lease_ttl``, by default
two poll intervals and at least 10s; for a sync in stream mode, derived from
``source.failover_within``, see below):

* every replica runs one round every ``ttl / 4``: the holder renews
  (``expires_at = db now + ttl``), the others try to acquire;
* the holder trusts its lease locally only for ``ttl / 2`` after the start of
  its last successful renewal (a monotonic clock, no database needed). Past
  that, or at once when a renewal fails (database unreachable), it stops
  polling and claiming: :meth:`Leadership.stop_event` is set, which makes the
  poll stop paging and the delivery abandon a claimed batch *before* its POST;
* a dead holder's lease expires ``ttl`` after its last renewal and is taken
  within one more round: the **takeover bound** is ``ttl + ttl / 4``
  (:func:`takeover_bound`). Between the holder's local deadline and the
  expiry there is ``ttl / 2`` for a POST already on the wire to finish.

A streamed sync promises more: a new leader's stream is open again within
``source.failover_within`` (30s) of the old leader's death. Its lease is the
longest whose takeover bound, plus :data:`STREAM_RESUME_ALLOWANCE` for the heir
to log in and subscribe, fits in it: ``ttl = (failover_within - 5s) / 1.25``,
20s by default (:func:`stream_lease_ttl`, :func:`stream_failover_bound`). The
heir resumes after the replay id the old leader stored, so events published
meanwhile come then.

Delivery is *led*, not shared: only the holder delivers a sync's leads. That
makes recovery exact: whoever acquires a lease anew (token + 1) turns the
sync's ``sending`` leads into ``uncertain`` in the same transaction -- the
previous holder is gone or has lost the lease, so those batches are nobody's,
and they may have reached SimZ. A live replica's in-flight batch is never
touched, because its lease is not expired. Each claim also checks the lease
(holder, token, expiry, shared row lock) in the claim's own transaction
(:meth:`Leadership.fence`), so a replica whose lease is gone, or whose database
connection failed, claims nothing and therefore POSTs nothing.

A holder that lapsed locally but whose lease row is still its own (same token,
not expired) simply renews it and goes on: nobody else can have acted meanwhile.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import leases, outbox
from syncd.adapters.orm import Lead, utcnow
from syncd.config.models import DaemonConfig, SyncConfig
from syncd.domain.states import LeadState
from syncd.logs import get_logger
from syncd.metrics import LEASE_TAKEOVERS, SYNC_LEADER

log = get_logger(__name__)

#: Shortest default lease: a 1s poll interval must not mean a 2s lease.
MIN_DEFAULT_TTL = timedelta(seconds=10)
#: Rounds per ttl (renew or try to acquire).
ROUNDS_PER_TTL = 4
#: Share of the ttl the holder trusts its lease after a renewal started.
LOCAL_SHARE = 0.5
#: Time an heir takes from holding a streamed sync's lease to its stream being open:
#: noticing the lease (every 0.5s), a Salesforce login, GetTopic and Subscribe.
STREAM_RESUME_ALLOWANCE = timedelta(seconds=5)
TAKEOVER_REASON = "lease taken over: the batch's replica died or lost its lease while in flight"


def default_replica_id() -> str:
    """``hostname-pid-random``: unique per process, readable in ``syncd status``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def lease_ttl(daemon: DaemonConfig, sync: SyncConfig) -> timedelta:
    """The lease of ``sync``: see the module docstring.

    A poll's lease is ``daemon.lease_ttl``, or two poll intervals (at least 10s):
    a takeover within a poll or two is as good as the poll itself. A stream
    brings records within a second, so its lease comes from
    ``source.failover_within`` (:func:`stream_lease_ttl`); ``daemon.lease_ttl``
    only shortens it, never breaks that promise.
    """
    if sync.streamed:
        derived = stream_lease_ttl(sync.source.failover_within)
        return derived if daemon.lease_ttl is None else min(daemon.lease_ttl, derived)
    if daemon.lease_ttl is not None:
        return daemon.lease_ttl
    return max(2 * sync.schedule.nominal_interval, MIN_DEFAULT_TTL)


def stream_lease_ttl(failover_within: timedelta) -> timedelta:
    """The longest lease whose :func:`stream_failover_bound` is ``failover_within``."""
    rounds = 1 + 1 / ROUNDS_PER_TTL
    return (failover_within - STREAM_RESUME_ALLOWANCE) / rounds


def renew_every(ttl: timedelta) -> timedelta:
    return ttl / ROUNDS_PER_TTL


def takeover_bound(ttl: timedelta) -> timedelta:
    """Longest time from a holder's last renewal to another replica holding the lease."""
    return ttl + renew_every(ttl)


def stream_failover_bound(ttl: timedelta) -> timedelta:
    """Longest time from a stream leader's death to its heir's stream being open again."""
    return takeover_bound(ttl) + STREAM_RESUME_ALLOWANCE


class LeaseBoundStop(threading.Event):
    """A stop event that is also set while this replica does not lead the sync.

    The poll and delivery services only call ``is_set`` and ``wait``; both look
    at the daemon's ``stop`` and at the lease, so losing the lease stops a
    poll between pages and a delivery before its next POST.
    """

    def __init__(self, stop: threading.Event | None, leading: Callable[[], bool]) -> None:
        super().__init__()
        self._stop = stop
        self._leading = leading

    def is_set(self) -> bool:
        return (self._stop is not None and self._stop.is_set()) or not self._leading()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


@dataclass
class _Held:
    token: int
    valid_until: float  # monotonic seconds


class Leadership:
    """This replica's leases: renewed by a background thread, read by the jobs."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        syncs: Sequence[SyncConfig],
        daemon: DaemonConfig,
        *,
        replica: str | None = None,
        force_first: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = session_factory
        self.syncs = [sync for sync in syncs if sync.enabled]
        self.replica = replica or daemon.replica_id or default_replica_id()
        self.ttls = {sync.name: lease_ttl(daemon, sync) for sync in self.syncs}
        shortest = min(self.ttls.values(), default=MIN_DEFAULT_TTL)
        self.period = renew_every(shortest).total_seconds()
        self.started_at = now()
        self._force = force_first
        self._mono = monotonic
        self._held: dict[str, _Held] = {}
        self._reported: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reads

    def is_leader(self, sync: str) -> bool:
        """True while this replica's lease on ``sync`` is locally trusted."""
        with self._lock:
            held = self._held.get(sync)
            return held is not None and self._mono() < held.valid_until

    def leading(self) -> list[str]:
        return [sync.name for sync in self.syncs if self.is_leader(sync.name)]

    def stop_event(self, sync: str, stop: threading.Event | None) -> threading.Event:
        """``stop`` or "no longer the leader of ``sync``", for the poll and delivery."""
        return LeaseBoundStop(stop, lambda: self.is_leader(sync))

    def fence(self, sync: str) -> Callable[[Session], bool]:
        """A check for a claim's transaction: the lease is still ours, token and all."""

        def check(session: Session) -> bool:
            with self._lock:
                held = self._held.get(sync)
                valid = held is not None and self._mono() < held.valid_until
            if held is None or not valid:
                return False
            return leases.holds(session, leases.sync_lease(sync), self.replica, held.token)

        return check

    # ------------------------------------------------------------------ rounds

    def tick(self) -> None:
        """One round: heartbeat, then renew or try to acquire every sync's lease."""
        try:
            with self.sessions.begin() as session:
                leases.heartbeat(
                    session,
                    self.replica,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=self.started_at,
                    ttl=max(self.ttls.values(), default=MIN_DEFAULT_TTL),
                )
        except Exception as exc:
            log.warning("replica heartbeat failed", error=_first_line(exc))
        for sync in self.syncs:
            self._round(sync)
        self._force = False

    def _round(self, sync: SyncConfig) -> None:
        name = leases.sync_lease(sync.name)
        ttl = self.ttls[sync.name]
        with self._lock:
            held = self._held.get(sync.name)
        started = self._mono()
        recovered = 0
        try:
            with self.sessions.begin() as session:
                grant = None
                if held is not None:
                    grant = leases.acquire(session, name, self.replica, ttl, token=held.token)
                if grant is None:
                    grant = leases.acquire(session, name, self.replica, ttl, force=self._force)
                if grant is not None and grant.new:
                    recovered = outbox.recover_in_flight(
                        session, grant.db_now, TAKEOVER_REASON, sync_name=sync.name
                    )
        except Exception as exc:
            # Database trouble: stop polling and claiming at once; keep the token,
            # so a renewal succeeds if the lease is still ours when it is back.
            with self._lock:
                if sync.name in self._held:
                    self._held[sync.name].valid_until = 0.0
            log.warning("lease renewal failed", sync=sync.name, error=_first_line(exc))
            self._report(sync.name)
            return
        with self._lock:
            if grant is None:
                self._held.pop(sync.name, None)
            else:
                local = ttl.total_seconds() * LOCAL_SHARE
                self._held[sync.name] = _Held(grant.lease.token, started + local)
        if grant is not None and grant.new:
            if grant.previous_holder is not None:
                LEASE_TAKEOVERS.labels(sync.name).inc()
            log.info(
                "sync lease acquired",
                sync=sync.name,
                replica=self.replica,
                fencing_token=grant.lease.token,
                previous_holder=grant.previous_holder,
                expires_at=grant.lease.expires_at.isoformat(),
            )
            if recovered:
                log.error(
                    "in-flight leads marked uncertain",
                    sync=sync.name,
                    leads=recovered,
                    reason=TAKEOVER_REASON,
                    action="check SimZ, then `syncd requeue` the leads it did not receive",
                )
        self._report(sync.name, acquired=grant is not None and grant.new)

    def _report(self, sync: str, acquired: bool = False) -> None:
        """Log and export changes of leadership (the gauge follows every round)."""
        leading = self.is_leader(sync)
        SYNC_LEADER.labels(sync).set(1 if leading else 0)
        before = self._reported.get(sync)
        self._reported[sync] = leading
        if before and not leading:
            log.warning(
                "sync leadership lost: polling and delivery stop here",
                sync=sync,
                replica=self.replica,
            )
        elif not leading and before is None:
            log.info("sync led by another replica", sync=sync, replica=self.replica)
        elif leading and before is False and not acquired:
            log.info("sync lease renewed after a lapse", sync=sync, replica=self.replica)

    def recover_orphans(self) -> int:
        """Leads left ``sending`` by syncs no replica of this config runs (e.g. removed).

        Each is recovered under its lease (acquired, then released), so a replica
        that still runs that sync and holds its lease is never interfered with.
        """
        configured = {sync.name for sync in self.syncs}
        with self.sessions.begin() as session:
            names = set(
                session.scalars(
                    select(Lead.sync_name).where(Lead.state == LeadState.SENDING.value).distinct()
                )
            )
        total = 0
        for name in sorted(names - configured):
            lease = leases.sync_lease(name)
            with self.sessions.begin() as session:
                grant = leases.acquire(session, lease, self.replica, MIN_DEFAULT_TTL)
                if grant is None:
                    continue
                count = outbox.recover_in_flight(
                    session, grant.db_now, TAKEOVER_REASON, sync_name=name
                )
                leases.release(session, lease, self.replica, grant.lease.token)
            total += count
            if count:
                log.error(
                    "in-flight leads marked uncertain",
                    sync=name,
                    leads=count,
                    reason=TAKEOVER_REASON,
                    action="check SimZ, then `syncd requeue` the leads it did not receive",
                )
        return total

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """First round now (so the first poll finds its lease), then one every period."""
        try:
            self.recover_orphans()
        except Exception as exc:
            log.warning("recovery of unowned in-flight leads failed", error=_first_line(exc))
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="syncd-leases", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closing.wait(self.period):
            try:
                self.tick()
            except Exception:  # never let the renewer die silently
                log.exception("lease round failed")

    def close(self, release: bool = True) -> None:
        """Stop renewing; with ``release``, let our leases expire now (a clean stop)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            held = dict(self._held)
            self._held.clear()
        if not release:
            return
        try:
            with self.sessions.begin() as session:
                for sync, lease in held.items():
                    leases.release(session, leases.sync_lease(sync), self.replica, lease.token)
                leases.forget_replica(session, self.replica)
        except Exception as exc:
            log.warning("could not release leases; they expire on their own", error=str(exc))
        for sync in held:
            SYNC_LEADER.labels(sync).set(0)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"

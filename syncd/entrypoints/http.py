"""The probe port: ``/healthz``, ``/readyz``, ``/status.json`` and ``/metrics``.

One asyncio loop in a daemon thread (:class:`ProbeServer`, a
:class:`~syncd.entrypoints.http_loop.LoopServer`): four read-only endpoints need
no framework, a probe can never keep the process alive at exit,
and slow or hostile clients cannot use up threads or file descriptors.

* ``/healthz`` -- 200 ``{"status": "ok"}`` while the process answers at all
  (liveness and start-up probes).
* ``/readyz`` -- can this replica serve? 200 unless the database is unreachable
  or the process is stopping, else 503 (the readiness probe; see
  :data:`SERVING_CHECKS`). Business state stays out of it: held leads, failing
  polls or a refused API key are the same on every replica, and a readiness
  that failed on them would take every replica out at once and block node
  drains and rollouts behind a disruption budget.
* ``/status.json`` -- every check, for people and blackbox alerting: 200 when
  all pass, else 503 with each failing check and why (see :class:`Readiness`).
  Never a probe.
* ``/metrics`` -- the Prometheus text of :data:`syncd.metrics.REGISTRY`.
* anything else -- 404.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from syncd.adapters.salesforce import LoginBackoff
from syncd.entrypoints.http_loop import Answer, LoopServer, Request
from syncd.entrypoints.scheduler import PollTracker
from syncd.logs import get_logger
from syncd.metrics import REGISTRY

log = get_logger("syncd.http")

#: A 401 pause: the API key itself was refused, so nothing can be delivered.
_AUTH_PAUSES = "SELECT COUNT(*) FROM pauses WHERE scope = 'api_key' AND http_status = 401"
#: Operator pauses (``syncd pause``): reported in the body, never a reason to be unready.
_OPERATOR_PAUSES = (
    "SELECT scope, name, reason, paused_by FROM operator_pauses ORDER BY paused_at, scope, name"
)
#: Leads the blast-radius guard holds, per sync: an operator must release or discard them.
_HELD = "SELECT sync_name, COUNT(*) FROM leads WHERE state = 'held' GROUP BY sync_name"

#: The checks of ``/readyz``: this replica can serve. The port opens only once the
#: configuration is loaded and valid, so ``config`` is ok whenever it answers.
SERVING_CHECKS = ("config", "database", "shutdown")
#: Where the readiness answer points people for the other checks.
STATUS_PATH = "/status.json"


@dataclass
class ReadyReport:
    """The outcome of the checks: ``failing`` maps check name -> reason."""

    checks: dict[str, str] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)
    paused: list[dict[str, str]] = field(default_factory=list)
    #: Per streamed sync: connected, last event age, replay lag, reconnects, gaps.
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.failing

    def fail(self, check: str, reason: str) -> None:
        self.checks[check] = "failing"
        self.failing[check] = reason

    def ok(self, check: str) -> None:
        self.checks.setdefault(check, "ok")

    def body(self) -> dict[str, Any]:
        """The ``/status.json`` answer: every check, the operator pauses, the streams."""
        body = self.readiness_body()
        del body["details"]
        body["status"] = "ok" if self.ready else "failing"
        body["paused"] = self.paused
        if self.streams:
            body["streams"] = self.streams
        return body

    def readiness_body(self) -> dict[str, Any]:
        """The ``/readyz`` answer: the serving checks and where the others are."""
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": self.checks,
            "failing": [{"check": name, "reason": why} for name, why in self.failing.items()],
            "details": STATUS_PATH,
        }


class Readiness:
    """Can this replica serve (:meth:`serving`), and is the daemon doing its job (a call)?

    :meth:`serving` answers ``/readyz`` with :data:`SERVING_CHECKS` only:
    ``config``, ``database`` (``SELECT 1`` answers) and ``shutdown`` (fails once
    ``stop`` is set: a signal arrived). Calling the
    object answers ``/status.json`` with every check, each named in the answer:

    * ``config``, ``database`` and ``shutdown`` as above;
    * ``simz_auth`` -- no API key is paused after a 401 (delivery cannot proceed
      until an operator fixes the key);
    * ``poll:<sync>`` -- each enabled sync polled successfully within three poll
      intervals (:meth:`PollTracker.stale`);
    * ``salesforce_login`` -- logins are not held back after refusals (the
      reason names the last refusal and the next attempt);
    * ``stream:<sync>`` -- each streamed sync's Pub/Sub stream, where this
      replica leads the sync, has not been disconnected for more than two minutes;
    * ``held:<sync>`` -- fails while the blast-radius guard holds leads of a
      sync polled here (until ``syncd release`` or ``syncd discard``).

    Operator pauses (``syncd pause``) are listed under ``paused`` in the body but
    leave the daemon ready: it is doing what it was told.

    The checks past the serving ones describe the syncs, not this replica: the
    same on every replica, already in the metrics and ``syncd status``. They
    never make a replica unready, so a node drain or a rollout is never blocked
    until an operator acts.

    The SQL runs on a raw DBAPI connection, outside SQLAlchemy's transaction
    events: on SQLite those issue ``BEGIN IMMEDIATE``, which would make a probe
    queue behind the writers for the whole busy timeout.
    """

    def __init__(
        self,
        engine: Engine,
        tracker: PollTracker,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        credentials: list[str] | None = None,
        stop: threading.Event | None = None,
        login_backoff: LoginBackoff | None = None,
        streams: Callable[[], dict[str, str | None]] | None = None,
        stream_state: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.streams = streams
        self.stream_state = stream_state
        self.engine = engine
        self.login_backoff = login_backoff
        self.stop = stop
        self.tracker = tracker
        self.now = now
        self.sql = _AUTH_PAUSES
        if credentials is not None:
            # Only this daemon's keys count (another config may share the database).
            # Fingerprints are hex, checked here, so inlining them is safe and
            # keeps the SQL free of driver-specific parameter styles.
            hexes = [c for c in credentials if re.fullmatch(r"[0-9a-f]{1,64}", c)]
            listed = ", ".join(f"'{c}'" for c in hexes) or "''"
            self.sql = f'{_AUTH_PAUSES} AND "key" IN ({listed})'

    def serving(self) -> ReadyReport:
        """``/readyz``: the configuration is loaded, the database answers, no signal yet."""
        report = ReadyReport()
        self._serving_checks(report)
        try:
            self._ping()
        except Exception as exc:  # any driver error means: not ready
            report.fail("database", _first_line(exc))
        else:
            report.ok("database")
        return report

    def _serving_checks(self, report: ReadyReport) -> None:
        report.ok("config")
        if self.stop is not None and self.stop.is_set():
            report.fail("shutdown", "syncd is stopping")
        else:
            report.ok("shutdown")

    def __call__(self) -> ReadyReport:
        """``/status.json``: every check."""
        report = ReadyReport()
        self._serving_checks(report)
        held: dict[str, int] = {}
        try:
            auth_pauses, report.paused, held = self._query_database()
        except Exception as exc:  # any driver error means: the database check fails
            report.fail("database", _first_line(exc))
            report.checks.setdefault("simz_auth", "unknown")
        else:
            report.ok("database")
            if auth_pauses:
                report.fail("simz_auth", "the SimZ API key was refused (401); delivery is paused")
            else:
                report.ok("simz_auth")
        if self.login_backoff is not None:
            problem = self.login_backoff.problem(self.now())
            if problem is not None:
                report.fail("salesforce_login", f"Salesforce {problem}")
            else:
                report.ok("salesforce_login")
        stale = self.tracker.stale(self.now())
        for name in self.tracker.snapshot():
            if name in stale:
                report.fail(f"poll:{name}", stale[name])
            else:
                report.ok(f"poll:{name}")
            if held.get(name):
                report.fail(
                    f"held:{name}",
                    f"{held[name]} new leads held by the blast-radius guard: "
                    f"`syncd release --sync {name}` or `syncd discard --sync {name}`",
                )
        if self.streams is not None:
            for name, problem in self.streams().items():
                if problem is None:
                    report.ok(f"stream:{name}")
                else:
                    report.fail(f"stream:{name}", problem)
        if self.stream_state is not None:
            report.streams = self.stream_state()
        return report

    def _ping(self) -> None:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
            finally:
                cursor.close()
            connection.rollback()
        finally:
            connection.close()

    def _query_database(self) -> tuple[int, list[dict[str, str]], dict[str, int]]:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
                cursor.execute(self.sql)
                row = cursor.fetchone()
                cursor.execute(_OPERATOR_PAUSES)
                holds = cursor.fetchall()
                cursor.execute(_HELD)
                held = {str(name): int(count) for name, count in cursor.fetchall()}
            finally:
                cursor.close()
            connection.rollback()
        finally:
            connection.close()
        paused = [
            {"scope": str(scope), "name": str(name), "reason": str(why), "by": str(by)}
            for scope, name, why, by in holds
        ]
        return (int(row[0]) if row else 0), paused, held


def _first_line(exc: Exception) -> str:
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


#: Seconds /readyz and /metrics may take before the answer is 503 (a hung database).
COMPUTE_TIMEOUT = 10.0


class ProbeServer(LoopServer):
    """Answers probes from one asyncio loop in a daemon thread, whatever the clients do.

    A slow or silent client costs a socket and a coroutine, never a thread:
    each has :data:`~syncd.entrypoints.http_loop.REQUEST_TIMEOUT` seconds to
    send its request head, and beyond
    :data:`~syncd.entrypoints.http_loop.MAX_PENDING_CONNECTIONS` unfinished
    requests the oldest is dropped, so a flood of half-sent requests cannot use
    up the process's file descriptors or keep a probe waiting (see
    :class:`~syncd.entrypoints.http_loop.LoopServer`). ``/readyz``,
    ``/status.json`` and ``/metrics`` are computed on worker threads, one
    computation of each at a time shared by every request that asks meanwhile,
    so a slow status page never delays the readiness probe. Each answer closes
    its connection.

    ``readiness`` answers ``/readyz``; ``status`` answers ``/status.json``
    (``readiness`` when not given).
    """

    def __init__(
        self,
        address: tuple[str, int],
        readiness: Callable[[], ReadyReport],
        status: Callable[[], ReadyReport] | None = None,
    ) -> None:
        super().__init__(address, name="syncd-http", workers=3)
        self.readiness = readiness
        self.status = status or readiness
        self._inflight: dict[str, asyncio.Future[Answer]] = {}

    async def answer(self, request: Request) -> Answer:
        return await self._answer(request.method, request.path)

    async def _answer(self, method: str | None, path: str) -> Answer:
        if method is None:
            return Answer.json(400, {"status": "bad request"})
        if method not in ("GET", "HEAD"):
            return Answer.json(405, {"status": "method not allowed"})
        if path == "/healthz":
            return Answer.json(200, {"status": "ok"})
        if path == "/readyz":
            return await self._shared("readyz", self._ready_answer)
        if path == STATUS_PATH:
            return await self._shared("status", self._status_answer)
        if path == "/metrics":
            return await self._shared("metrics", _metrics_answer)
        return Answer.json(404, {"status": "not found", "path": path})

    async def _shared(self, key: str, compute: Callable[[], Answer]) -> Answer:
        """One computation at a time on the worker threads; concurrent askers share it."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._loop.run_in_executor(self._pool, compute))
            self._inflight[key] = future
            future.add_done_callback(lambda _done: self._inflight.pop(key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(future), COMPUTE_TIMEOUT)
        except TimeoutError:
            reason = f"{key} took longer than {COMPUTE_TIMEOUT:g} s"
            return Answer.json(
                503, {"status": "not ready", "failing": [{"check": "internal", "reason": reason}]}
            )

    def _ready_answer(self) -> Answer:
        try:
            report = self.readiness()
        except Exception as exc:
            log.exception("readiness check failed")
            return _internal_error("not ready", repr(exc))
        return Answer.json(200 if report.ready else 503, report.readiness_body())

    def _status_answer(self) -> Answer:
        try:
            report = self.status()
        except Exception as exc:
            log.exception("status checks failed")
            return _internal_error("failing", repr(exc))
        return Answer.json(200 if report.ready else 503, report.body())


def _internal_error(status: str, reason: str) -> Answer:
    return Answer.json(
        503, {"status": status, "failing": [{"check": "internal", "reason": reason}]}
    )


def _metrics_answer() -> Answer:
    return Answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))


def serve(
    host: str,
    port: int,
    readiness: Callable[[], ReadyReport],
    status: Callable[[], ReadyReport] | None = None,
) -> ProbeServer:
    """Bind ``host:port`` and answer probes from a daemon thread; raises ``OSError`` if taken.

    ``readiness`` answers ``/readyz`` (``Readiness.serving``), ``status`` the
    ``/status.json`` page (a :class:`Readiness` itself).
    """
    server = ProbeServer((host, port), readiness, status)
    server.start()
    return server

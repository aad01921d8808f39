"""The daemon's one HTTP port: ``/healthz``, ``/readyz``, ``/status.json`` and ``/metrics``.

One asyncio loop in a daemon thread (:class:`ProbeServer`): four read-only
endpoints need no framework, a probe can never keep the process alive at exit,
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
import errno
import json
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from syncd.adapters.salesforce import LoginBackoff
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


#: Connections still sending their request beyond this many: the oldest is dropped.
MAX_PENDING_CONNECTIONS = 64
#: Seconds a client gets to send its request line and headers, and to take the answer.
REQUEST_TIMEOUT = 5.0
#: Seconds /readyz and /metrics may take before the answer is 503 (a hung database).
COMPUTE_TIMEOUT = 10.0
#: The longest request head (request line and headers) read.
MAX_REQUEST_HEAD = 8192
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {503: "Service Unavailable"}


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    body: bytes

    @staticmethod
    def json(status: int, body: dict[str, Any]) -> _Answer:
        return _Answer(status, "application/json", json.dumps(body).encode() + b"\n")


class ProbeServer:
    """Answers probes from one asyncio loop in a daemon thread, whatever the clients do.

    A slow or silent client costs a socket and a coroutine, never a thread:
    each has :data:`REQUEST_TIMEOUT` seconds to send its request head, and
    beyond :data:`MAX_PENDING_CONNECTIONS` unfinished requests the oldest is
    dropped, so a flood of half-sent requests cannot use up the process's file
    descriptors or keep a probe waiting. ``/readyz``, ``/status.json`` and
    ``/metrics`` are computed on worker threads, one computation of each at a
    time shared by every request that asks meanwhile, so a slow status page
    never delays the readiness probe. Each answer closes its connection.

    ``readiness`` answers ``/readyz``; ``status`` answers ``/status.json``
    (``readiness`` when not given).
    """

    def __init__(
        self,
        address: tuple[str, int],
        readiness: Callable[[], ReadyReport],
        status: Callable[[], ReadyReport] | None = None,
    ) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Binds here, so a port that is taken raises OSError to the caller.
        self._sock = socket.create_server((host, port), family=family, backlog=128)
        self.readiness = readiness
        self.status = status or readiness
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="syncd-http")
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        # Connections still sending their request (oldest first), and all open ones.
        self._pending: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._open: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._inflight: dict[str, asyncio.Future[_Answer]] = {}

    @property
    def address(self) -> str:
        """``host:port`` actually bound (the port is chosen by the OS when 0 was asked)."""
        host, port = self._sock.getsockname()[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="syncd-http", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def close(self) -> None:
        if self._thread is not None:
            stopping = self._stopping
            if stopping is not None:
                self._loop.call_soon_threadsafe(stopping.set)
            self._thread.join(timeout=5)
            self._thread = None
        if not self._loop.is_running():
            self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        asyncio.get_running_loop().set_exception_handler(_quiet_when_out_of_descriptors)
        # backlog: connections accepted per wake-up of the listening socket. With
        # asyncio's default (100), bursts of a flood piled up past a 256-descriptor
        # limit before the oldest pending ones were dropped.
        server = await asyncio.start_server(
            self._connection,
            sock=self._sock,
            limit=MAX_REQUEST_HEAD,
            backlog=MAX_PENDING_CONNECTIONS,
        )
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            # Connections still open end here, not as "destroyed but pending" at loop close.
            for writer in list(self._open.values()):
                writer.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=1.0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        try:
            await self._exchange(task, reader, writer)
        finally:
            self._open.pop(task, None)

    async def _exchange(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._pending[task] = writer
        if len(self._pending) > MAX_PENDING_CONNECTIONS:
            # Aborting ends the oldest one's read with IncompleteReadError (handled below).
            self._pending.pop(next(iter(self._pending))).transport.abort()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.transport.abort()
            return
        finally:
            self._pending.pop(task, None)
        try:
            method, path = _request_line(head)
            answer = await self._answer(method, path)
            writer.write(_response(answer, include_body=method != "HEAD"))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
            writer.close()
        except (TimeoutError, OSError):
            writer.transport.abort()

    async def _answer(self, method: str | None, path: str) -> _Answer:
        if method is None:
            return _Answer.json(400, {"status": "bad request"})
        if method not in ("GET", "HEAD"):
            return _Answer.json(405, {"status": "method not allowed"})
        if path == "/healthz":
            return _Answer.json(200, {"status": "ok"})
        if path == "/readyz":
            return await self._shared("readyz", self._ready_answer)
        if path == STATUS_PATH:
            return await self._shared("status", self._status_answer)
        if path == "/metrics":
            return await self._shared("metrics", _metrics_answer)
        return _Answer.json(404, {"status": "not found", "path": path})

    async def _shared(self, key: str, compute: Callable[[], _Answer]) -> _Answer:
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
            return _Answer.json(
                503, {"status": "not ready", "failing": [{"check": "internal", "reason": reason}]}
            )

    def _ready_answer(self) -> _Answer:
        try:
            report = self.readiness()
        except Exception as exc:
            log.exception("readiness check failed")
            return _internal_error("not ready", repr(exc))
        return _Answer.json(200 if report.ready else 503, report.readiness_body())

    def _status_answer(self) -> _Answer:
        try:
            report = self.status()
        except Exception as exc:
            log.exception("status checks failed")
            return _internal_error("failing", repr(exc))
        return _Answer.json(200 if report.ready else 503, report.body())


def _internal_error(status: str, reason: str) -> _Answer:
    return _Answer.json(
        503, {"status": status, "failing": [{"check": "internal", "reason": reason}]}
    )


def _metrics_answer() -> _Answer:
    return _Answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))


def _request_line(head: bytes) -> tuple[str | None, str]:
    """(method, path without query) of a request head; method None when unreadable."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        return None, ""
    return parts[0], parts[1].split("?", 1)[0]


def _response(answer: _Answer, *, include_body: bool) -> bytes:
    head = (
        f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}\r\n"
        f"Server: syncd\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (answer.body if include_body else b"")


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


def _quiet_when_out_of_descriptors(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """A flood that reaches the process's descriptor limit is not an error worth a traceback.

    asyncio already stops accepting for a second when ``accept()`` fails with
    EMFILE or ENFILE, and open connections are bounded (``MAX_PENDING_CONNECTIONS``);
    the probes answer again as soon as descriptors free up. Anything else goes to
    asyncio's own handler.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        log.debug("probe server out of file descriptors: accepting paused", error=str(exc))
        return
    loop.default_exception_handler(context)

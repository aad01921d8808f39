"""The daemon's one HTTP port: ``/healthz``, ``/readyz`` and ``/metrics``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: three read-only endpoints
need no framework, and a probe can never keep the process alive at exit.

* ``/healthz`` -- 200 ``{"status": "ok"}`` while the process answers at all.
* ``/readyz`` -- 200 when every check passes, else 503; the JSON body lists each
  check and, for failures, why (see :class:`Readiness`).
* ``/metrics`` -- the Prometheus text of :data:`syncd.metrics.REGISTRY`.
* anything else -- 404.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from syncd.entrypoints.scheduler import PollTracker
from syncd.logs import get_logger
from syncd.metrics import REGISTRY

log = get_logger("syncd.http")

#: A 401 pause: the API key itself was refused, so nothing can be delivered.
_AUTH_PAUSES = "SELECT COUNT(*) FROM pauses WHERE scope = 'api_key' AND http_status = 401"


@dataclass
class ReadyReport:
    """The outcome of the readiness checks: ``failing`` maps check name -> reason."""

    checks: dict[str, str] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)
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
        body: dict[str, Any] = {
            "status": "ready" if self.ready else "not ready",
            "checks": self.checks,
            "failing": [{"check": name, "reason": why} for name, why in self.failing.items()],
        }
        if self.streams:
            body["streams"] = self.streams
        return body


class Readiness:
    """Is the daemon doing its job? Three checks, each named in the answer.

    * ``database`` -- ``SELECT 1`` answers;
    * ``simz_auth`` -- no API key is paused after a 401 (delivery cannot proceed
      until an operator fixes the key);
    * ``poll:<sync>`` -- each enabled sync polled successfully within three poll
      intervals (:meth:`PollTracker.stale`);
    * ``stream:<sync>`` -- each streamed sync's Pub/Sub stream, where this
      replica leads the sync, has not been disconnected for more than two minutes;
    * ``shutdown`` -- fails once ``stop`` is set (a signal arrived).

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
        streams: Callable[[], dict[str, str | None]] | None = None,
        stream_state: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.streams = streams
        self.stream_state = stream_state
        self.engine = engine
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

    def __call__(self) -> ReadyReport:
        report = ReadyReport()
        if self.stop is not None and self.stop.is_set():
            report.fail("shutdown", "syncd is stopping")
        try:
            auth_pauses = self._query_database()
        except Exception as exc:  # any driver error means: not ready
            first = str(exc).strip().splitlines()
            report.fail("database", f"{type(exc).__name__}: {first[0] if first else ''}")
            report.checks.setdefault("simz_auth", "unknown")
        else:
            report.ok("database")
            if auth_pauses:
                report.fail("simz_auth", "the SimZ API key was refused (401); delivery is paused")
            else:
                report.ok("simz_auth")
        stale = self.tracker.stale(self.now())
        for name in self.tracker.snapshot():
            if name in stale:
                report.fail(f"poll:{name}", stale[name])
            else:
                report.ok(f"poll:{name}")
        if self.streams is not None:
            for name, problem in self.streams().items():
                if problem is None:
                    report.ok(f"stream:{name}")
                else:
                    report.fail(f"stream:{name}", problem)
        if self.stream_state is not None:
            report.streams = self.stream_state()
        return report

    def _query_database(self) -> int:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
                cursor.execute(self.sql)
                row = cursor.fetchone()
            finally:
                cursor.close()
            connection.rollback()
        finally:
            connection.close()
        return int(row[0]) if row else 0


class _Handler(BaseHTTPRequestHandler):
    server: ProbeServer
    server_version = "syncd"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            try:
                report = self.server.readiness()
            except Exception as exc:
                log.exception("readiness check failed")
                self._json(
                    503,
                    {
                        "status": "not ready",
                        "failing": [{"check": "internal", "reason": repr(exc)}],
                    },
                )
                return
            self._json(200 if report.ready else 503, report.body())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        else:
            self._json(404, {"status": "not found", "path": path})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body).encode() + b"\n")

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these every few seconds; an access log line each would drown the rest.
        return


class ProbeServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that knows how to answer ``/readyz``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], readiness: Callable[[], ReadyReport]) -> None:
        super().__init__(address, _Handler)
        self.readiness = readiness
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` actually bound (the port is chosen by the OS when 0 was asked)."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="syncd-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


def serve(host: str, port: int, readiness: Callable[[], ReadyReport]) -> ProbeServer:
    """Bind ``host:port`` and answer probes from a daemon thread; raises ``OSError`` if taken."""
    server = ProbeServer((host, port), readiness)
    server.start()
    return server

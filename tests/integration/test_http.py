"""The probe server over real HTTP, its readiness checks over a real database (both backends)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine

from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Pause
from syncd.config import SyncConfig
from syncd.entrypoints.http import ProbeServer, Readiness, ReadyReport, serve
from syncd.entrypoints.scheduler import PollTracker
from syncd.metrics import POLLS

CREDENTIAL = "62af8704764f"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def make_sync(name: str = "web") -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone"},
            "schedule": {"every": "60s"},
        }
    )


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def add_pause(engine: Engine, status: int, key: str = CREDENTIAL, scope: str = "api_key") -> None:
    with make_session_factory(engine).begin() as session:
        session.add(
            Pause(
                scope=scope,
                key=key,
                reason=f"HTTP {status}",
                http_status=status,
                paused_until=datetime.now(UTC) + timedelta(hours=1),
            )
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(clock: Clock) -> PollTracker:
    return PollTracker([make_sync()], clock)


@pytest.fixture
def readiness(engine: Engine, tracker: PollTracker, clock: Clock) -> Readiness:
    return Readiness(engine, tracker, clock, credentials=[CREDENTIAL])


@pytest.fixture
def server(readiness: Readiness) -> Iterator[ProbeServer]:
    probe = serve("127.0.0.1", 0, readiness)
    yield probe
    probe.close()


class TestEndpoints:
    def test_healthz(self, server: ProbeServer) -> None:
        """/healthz answers 200 with {"status": "ok"}."""
        status, content_type, body = get(f"http://{server.address}/healthz")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok"}

    def test_readyz_ok(self, server: ProbeServer) -> None:
        """/readyz answers 200 listing every check as ok on a fresh, healthy daemon."""
        status, _, body = get(f"http://{server.address}/readyz")
        assert status == 200
        assert json.loads(body)["checks"] == {
            "database": "ok",
            "simz_auth": "ok",
            "poll:web": "ok",
        }

    def test_metrics(self, server: ProbeServer) -> None:
        """/metrics is the Prometheus text of syncd's registry."""
        POLLS.labels(sync="http-test", status="ok").inc()
        status, content_type, body = get(f"http://{server.address}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert 'syncd_polls_total{status="ok",sync="http-test"}' in body

    def test_unknown_path(self, server: ProbeServer) -> None:
        """Any other path is a 404."""
        status, _, _ = get(f"http://{server.address}/admin")
        assert status == 404

    def test_readyz_503_names_failing_check(self, server: ProbeServer, engine: Engine) -> None:
        """A 401 pause makes /readyz 503 with a body naming the failing check."""
        add_pause(engine, 401)
        status, _, body = get(f"http://{server.address}/readyz")
        assert status == 503
        parsed = json.loads(body)
        assert parsed["status"] == "not ready"
        assert [item["check"] for item in parsed["failing"]] == ["simz_auth"]


class TestReadiness:
    def test_other_pauses_do_not_count(self, readiness: Readiness, engine: Engine) -> None:
        """A 402 pause, an agent pause, or another key's 401 leaves the daemon ready."""
        add_pause(engine, 402)
        add_pause(engine, 401, key=f"{CREDENTIAL}/agt_1", scope="agent")
        add_pause(engine, 401, key="0123456789ab")
        assert readiness().ready

    def test_stale_poll(self, readiness: Readiness, clock: Clock, tracker: PollTracker) -> None:
        """A sync without a successful poll for three intervals makes the daemon not ready."""
        tracker.record("web", "ok", clock())
        clock.at += timedelta(minutes=3)
        assert readiness().ready
        clock.at += timedelta(seconds=1)
        report = readiness()
        assert set(report.failing) == {"poll:web"}

    def test_database_unreachable(self, tracker: PollTracker, clock: Clock) -> None:
        """When the database cannot be opened, the database check fails (no exception)."""
        broken = create_engine("sqlite:////nonexistent-dir/for/sure/syncd.db")
        report: ReadyReport = Readiness(broken, tracker, clock)()
        broken.dispose()
        assert "database" in report.failing
        assert report.checks["simz_auth"] == "unknown"

    def test_not_ready_while_stopping(
        self, engine: Engine, tracker: PollTracker, clock: Clock
    ) -> None:
        """Once the stop event is set, /readyz fails the shutdown check."""
        stop = threading.Event()
        readiness = Readiness(engine, tracker, clock, stop=stop)
        assert readiness().ready
        stop.set()
        assert set(readiness().failing) == {"shutdown"}

    def test_held_leads_make_the_sync_unready(self, readiness: Readiness, engine: Engine) -> None:
        """Leads the blast-radius guard holds fail held:<sync> until they are settled."""
        from sqlalchemy import update

        from syncd.adapters.orm import Lead
        from tests.integration.operator_rows import add_lead, sf_id

        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            add_lead(session, "web", sf_id(1), "held")
            add_lead(session, "other", sf_id(2), "held")  # not a sync of this daemon
        report = readiness()
        assert set(report.failing) == {"held:web"}
        assert "syncd release --sync web" in report.failing["held:web"]
        with sessions.begin() as session:
            session.execute(update(Lead).where(Lead.state == "held").values(state="queued"))
        assert readiness().ready

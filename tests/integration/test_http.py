"""The probe server over real HTTP, its checks over a real database (both backends).

``/readyz`` says whether this replica can serve (configuration, database, not
stopping); every other check is on ``/status.json``, so held leads or failing
polls never take replicas out of service or block a node drain.
"""

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
from tests.clock import Clock

CREDENTIAL = "62af8704764f"


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
    probe = serve("127.0.0.1", 0, readiness.serving, status=readiness)
    yield probe
    probe.close()


class TestEndpoints:
    def test_healthz(self, server: ProbeServer) -> None:
        """/healthz answers 200 with {"status": "ok"}."""
        status, content_type, body = get(f"http://{server.address}/healthz")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok"}

    def test_readyz_ok(self, server: ProbeServer) -> None:
        """/readyz answers 200 with the serving checks only, pointing at /status.json."""
        status, _, body = get(f"http://{server.address}/readyz")
        assert status == 200
        parsed = json.loads(body)
        assert parsed["checks"] == {"config": "ok", "database": "ok", "shutdown": "ok"}
        assert parsed["details"] == "/status.json"

    def test_status_ok(self, server: ProbeServer) -> None:
        """/status.json answers 200 listing every check as ok on a fresh, healthy daemon."""
        status, content_type, body = get(f"http://{server.address}/status.json")
        assert (status, content_type) == (200, "application/json")
        parsed = json.loads(body)
        assert parsed["status"] == "ok"
        assert parsed["checks"] == {
            "config": "ok",
            "database": "ok",
            "shutdown": "ok",
            "simz_auth": "ok",
            "poll:web": "ok",
        }
        assert parsed["paused"] == []

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

    def test_status_503_names_failing_check(self, server: ProbeServer, engine: Engine) -> None:
        """A 401 pause makes /status.json 503 naming the failing check; /readyz stays 200."""
        add_pause(engine, 401)
        status, _, body = get(f"http://{server.address}/status.json")
        assert status == 503
        parsed = json.loads(body)
        assert parsed["status"] == "failing"
        assert [item["check"] for item in parsed["failing"]] == ["simz_auth"]
        assert get(f"http://{server.address}/readyz")[0] == 200

    def test_readyz_503_when_the_database_is_gone(self, tracker: PollTracker, clock: Clock) -> None:
        """An unreachable database makes /readyz 503 naming the database check."""
        broken = create_engine("sqlite:////nonexistent-dir/for/sure/syncd.db")
        checks = Readiness(broken, tracker, clock)
        probe = serve("127.0.0.1", 0, checks.serving, status=checks)
        try:
            status, _, body = get(f"http://{probe.address}/readyz")
        finally:
            probe.close()
            broken.dispose()
        assert status == 503
        parsed = json.loads(body)
        assert parsed["status"] == "not ready"
        assert [item["check"] for item in parsed["failing"]] == ["database"]


class TestReadiness:
    def test_other_pauses_do_not_count(self, readiness: Readiness, engine: Engine) -> None:
        """A 402 pause, an agent pause, or another key's 401 leaves the daemon ready."""
        add_pause(engine, 402)
        add_pause(engine, 401, key=f"{CREDENTIAL}/agt_1", scope="agent")
        add_pause(engine, 401, key="0123456789ab")
        assert readiness().ready

    def test_stale_poll(self, readiness: Readiness, clock: Clock, tracker: PollTracker) -> None:
        """No successful poll for three intervals fails poll:<sync>; the replica stays ready."""
        tracker.record("web", "ok", clock())
        clock.at += timedelta(minutes=3)
        assert readiness().ready
        clock.at += timedelta(seconds=1)
        report = readiness()
        assert set(report.failing) == {"poll:web"}
        assert readiness.serving().ready

    def test_database_unreachable(self, tracker: PollTracker, clock: Clock) -> None:
        """When the database cannot be opened, the database check fails (no exception)."""
        broken = create_engine("sqlite:////nonexistent-dir/for/sure/syncd.db")
        checks = Readiness(broken, tracker, clock)
        report: ReadyReport = checks()
        serving = checks.serving()
        broken.dispose()
        assert "database" in report.failing
        assert report.checks["simz_auth"] == "unknown"
        assert set(serving.failing) == {"database"}

    def test_not_ready_while_stopping(
        self, engine: Engine, tracker: PollTracker, clock: Clock
    ) -> None:
        """Once the stop event is set, /readyz fails the shutdown check."""
        stop = threading.Event()
        readiness = Readiness(engine, tracker, clock, stop=stop)
        assert readiness.serving().ready
        stop.set()
        assert set(readiness.serving().failing) == {"shutdown"}
        assert set(readiness().failing) == {"shutdown"}

    def test_held_leads_fail_the_held_check(self, readiness: Readiness, engine: Engine) -> None:
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
        assert readiness.serving().ready
        with sessions.begin() as session:
            session.execute(update(Lead).where(Lead.state == "held").values(state="queued"))
        assert readiness().ready


class TestDrainableWhileHeld:
    def test_readyz_stays_200_with_held_leads_and_failing_polls(
        self, server: ProbeServer, engine: Engine, clock: Clock
    ) -> None:
        """Held leads and stale polls: /readyz 200 (a drain or rollout can proceed), and
        /status.json 503 naming held:web and poll:web with the operator's next step."""
        from tests.integration.operator_rows import add_lead, sf_id

        with make_session_factory(engine).begin() as session:
            add_lead(session, "web", sf_id(1), "held")
        clock.at += timedelta(minutes=4)  # no poll for more than three intervals
        status, _, body = get(f"http://{server.address}/readyz")
        assert status == 200, body
        assert json.loads(body)["failing"] == []
        status, _, body = get(f"http://{server.address}/status.json")
        assert status == 503
        parsed = json.loads(body)
        assert parsed["checks"]["held:web"] == "failing"
        assert parsed["checks"]["poll:web"] == "failing"
        reasons = {item["check"]: item["reason"] for item in parsed["failing"]}
        assert "syncd release --sync web" in reasons["held:web"]

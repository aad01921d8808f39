"""The database-derived gauges, refreshed from a real SQLite file and PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Lead, Pause
from syncd.metrics import REGISTRY
from syncd.services import pausing
from syncd.services.state_metrics import refresh_state_metrics
from tests.integration.operator_rows import (
    T0,
    add_lead,
    add_pause,
    add_sync_state,
    make_config,
    sf_id,
)


def value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


class TestRefreshStateMetrics:
    def test_leads_by_state_with_zeros(self, sessions: sessionmaker[Session]) -> None:
        """syncd_leads has every state of every configured sync, zeros included."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "queued")
            add_lead(s, "web", sf_id(2), "accepted")
            add_lead(s, "web", sf_id(3), "accepted")
        refresh_state_metrics(sessions, make_config(), now=lambda: T0)
        assert value("syncd_leads", sync="web", state="accepted") == 2
        assert value("syncd_leads", sync="web", state="queued") == 1
        assert value("syncd_leads", sync="web", state="failed") == 0
        assert value("syncd_leads", sync="partner", state="uncertain") == 0

    def test_uncertain_and_backlog(self, sessions: sessionmaker[Session]) -> None:
        """Uncertain leads per sync and queued leads per (sync, agent) are counted."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "uncertain")
            add_lead(s, "web", sf_id(2), "uncertain")
            add_lead(s, "web", sf_id(3), "queued")
            add_lead(s, "web", sf_id(4), "queued", next_attempt_at=T0 + timedelta(hours=1))
            add_lead(s, "partner", sf_id(5), "queued", agent="agt_x")
        refresh_state_metrics(sessions, make_config(), now=lambda: T0)
        assert value("syncd_uncertain_leads", sync="web") == 2
        assert value("syncd_uncertain_leads", sync="partner") == 0
        assert value("syncd_backlog_leads", sync="web", agent="agt_1") == 2
        assert value("syncd_backlog_leads", sync="partner", agent="agt_x") == 1
        assert value("syncd_backlog_leads", sync="partner", agent="agt_us") == 0

    def test_pauses_set_and_cleared(self, sessions: sessionmaker[Session]) -> None:
        """Active pauses read 1, expired ones 0, and a pause deleted later drops back to 0."""
        with sessions.begin() as s:
            add_sync_state(s, "web", paused_until=T0 + timedelta(minutes=5), pause_reason="limit")
            add_pause(s, "api_key", "fpmetric1", until=T0 + timedelta(minutes=5))
            add_pause(s, "agent", "fpmetric1/agt_1", until=T0 - timedelta(minutes=5))
        config = make_config()
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_paused", scope="polling", name="web") == 1
        assert value("syncd_paused", scope="polling", name="partner") == 0
        assert value("syncd_paused", scope="api_key", name="fpmetric1") == 1
        assert value("syncd_paused", scope="agent", name="fpmetric1/agt_1") == 0
        with sessions.begin() as s:
            s.execute(delete(Pause))
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_paused", scope="api_key", name="fpmetric1") == 0

    def test_drained_backlog_goes_to_zero(self, sessions: sessionmaker[Session]) -> None:
        """A label set that leaves the database is set to 0, not left at its last value."""
        with sessions.begin() as s:
            add_lead(s, "old-sync", sf_id(1), "queued", agent="agt_gone")
        config = make_config()
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_backlog_leads", sync="old-sync", agent="agt_gone") == 1
        assert value("syncd_leads", sync="old-sync", state="queued") == 1
        with sessions.begin() as s:
            s.execute(delete(Lead))
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_backlog_leads", sync="old-sync", agent="agt_gone") == 0
        assert value("syncd_leads", sync="old-sync", state="queued") == 0


class TestQueueAge:
    def test_oldest_queued_per_agent(self, sessions: sessionmaker[Session]) -> None:
        """The age of the oldest queued lead per (sync, agent); 0 where nothing is queued."""
        with sessions.begin() as s:
            old = add_lead(s, "web", sf_id(1), "queued")
            old.created_at = T0 - timedelta(minutes=30)
            young = add_lead(s, "web", sf_id(2), "queued")
            young.created_at = T0 - timedelta(minutes=2)
            sent = add_lead(s, "web", sf_id(3), "accepted")
            sent.created_at = T0 - timedelta(days=3)
            other = add_lead(s, "partner", sf_id(4), "queued", agent="agt_x")
            other.created_at = T0 - timedelta(seconds=90)
        config = make_config()
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_oldest_queued_seconds", sync="web", agent="agt_1") == 1800
        assert value("syncd_oldest_queued_seconds", sync="partner", agent="agt_x") == 90
        assert value("syncd_oldest_queued_seconds", sync="partner", agent="agt_us") == 0
        with sessions.begin() as s:
            s.execute(delete(Lead).where(Lead.state == "queued"))
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_oldest_queued_seconds", sync="web", agent="agt_1") == 0
        assert value("syncd_oldest_queued_seconds", sync="partner", agent="agt_x") == 0


class TestOperatorPauseGauge:
    def test_operator_pauses_set_and_cleared(self, sessions: sessionmaker[Session]) -> None:
        """syncd_paused{scope="operator_sync"|"operator_agent"} follows syncd pause/resume."""
        pausing.pause(sessions, scope="sync", name="web", reason="why", actor="ops")
        pausing.pause(sessions, scope="agent", name="agt_us", reason="why", actor="ops")
        config = make_config()
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_paused", scope="operator_sync", name="web") == 1
        assert value("syncd_paused", scope="operator_agent", name="agt_us") == 1
        pausing.resume(sessions, scope="sync", name="web", reason="ok", actor="ops")
        refresh_state_metrics(sessions, config, now=lambda: T0)
        assert value("syncd_paused", scope="operator_sync", name="web") == 0
        assert value("syncd_paused", scope="operator_agent", name="agt_us") == 1


def test_held_leads_gauge(sessions: sessionmaker[Session]) -> None:
    """syncd_held_leads counts held leads per sync, zero for a sync without any."""
    with sessions.begin() as s:
        add_lead(s, "web", sf_id(1), "held")
        add_lead(s, "web", sf_id(2), "held")
        add_lead(s, "web", sf_id(3), "queued")
    refresh_state_metrics(sessions, make_config(), now=lambda: T0)
    assert value("syncd_held_leads", sync="web") == 2
    assert value("syncd_held_leads", sync="partner") == 0


class TestLastSuccessfulPoll:
    def test_a_sync_that_never_polled_is_stale_from_the_start(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """Never polled successfully: the process start, so SyncdPollStale can fire."""
        from syncd.metrics import LAST_SUCCESSFUL_POLL
        from syncd.services.state_metrics import PROCESS_STARTED

        with contextlib.suppress(KeyError):
            LAST_SUCCESSFUL_POLL.remove("partner")
        refresh_state_metrics(sessions, make_config(), now=lambda: T0)
        assert value("syncd_last_successful_poll_timestamp_seconds", sync="partner") == (
            PROCESS_STARTED
        )

    def test_another_replicas_poll_counts(self, sessions: sessionmaker[Session]) -> None:
        """The database's last successful poll (any replica's) moves the gauge forward."""
        polled = datetime.fromtimestamp(time.time() + 3600, UTC)
        with sessions.begin() as s:
            add_sync_state(s, "web", last_poll_ok_at=polled)
        refresh_state_metrics(sessions, make_config(), now=lambda: T0)
        found = value("syncd_last_successful_poll_timestamp_seconds", sync="web")
        assert found == polled.timestamp()

"""The call gauges of the metrics refresh: webhooks waiting to be processed, the age of the
oldest, and call write-backs waiting per sync; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import CallEvent
from syncd.config import Config, parse_config
from syncd.metrics import REGISTRY
from syncd.services.state_metrics import refresh_state_metrics
from tests.integration.call_rows import add_call, add_event
from tests.integration.operator_rows import T0, add_lead, config_dict, sf_id

WEBHOOK = {
    "public_url": "https://hooks.example.com",
    "token": "t" * 40,
    "correlation_secret": "c" * 40,
}


def calls_config() -> Config:
    """The two syncs of :func:`config_dict`, webhooks on, ``web`` writing calls back as Tasks."""
    data: dict[str, Any] = config_dict()
    data["simz"]["webhook"] = WEBHOOK
    data["syncs"][0]["call_writeback"] = {"mode": "tasks"}
    return parse_config(yaml.safe_dump(data))


def value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_pending_events_and_the_oldest_age(sessions: sessionmaker[Session]) -> None:
    """Only ``new`` events count; the age is the first stored one's, and 0 once none waits."""
    with sessions.begin() as s:
        lead = add_lead(s, "web", sf_id(1), "accepted")
        add_event(s, "matched", T0 - timedelta(hours=2), lead=lead)
        add_event(s, "unmatched", T0 - timedelta(hours=1))
        add_event(s, "new", T0 - timedelta(minutes=7))
        add_event(s, "new", T0 - timedelta(seconds=30))
    config = calls_config()
    refresh_state_metrics(sessions, config, now=lambda: T0)
    assert value("syncd_call_events_pending") == 2
    assert value("syncd_call_events_oldest_pending_seconds") == 420
    with sessions.begin() as s:
        s.execute(update(CallEvent).where(CallEvent.status == "new").values(status="matched"))
    refresh_state_metrics(sessions, config, now=lambda: T0)
    assert value("syncd_call_events_pending") == 0
    assert value("syncd_call_events_oldest_pending_seconds") == 0


def test_call_writebacks_waiting_per_sync(sessions: sessionmaker[Session]) -> None:
    """Pending and in-doubt calls count; done, failed and none do not. A sync with
    call_writeback has its series at 0, one without has none until it has rows."""
    config = calls_config()
    refresh_state_metrics(sessions, config, now=lambda: T0)
    assert value("syncd_call_writebacks_pending", sync="web") == 0
    assert value("syncd_call_writebacks_pending", sync="partner") is None
    with sessions.begin() as s:
        lead = add_lead(s, "web", sf_id(1), "accepted")
        for status in ("pending", "pending", "sending", "done", "failed", "none"):
            add_call(s, lead, T0 - timedelta(minutes=1), writeback_status=status)
    refresh_state_metrics(sessions, config, now=lambda: T0)
    assert value("syncd_call_writebacks_pending", sync="web") == 3

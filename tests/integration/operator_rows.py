"""Small helpers that write rows straight into the database, for the operator tests.

The operator commands only read what the poller and the delivery engine
record; these helpers record it by hand, so each test states exactly which
rows exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy.orm import Session

from syncd.adapters.orm import Batch, Lead, LeadTransition, Pause, PollRun, SyncState
from syncd.config import Config, parse_config
from syncd.sandbox.sf_soql import id_suffix

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def config_dict(db_url: str = "sqlite:///./syncd.db") -> dict[str, Any]:
    """A configuration with two syncs that needs no environment variable."""
    return {
        "database": {"url": db_url},
        "salesforce": {
            "auth": {
                "method": "session",
                "session_id": "dummy-session-id",
                "instance_url": "https://127.0.0.1:9",
            }
        },
        "simz": {"base_url": "http://127.0.0.1:9", "api_key": "literal-test-key"},
        "syncs": [
            {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}},
            {
                "name": "partner",
                "start_at": "2024-01-01T00:00:00Z",
                "route": {"field": "Country", "values": {"US": "agt_us"}, "default": "agt_x"},
                "mapping": {"phoneNumber": "Phone"},
            },
        ],
        "observability": {"log_format": "json"},
    }


def make_config(db_url: str = "sqlite:///./syncd.db") -> Config:
    return parse_config(yaml.safe_dump(config_dict(db_url)))


def sf_id(n: int) -> str:
    """An 18-character Lead Id (with its checksum suffix, so Salesforce can hold it)."""
    base = f"00Q000000{n:06d}"
    return base + id_suffix(base)


def add_lead(
    session: Session,
    sync: str,
    salesforce_id: str,
    state: str,
    *,
    agent: str | None = "agt_1",
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
    updated_at: datetime = T0,
    batch: Batch | None = None,
    note: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    history: tuple[tuple[str | None, str, str], ...] | None = None,
) -> Lead:
    """A lead with a transition trail (by default: new -> queued, and -> state if different)."""
    lead = Lead(
        sync_name=sync,
        salesforce_id=salesforce_id,
        agent_id=agent,
        state=state,
        payload={"phoneNumber": "+15551234567", "firstName": "Ada", "salesforceId": salesforce_id},
        phone_e164="+15551234567",
        record_cursor=T0,
        record_hash="h" * 64,
        note=note,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        batch_id=batch.id if batch else None,
        simz_batch_id=batch.simz_batch_id if batch else None,
        error_code=error_code,
        error_message=error_message,
        created_at=T0 - timedelta(hours=1),
        updated_at=updated_at,
    )
    session.add(lead)
    session.flush()
    if history is None:
        history = ((None, "queued", "first seen"),)
        if state not in ("queued", "invalid", "skipped"):
            history += (("queued", "sending", "claimed"), ("sending", state, "answer"))
    for i, (source, target, reason) in enumerate(history):
        session.add(
            LeadTransition(
                lead_id=lead.id,
                from_state=source,
                to_state=target,
                reason=reason,
                batch_id=batch.id if batch and source == "sending" else None,
                at=T0 - timedelta(minutes=30) + timedelta(minutes=i),
            )
        )
    session.flush()
    return lead


def add_batch(
    session: Session,
    sync: str,
    agent: str,
    *,
    http_status: int | None = 200,
    outcome: str | None = "accepted",
    simz_batch_id: str | None = "simz-b-1",
    created_at: datetime = T0,
    lead_count: int = 1,
) -> Batch:
    batch = Batch(
        sync_name=sync,
        agent_id=agent,
        api_key_id="fp1234",
        lead_count=lead_count,
        created_at=created_at,
        finished_at=created_at + timedelta(seconds=1),
        http_status=http_status,
        outcome=outcome,
        simz_batch_id=simz_batch_id,
        accepted=lead_count if outcome == "accepted" else 0,
        rejected=0,
    )
    session.add(batch)
    session.flush()
    return batch


def add_poll_run(
    session: Session,
    sync: str,
    *,
    status: str = "ok",
    started_at: datetime = T0,
    fetched: int = 0,
    new: int = 0,
    error: str | None = None,
) -> PollRun:
    run = PollRun(
        sync_name=sync,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=2),
        window_from=started_at - timedelta(minutes=10),
        window_to=started_at,
        status=status,
        pages=1,
        fetched=fetched,
        new=new,
        updated=0,
        unchanged=fetched - new,
        invalid=0,
        skipped=0,
        error=error,
    )
    session.add(run)
    session.flush()
    return run


def add_sync_state(
    session: Session,
    sync: str,
    *,
    watermark: datetime | None = T0,
    paused_until: datetime | None = None,
    pause_reason: str | None = None,
    last_poll_ok_at: datetime | None = None,
) -> SyncState:
    row = SyncState(
        sync_name=sync,
        watermark=watermark,
        start_at=T0 - timedelta(days=1),
        paused_until=paused_until,
        pause_reason=pause_reason,
        last_poll_at=last_poll_ok_at,
        last_poll_ok_at=last_poll_ok_at,
        last_poll_status="ok" if last_poll_ok_at else None,
    )
    session.add(row)
    session.flush()
    return row


def add_pause(
    session: Session, scope: str, key: str, *, until: datetime, reason: str = "paused"
) -> Pause:
    pause = Pause(scope=scope, key=key, reason=reason, http_status=402, paused_until=until)
    session.add(pause)
    session.flush()
    return pause

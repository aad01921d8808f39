"""One number, one agent, one decision at a time: syncs polling and claiming concurrently.

Two syncs read two records with one number (written differently) for one agent,
in two threads at the same moment. A barrier holds each poll right after its
"is this number already held?" lookup until the other has made its own: without
a lock both lookups find nothing and both leads are queued. PostgreSQL
serialises them with the per-(agent, number) advisory lock; SQLite with its
single writer (every write transaction begins with BEGIN IMMEDIATE, so the
second poll cannot even start its page until the first commits).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import number_locks, outbox, poll_store
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.domain.gate import GateRules
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.poll import PollResult, poll_sync
from tests.conftest import needs_postgres
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
#: How long a poll waits at the barrier for the other one (then goes on alone).
BARRIER_WAIT = 3.0


def make_sync(name: str, source: str) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "start_at": T0.isoformat(),
            "lookback": "1m",
            "lag": "0s",
            "agent": "agt_1",
            "where": f"LeadSource = '{source}'",
            "mapping": {"phoneNumber": "Phone", "lastName": "LastName"},
            "rules": {"duplicate_phone_window": "24h"},
        }
    )


SYNCS = (make_sync("web", "Web"), make_sync("partner", "Partner"))


@pytest.fixture
def org(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    stamp = (T0 + timedelta(minutes=1)).isoformat()
    salesforce_emulator.add_records(
        [
            {"sobject": "Lead", "LastName": "A", "Company": "Acme", "LeadSource": "Web",
             "Phone": "+1 202 555 0171", "SystemModstamp": stamp},
            {"sobject": "Lead", "LastName": "B", "Company": "Acme", "LeadSource": "Partner",
             "Phone": "(202) 555-0171", "SystemModstamp": stamp},
        ]
    )  # fmt: skip
    return salesforce_emulator


@pytest.fixture
def barrier(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Barrier]:
    """Both polls meet right after their recent-number lookup (or one gives up waiting)."""
    meeting = threading.Barrier(2, timeout=BARRIER_WAIT)
    original = poll_store.recent_phones

    def lookup_then_meet(*args: Any, **kwargs: Any) -> Any:
        found = original(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()
        return found

    monkeypatch.setattr(poll_store, "recent_phones", lookup_then_meet)
    yield meeting


def poll_both(org: SalesforceEmulator, sessions: sessionmaker[Session]) -> list[PollResult]:
    results: list[PollResult] = []
    errors: list[BaseException] = []

    def poll(sync: SyncConfig) -> None:
        source = SalesforceSource(salesforce_config(org))
        try:
            results.append(poll_sync(sessions, source, sync, now=lambda: NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            source.close()

    threads = [threading.Thread(target=poll, args=(sync,)) for sync in SYNCS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(result.status == "ok" for result in results), results
    return results


def lead_states(sessions: sessionmaker[Session]) -> dict[str, tuple[str, str | None]]:
    with sessions() as session:
        rows = session.execute(select(Lead.sync_name, Lead.state, Lead.note))
        return {name: (state, note) for name, state, note in rows}


def test_concurrent_syncs_queue_one_number_once(
    org: SalesforceEmulator, sessions: sessionmaker[Session], barrier: threading.Barrier
) -> None:
    """Two syncs polling at once queue the number once; the other lead is skipped."""
    poll_both(org, sessions)
    found = lead_states(sessions)
    assert sorted(state for state, _note in found.values()) == ["queued", "skipped"]
    [note] = [note for state, note in found.values() if state == "skipped"]
    assert note == "duplicate phone within 1d"


@needs_postgres
def test_without_the_lock_the_race_is_real(
    org: SalesforceEmulator,
    postgres_url: str,
    barrier: threading.Barrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness above does reproduce the race: with the lock off, both leads are queued."""
    from syncd.adapters.db import make_engine
    from syncd.adapters.migrate import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        sessions = make_session_factory(engine)
        monkeypatch.setattr(
            "syncd.services.intake_numbers.lock_phones", lambda _session, _phones: 0
        )
        poll_both(org, sessions)
        assert sorted(state for state, _note in lead_states(sessions).values()) == [
            "queued",
            "queued",
        ]
    finally:
        engine.dispose()


def _queue_lead(session: Session, sync: str, sf_id: str, phone: str) -> None:
    session.add(
        Lead(
            sync_name=sync,
            salesforce_id=sf_id,
            agent_id="agt_1",
            state="queued",
            payload={"phoneNumber": phone, "salesforceId": sf_id},
            phone_e164=phone,
            record_cursor=T0,
            record_hash="h",
            attempts=0,
            created_at=T0,
            updated_at=T0,
        )
    )


@needs_postgres
def test_claim_leaves_a_number_another_transaction_holds(postgres_url: str) -> None:
    """The send gate never waits for a number's lock: the lead stays queued for the next claim."""
    from syncd.adapters.db import make_engine
    from syncd.adapters.migrate import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            _queue_lead(session, "web", "00Q000000000001AAA", "+12025550181")
            _queue_lead(session, "web", "00Q000000000002AAA", "+12025550182")
        rules = GateRules(duplicate_window=timedelta(hours=24))
        holder = sessions()
        holder.begin()
        number_locks.lock_numbers(holder, [("agt_1", "+12025550181")])

        def claim() -> outbox.Claim | None:
            with sessions.begin() as session:
                return outbox.claim(
                    session,
                    sync_name="web",
                    agent_id="agt_1",
                    credential="abc",
                    limit=10,
                    now=NOW,
                    worker="test",
                    rules=rules,
                )

        first = claim()
        assert first is not None
        assert [lead.payload["phoneNumber"] for lead in first.leads] == ["+12025550182"]
        holder.rollback()
        holder.close()
        second = claim()
        assert second is not None
        assert [lead.payload["phoneNumber"] for lead in second.leads] == ["+12025550181"]
    finally:
        engine.dispose()

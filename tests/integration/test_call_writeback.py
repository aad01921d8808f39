"""Call write-back: call outcomes become Salesforce Tasks (or record fields), once each.

Real databases (SQLite file and PostgreSQL) and real HTTPS to the Salesforce
emulator. The call outcomes are inserted as the processor leaves them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_writeback_store as store
from syncd.adapters.orm import CallEvent, CallOutcome, Lead
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.call_writeback import HOLD, MAX_ATTEMPTS, CallWriter
from syncd.services.poll import poll_sync
from tests.clock import Clock
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2026, 12, 7, 16, 5, tzinfo=UTC)
STARTED = datetime(2026, 12, 7, 16, 1, 2, tzinfo=UTC)
_KEYS = itertools.count(1)
CALL_FIELDS = {
    "outcome": "Last_Call_Outcome__c",
    "disposition": "Last_Call_Disposition__c",
    "called_at": "Last_Called_At__c",
}


def make_sync(mode: str = "tasks", **extra: Any) -> SyncConfig:
    calls: dict[str, Any] = {"mode": mode, "task_subject": "Call: {disposition} ({outcome})"}
    if mode == "fields":
        calls["fields"] = CALL_FIELDS
    return SyncConfig.model_validate(
        {
            "name": "web",
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone"},
            "call_writeback": calls,
        }
        | extra
    )


@pytest.fixture
def source(salesforce_emulator: SalesforceEmulator) -> Iterator[SalesforceSource]:
    found = SalesforceSource(salesforce_config(salesforce_emulator))
    yield found
    found.close()


def writer(
    sessions: sessionmaker[Session], source: SalesforceSource, clock: Clock, **extra: Any
) -> CallWriter:
    return CallWriter(
        sessions, source, make_sync(**extra), max_api_usage_percent=80, now=clock, rng=lambda: 1.0
    )


def add_lead(sessions: sessionmaker[Session], sf_id: str) -> int:
    """An accepted lead of sync ``web`` for this record; its id."""
    with sessions.begin() as session:
        return int(
            session.execute(
                insert(Lead)
                .values(
                    sync_name="web",
                    salesforce_id=sf_id,
                    agent_id="agt_1",
                    state="accepted",
                    payload={"phoneNumber": "+14155550123", "salesforceId": sf_id},
                    phone_e164="+14155550123",
                    record_cursor=T0,
                    record_hash=hashlib.sha256(sf_id.encode()).hexdigest(),
                    attempts=1,
                    created_at=T0,
                    updated_at=T0,
                )
                .returning(Lead.id)
            ).scalar_one()
        )


def add_outcome(
    sessions: sessionmaker[Session],
    lead_id: int,
    sf_id: str,
    *,
    status: str = "pending",
    started_at: datetime | None = STARTED,
    disposition: str = "interested",
) -> tuple[int, str]:
    """A call outcome as the processor stores it, with its hook; (row id, call key)."""
    key = f"call_{next(_KEYS):06d}'x"  # a quote: the lookup must escape it
    with sessions.begin() as session:
        event_id = session.execute(
            insert(CallEvent)
            .values(
                digest=hashlib.sha256(key.encode()).hexdigest(),
                received_at=T0,
                receiver="test",
                headers={},
                body="{}",
                status="matched",
                lead_id=lead_id,
            )
            .returning(CallEvent.id)
        ).scalar_one()
        row_id = session.execute(
            insert(CallOutcome)
            .values(
                lead_id=lead_id,
                event_id=event_id,
                call_key=key,
                sync_name="web",
                salesforce_id=sf_id,
                outcome="answered",
                disposition=disposition,
                raw_disposition="INTERESTED",
                duration_seconds=74,
                started_at=started_at,
                ended_at=started_at + timedelta(seconds=74) if started_at else None,
                recording_url="https://recordings.example/1",
                received_at=T0,
                writeback_status=status,
                attempts=0,
            )
            .returning(CallOutcome.id)
        ).scalar_one()
    return int(row_id), key


def outcome(sessions: sessionmaker[Session], row_id: int) -> CallOutcome:
    with sessions() as session:
        found = session.get(CallOutcome, row_id)
        assert found is not None
        session.expunge(found)
        return found


def a_lead(emulator: SalesforceEmulator) -> str:
    [sf_id] = emulator.add_records([{"sobject": "Lead", "LastName": "L", "Phone": "+14155550123"}])
    return sf_id


def counted(result: str, mode: str = "tasks") -> float:
    found = REGISTRY.get_sample_value(
        "syncd_call_writebacks_total", {"sync": "web", "mode": mode, "result": result}
    )
    return found or 0.0


class TestTasks:
    def test_a_pending_outcome_becomes_exactly_one_task(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """Every Task field as documented; the Lead itself is untouched; a second pass
        writes nothing."""
        sf_id = a_lead(salesforce_emulator)
        before = salesforce_emulator.get_record("Lead", sf_id)
        row_id, key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        done_before = counted("done")
        clock = Clock(T0)
        result = writer(sessions, source, clock).run()
        assert (result.status, result.calls, result.done) == ("ok", 1, 1)
        [task] = salesforce_emulator.tasks()
        assert task["WhoId"] == sf_id and task.get("WhatId") is None
        assert task["Subject"] == "Call: interested (answered)"
        assert (task["Status"], task["Type"], task["TaskSubtype"]) == ("Completed", "Call", "Call")
        assert task["CallDisposition"] == "interested"
        assert task["CallDurationInSeconds"] == 74
        assert task["CallObject"] == key
        assert task["ActivityDate"] == "2026-12-07"
        assert "Outcome: answered" in task["Description"]
        assert "Disposition: interested (SimZ: INTERESTED)" in task["Description"]
        assert "Recording: https://recordings.example/1" in task["Description"]
        row = outcome(sessions, row_id)
        assert (row.writeback_status, row.task_id, row.attempts) == ("done", task["Id"], 1)
        assert row.written_at is not None and row.last_error is None
        after = salesforce_emulator.get_record("Lead", sf_id)
        assert after == before, "creating a Task changed the Lead"
        assert counted("done") == done_before + 1
        clock.advance(timedelta(hours=1))
        assert writer(sessions, source, clock).run().calls == 0
        assert len(salesforce_emulator.tasks()) == 1

    def test_a_row_left_sending_whose_task_exists_is_done_with_that_task(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A crash after the create: the lookup finds the Task; no second one is created."""
        sf_id = a_lead(salesforce_emulator)
        row_id, key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id, status="sending")
        [task_id] = salesforce_emulator.add_records(
            [{"sobject": "Task", "WhoId": sf_id, "CallObject": key, "Subject": "Call"}]
        )
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.calls, result.done) == (1, 1), "one lookup, no create"
        assert [t["Id"] for t in salesforce_emulator.tasks()] == [task_id]
        row = outcome(sessions, row_id)
        assert (row.writeback_status, row.task_id) == ("done", task_id)
        assert not [w for w in salesforce_emulator.write_log() if w["method"] == "POST"]

    def test_a_row_left_sending_without_its_task_is_created_after_the_hold(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A crash before the create: the claim's commit left the row sending; once its
        hold passed, the lookup finds nothing and the Task is created, once."""
        sf_id = a_lead(salesforce_emulator)
        row_id, _key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        with sessions.begin() as session:
            [claimed] = store.claim(session, "web", T0, T0 + HOLD)
        assert claimed.id == row_id and outcome(sessions, row_id).writeback_status == "sending"
        clock = Clock(T0)
        assert writer(sessions, source, clock).run().calls == 0, "held while in flight"
        clock.advance(HOLD)
        result = writer(sessions, source, clock).run()
        assert (result.calls, result.done) == (2, 1)  # the lookup, then the create
        [task] = salesforce_emulator.tasks()
        assert outcome(sessions, row_id).task_id == task["Id"]

    def test_a_lost_answer_then_a_retry_makes_one_task(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf_id = a_lead(salesforce_emulator)
        row_id, _key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        salesforce_emulator.lose_create_answers(1)
        clock = Clock(T0)
        first = writer(sessions, source, clock).run()
        assert (first.status, first.in_doubt) == ("error", 1)
        row = outcome(sessions, row_id)
        assert (row.writeback_status, row.task_id) == ("sending", None)
        assert row.last_error and "SalesforceUnavailable" in row.last_error
        [task] = salesforce_emulator.tasks()  # it was created; only the answer was lost
        clock.advance(timedelta(minutes=15))
        second = writer(sessions, source, clock).run()
        assert (second.status, second.done) == ("ok", 1)
        assert [t["Id"] for t in salesforce_emulator.tasks()] == [task["Id"]]
        row = outcome(sessions, row_id)
        assert (row.writeback_status, row.task_id, row.attempts) == ("done", task["Id"], 2)

    def test_unable_to_lock_row_is_retried(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf_id = a_lead(salesforce_emulator)
        row_id, _key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        salesforce_emulator.fail_creates(1, "UNABLE_TO_LOCK_ROW")
        clock = Clock(T0)
        call_writer = writer(sessions, source, clock)
        first = call_writer.run()
        assert (first.retry, salesforce_emulator.tasks()) == (1, [])
        row = outcome(sessions, row_id)
        assert row.writeback_status == "pending" and row.next_attempt_at is not None
        assert row.last_error is not None and row.last_error.startswith("UNABLE_TO_LOCK_ROW")
        assert call_writer.run().calls == 0, "not before its backoff"
        clock.advance(timedelta(minutes=10))
        assert call_writer.run().done == 1
        assert len(salesforce_emulator.tasks()) == 1
        assert outcome(sessions, row_id).writeback_status == "done"

    def test_a_field_error_fails_the_call_with_its_reason(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A Task field the integration user may not write: failed, with Salesforce's words;
        the other calls of the same create are written."""
        salesforce_emulator.declare_field("Task.CallDisposition:string:255:readonly")
        sf_id = a_lead(salesforce_emulator)
        lead_id = add_lead(sessions, sf_id)
        bad_id, _ = add_outcome(sessions, lead_id, sf_id)
        good_id, _ = add_outcome(sessions, lead_id, sf_id, disposition="")
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.failed, result.done) == (1, 1)
        bad = outcome(sessions, bad_id)
        assert bad.writeback_status == "failed" and bad.next_attempt_at is None
        assert bad.last_error is not None
        assert bad.last_error.startswith("INVALID_FIELD_FOR_INSERT_UPDATE")
        assert "CallDisposition" in bad.last_error
        assert outcome(sessions, good_id).writeback_status == "done"
        assert len(salesforce_emulator.tasks()) == 1

    def test_a_failed_lookup_creates_nothing(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """While the in-doubt rows cannot be looked up, nothing is created for them."""
        sf_id = a_lead(salesforce_emulator)
        row_id, _key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id, status="sending")
        salesforce_emulator.inject("503", count=2, only="/query")
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.status, result.in_doubt) == ("error", 1)
        assert salesforce_emulator.tasks() == []
        assert outcome(sessions, row_id).writeback_status == "sending"

    def test_an_account_goes_in_what_id(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        [account] = salesforce_emulator.add_records([{"sobject": "Account", "Name": "Acme"}])
        add_outcome(sessions, add_lead(sessions, account), account, started_at=None)
        assert writer(sessions, source, Clock(T0)).run().done == 1
        [task] = salesforce_emulator.tasks()
        assert (task.get("WhoId"), task["WhatId"]) == (None, account)
        assert task["ActivityDate"] == "2026-12-07"  # the hook's day, without a start

    def test_high_api_usage_holds_it_back(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf_id = a_lead(salesforce_emulator)
        row_id, _key = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        salesforce_emulator.set_api_usage(9000, 10000)
        source.describe_fields("Lead")  # reads the usage header
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.status, result.calls) == ("paused", 0)
        assert outcome(sessions, row_id).writeback_status == "pending"
        assert salesforce_emulator.tasks() == []


class TestFields:
    def test_fields_are_written_and_the_next_poll_sees_the_lead_unchanged(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """The newest call's fields on the record; the poll reads it again, counts it
        unchanged, requeues nothing; no second write."""
        for spec in (
            "Lead.Last_Call_Outcome__c:string:100",
            "Lead.Last_Call_Disposition__c:picklist",
            "Lead.Last_Called_At__c:datetime",
        ):
            salesforce_emulator.declare_field(spec)
        sync = make_sync("fields", start_at="2020-01-01T00:00:00Z", lag="0s")
        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        [sf_id] = salesforce_emulator.add_records(
            [{"sobject": "Lead", "LastName": "L", "Phone": "+14155550123", "SystemModstamp": stamp}]
        )
        first = poll_sync(sessions, source, sync)
        assert (first.status, first.new, first.queued) == ("ok", 1, 1)
        with sessions() as session:
            lead = session.execute(select(Lead)).scalar_one()
            session.expunge(lead)
        older, _ = add_outcome(sessions, lead.id, sf_id, disposition="callback")
        newer, _ = add_outcome(sessions, lead.id, sf_id, started_at=STARTED + timedelta(hours=1))
        clock = Clock(T0)
        call_writer = CallWriter(
            sessions, source, sync, max_api_usage_percent=80, now=clock, rng=lambda: 1.0
        )
        result = call_writer.run()
        assert (result.calls, result.done) == (1, 2)
        record = salesforce_emulator.get_record("Lead", sf_id)
        assert record is not None
        assert record["Last_Call_Outcome__c"] == "answered"
        assert record["Last_Call_Disposition__c"] == "interested"  # the newer call's
        assert record["Last_Called_At__c"].startswith("2026-12-07T17:01:02")
        assert record["SystemModstamp"] > stamp
        assert {outcome(sessions, i).writeback_status for i in (older, newer)} == {"done"}
        # A poll a few seconds later: its window takes in the write's SystemModstamp.
        later = datetime.now(UTC) + timedelta(seconds=3)
        second = poll_sync(sessions, source, sync, now=lambda: later)
        assert (second.status, second.fetched, second.unchanged) == ("ok", 1, 1)
        assert (second.updated, second.queued) == (0, 0)
        with sessions() as session:
            again = session.execute(select(Lead)).scalar_one()
        assert (again.state, again.record_hash) == (lead.state, lead.record_hash)
        writes = len(salesforce_emulator.write_log())
        clock.advance(timedelta(hours=1))
        assert call_writer.run().calls == 0
        assert len(salesforce_emulator.write_log()) == writes

    def test_an_outage_never_fails_a_call(
        self,
        sessions: sessionmaker[Session],
        salesforce_emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A 503 on a call's last try leaves it pending (only refusals count), and the
        writer backs off before its next call."""
        salesforce_emulator.declare_field("Lead.Last_Call_Outcome__c:string:100")
        sf_id = a_lead(salesforce_emulator)
        row_id, _ = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
        with sessions.begin() as session:
            session.execute(update(CallOutcome).values(attempts=MAX_ATTEMPTS - 1))
        salesforce_emulator.inject("503", count=1, only="/composite")
        clock = Clock(T0)
        call_writer = CallWriter(
            sessions,
            source,
            make_sync(
                "fields",
                call_writeback={"mode": "fields", "fields": {"outcome": "Last_Call_Outcome__c"}},
            ),
            max_api_usage_percent=80,
            now=clock,
            rng=lambda: 1.0,
        )
        first = call_writer.run()
        assert (first.status, first.retry, first.failed) == ("error", 1, 0)
        assert outcome(sessions, row_id).writeback_status == "pending"
        clock.advance(timedelta(seconds=5))
        assert call_writer.run().status == "backoff"
        clock.advance(timedelta(minutes=10))
        assert call_writer.run().done == 1

    def test_a_call_field_read_by_the_mapping_is_refused(self) -> None:
        with pytest.raises(ValueError, match="which call_writeback writes"):
            make_sync(
                "fields",
                mapping={
                    "phoneNumber": "Phone",
                    "customData": {"last": "Last_Call_Outcome__c"},
                },
            )


def test_claim_skips_rows_another_pass_holds(
    sessions: sessionmaker[Session], salesforce_emulator: SalesforceEmulator
) -> None:
    """A claimed row is not claimed again until its hold passes; then it is in doubt."""
    sf_id = a_lead(salesforce_emulator)
    row_id, _ = add_outcome(sessions, add_lead(sessions, sf_id), sf_id)
    with sessions.begin() as session:
        [first] = store.claim(session, "web", T0, T0 + HOLD)
    assert not first.in_doubt
    with sessions.begin() as session:
        assert store.claim(session, "web", T0 + HOLD - timedelta(seconds=1), T0) == []
    with sessions.begin() as session:
        [again] = store.claim(session, "web", T0 + HOLD, T0 + 2 * HOLD)
    assert again.id == row_id and again.in_doubt
    with sessions.begin() as session:
        session.execute(update(CallOutcome).values(writeback_status="none"))
        assert store.claim(session, "web", T0 + 3 * HOLD, T0) == []


def test_the_daemon_wiring_writes_calls_back_and_checks_the_task_fields(
    tmp_path: Any, salesforce_emulator: SalesforceEmulator, simz_emulator: Any
) -> None:
    """``check-config --connect`` describes Task; the runtime's pass (``syncd once`` and
    the scheduler's job) writes the call; a read-only Task field fails the check."""
    from syncd.bootstrap import bootstrap
    from syncd.config import Config
    from syncd.services.connect_check import check_connections

    emulator = salesforce_emulator
    config = Config.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path}/calls.db"},
            "salesforce": {
                "auth": {
                    "method": "password",
                    "username": emulator.username,
                    "password": emulator.password,
                    "security_token": emulator.security_token,
                },
                "login_url": emulator.url,
                "ca_bundle": str(emulator.ca_file),
            },
            "simz": {
                "base_url": simz_emulator.url,
                "api_key": simz_emulator.api_key,
                "webhook": {
                    "public_url": "https://hooks.example",
                    "token": "t" * 32,
                    "correlation_secret": "s" * 32,
                },
            },
            "syncs": [make_sync().model_dump(mode="json", exclude_none=True)],
        }
    )
    lines = [check.text for check in check_connections(config)]
    assert "call_writeback: ok (sync web: Task fields)" in lines
    runtime = bootstrap(config)
    try:
        sf_id = a_lead(emulator)
        row_id, key = add_outcome(
            runtime.session_factory, add_lead(runtime.session_factory, sf_id), sf_id
        )
        passed = runtime.call_writeback(runtime.config.syncs[0])
        assert passed is not None and (passed.mode, passed.done) == ("tasks", 1)
        [task] = emulator.tasks()
        assert (task["CallObject"], task["WhoId"]) == (key, sf_id)
        assert outcome(runtime.session_factory, row_id).task_id == task["Id"]
    finally:
        runtime.close()
    emulator.declare_field("Task.CallObject:string:255:readonly")
    failed = [check for check in check_connections(config) if not check.ok]
    assert [check.text for check in failed] == [
        "call_writeback: FAILED: sync web: call_writeback: Task.CallObject is not createable "
        "by the integration user"
    ]

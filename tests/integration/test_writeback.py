"""Write-back: outcomes queued with their state change, sent to the Salesforce emulator.

Real databases (SQLite file and PostgreSQL) and real HTTPS to the emulator.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import outbox
from syncd.adapters import writeback_store as store
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition, Writeback, WritebackAttempt
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.domain.states import LeadState
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.delivery_activity import DeliveryActivity, GiveWay
from syncd.services.poll import poll_sync
from syncd.services.writeback import Writer
from tests.clock import Clock
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FIELDS = {
    "status": "SimZ_Status__c",
    "batch_id": "SimZ_Batch_Id__c",
    "sent_at": "SimZ_Sent_At__c",
    "error": "SimZ_Error__c",
}
CUSTOM_FIELDS = (
    "Lead.SimZ_Status__c:picklist",
    "Lead.SimZ_Batch_Id__c:string:64",
    "Lead.SimZ_Sent_At__c:datetime",
    "Lead.SimZ_Error__c:string:40",
)


def make_sync(name: str = "web", states: list[str] | None = None, **extra: Any) -> SyncConfig:
    writeback: dict[str, Any] = {"fields": FIELDS}
    if states is not None:
        writeback["states"] = states
    return SyncConfig.model_validate(
        {
            "name": name,
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone"},
            "writeback": writeback,
            **extra,
        }
    )


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    factory = make_session_factory(engine)
    store.install(factory, [make_sync()])
    return factory


@pytest.fixture
def emulator(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    for spec in CUSTOM_FIELDS:
        salesforce_emulator.declare_field(spec)
    return salesforce_emulator


def add_leads(
    sessions: sessionmaker[Session], sf_ids: list[str], sync: str = "web"
) -> dict[str, int]:
    """Queued leads for these Salesforce Ids; returns Id -> lead id."""
    rows = [
        {
            "sync_name": sync,
            "salesforce_id": sf_id,
            "agent_id": "agt_1",
            "state": "queued",
            "payload": {"phoneNumber": f"+1415555{n:04d}", "salesforceId": sf_id},
            "phone_e164": f"+1415555{n:04d}",
            "record_cursor": T0,
            "record_hash": hashlib.sha256(sf_id.encode()).hexdigest(),
            "attempts": 0,
            "created_at": T0,
            "updated_at": T0,
        }
        for n, sf_id in enumerate(sf_ids)
    ]
    with sessions.begin() as session:
        session.execute(insert(Lead), rows)
        found = session.execute(
            select(Lead.salesforce_id, Lead.id).where(Lead.salesforce_id.in_(sf_ids))
        )
        ids = {sf: lead_id for sf, lead_id in found}
        session.execute(
            insert(LeadTransition),
            [
                {"lead_id": i, "from_state": None, "to_state": "queued", "reason": "new", "at": T0}
                for i in ids.values()
            ],
        )
    return ids


def claim_all(sessions: sessionmaker[Session], limit: int = 1000) -> outbox.Claim:
    with sessions.begin() as session:
        claim = outbox.claim(
            session,
            sync_name="web",
            agent_id="agt_1",
            credential="key",
            limit=limit,
            now=T0,
            worker=None,
        )
    assert claim is not None
    return claim


def accept(sessions: sessionmaker[Session], claim: outbox.Claim, ids: list[int]) -> None:
    with sessions.begin() as session:
        outbox.move(
            session,
            ids,
            source=LeadState.SENDING,
            target=LeadState.ACCEPTED,
            reason="accepted",
            batch_id=claim.batch_id,
            now=T0,
            values={"simz_batch_id": "sb_1"},
        )


def writebacks(sessions: sessionmaker[Session]) -> dict[int, Writeback]:
    with sessions() as session:
        return {row.lead_id: row for row in session.scalars(select(Writeback))}


def sf_leads(emulator: SalesforceEmulator, count: int, start: int = 0) -> list[str]:
    return emulator.add_records(
        [
            {"sobject": "Lead", "LastName": f"L{n}", "Phone": f"+1415555{n:04d}"}
            for n in range(start, start + count)
        ]
    )


@pytest.fixture
def source(emulator: SalesforceEmulator) -> Iterator[SalesforceSource]:
    found = SalesforceSource(salesforce_config(emulator))
    yield found
    found.close()


def writer(
    sessions: sessionmaker[Session], source: SalesforceSource, clock: Clock, **extra: Any
) -> Writer:
    return Writer(
        sessions, source, make_sync(**extra), max_api_usage_percent=80, now=clock, rng=lambda: 1.0
    )


class _Statements:
    """Every SQL statement an engine runs while counting."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)
        self.engine = engine

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


# --------------------------------------------------------------------------- the queue


class TestQueue:
    def test_a_move_to_a_written_state_queues_a_write_back_in_its_transaction(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """Accepting leads adds one pending row per lead; a rolled-back move adds none."""
        ids = add_leads(sessions, ["00Q000000000001AAA", "00Q000000000002AAA"])
        claim = claim_all(sessions)
        assert writebacks(sessions) == {}  # sending is not written back
        with pytest.raises(RuntimeError), sessions.begin() as session:
            outbox.move(
                session,
                list(ids.values()),
                source=LeadState.SENDING,
                target=LeadState.ACCEPTED,
                reason="accepted",
                batch_id=claim.batch_id,
                now=T0,
            )
            raise RuntimeError("roll back")
        assert writebacks(sessions) == {}
        accept(sessions, claim, list(ids.values()))
        rows = writebacks(sessions)
        assert set(rows) == set(ids.values())
        assert {(r.state, r.status, r.generation) for r in rows.values()} == {
            ("accepted", "pending", 1)
        }

    def test_no_statement_at_all_when_no_sync_writes_the_state_back(
        self, engine: Engine, sessions: sessionmaker[Session]
    ) -> None:
        """With write-back off (or the state not listed) a move runs exactly its own SQL."""
        plain = make_session_factory(engine)
        ids = add_leads(plain, ["00Q000000000001AAA", "00Q000000000002AAA"])
        claim = claim_all(plain)
        statements = _Statements(engine)
        try:
            accept(plain, claim, [ids["00Q000000000001AAA"]])
            off = list(statements.seen)
            statements.seen.clear()
            accept(sessions, claim, [ids["00Q000000000002AAA"]])
            on = list(statements.seen)
        finally:
            statements.close()
        assert not any("writebacks" in sql for sql in off)
        assert len([sql for sql in on if "writebacks" in sql]) == 1
        assert len(on) == len(off) + 1

    def test_a_later_outcome_replaces_the_pending_write(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """uncertain, then requeued and accepted: one row, now accepted, generation 2."""
        ids = add_leads(sessions, ["00Q000000000001AAA"])
        lead_id = ids["00Q000000000001AAA"]
        claim_all(sessions)
        with sessions.begin() as session:
            assert outbox.recover_in_flight(session, T0, "crashed") == 1
        assert writebacks(sessions)[lead_id].state == "uncertain"
        with sessions.begin() as session:
            # As an operator's requeue moves it (after its re-check of the record).
            outbox.move(
                session,
                [lead_id],
                source=LeadState.UNCERTAIN,
                target=LeadState.QUEUED,
                reason="resend",
                batch_id=None,
                now=T0,
                values={"next_attempt_at": None},
            )
        claim = claim_all(sessions)
        accept(sessions, claim, [lead_id])
        row = writebacks(sessions)[lead_id]
        assert (row.state, row.status, row.generation) == ("accepted", "pending", 2)

    def test_rejections_are_queued_with_their_error(self, sessions: sessionmaker[Session]) -> None:
        ids = add_leads(sessions, ["00Q000000000001AAA"])
        claim = claim_all(sessions)
        with sessions.begin() as session:
            outbox.reject(
                session,
                [(ids["00Q000000000001AAA"], "INVALID_PHONE", "not a number")],
                reason="rejected",
                batch_id=claim.batch_id,
                now=T0,
            )
            due = store.due(session, "web", T0)
        assert [(d.state, d.error_code, d.error_message) for d in due] == [
            ("rejected", "INVALID_PHONE", "not a number")
        ]

    def test_moves_to_several_states_are_queued_by_state(self, engine: Engine) -> None:
        """The poll's and the re-check's moves (several target states at once): one pending
        row per lead in a written state, none for a state the sync does not write back."""
        factory = make_session_factory(engine)
        store.install(factory, [make_sync(states=["skipped", "failed"])])
        ids = list(add_leads(factory, [f"00Q00000000000{n}AAA" for n in range(1, 5)]).values())
        with factory.begin() as session:
            session.execute(update(Lead).where(Lead.id.in_(ids[:2])).values(state="skipped"))
            session.execute(update(Lead).where(Lead.id == ids[2]).values(state="failed"))
            store.enqueue_by_state(
                session,
                [(ids[0], "skipped"), (ids[2], "failed"), (ids[1], "skipped"), (ids[3], "queued")],
                T0,
            )
        rows = writebacks(factory)
        assert {lead: (r.state, r.status) for lead, r in rows.items()} == {
            ids[0]: ("skipped", "pending"),
            ids[1]: ("skipped", "pending"),
            ids[2]: ("failed", "pending"),
        }

    def test_states_not_listed_are_not_queued(self, engine: Engine) -> None:
        factory = make_session_factory(engine)
        store.install(factory, [make_sync(states=["rejected"])])
        ids = add_leads(factory, ["00Q000000000001AAA"])
        accept(factory, claim_all(factory), list(ids.values()))
        assert writebacks(factory) == {}

    def test_a_send_of_an_older_outcome_does_not_settle_the_newer_one(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """record() is guarded by generation: the row stays pending for its new state."""
        ids = add_leads(sessions, ["00Q000000000001AAA"])
        claim_all(sessions)
        with sessions.begin() as session:
            outbox.recover_in_flight(session, T0, "crashed")
        with sessions.begin() as session:
            [old] = store.due(session, "web", T0)
        with sessions.begin() as session:
            # As an operator's requeue moves it (after its re-check of the record).
            outbox.move(
                session,
                list(ids.values()),
                source=LeadState.UNCERTAIN,
                target=LeadState.QUEUED,
                reason="resend",
                batch_id=None,
                now=T0,
                values={"next_attempt_at": None},
            )
        accept(sessions, claim_all(sessions), list(ids.values()))
        with sessions.begin() as session:
            assert store.record(session, [store.WritebackResult(old, "done")], T0) == 0
        row = writebacks(sessions)[old.lead_id]
        assert (row.status, row.state) == ("pending", "accepted")
        with sessions() as session:
            attempts = list(session.scalars(select(WritebackAttempt)))
        assert [(a.state, a.outcome) for a in attempts] == [("uncertain", "done")]


# --------------------------------------------------------------------------- sending


class TestWriter:
    def test_outcomes_land_on_the_records(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """Accepted and rejected leads: status, batch id, sent_at and the error, cut to 40."""
        sf = sf_leads(emulator, 2)
        ids = add_leads(sessions, sf)
        claim = claim_all(sessions)
        accept(sessions, claim, [ids[sf[0]]])
        with sessions.begin() as session:
            outbox.reject(
                session,
                [(ids[sf[1]], "INVALID_PHONE", "the number is not reachable from our lines")],
                reason="rejected",
                batch_id=claim.batch_id,
                now=T0,
                simz_batch_id="sb_1",
            )
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.calls, result.done, result.failed) == (1, 2, 0)
        accepted = emulator.get_record("Lead", sf[0])
        rejected = emulator.get_record("Lead", sf[1])
        assert accepted is not None and rejected is not None
        assert accepted["SimZ_Status__c"] == "accepted"
        assert accepted["SimZ_Batch_Id__c"] == "sb_1"
        assert accepted["SimZ_Sent_At__c"].startswith("2026-01-05T09:00:00")
        assert accepted["SimZ_Error__c"] is None
        assert rejected["SimZ_Status__c"] == "rejected"
        error = "INVALID_PHONE: the number is not reachable from our lines"
        assert rejected["SimZ_Error__c"] == error[:40]
        assert {r.status for r in writebacks(sessions).values()} == {"done"}

    def test_calls_carry_up_to_200_records(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf = sf_leads(emulator, 450)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        result = writer(sessions, source, Clock(T0)).run()
        assert result.calls == math.ceil(450 / 200) == 3
        assert [w["records"] for w in emulator.write_log()] == [200, 200, 50]
        assert result.done == 450

    def test_deleted_locked_and_read_only(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A deleted record fails with its error, a locked row is retried and then done."""
        sf = sf_leads(emulator, 3)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        emulator.delete_record("Lead", sf[0])
        emulator.lock_rows([sf[1]])
        clock = Clock(T0)
        first = writer(sessions, source, clock).run()
        assert (first.done, first.retry, first.failed) == (1, 1, 1)
        rows = writebacks(sessions)
        assert rows[ids[sf[0]]].status == "failed"
        assert (rows[ids[sf[0]]].last_error or "").startswith("ENTITY_IS_DELETED")
        assert rows[ids[sf[1]]].status == "pending"
        assert (rows[ids[sf[1]]].last_error or "").startswith("UNABLE_TO_LOCK_ROW")
        # Not due yet: nothing is sent.
        assert writer(sessions, source, clock).run().calls == 0
        clock.at = T0 + timedelta(minutes=1)
        second = writer(sessions, source, clock).run()
        assert (second.calls, second.done) == (1, 1)
        record = emulator.get_record("Lead", sf[1])
        assert record is not None and record["SimZ_Status__c"] == "accepted"

    def test_an_outage_loses_nothing(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """A whole-call 503 leaves every row pending with a retry time; then they go out."""
        sf = sf_leads(emulator, 5)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        emulator.inject("503", count=1, only="/composite")
        clock = Clock(T0)
        first = writer(sessions, source, clock).run()
        assert (first.status, first.calls, first.retry) == ("error", 1, 5)
        assert {r.status for r in writebacks(sessions).values()} == {"pending"}
        clock.at = T0 + timedelta(minutes=1)
        second = writer(sessions, source, clock).run()
        assert (second.status, second.done) == ("ok", 5)
        assert all(
            (emulator.get_record("Lead", s) or {}).get("SimZ_Status__c") == "accepted" for s in sf
        )

    def test_an_expired_session_is_renewed_and_the_calls_counted(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """INVALID_SESSION_ID: one fresh login and the call again; metrics count it all."""
        sf = sf_leads(emulator, 2)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        source.describe_fields("Lead")
        emulator.expire_sessions()

        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, {"sync": "web", **labels}) or 0.0

        done_before = sample("syncd_writeback_total", outcome="done")
        calls_before = sample("syncd_writeback_api_calls_total", result="ok")
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.status, result.done) == ("ok", 2)
        assert sample("syncd_writeback_total", outcome="done") == done_before + 2
        assert sample("syncd_writeback_api_calls_total", result="ok") == calls_before + 1
        assert sample("syncd_writeback_pending") == 0

    def test_a_bad_field_fails_the_record_with_its_error(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        emulator.declare_field("Lead.SimZ_Status__c:string:255:readonly")
        sf = sf_leads(emulator, 1)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        result = writer(sessions, source, Clock(T0)).run()
        assert result.failed == 1
        row = writebacks(sessions)[ids[sf[0]]]
        assert (row.last_error or "").startswith("INVALID_FIELD_FOR_INSERT_UPDATE")

    def test_high_api_usage_holds_write_back_back(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf = sf_leads(emulator, 1)
        ids = add_leads(sessions, sf)
        accept(sessions, claim_all(sessions), list(ids.values()))
        emulator.set_api_usage(14_000, 15_000)
        source.describe_fields("Lead")  # reads Sforce-Limit-Info
        result = writer(sessions, source, Clock(T0)).run()
        assert (result.status, result.calls) == ("paused", 0)
        assert emulator.write_log() == []

    def test_retry_failed_moves_failed_rows_back_to_pending(
        self, sessions: sessionmaker[Session]
    ) -> None:
        ids = add_leads(sessions, ["00Q000000000001AAA"])
        accept(sessions, claim_all(sessions), list(ids.values()))
        with sessions.begin() as session:
            [row] = store.due(session, "web", T0)
            store.record(session, [store.WritebackResult(row, "failed", "ENTITY_IS_DELETED")], T0)
        with sessions.begin() as session:
            assert store.count_failed(session, "web") == 1
            assert store.retry_failed(session, "web", T0) == 1
            assert [d.lead_id for d in store.due(session, "web", T0)] == [row.lead_id]


class _Watched:
    """The source, noting for each collections call whether delivery was sending."""

    def __init__(self, source: SalesforceSource, activity: DeliveryActivity) -> None:
        self.source = source
        self.activity = activity
        #: (delivery busy during the call, call start, call end) per call.
        self.calls: list[tuple[bool, float, float]] = []

    def update_collection(self, body: dict[str, Any]) -> Any:
        started = time.monotonic()
        busy = self.activity.busy_for() is not None
        answer = self.source.update_collection(body)
        self.calls.append((busy, started, time.monotonic()))
        return answer

    def describe_fields(self, sobject: str) -> list[dict[str, Any]]:
        return self.source.describe_fields(sobject)

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()


_GiveWayWriter = Callable[..., tuple[Writer, _Watched, DeliveryActivity]]


@pytest.fixture
def give_way_writer(
    sessions: sessionmaker[Session], emulator: SalesforceEmulator, source: SalesforceSource
) -> _GiveWayWriter:
    """450 accepted leads and a builder of their writer, with its own delivery activity."""
    sf = sf_leads(emulator, 450)
    ids = add_leads(sessions, sf)
    accept(sessions, claim_all(sessions), list(ids.values()))

    def build(**give_way: Any) -> tuple[Writer, _Watched, DeliveryActivity]:
        activity = DeliveryActivity()
        watched = _Watched(source, activity)
        found = Writer(
            sessions,
            watched,
            make_sync(),
            max_api_usage_percent=80,
            now=Clock(T0),
            activity=activity,
        )
        # The pass is simulated: by default its process uses a full core (faked).
        found.give_way = GiveWay(activity, **{"cpu": time.monotonic, **give_way})
        return found, watched, activity

    return build


class TestGivesWayToDelivery:
    """While a delivery pass of the process is sending, write-back makes no call."""

    def test_it_waits_for_the_pass_then_sends_everything(
        self, give_way_writer: _GiveWayWriter
    ) -> None:
        found, watched, activity = give_way_writer()
        results: list[Any] = []
        with activity.sending():
            thread = threading.Thread(target=lambda: results.append(found.run()))
            thread.start()
            thread.join(0.5)
            assert thread.is_alive(), "the writer did not wait for delivery"
        thread.join(30)
        [result] = results
        assert (result.calls, result.done) == (3, 450)
        assert [busy for busy, _s, _e in watched.calls] == [False, False, False]
        assert found.give_way.waited > 0
        waited = REGISTRY.get_sample_value("syncd_writeback_waited_seconds_total", {"sync": "web"})
        assert waited is not None and waited > 0

    def test_a_pass_waiting_for_simz_does_not_hold_it(
        self, give_way_writer: _GiveWayWriter
    ) -> None:
        """The process's CPU idle while the pass sends (rate limit, network): it goes on."""
        found, watched, activity = give_way_writer(cpu=lambda: 1.0, probe=0.05)
        with activity.sending():
            result = found.run()
        assert (result.calls, result.done) == (3, 450)
        assert all(busy for busy, _s, _e in watched.calls)
        assert found.give_way.waited < 10, "waited for the pass instead of a look at the CPU"

    def test_a_long_pass_gets_paced_calls_not_starvation(
        self, give_way_writer: _GiveWayWriter
    ) -> None:
        """Past the limit the writer sends, pausing at least as long as each call (share 1/2)."""
        found, watched, activity = give_way_writer(limit=0.1, share=0.5)
        with activity.sending():
            result = found.run()
        assert (result.calls, result.done) == (3, 450)
        assert all(busy for busy, _s, _e in watched.calls)
        for (_b, start, end), (_b2, next_start, _e2) in itertools.pairwise(watched.calls):
            assert next_start - end >= end - start, "write-back took more than its share"

    def test_stop_while_waiting_leaves_every_row_pending(
        self, give_way_writer: _GiveWayWriter, sessions: sessionmaker[Session]
    ) -> None:
        """Shutdown while write-back waits for delivery: it returns, having sent nothing."""
        found, watched, activity = give_way_writer()
        stop = threading.Event()
        with activity.sending():
            timer = threading.Timer(0.3, stop.set)
            timer.start()
            result = found.run(stop)
            timer.join()
            assert activity.busy_for() is not None, "returned on stop, not at the pass's end"
        assert (result.calls, watched.calls) == (0, [])
        assert {r.status for r in writebacks(sessions).values()} == {"pending"}


# --------------------------------------------------------------------------- intake


class TestIntake:
    def test_invalid_and_skipped_leads_are_queued_by_the_poll(
        self, engine: Engine, emulator: SalesforceEmulator, source: SalesforceSource
    ) -> None:
        """A poll's new invalid and skipped leads get their write-back in the page's
        transaction; queued ones none; a second poll of the same records adds nothing."""
        sync = make_sync(states=["invalid", "skipped"], start_at="2020-01-01T00:00:00Z", lag="0s")
        factory = make_session_factory(engine)
        store.install(factory, [sync])
        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        ok, bad, dnc = emulator.add_records(
            [
                {"sobject": "Lead", "Phone": "+14155550100", "SystemModstamp": stamp},
                {"sobject": "Lead", "Phone": "not a number", "SystemModstamp": stamp},
                {
                    "sobject": "Lead",
                    "Phone": "+14155550101",
                    "DoNotCall": True,
                    "SystemModstamp": stamp,
                },
            ]
        )
        first = poll_sync(factory, source, sync)
        assert (first.status, first.new) == ("ok", 3)
        with factory() as session:
            rows = session.execute(
                select(Lead.salesforce_id, Writeback.state, Writeback.generation).join(
                    Writeback, Writeback.lead_id == Lead.id
                )
            ).all()
        assert sorted(rows) == sorted([(bad, "invalid", 1), (dnc, "skipped", 1)])
        second = poll_sync(factory, source, sync)
        assert (second.status, second.unchanged, second.updated) == ("ok", 3, 0)
        assert {r.generation for r in writebacks(factory).values()} == {1}
        assert ok not in {sf for sf, _s, _g in rows}

    def test_a_poll_runs_no_write_back_sql_when_the_intake_states_are_not_written(
        self, engine: Engine, emulator: SalesforceEmulator, source: SalesforceSource
    ) -> None:
        """With the default states (delivery outcomes only) a poll page costs no extra SQL."""
        sync = make_sync(start_at="2020-01-01T00:00:00Z", lag="0s")
        factory = make_session_factory(engine)
        store.install(factory, [sync])
        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        emulator.add_records(
            [
                {"sobject": "Lead", "Phone": "+14155550100", "SystemModstamp": stamp},
                {"sobject": "Lead", "Phone": "not a number", "SystemModstamp": stamp},
            ]
        )
        statements = _Statements(engine)
        try:
            result = poll_sync(factory, source, sync)
        finally:
            statements.close()
        assert (result.status, result.new, result.invalid) == ("ok", 2, 1)
        assert statements.seen and not [sql for sql in statements.seen if "writebacks" in sql]


# --------------------------------------------------------------------------- leadership


class TestLeadership:
    def test_only_the_leader_writes_back(
        self, tmp_path: Any, emulator: SalesforceEmulator, simz_emulator: Any
    ) -> None:
        """A replica that does not hold the sync's lease sends nothing; the leader sends."""
        from syncd.bootstrap import bootstrap
        from syncd.config import Config

        config = Config.model_validate(
            {
                "database": {"url": f"sqlite:///{tmp_path}/lead.db"},
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
                "simz": {"base_url": simz_emulator.url, "api_key": simz_emulator.api_key},
                "syncs": [make_sync().model_dump(mode="json", exclude_none=True)],
            }
        )
        runtime = bootstrap(config, replicas=True)
        try:
            sf = sf_leads(emulator, 1)
            ids = add_leads(runtime.session_factory, sf)
            accept(runtime.session_factory, claim_all(runtime.session_factory), list(ids.values()))
            assert runtime.leadership is not None and not runtime.leadership.is_leader("web")
            assert runtime.writeback(config.syncs[0]) is None
            assert emulator.write_log() == []
            leadership, runtime.leadership = runtime.leadership, None
            result = runtime.writeback(config.syncs[0])
            runtime.leadership = leadership
            assert result is not None and result.done == 1
        finally:
            runtime.close()

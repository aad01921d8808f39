"""The suppression list on real databases (SQLite and PostgreSQL): its store, the operators'
use cases, every intake path that checks it, DoNotCall propagation, consent at intake, and a
suppression source read from the Salesforce emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import recheck_store, suppression_store
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, OperatorAction, SyncState
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.suppression import SuppressionSourceConfig
from syncd.domain.suppression import IMPORT, OPERATOR, OptOut
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services import suppressing
from syncd.services.refetch import recheck
from syncd.services.suppression_sources import SourceReader
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

NUMBER = "+12025550001"


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, make_sync())
    source.close()


def suppress(factory: sessionmaker[Session], *phones: str, source: str = OPERATOR) -> list[Any]:
    with factory.begin() as session:
        return suppression_store.add(
            session, [OptOut(p, source, f"why {p}", "alice") for p in phones], lambda: T0
        )


class TestStore:
    def test_an_addition_never_overwrites_and_returns_only_what_it_added(
        self, factory: sessionmaker[Session]
    ) -> None:
        [first] = suppress(factory, NUMBER)
        assert (first.source, first.seen_at, first.added_at) == (OPERATOR, T0, T0)
        added = suppress(factory, NUMBER, "+12025550002", source=IMPORT)
        assert [entry.phone_e164 for entry in added] == ["+12025550002"]
        with factory() as session:
            found = suppression_store.suppressed_among(session, [NUMBER, "+12025550003", ""])
        assert list(found) == [NUMBER]
        assert found[NUMBER].source == OPERATOR
        assert (
            found[NUMBER].describe()
            == f"number is on the suppression list (operator: why {NUMBER})"
        )

    def test_list_count_export_and_remove(self, factory: sessionmaker[Session]) -> None:
        phones = [f"+1202555000{n}" for n in range(1, 6)]
        for phone in reversed(phones):  # added_at: the same; newest-first then by number
            suppress(factory, phone)
        with factory() as session:
            assert suppression_store.count(session) == 5
            assert [e.phone_e164 for e in suppression_store.listed(session, limit=2)] == phones[:2]
            exported = [e.phone_e164 for e in suppression_store.all_entries(session, chunk=2)]
        assert exported == phones
        with factory.begin() as session:
            removed = suppression_store.remove(session, phones[0])
            assert removed is not None and removed.phone_e164 == phones[0]
            assert suppression_store.remove(session, phones[0]) is None
        with factory() as session:
            assert suppression_store.count(session) == 4


class TestOperatorUseCases:
    def test_add_and_remove_are_audited(self, factory: sessionmaker[Session]) -> None:
        outcome = suppressing.add(factory, NUMBER, reason="asked", actor="bob", now=lambda: T0)
        assert outcome.created and outcome.entry.added_by == "bob"
        again = suppressing.add(factory, NUMBER, reason="again", actor="eve", now=lambda: T0)
        assert not again.created and again.entry.reason == "asked"
        removed = suppressing.remove(factory, NUMBER, reason="wrong", actor="bob", now=lambda: T0)
        assert removed is not None
        assert suppressing.remove(factory, NUMBER, reason="x", actor="bob") is None
        with factory() as session:
            actions = session.execute(
                select(OperatorAction.action, OperatorAction.scope, OperatorAction.name)
            ).all()
        assert [tuple(a) for a in actions] == [
            ("suppress", "number", NUMBER),
            ("unsuppress", "number", NUMBER),
        ]

    def test_an_import_goes_in_chunks_and_counts(
        self, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(suppressing, "IMPORT_CHUNK", 3)
        suppress(factory, NUMBER)
        rows = [(2, "2025550001"), (3, "x"), (4, "2025550002"), (5, "202 555 0002"), (6, "")]
        rows += [(7, "2025550003")]
        progress: list[int] = []
        result = suppressing.import_numbers(
            factory,
            rows,
            region="US",
            reason="scrub",
            actor="bob",
            source_name="dnc.csv",
            progress=lambda r: progress.append(r.rows),
        )
        assert (result.rows, result.added, result.already, result.unreadable) == (6, 2, 2, 2)
        assert result.unreadable_lines == [(3, "x"), (6, "")]
        assert progress == [3, 6]
        with factory() as session:
            detail = session.scalar(select(OperatorAction.detail))
        assert detail == "6 rows: 2 added, 2 already listed, 2 unreadable"


class TestIntake:
    def test_a_listed_number_is_skipped_with_the_entrys_reason(self, harness: Harness) -> None:
        suppress(harness.factory, "+12025550000")
        listed, other = harness.add(2, T0 + timedelta(minutes=1))
        result = harness.poll(T0 + timedelta(minutes=5))
        assert (result.status, result.queued, result.skipped) == ("ok", 1, 1)
        leads = harness.leads()
        assert (leads[listed].state, leads[listed].note) == (
            "skipped",
            "number is on the suppression list (operator: why +12025550000)",
        )
        assert leads[other].state == "queued"

    def test_do_not_call_suppresses_the_number_in_the_same_page_and_other_syncs(
        self, harness: Harness
    ) -> None:
        stamp = T0 + timedelta(minutes=1)
        [opted] = harness.add(1, stamp, DoNotCall=True)
        [same] = harness.add(1, stamp, start=0, LastName="Twin")  # the same number, callable
        harness.poll(T0 + timedelta(minutes=5))
        leads = harness.leads()
        assert leads[opted].note == "DoNotCall is set on the record"
        assert leads[same].note == (
            f"number is on the suppression list (do_not_call: DoNotCall is set on record "
            f"{opted} of sync web)"
        )
        with harness.factory() as session:
            [entry] = suppression_store.listed(session)
        assert (entry.source, entry.record_id, entry.sync_name, entry.seen_at) == (
            "do_not_call",
            opted,
            "web",
            stamp,
        )
        # Another sync reading a record with that number skips it too.
        harness.sync = make_sync(name="partner")
        harness.poll(T0 + timedelta(minutes=6))
        with harness.factory() as session:
            partner = session.scalars(select(Lead).where(Lead.sync_name == "partner")).all()
        assert {lead.state for lead in partner} == {"skipped"}

    def test_propagation_off_leaves_the_list_alone(self, harness: Harness) -> None:
        harness.sync = make_sync(rules={"propagate_do_not_call": False})
        harness.add(1, T0 + timedelta(minutes=1), DoNotCall=True)
        harness.poll(T0 + timedelta(minutes=5))
        with harness.factory() as session:
            assert suppression_store.count(session) == 0

    def test_the_lag_of_a_later_opt_out_is_measured(self, harness: Harness) -> None:
        def samples() -> tuple[float, float]:
            labels = {"source": "do_not_call"}
            count = REGISTRY.get_sample_value("syncd_suppression_lag_seconds_count", labels)
            late = REGISTRY.get_sample_value("syncd_suppression_late_total", labels)
            return count or 0, late or 0

        before = samples()
        # Changed before syncd first polled the sync: history, not measured.
        harness.add(1, T0 + timedelta(minutes=1), start=5, DoNotCall=True)
        harness.poll(T0 + timedelta(minutes=2))
        assert samples() == before
        harness.add(1, T0 + timedelta(minutes=3), DoNotCall=True)
        harness.poll(T0 + timedelta(hours=2))  # found 1h57m after it changed: late
        assert samples() == (before[0] + 1, before[1] + 1)

    def test_an_error_reading_the_list_fails_the_page_closed(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(_session: Session, _phones: Any) -> dict[str, Any]:
            raise OperationalError("SELECT suppressions", {}, Exception("disk I/O error"))

        monkeypatch.setattr(suppression_store, "suppressed_among", broken)
        harness.add(2, T0 + timedelta(minutes=1))
        result = harness.poll(T0 + timedelta(minutes=5))
        assert result.status == "error"
        assert "disk I/O error" in str(result.error)
        assert harness.leads() == {}
        assert harness.state().watermark is None

    def test_consent_at_intake(self, harness: Harness) -> None:
        harness.sync = make_sync(rules={"consent": {"field": "Consent__c", "kind": "boolean"}})
        stamp = T0 + timedelta(minutes=1)
        given, refused, empty = (
            harness.add(1, stamp, start=n, Consent__c=value)[0]
            for n, value in ((1, True), (2, False), (3, None))
        )
        harness.poll(T0 + timedelta(minutes=5))
        leads = harness.leads()
        assert {sf: (lead.state, lead.note, lead.consent) for sf, lead in leads.items()} == {
            given: ("queued", None, "true"),
            refused: ("skipped", "no consent: Consent__c is false", "false"),
            empty: ("skipped", "no consent: Consent__c is empty", None),
        }
        # Consent given later is a change of the record: the lead is evaluated again.
        harness.org.update_record(
            "Lead", refused, {"Consent__c": True}, system_modstamp=T0 + timedelta(minutes=6)
        )
        harness.poll(T0 + timedelta(minutes=10))
        lead = harness.leads()[refused]
        assert (lead.state, lead.consent) == ("queued", "true")

    def test_requeue_checks_the_list_again(self, harness: Harness) -> None:
        [sf_id] = harness.add(1, T0 + timedelta(minutes=1))
        harness.poll(T0 + timedelta(minutes=5))
        with harness.factory.begin() as session:
            session.execute(update(Lead).values(state="failed"))
        suppress(harness.factory, "+12025550000")
        with harness.factory() as session:
            leads = recheck_store.select_leads(session, sync="web", states=["failed"])
        recheck(
            harness.factory,
            lambda _name: harness.source,
            {"web": harness.sync},
            leads,
            reason="operator requeue",
            now=lambda: T0 + timedelta(minutes=7),
        )
        lead = harness.leads()[sf_id]
        assert (lead.state, lead.note) == (
            "skipped",
            "number is on the suppression list (operator: why +12025550000)",
        )


def contact(n: int, stamp: Any, **fields: Any) -> dict[str, Any]:
    return {
        "sobject": "Contact",
        "LastName": f"C{n}",
        "Phone": f"+1202555{n:04d}",
        "DoNotCall": True,
        "SystemModstamp": stamp.isoformat(),
        **fields,
    }


SOURCE = SuppressionSourceConfig.model_validate(
    {"name": "dnc", "where": "DoNotCall = true", "phone_fields": ["Phone", "MobilePhone"]}
)


class TestSource:
    def reader(self, harness: Harness, holder: str, at: Any) -> SourceReader:
        return SourceReader(
            harness.factory, harness.source, SOURCE, region="US", holder=holder, now=lambda: at
        )

    def test_reads_incrementally_under_a_lease(self, harness: Harness) -> None:
        harness.org.add_records(
            [
                contact(1, T0 - timedelta(days=400), MobilePhone="202-555-0901"),
                contact(2, T0 - timedelta(days=3), DoNotCall=False),
            ]
        )
        now = T0 + timedelta(minutes=1)
        first_reader = self.reader(harness, "a", now)
        first = first_reader.run()
        assert (first.status, first.records, first.added) == ("ok", 1, 2)
        assert self.reader(harness, "b", now).run().status == "standby"
        with harness.factory() as session:
            state = session.get(SyncState, "suppression:dnc")
            assert state is not None and state.watermark == T0 - timedelta(days=400)
            assert state.last_poll_status == "ok"
            entries = {e.phone_e164: e for e in suppression_store.listed(session)}
        assert set(entries) == {"+12025550001", "+12025550901"}
        assert entries["+12025550901"].seen_at == T0 - timedelta(days=400)
        assert entries["+12025550901"].source == "query"

        # A clean stop lets the lease go: another replica reads on from the cursor (less
        # the lookback, which reads the last record again without adding anything).
        first_reader.close()
        harness.org.add_records([contact(3, T0 + timedelta(minutes=2))])
        result = self.reader(harness, "b", T0 + timedelta(hours=1)).run()
        assert (result.status, result.records, result.added) == ("ok", 2, 1)

    def test_a_source_error_is_reported_not_raised(self, harness: Harness) -> None:
        bad = SuppressionSourceConfig.model_validate(
            {"name": "bad", "where": "NoSuchField__x = true", "phone_fields": ["Phone"]}
        )
        reader = SourceReader(
            harness.factory, harness.source, bad, region="US", holder="a", now=lambda: T0
        )
        result = reader.run()
        assert result.status == "error" and result.error
        with harness.factory() as session:
            state = session.get(SyncState, "suppression:bad")
            assert state is not None and state.last_poll_status == "error"

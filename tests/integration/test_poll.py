"""Integration tests for syncd.services.poll: the emulator over HTTPS into a real database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition, PollRun, SyncState
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.poll import PollResult, poll_sync
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_sync(**overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "web",
        "start_at": T0.isoformat(),
        "lookback": "10m",
        "lag": "15s",
        "agent": "agt_1",
        "mapping": {
            "phoneNumber": "Phone",
            "lastName": "LastName",
            "customData": {"company": "Company"},
        },
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


def lead_record(n: int, stamp: datetime, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sobject": "Lead",
        "LastName": f"Person {n}",
        "Company": f"Co {n}",
        "Phone": f"+1415555{n % 10000:04d}",
        "SystemModstamp": stamp.isoformat(),
    }
    record.update(fields)
    return record


def phone(n: int) -> str:
    return f"+1202555{n % 10000:04d}"


@dataclass
class Harness:
    org: SalesforceEmulator
    engine: Engine
    factory: sessionmaker[Session]
    source: SalesforceSource
    sync: SyncConfig

    def poll(self, now: datetime, **kwargs: Any) -> PollResult:
        return poll_sync(self.factory, self.source, self.sync, now=lambda: now, **kwargs)

    def add(self, count: int, stamp: datetime, start: int = 0, **fields: Any) -> list[str]:
        return self.org.add_records(
            [
                lead_record(n, stamp, **{"Phone": phone(n), **fields})
                for n in range(start, start + count)
            ]
        )

    def leads(self) -> dict[str, Lead]:
        with self.factory() as session:
            return {lead.salesforce_id: lead for lead in session.scalars(select(Lead))}

    def lead_count(self) -> int:
        with self.factory() as session:
            return int(session.scalar(select(func.count()).select_from(Lead)) or 0)

    def state(self) -> SyncState:
        with self.factory() as session:
            found = session.get(SyncState, self.sync.name)
            assert found is not None
            return found

    def transitions(self, salesforce_id: str) -> list[tuple[str | None, str]]:
        with self.factory() as session:
            rows = session.execute(
                select(LeadTransition.from_state, LeadTransition.to_state)
                .join(Lead, Lead.id == LeadTransition.lead_id)
                .where(Lead.salesforce_id == salesforce_id)
                .order_by(LeadTransition.id)
            )
            return [(a, b) for a, b in rows]


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, make_sync())
    source.close()


class TestPaging:
    def test_equal_stamps_across_pages(self, harness: Harness) -> None:
        """Many records sharing one SystemModstamp across page boundaries are queued once each."""
        stamp = T0 + timedelta(minutes=1, milliseconds=250)
        ids = harness.add(650, stamp)
        result = harness.poll(T0 + timedelta(minutes=5))
        assert (result.status, result.pages, result.fetched, result.new) == ("ok", 4, 650, 650)
        leads = harness.leads()
        assert set(leads) == set(ids)
        assert {lead.state for lead in leads.values()} == {"queued"}
        assert harness.state().watermark == stamp
        again = harness.poll(T0 + timedelta(minutes=6))
        assert (again.new, again.updated, again.unchanged) == (0, 0, 650)
        assert harness.lead_count() == 650

    def test_watermark_is_largest_cursor_not_now(self, harness: Harness) -> None:
        """The watermark is the largest cursor read, never the poll's time."""
        harness.add(3, T0 + timedelta(minutes=2))
        last = T0 + timedelta(minutes=3, milliseconds=7)
        harness.add(1, last, start=10)
        result = harness.poll(T0 + timedelta(hours=1))
        assert result.watermark == last == harness.state().watermark
        with harness.factory() as session:
            run = session.scalars(select(PollRun)).one()
        assert (run.status, run.fetched, run.new, run.watermark_after) == ("ok", 4, 4, last)

    def test_start_at_now(self, harness: Harness) -> None:
        """A sync starting now never reads records older than its first poll."""
        harness.sync = make_sync(start_at="now")
        harness.add(5, T0 - timedelta(days=1))
        first = harness.poll(T0)
        assert first.new == 0 and harness.state().start_at == T0
        harness.add(2, T0 + timedelta(seconds=30), start=100)
        second = harness.poll(T0 + timedelta(minutes=2))
        assert second.new == 2 and harness.lead_count() == 2


class TestLateCommits:
    def test_within_lookback(self, harness: Harness) -> None:
        """A record committed late (older than the watermark, in the lookback) is queued once."""
        harness.add(5, T0 + timedelta(minutes=9))
        harness.poll(T0 + timedelta(minutes=10))
        assert harness.state().watermark == T0 + timedelta(minutes=9)
        late = harness.add(1, T0 + timedelta(minutes=5), start=50)
        assert harness.poll(T0 + timedelta(minutes=11)).new == 1
        assert harness.poll(T0 + timedelta(minutes=12)).new == 0
        assert harness.leads()[late[0]].state == "queued"
        assert harness.lead_count() == 6

    def test_outside_lookback_waits_for_a_change(self, harness: Harness) -> None:
        """A record committed later than the lookback is not seen until it changes again."""
        harness.add(1, T0 + timedelta(minutes=30))
        harness.poll(T0 + timedelta(minutes=31))
        late = harness.add(1, T0 + timedelta(minutes=5), start=50)[0]
        harness.poll(T0 + timedelta(minutes=32))
        assert late not in harness.leads()
        harness.org.update_record(
            "Lead", late, {"Company": "Touched"}, system_modstamp=T0 + timedelta(minutes=32)
        )
        harness.poll(T0 + timedelta(minutes=33))
        assert harness.leads()[late].state == "queued"


class TestChanges:
    def test_queued_record_changed(self, harness: Harness) -> None:
        """A queued lead whose record changes goes out with its new data (payload updated)."""
        sf_id = harness.add(1, T0 + timedelta(minutes=1))[0]
        harness.poll(T0 + timedelta(minutes=2))
        harness.org.update_record(
            "Lead", sf_id, {"Company": "New Co"}, system_modstamp=T0 + timedelta(minutes=3)
        )
        result = harness.poll(T0 + timedelta(minutes=4))
        assert (result.updated, result.new) == (1, 0)
        lead = harness.leads()[sf_id]
        assert lead.state == "queued"
        assert lead.payload["customData"] == {"company": "New Co"}
        assert lead.record_cursor == T0 + timedelta(minutes=3)
        assert harness.transitions(sf_id) == [(None, "queued")]

    def test_several_changes_in_one_page(self, harness: Harness) -> None:
        """Several changed records in one page are all updated (one executemany UPDATE)."""
        ids = harness.add(3, T0 + timedelta(minutes=1))
        harness.poll(T0 + timedelta(minutes=2))
        for sf_id in ids:
            harness.org.update_record(
                "Lead", sf_id, {"Company": f"C-{sf_id}"}, system_modstamp=T0 + timedelta(minutes=3)
            )
        result = harness.poll(T0 + timedelta(minutes=4))
        assert (result.status, result.updated) == ("ok", 3)
        leads = harness.leads()
        assert all(leads[i].payload["customData"] == {"company": f"C-{i}"} for i in ids)

    def test_invalid_gains_phone(self, harness: Harness) -> None:
        """An invalid record that gains a valid phone becomes queued, with the transition kept."""
        sf_id = harness.add(1, T0 + timedelta(minutes=1), Phone=None)[0]
        harness.poll(T0 + timedelta(minutes=2))
        assert harness.leads()[sf_id].state == "invalid"
        harness.org.update_record(
            "Lead", sf_id, {"Phone": "(202) 555-0188"}, system_modstamp=T0 + timedelta(minutes=3)
        )
        harness.poll(T0 + timedelta(minutes=4))
        lead = harness.leads()[sf_id]
        assert (lead.state, lead.phone_e164) == ("queued", "+12025550188")
        assert harness.transitions(sf_id) == [(None, "invalid"), ("invalid", "queued")]

    def test_sent_record_not_requeued(self, harness: Harness) -> None:
        """A record changed after it was sent is left alone: never queued again."""
        sf_id = harness.add(1, T0 + timedelta(minutes=1))[0]
        harness.poll(T0 + timedelta(minutes=2))
        with harness.factory.begin() as session:
            session.execute(update(Lead).values(state="accepted"))
        harness.org.update_record(
            "Lead", sf_id, {"Company": "Later"}, system_modstamp=T0 + timedelta(minutes=3)
        )
        result = harness.poll(T0 + timedelta(minutes=4))
        lead = harness.leads()[sf_id]
        # The change is recorded (digest, audit trail), but what was sent stays as sent.
        assert (result.updated, result.unchanged, result.queued) == (1, 0, 0)
        assert lead.state == "accepted"
        assert lead.payload["customData"] == {"company": "Co 0"}
        assert harness.transitions(sf_id)[-1] == ("accepted", "accepted")
        again = harness.poll(T0 + timedelta(minutes=5))
        assert (again.updated, again.unchanged) == (0, 1)

    @pytest.mark.parametrize("state", ["failed", "rejected", "uncertain", "sending"])
    def test_do_not_call_stored_in_any_state(self, harness: Harness, state: str) -> None:
        """DoNotCall set on the record of a lead delivery already had is stored and noted."""
        sf_id = harness.add(1, T0 + timedelta(minutes=1))[0]
        harness.poll(T0 + timedelta(minutes=2))
        with harness.factory.begin() as session:
            session.execute(update(Lead).values(state=state))
        harness.org.update_record(
            "Lead",
            sf_id,
            {"DoNotCall": True, "Company": "Later"},
            system_modstamp=T0 + timedelta(minutes=3),
        )
        result = harness.poll(T0 + timedelta(minutes=4))
        lead = harness.leads()[sf_id]
        assert (result.updated, result.queued, result.skipped) == (1, 0, 0)
        assert lead.state == state
        assert lead.do_not_call is True
        resendable = state in ("failed", "rejected")
        company = "Later" if resendable else "Co 0"
        assert lead.payload["customData"] == {"company": company}
        with harness.factory() as session:
            reason = session.scalars(
                select(LeadTransition.reason)
                .where(LeadTransition.lead_id == lead.id)
                .order_by(LeadTransition.id.desc())
            ).first()
        assert reason is not None and "DoNotCall is set" in reason and "not sent again" in reason

    def test_rules(self, harness: Harness) -> None:
        """DoNotCall and a repeated number make leads skipped with a note."""
        stamp = T0 + timedelta(minutes=1)
        ids = harness.org.add_records(
            [
                lead_record(1, stamp, Phone="+12025550101"),
                lead_record(2, stamp, Phone="(202) 555-0101"),
                lead_record(3, stamp, Phone="+12025550103", DoNotCall=True),
            ]
        )
        result = harness.poll(T0 + timedelta(minutes=2))
        leads = harness.leads()
        states = sorted((leads[i].state, leads[i].note) for i in ids)
        assert states == [
            ("queued", None),
            ("skipped", "DoNotCall is set on the record"),
            ("skipped", "duplicate phone within 1d"),
        ]
        assert (result.skipped, result.queued) == (2, 1)


class TestFaults:
    def test_session_expiry_mid_paging(self, harness: Harness) -> None:
        """INVALID_SESSION_ID on a later page: fresh login, every record queued once."""
        harness.add(500, T0 + timedelta(minutes=1))
        harness.source.login()
        harness.org.inject("delay", seconds=0)
        harness.org.inject("INVALID_SESSION_ID")
        result = harness.poll(T0 + timedelta(minutes=2))
        assert (result.status, result.new) == ("ok", 500)
        assert harness.lead_count() == 500

    def test_limit_exceeded_mid_poll(self, harness: Harness) -> None:
        """REQUEST_LIMIT_EXCEEDED mid-poll pauses; the next poll after the pause reads the rest."""
        for minute in range(1, 6):
            harness.add(200, T0 + timedelta(minutes=minute), start=minute * 1000)
        harness.source.login()
        harness.org.inject("delay", count=2, seconds=0)
        harness.org.inject("REQUEST_LIMIT_EXCEEDED")
        now = T0 + timedelta(minutes=7)
        result = harness.poll(now, limit_pause=timedelta(minutes=15))
        assert (result.status, result.pages, result.new) == ("paused", 2, 400)
        state = harness.state()
        assert state.watermark == T0 + timedelta(minutes=2)
        assert state.paused_until == now + timedelta(minutes=15)
        assert "REQUEST_LIMIT_EXCEEDED" in (state.pause_reason or "")
        queries = len(harness.org.query_log())
        still = harness.poll(now + timedelta(minutes=5))
        assert still.status == "paused"
        assert len(harness.org.query_log()) == queries  # Salesforce not called while paused
        later = harness.poll(now + timedelta(minutes=16))
        assert later.status == "ok"
        assert harness.lead_count() == 1000
        assert {lead.state for lead in harness.leads().values()} == {"queued"}

    def test_api_usage_pauses(self, harness: Harness) -> None:
        """API usage above the configured share pauses polling after the page in hand."""
        harness.add(400, T0 + timedelta(minutes=1))
        harness.org.set_api_usage(900, 1000)
        result = harness.poll(T0 + timedelta(minutes=2), max_api_usage_percent=80)
        assert (result.status, result.pages, result.new) == ("paused", 1, 200)
        assert "API usage" in (harness.state().pause_reason or "")

    def test_server_error_is_visible(self, harness: Harness) -> None:
        """A 500 makes the poll an error recorded in sync_state and poll_runs; nothing moves."""
        harness.add(10, T0 + timedelta(minutes=1))
        harness.source.login()
        harness.org.inject("500")
        result = harness.poll(T0 + timedelta(minutes=2))
        assert result.status == "error" and "SalesforceUnavailable" in (result.error or "")
        state = harness.state()
        assert state.watermark is None and state.last_error == result.error
        with harness.factory() as session:
            assert session.scalars(select(PollRun.status)).all() == ["error"]
        assert harness.poll(T0 + timedelta(minutes=3)).new == 10

    def test_bad_where_is_an_error(self, harness: Harness) -> None:
        """A user condition Salesforce refuses is an error naming Salesforce's complaint."""
        harness.sync = make_sync(where="Nope__c = 1")
        result = harness.poll(T0 + timedelta(minutes=2))
        assert result.status == "error" and "INVALID_FIELD" in (result.error or "")


class TestDryRun:
    def test_changes_nothing(self, harness: Harness) -> None:
        """A dry run previews states and writes no row, watermark or poll run."""
        harness.add(250, T0 + timedelta(minutes=1))
        harness.org.add_records([lead_record(9999, T0 + timedelta(minutes=1), Phone="nope")])
        result = harness.poll(T0 + timedelta(minutes=2), dry_run=True)
        assert (result.new, result.invalid, result.queued) == (251, 1, 250)
        assert len(result.preview) == 251
        assert result.watermark == T0 + timedelta(minutes=1)
        with harness.factory() as session:
            for table in (Lead, SyncState, PollRun, LeadTransition):
                assert session.scalar(select(func.count()).select_from(table)) == 0


class TestStoredRows:
    def test_rows_as_stored(self, harness: Harness) -> None:
        """The stored payload JSON text, digest, note and transitions are pinned byte for byte."""
        harness.sync = make_sync(
            mapping={
                "phoneNumber": "Phone",
                "firstName": "FirstName",
                "lastName": "LastName",
                "email": "Email",
                "campaignType": {"const": "web-inbound"},
                "customData": {"company": "Company", "n": {"const": 2.5}},
            },
            rules={"respect_do_not_call": True, "duplicate_phone_window": "24h"},
        )
        stamp = T0 + timedelta(minutes=1, milliseconds=250)
        ids = harness.org.add_records(
            [
                lead_record(
                    1, stamp, FirstName="Chloé", LastName="Müller 😀", Email="c@example.com"
                ),
                lead_record(2, stamp, Phone="(415) 555-0123", Email="jürgen@example.com"),
                lead_record(3, stamp, Phone="4155550123", Company='Quote " Co'),
                lead_record(4, stamp, Phone="call me"),
                lead_record(5, stamp, Phone="+44 20 7946 0123", DoNotCall=True),
            ]
        )
        harness.poll(T0 + timedelta(minutes=2))
        columns = "CAST(payload AS TEXT), record_hash, state, note, phone_e164, agent_id, attempts"
        with harness.factory() as session:
            rows = {
                sf_id: tuple(rest)
                for sf_id, *rest in session.execute(
                    text(f"SELECT salesforce_id, {columns} FROM leads ORDER BY id")
                )
            }
            reasons = session.execute(
                text(
                    "SELECT l.salesforce_id, t.from_state, t.to_state, t.reason "
                    "FROM lead_transitions t JOIN leads l ON l.id = t.lead_id ORDER BY t.id"
                )
            ).all()
        assert [rows[sf_id] for sf_id in ids] == EXPECTED_ROWS
        assert [tuple(row) for row in reasons] == [
            (sf_id, None, state, reason)
            for sf_id, (state, reason) in zip(ids, EXPECTED_REASONS, strict=True)
        ]
        leads = harness.leads()
        assert {leads[sf_id].record_cursor for sf_id in ids} == {stamp}


#: Pinned from the code before the poll's CPU work; the same on SQLite and PostgreSQL.
EXPECTED_ROWS: list[tuple[object, ...]] = [
    (
        (
            '{"phoneNumber": "+14155550001", "salesforceId": "00Q8d0000000001EAA", '
            '"firstName": "Chlo\\u00e9", "lastName": "M\\u00fcller \\ud83d\\ude00", '
            '"campaignType": "web-inbound", "email": "c@example.com", '
            '"customData": {"company": "Co 1", "n": 2.5}}'
        ),
        "6c6dedb1b86316caf44a0dbb3fe848ab87c4034423a4890d5cf69ad1020bad79",
        "queued",
        None,
        "+14155550001",
        "agt_1",
        0,
    ),
    (
        (
            '{"phoneNumber": "+14155550123", "salesforceId": "00Q8d0000000002EAA", '
            '"lastName": "Person 2", "campaignType": "web-inbound", '
            '"customData": {"company": "Co 2", "n": 2.5}}'
        ),
        "cc73fa9a467980a68757d2048131deeb793c59c93e896d4728782bf6f60e4de6",
        "queued",
        "email left out: not an email address",
        "+14155550123",
        "agt_1",
        0,
    ),
    (
        (
            '{"phoneNumber": "+14155550123", "salesforceId": "00Q8d0000000003EAA", '
            '"lastName": "Person 3", "campaignType": "web-inbound", '
            '"customData": {"company": "Quote \\" Co", "n": 2.5}}'
        ),
        "3e8ef00ae27da349815d3f9608ee6eef901106801b2f2f6be2a581ad150a2b26",
        "skipped",
        "duplicate phone within 1d",
        "+14155550123",
        "agt_1",
        0,
    ),
    (
        (
            '{"salesforceId": "00Q8d0000000004EAA", "lastName": "Person 4", '
            '"campaignType": "web-inbound", "customData": {"company": "Co 4", "n": 2.5}}'
        ),
        "213fa18efcb1b27741b758cfc086d2d2753754452a36a8ed31a39b31ea9728c2",
        "invalid",
        "phone number in Phone is not a valid number",
        None,
        "agt_1",
        0,
    ),
    (
        (
            '{"phoneNumber": "+442079460123", "salesforceId": "00Q8d0000000005EAA", '
            '"lastName": "Person 5", "campaignType": "web-inbound", '
            '"customData": {"company": "Co 5", "n": 2.5}}'
        ),
        "73c92122134bd5fd345004e7563db620fc35c4a84db6a318da8817df6eecbb5e",
        "skipped",
        "DoNotCall is set on the record",
        "+442079460123",
        "agt_1",
        0,
    ),
]
EXPECTED_REASONS: list[tuple[str, str]] = [
    ("queued", "polled: new record"),
    ("queued", "polled: new record: email left out: not an email address"),
    ("skipped", "polled: new record: duplicate phone within 1d"),
    ("invalid", "polled: new record: phone number in Phone is not a valid number"),
    ("skipped", "polled: new record: DoNotCall is set on the record"),
]

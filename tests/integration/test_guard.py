"""The blast-radius guard and calling hours against the emulator and a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import outbox
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition, PollRun
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import CallingHoursConfig
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services import operator as ops
from syncd.services.call_window import calling_rules
from tests.integration.operator_rows import add_lead, make_config
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

LATER = T0 + timedelta(hours=1)


class SizeHidden:
    """A source that cannot tell how many records its query returns."""

    def __init__(self, source: SalesforceSource) -> None:
        self.source = source

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        yield from self.source.query_pages(soql)

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()

    def close(self) -> None:
        self.source.close()


class Undercounting(SizeHidden):
    """A source that announces fewer records than it returns."""

    def last_query_size(self) -> int | None:
        return 1


def make_harness(org: SalesforceEmulator, engine: Engine, limit: int) -> Harness:
    source = SalesforceSource(salesforce_config(org, page_size=200))
    sync = make_sync(guard={"max_new_per_poll": limit})
    return Harness(org, engine, make_session_factory(engine), source, sync)


@pytest.fixture
def guarded(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    harness = make_harness(salesforce_emulator, engine, limit=300)
    yield harness
    harness.source.close()


def trails(harness: Harness) -> dict[str, list[tuple[str | None, str]]]:
    with harness.factory() as session:
        rows = session.execute(
            select(Lead.salesforce_id, LeadTransition.from_state, LeadTransition.to_state)
            .join(LeadTransition, LeadTransition.lead_id == Lead.id)
            .order_by(LeadTransition.id)
        )
        found: dict[str, list[tuple[str | None, str]]] = {}
        for sf_id, source, target in rows:
            found.setdefault(sf_id, []).append((source, target))
        return found


def claim(factory: sessionmaker[Session], now: datetime, **kw: Any) -> outbox.Claim | None:
    with factory.begin() as session:
        return outbox.claim(
            session,
            sync_name="web",
            agent_id="agt_1",
            credential="fp",
            limit=100,
            now=now,
            worker="test",
            **kw,
        )


class TestHolding:
    def test_poll_over_the_limit_holds_from_the_first_page(self, guarded: Harness) -> None:
        """450 new leads over 3 pages, limit 300: none is ever queued, none can be claimed."""
        ids = guarded.add(450, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER)
        assert (result.status, result.pages, result.eligible, result.held) == ("ok", 3, 450, 450)
        assert {lead.state for lead in guarded.leads().values()} == {"held"}
        history = trails(guarded)
        assert set(history) == set(ids)
        assert all(steps == [(None, "held")] for steps in history.values())
        assert claim(guarded.factory, LATER) is None
        with guarded.factory() as session:
            reasons = set(session.scalars(select(LeadTransition.reason)))
            assert reasons == {"polled: new record: held by the blast-radius guard"}
            run = session.scalars(select(PollRun)).one()
            assert (run.eligible, run.held) == (450, 450)

    def test_poll_within_the_limit_queues_directly(self, guarded: Harness) -> None:
        """300 new leads with a limit of 300: queued at once, no detour through held."""
        guarded.add(300, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER)
        assert (result.eligible, result.held, result.queued) == (300, 0, 300)
        assert all(steps == [(None, "queued")] for steps in trails(guarded).values())

    def test_invalid_and_existing_records_do_not_count(self, guarded: Harness) -> None:
        """Only new leads ready to call count: 250 new plus 100 without a phone stay under 300."""
        guarded.add(250, T0 + timedelta(minutes=1))
        guarded.add(100, T0 + timedelta(minutes=1), start=1000, Phone=None)
        result = guarded.poll(LATER)
        assert (result.eligible, result.held, result.invalid) == (250, 0, 100)
        states = [lead.state for lead in guarded.leads().values()]
        assert states.count("queued") == 250 and states.count("invalid") == 100

    def test_unknown_size_holds_until_the_poll_ends_then_releases(self, guarded: Harness) -> None:
        """Without a size, new leads wait in held while the poll runs and are queued at its end."""
        guarded.source = SizeHidden(guarded.source)  # type: ignore[assignment]
        guarded.add(250, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER)
        assert (result.status, result.held, result.queued) == ("ok", 0, 250)
        assert {lead.state for lead in guarded.leads().values()} == {"queued"}
        assert all(s == [(None, "held"), ("held", "queued")] for s in trails(guarded).values())

    def test_unknown_size_over_the_limit_stays_held(self, guarded: Harness) -> None:
        guarded.source = SizeHidden(guarded.source)  # type: ignore[assignment]
        guarded.add(450, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER)
        assert result.held == 450
        assert {lead.state for lead in guarded.leads().values()} == {"held"}

    def test_a_source_that_undercounts_is_caught_at_the_crossing_page(
        self, guarded: Harness
    ) -> None:
        """Announced 1 record, returned 450: the page that crosses 300 holds the earlier ones."""
        guarded.source = Undercounting(guarded.source)  # type: ignore[assignment]
        guarded.add(450, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER)
        assert result.held == 450
        assert {lead.state for lead in guarded.leads().values()} == {"held"}
        moved = [s for s in trails(guarded).values() if s == [(None, "queued"), ("queued", "held")]]
        assert len(moved) == 200  # the first page, held again with the second

    def test_changed_record_of_a_held_lead_stays_held(self, guarded: Harness) -> None:
        """A record change re-evaluates a held lead but never releases it."""
        ids = guarded.add(301, T0 + timedelta(minutes=1))
        guarded.poll(LATER)
        stamp = T0 + timedelta(minutes=30)
        guarded.org.update_record("Lead", ids[0], {"Company": "Changed"}, stamp)
        guarded.org.update_record("Lead", ids[1], {"Phone": None}, stamp)
        result = guarded.poll(LATER + timedelta(hours=1))
        assert result.updated == 2 and result.held == 0
        leads = guarded.leads()
        assert leads[ids[0]].state == "held"
        assert leads[ids[0]].payload["customData"]["company"] == "Changed"
        assert leads[ids[1]].state == "invalid"

    def test_factor_over_trailing_average(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Five polls of 10 new leads, factor 3 and floor 20: a poll of 31 is held."""
        harness = make_harness(salesforce_emulator, engine, limit=1000)
        harness.sync = make_sync(
            guard={"max_factor": 3, "min_history": 5, "factor_floor": 20}, lookback="0s"
        )
        try:
            for n in range(5):
                harness.add(10, T0 + timedelta(minutes=n + 1), start=n * 10)
                assert harness.poll(T0 + timedelta(minutes=n + 2)).held == 0
            harness.add(31, T0 + timedelta(minutes=8), start=100)
            result = harness.poll(T0 + timedelta(minutes=9))
            assert (result.limit, result.held) == (30, 31)
        finally:
            harness.source.close()

    def test_dry_run_shows_what_would_be_held(self, guarded: Harness) -> None:
        guarded.add(301, T0 + timedelta(minutes=1))
        result = guarded.poll(LATER, dry_run=True)
        assert result.held == 301 and result.queued == 0
        assert {row.state for row in result.preview} == {"held"}
        assert guarded.lead_count() == 0


class TestReleaseAndDiscard:
    def test_release_queues_each_held_lead_once(self, guarded: Harness) -> None:
        ids = guarded.add(301, T0 + timedelta(minutes=1))
        guarded.poll(LATER)
        assert ops.count_held(guarded.factory, "web") == 301
        result = ops.release(guarded.factory, sync="web", actor="ops", now=lambda: LATER)
        assert result.leads == 301
        assert {lead.state for lead in guarded.leads().values()} == {"queued"}
        history = trails(guarded)
        assert all(history[i] == [(None, "held"), ("held", "queued")] for i in ids)
        again = ops.release(guarded.factory, sync="web", actor="ops", now=lambda: LATER)
        assert again.leads == 0
        with guarded.factory() as session:
            reasons = set(
                session.scalars(
                    select(LeadTransition.reason).where(LeadTransition.to_state == "queued")
                )
            )
        assert reasons == {"operator release (by ops)"}

    def test_discard_skips_them(self, guarded: Harness) -> None:
        guarded.add(301, T0 + timedelta(minutes=1))
        guarded.poll(LATER)
        result = ops.discard(guarded.factory, sync="web", actor="ops", now=lambda: LATER)
        assert result.leads == 301
        leads = guarded.leads().values()
        assert {lead.state for lead in leads} == {"skipped"}
        assert {lead.note for lead in leads} == {ops.DISCARD_NOTE}
        assert claim(guarded.factory, LATER) is None


class TestCallingHoursAtTheClaim:
    def test_closed_leads_wait_without_an_attempt(self, engine: Engine) -> None:
        """At 08:00 New York (05:00 Los Angeles) only the New York lead is claimed."""
        factory = make_session_factory(engine)
        with factory.begin() as s:
            ny = add_lead(s, "web", "00Q000000000000NY1", "queued")
            la = add_lead(s, "web", "00Q000000000000LA1", "queued", attempts=2)
            ny.phone_e164, la.phone_e164 = "+12125550101", "+14155550101"
        config = CallingHoursConfig(window="08:00-21:00")
        at = datetime(2026, 1, 6, 13, 0, tzinfo=UTC)
        got = claim(factory, at, calling_rules=calling_rules(config))
        assert got is not None and [x.salesforce_id for x in got.leads] == ["00Q000000000000NY1"]
        with factory() as session:
            waiting = session.scalars(select(Lead).where(Lead.salesforce_id.like("%LA1"))).one()
            assert waiting.state == "queued" and waiting.attempts == 2
            assert waiting.next_attempt_at == datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
            assert waiting.waiting_for == "calling_hours"
        report = ops.status(factory, make_config(), now=lambda: at)
        assert report.syncs[0].waiting_for_calling_hours == 1
        views = ops.list_leads(factory, salesforce_ids=["00Q000000000000LA1"])
        assert views[0].waiting_for == "calling_hours"
        # Not due before the opening, claimed once it comes; no extra attempt counted.
        before = datetime(2026, 1, 6, 15, 59, tzinfo=UTC)
        assert claim(factory, before, calling_rules=calling_rules(config)) is None
        opens = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
        later = claim(factory, opens, calling_rules=calling_rules(config))
        assert later is not None and [x.salesforce_id for x in later.leads] == [
            "00Q000000000000LA1"
        ]
        assert later.leads[0].attempts == 2

    def test_without_calling_hours_nothing_waits(self, engine: Engine) -> None:
        factory = make_session_factory(engine)
        with factory.begin() as s:
            add_lead(s, "web", "00Q000000000000LA1", "queued").phone_e164 = "+14155550101"
        at = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)  # 01:00 in Los Angeles
        assert calling_rules(None) is None
        assert claim(factory, at, calling_rules=None) is not None


class TestZoneFromARecordField:
    def test_poll_keeps_the_field_and_the_claim_uses_it(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """A New York number whose record says Los_Angeles waits for 08:00 in Los Angeles;
        an empty or unknown field falls back to the number's zone."""
        source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
        hours = {"window": "08:00-21:00", "timezone": {"field": "Timezone__c"}}
        sync = make_sync(calling_hours=hours)
        harness = Harness(salesforce_emulator, engine, make_session_factory(engine), source, sync)
        try:
            stamp = T0 + timedelta(minutes=1)
            la = harness.add(1, stamp, Timezone__c="America/Los_Angeles", Phone="+12125550101")
            bad = harness.add(1, stamp, start=1, Timezone__c="Mars/Base", Phone="+12125550102")
            assert harness.poll(LATER).new == 2
            leads = harness.leads()
            assert leads[la[0]].time_zone == "America/Los_Angeles"
            assert leads[bad[0]].time_zone == "Mars/Base"
            config = sync.calling_hours
            assert config is not None
            at = datetime(2026, 1, 6, 13, 0, tzinfo=UTC)  # 08:00 New York, 05:00 Los Angeles
            got = claim(harness.factory, at, calling_rules=calling_rules(config))
            assert got is not None and [x.salesforce_id for x in got.leads] == bad
            with harness.factory() as session:
                waiting = session.scalars(select(Lead).where(Lead.salesforce_id == la[0])).one()
                assert waiting.next_attempt_at == datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
            # The field is part of the record's digest: a changed zone is a change.
            harness.org.update_record(
                "Lead", la[0], {"Timezone__c": "America/New_York"}, T0 + timedelta(minutes=2)
            )
            assert harness.poll(LATER + timedelta(minutes=1)).updated == 1
            assert harness.leads()[la[0]].time_zone == "America/New_York"
        finally:
            source.close()

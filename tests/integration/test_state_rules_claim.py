"""calling_hours.profile: us at the claim: the states' days off hold leads, on a real database.

A poll against the Salesforce emulator stores each record's state field in
``leads.region``; ``outbox.claim`` with the profile's check then claims only the
leads every applicable rule allows and leaves the others queued until the
moment they open, with no attempt spent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead
from syncd.adapters.salesforce import SalesforceSource
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.call_window import calling_rules
from tests.integration.test_guard import claim
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

LATER = T0 + timedelta(hours=1)
#: Sunday 2026-12-06, 13:00 in Miami and 12:00 in Birmingham.
SUNDAY = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
#: Monday 2026-12-07, 08:00 in Miami (EST) and 08:00 in Birmingham (CST).
MONDAY_MIAMI = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
MONDAY_BIRMINGHAM = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
HOURS = {"profile": "us", "state_field": "State"}


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    sync = make_sync(calling_hours=HOURS)
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, sync)
    source.close()


class TestStatesAtTheClaim:
    def test_sunday_leads_of_alabama_wait_and_florida_ones_are_claimed(
        self, harness: Harness
    ) -> None:
        """Alabama by area code, Alabama by the record's address, Florida by both."""
        stamp = T0 + timedelta(minutes=1)
        by_phone = harness.add(1, stamp, Phone="+12055550101", State="")
        by_field = harness.add(1, stamp, start=1, Phone="+13055550102", State="Alabama")
        florida = harness.add(1, stamp, start=2, Phone="+13055550103", State="FL")
        assert harness.poll(LATER).new == 3
        stored = harness.leads()
        assert stored[by_field[0]].region == "Alabama"
        assert stored[florida[0]].region == "FL"
        assert stored[by_phone[0]].region is None

        config = harness.sync.calling_hours
        assert config is not None
        got = claim(harness.factory, SUNDAY, calling_rules=calling_rules(config))
        assert got is not None and [lead.salesforce_id for lead in got.leads] == florida
        with harness.factory() as session:
            waiting = {
                lead.salesforce_id: lead
                for lead in session.scalars(select(Lead).where(Lead.state == "queued"))
            }
        assert set(waiting) == {by_phone[0], by_field[0]}
        # Each waits for Monday 08:00 in its own zone (the number's), no attempt spent.
        assert waiting[by_field[0]].next_attempt_at == MONDAY_MIAMI
        assert waiting[by_phone[0]].next_attempt_at == MONDAY_BIRMINGHAM
        assert {lead.waiting_for for lead in waiting.values()} == {"calling_hours"}
        assert {lead.attempts for lead in waiting.values()} == {0}

        assert claim(harness.factory, MONDAY_MIAMI - timedelta(seconds=1),
                     calling_rules=calling_rules(config)) is None  # fmt: skip
        monday = claim(harness.factory, MONDAY_MIAMI, calling_rules=calling_rules(config))
        assert monday is not None and [x.salesforce_id for x in monday.leads] == by_field
        later = claim(harness.factory, MONDAY_BIRMINGHAM, calling_rules=calling_rules(config))
        assert later is not None and [x.salesforce_id for x in later.leads] == by_phone

    def test_a_changed_state_field_is_a_change_of_the_record(self, harness: Harness) -> None:
        """The state field is part of the record's digest: a new address state is stored."""
        stamp = T0 + timedelta(minutes=1)
        [sf_id] = harness.add(1, stamp, Phone="+13055550104", State="FL")
        assert harness.poll(LATER).new == 1
        harness.org.update_record("Lead", sf_id, {"State": "AL"}, T0 + timedelta(minutes=2))
        assert harness.poll(LATER + timedelta(minutes=1)).updated == 1
        assert harness.leads()[sf_id].region == "AL"
        config = harness.sync.calling_hours
        assert config is not None
        assert claim(harness.factory, SUNDAY, calling_rules=calling_rules(config)) is None

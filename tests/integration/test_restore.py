"""``restore`` on SQLite and PostgreSQL, against the Salesforce emulator over HTTPS.

A discard is final; only ``restore`` lifts it, after fetching each record again
and re-applying every rule, and it moves a lead that passes to ``held``, never
to ``queued`` (docs/design.md#decisions-stick).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from syncd.adapters.db import make_session_factory
from syncd.adapters.salesforce import SalesforceSource
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services import operator as ops
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

NOW = T0 + timedelta(minutes=5)


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    sync = make_sync(guard={"max_new_per_poll": 1})
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, sync)
    source.close()


def discard_all(harness: Harness) -> list[str]:
    ids = harness.add(3, T0 + timedelta(minutes=1))
    assert harness.poll(NOW).held == 3
    ops.discard(harness.factory, sync="web", actor="op", now=lambda: NOW)
    return ids


def restore(harness: Harness) -> ops.RestoreResult:
    return ops.restore(
        harness.factory,
        sources=lambda _name: harness.source,
        syncs={"web": harness.sync},
        sync="web",
        actor="op",
        now=lambda: NOW + timedelta(minutes=1),
    )


class TestRestore:
    def test_passing_leads_go_to_held_and_the_discard_is_lifted(self, harness: Harness) -> None:
        ids = discard_all(harness)
        harness.org.update_record(
            "Lead", ids[0], {"DoNotCall": True}, system_modstamp=T0 + timedelta(minutes=2)
        )
        assert ops.discarded(harness.factory, sync="web") == ids
        result = restore(harness)
        assert sorted(result.held) == sorted(ids[1:])
        [kept] = result.not_restored
        assert (kept.salesforce_id, kept.state) == (ids[0], "skipped")
        leads = harness.leads()
        assert [leads[i].state for i in ids] == ["skipped", "held", "held"]
        assert all(leads[i].discarded_at is None for i in ids)
        assert leads[ids[0]].do_not_call is True
        assert ops.discarded(harness.factory, sync="web") == []

    def test_nothing_is_queued_so_delivery_has_nothing_to_send(self, harness: Harness) -> None:
        discard_all(harness)
        restore(harness)
        assert {lead.state for lead in harness.leads().values()} <= {"held", "skipped"}
        assert ops.count_held(harness.factory, "web") == 3

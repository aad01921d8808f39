"""The newest read of a record wins, whichever path made it and whichever commits last.

Real parts: the Salesforce emulator over HTTPS (REST and Bulk API 2.0), a real
SQLite file and PostgreSQL. A source that holds its pages until told stands
for a slow read: a Bulk job's snapshot, or ``requeue``'s fetch, that another
path overtakes with a newer read before it commits (docs/design.md#the-newest-read-wins).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from syncd.adapters import recheck_store
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.salesforce import SalesforceSource
from syncd.adapters.salesforce_bulk import BulkQuerySource
from syncd.domain.soql import build_ids_query
from syncd.domain.window import PollWindow
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.backfill import backfill_sync
from syncd.services.poll import PollResult
from syncd.services.refetch import recheck
from syncd.services.stream_poll import apply_records
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

BEFORE = T0 - timedelta(days=30)
RANGE = PollWindow(T0 - timedelta(days=60), T0)


class Held:
    """A record source whose reads are taken at once and handed over only when released."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.taken = threading.Event()
        self.release = threading.Event()

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        pages = list(self.inner.query_pages(soql))  # the snapshot: read now, applied later
        self.taken.set()
        assert self.release.wait(60), "never released"
        yield from pages

    def api_usage(self) -> tuple[int, int] | None:
        return None


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, make_sync())
    source.close()


def stream_read(harness: Harness, sf_id: str) -> PollResult:
    """What the stream does for an UPDATE event: read the record by Id, apply it."""
    records = [
        record
        for page in harness.source.query_pages(build_ids_query(harness.sync.query_spec, [sf_id]))
        for record in page
    ]
    return apply_records(harness.factory, harness.sync, records, now=lambda: T0)


def trail(harness: Harness, sf_id: str) -> list[tuple[str | None, str, str]]:
    with harness.factory() as session:
        rows = session.execute(
            select(LeadTransition.from_state, LeadTransition.to_state, LeadTransition.reason)
            .join(Lead, Lead.id == LeadTransition.lead_id)
            .where(Lead.salesforce_id == sf_id)
            .order_by(LeadTransition.id)
        )
        return [(a, b, c) for a, b, c in rows]


class TestBulkSnapshotAgainstTheStream:
    def test_a_do_not_call_read_by_the_stream_survives_an_older_bulk_snapshot(
        self, harness: Harness
    ) -> None:
        """The person opts out after the Bulk job's snapshot: the snapshot never clears it."""
        [sf_id] = harness.add(1, BEFORE, DoNotCall=False)
        held = Held(BulkQuerySource(harness.source, page_size=200, poll_interval=0.01))
        results: list[PollResult] = []
        backfill = threading.Thread(
            target=lambda: results.append(
                backfill_sync(harness.factory, held, harness.sync, RANGE, now=lambda: T0)
            )
        )
        backfill.start()
        try:
            assert held.taken.wait(30), "the Bulk job never finished"
            harness.org.update_record(  # the opt-out, stamped after the snapshot
                "Lead", sf_id, {"DoNotCall": True}, system_modstamp=BEFORE + timedelta(hours=1)
            )
            assert stream_read(harness, sf_id).skipped == 1
        finally:
            held.release.set()
            backfill.join(60)
        [result] = results
        assert result.status == "ok", result.error
        lead = harness.leads()[sf_id]
        assert (lead.state, lead.do_not_call) == ("skipped", True)
        assert lead.record_stamp == BEFORE + timedelta(hours=1)
        last = trail(harness, sf_id)[-1]
        assert last[:2] == ("skipped", "skipped")
        assert last[2].startswith("backfill: read ignored: stamped ")

    @pytest.mark.parametrize("propagate", [False, True])
    def test_a_newer_bulk_read_still_applies(self, harness: Harness, propagate: bool) -> None:
        """The rule orders reads; it does not freeze a lead: a newer snapshot re-evaluates.

        With ``propagate_do_not_call`` (the default) the opt-out put the number on the
        suppression list, which a later "callable" read does not lift.
        """
        harness.sync = make_sync(rules={"propagate_do_not_call": propagate})
        [sf_id] = harness.add(1, BEFORE, DoNotCall=True)
        stream_read(harness, sf_id)
        assert harness.leads()[sf_id].state == "skipped"
        harness.org.update_record(
            "Lead", sf_id, {"DoNotCall": False}, system_modstamp=BEFORE + timedelta(hours=2)
        )
        bulk = BulkQuerySource(harness.source, page_size=200, poll_interval=0.01)
        result = backfill_sync(harness.factory, bulk, harness.sync, RANGE, now=lambda: T0)
        assert result.status == "ok", result.error
        lead = harness.leads()[sf_id]
        if propagate:
            assert (lead.state, lead.do_not_call) == ("skipped", False)
            assert lead.note is not None
            assert lead.note.startswith("number is on the suppression list (do_not_call: ")
        else:
            assert (lead.state, lead.do_not_call) == ("queued", False)


class TestRequeueFetchAgainstAPoll:
    def test_a_do_not_call_stored_while_requeue_fetches_wins(self, harness: Harness) -> None:
        """requeue's fetch is older than a read stored meanwhile: the lead is left alone."""
        [sf_id] = harness.add(1, T0 + timedelta(minutes=1))
        harness.poll(T0 + timedelta(minutes=5))
        with harness.factory.begin() as session:  # delivery had it and failed it
            lead = session.scalar(select(Lead).where(Lead.salesforce_id == sf_id))
            assert lead is not None
            lead.state = "failed"
        held = Held(harness.source)
        with harness.factory() as session:
            leads = recheck_store.select_leads(session, states=["failed"])
        results: list[Any] = []
        requeue = threading.Thread(
            target=lambda: results.append(
                recheck(
                    harness.factory,
                    lambda _name: held,
                    {harness.sync.name: harness.sync},
                    leads,
                    reason="operator requeue",
                    now=lambda: T0 + timedelta(minutes=7),
                )
            )
        )
        requeue.start()
        try:
            assert held.taken.wait(30)
            harness.org.update_record(
                "Lead", sf_id, {"DoNotCall": True}, system_modstamp=T0 + timedelta(minutes=3)
            )
            harness.poll(T0 + timedelta(minutes=6))
        finally:
            held.release.set()
            requeue.join(60)
        [result] = results
        assert (sum(result.moved.values()), result.changed_meanwhile) == (0, 1)
        lead = harness.leads()[sf_id]
        assert (lead.state, lead.do_not_call) == ("failed", True)

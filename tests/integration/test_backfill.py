"""Backfill through the poll path, against the Salesforce emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import PollRun
from syncd.adapters.salesforce import SalesforceSource
from syncd.domain.soql import build_count_query
from syncd.domain.window import PollWindow
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.backfill import backfill_sync
from syncd.services.poll import PollResult
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

BEFORE = T0 - timedelta(days=30)
RANGE = PollWindow(T0 - timedelta(days=60), T0)


@pytest.fixture
def harness(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Harness]:
    source = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    yield Harness(salesforce_emulator, engine, make_session_factory(engine), source, make_sync())
    source.close()


def run(harness: Harness, window: PollWindow = RANGE, **kwargs: Any) -> PollResult:
    return backfill_sync(
        harness.factory, harness.source, harness.sync, window, now=lambda: T0, **kwargs
    )


def poll_runs(harness: Harness) -> int:
    with harness.factory() as session:
        return int(session.scalar(select(func.count()).select_from(PollRun)) or 0)


class TestBackfill:
    def test_reads_the_range_without_moving_the_watermark(self, harness: Harness) -> None:
        """Records before start_at are queued; the watermark and poll history stay as they were."""
        harness.add(3, T0 + timedelta(minutes=1))
        harness.poll(T0 + timedelta(minutes=5))
        watermark = harness.state().watermark
        runs = poll_runs(harness)
        old = harness.add(450, BEFORE, start=100)
        seen: list[int] = []
        result = run(harness, on_page=lambda r: seen.append(r.fetched))
        assert (result.status, result.pages, result.new, result.queued) == ("ok", 3, 450, 450)
        assert seen == [200, 400, 450]
        assert harness.state().watermark == watermark
        assert poll_runs(harness) == runs
        leads = harness.leads()
        assert {leads[i].state for i in old} == {"queued"}
        again = run(harness)
        assert (again.new, again.updated, again.unchanged) == (0, 0, 450)
        assert harness.lead_count() == 453

    def test_dry_run_writes_nothing(self, harness: Harness) -> None:
        """A dry run counts what it would queue and leaves the database alone."""
        harness.add(5, BEFORE)
        result = run(harness, dry_run=True)
        assert (result.new, result.queued) == (5, 5)
        assert harness.lead_count() == 0

    def test_stop_after_a_page_keeps_that_page(self, harness: Harness) -> None:
        """A stop mid-way keeps the committed pages whole; a re-run adds only the rest."""
        harness.add(450, BEFORE)
        stop = threading.Event()
        result = run(harness, stop=stop, on_page=lambda r: stop.set())
        assert (result.pages, result.new) == (1, 200)
        assert harness.lead_count() == 200
        rest = run(harness)
        assert (rest.new, rest.unchanged) == (250, 200)

    def test_limit_stops_the_backfill_without_pausing_polling(self, harness: Harness) -> None:
        """REQUEST_LIMIT_EXCEEDED ends the backfill as paused; the sync's polling is not paused."""
        harness.poll(T0 + timedelta(minutes=5))
        harness.add(5, BEFORE)
        harness.org.inject("REQUEST_LIMIT_EXCEEDED")
        result = run(harness)
        assert result.status == "paused" and result.error
        assert harness.state().paused_until is None

    def test_count_query_matches_what_is_read(self, harness: Harness) -> None:
        """SELECT COUNT() over the window gives the number of records the backfill reads."""
        harness.add(7, BEFORE)
        harness.add(2, T0 + timedelta(minutes=1), start=50)
        assert harness.source.count(build_count_query(harness.sync.query_spec, RANGE)) == 7
        assert run(harness).fetched == 7
